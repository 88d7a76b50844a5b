//! Why a differentially private release, its plan or an accuracy computation was refused.
//!
//! One enum for the whole DP core ([`crate::bounded`], [`crate::release`](mod@crate::release), [`crate::accuracy`]):
//! each message names the parameter or value at fault and what would be accepted instead.

use maillage_protocol::Indicator;

/// An error of the differential-privacy core.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PrivacyError {
    /// A contribution bound is outside its accepted range.
    #[error("bounds.{field} = {value} is out of range: expected an integer from {min} to {max}")]
    BoundOutOfRange {
        /// The field of [`crate::bounded::Bounds`].
        field: &'static str,
        /// What was given.
        value: u32,
        /// The smallest accepted value.
        min: u32,
        /// The largest accepted value.
        max: u32,
    },

    /// The period budget is not a finite number in `(0, max]`.
    #[error(
        "budget {symbol} = {value} is out of range: expected a finite number greater than 0 \
         and at most {max}"
    )]
    BudgetOutOfRange {
        /// `ε` or `ρ`, depending on the mechanism.
        symbol: &'static str,
        /// What was given.
        value: f64,
        /// The largest accepted budget.
        max: f64,
    },

    /// No indicator was asked for.
    #[error("no indicator to release: list at least one of {}", catalogue())]
    NoIndicators,

    /// An indicator is listed twice.
    #[error("indicator {0} is listed twice: list each indicator at most once")]
    DuplicateIndicator(Indicator),

    /// An indicator's budget weight is not a finite positive number.
    #[error(
        "weight of indicator {indicator} = {weight} is out of range: expected a finite number \
         greater than 0 and at most {max} (weights are relative shares of the period budget)"
    )]
    WeightOutOfRange {
        /// The indicator.
        indicator: Indicator,
        /// What was given.
        weight: f64,
        /// The largest accepted weight.
        max: f64,
    },

    /// OpenDP's composed privacy loss exceeds the period budget.
    #[error(
        "the release would spend {symbol} = {privacy_loss} (as OpenDP composes it) but the period \
         budget is {symbol} = {budget}"
    )]
    OverBudget {
        /// `ε` or `ρ`.
        symbol: &'static str,
        /// What OpenDP's privacy map returned for the composed measurement.
        privacy_loss: f64,
        /// The period budget.
        budget: f64,
    },

    /// A noise scale given to [`crate::accuracy::combine`] or an accuracy helper is not a finite
    /// non-negative number.
    #[error("noise scale {scale} is invalid: expected a finite number greater than or equal to 0")]
    InvalidScale {
        /// What was given.
        scale: f64,
    },

    /// The sum of noisy values does not fit in 64 bits.
    #[error("the sum of {count} noisy values overflows a 64-bit integer")]
    SumOverflow {
        /// How many values were being summed.
        count: usize,
    },

    /// A broken invariant of this crate: a bug, never a problem with the data or parameters.
    #[error("internal error of the privacy core: {what}")]
    Internal {
        /// What went wrong.
        what: &'static str,
    },

    /// OpenDP refused to build or run a measurement.
    #[error("OpenDP failed while {step}: {message}")]
    OpenDp {
        /// What was being done.
        step: &'static str,
        /// OpenDP's error variant and message.
        message: String,
    },
}

impl PrivacyError {
    /// Wraps an OpenDP error, keeping its variant and message but not its backtrace.
    pub(crate) fn opendp(step: &'static str) -> impl FnOnce(opendp::error::Error) -> Self {
        move |e| {
            let message = match e.message {
                Some(m) => format!("{}: {m}", e.variant),
                None => e.variant.to_string(),
            };
            Self::OpenDp { step, message }
        }
    }
}

fn catalogue() -> String {
    use maillage_protocol::vocab::Vocabulary;
    Indicator::codes().join(", ")
}
