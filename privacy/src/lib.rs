//! What a structure's figures are, and how they are shared without sharing its people.
//!
//! This crate owns the validated activity model ([`activity`]), the exact local indicators of
//! the common core and modules ([`exact`]), and the differentially private releases built on
//! them: per-person contribution bounds and sensitivities ([`bounded`]), OpenDP noise under a
//! per-period budget ([`release`](mod@release)) and the accuracy of released and summed figures
//! ([`accuracy`]). It is a pure library: no files, sockets, clocks, threads or tasks; the node
//! feeds it records, keeps the budget ledger and persists what it returns.

pub mod accuracy;
pub mod activity;
pub mod bounded;
pub mod error;
pub mod exact;
pub mod release;

pub use accuracy::{Estimate, Summand, ci95_half_width, combine, noise_variance};
pub use activity::{Activity, Participant};
pub use bounded::{Bounds, Contribution, Sensitivity, bounded_values, sensitivity};
pub use error::PrivacyError;
pub use exact::{IndicatorValue, Indicators};
pub use release::{
    IndicatorWeight, Mechanism, NoisyCell, NoisyRelease, Plan, PlannedIndicator, PrivacyParams,
    release,
};

#[cfg(test)]
mod testing;
