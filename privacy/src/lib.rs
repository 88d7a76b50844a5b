//! What a structure's figures are, and (next) how they are shared without sharing its people.
//!
//! This crate owns the validated activity model ([`activity`]), the exact local indicators of
//! the common core and modules ([`exact`]), and the differentially private releases built on
//! them. It is a pure library: no files, sockets, clocks or tasks; the node feeds it records
//! and persists what it returns.

pub mod activity;
pub mod exact;

pub use activity::{Activity, Participant};
pub use exact::{IndicatorValue, Indicators};
