//! Revisions of aggregates, and what makes two aggregates of one signer and period an
//! equivocation.
//!
//! A hub signs its aggregate of a period at the deadline; releases that arrive late grow its log
//! and it signs the period again. The later aggregate is a **revision** of the earlier one when
//! it names it (`supersedes.id` is the earlier aggregate's [`AggregateId`]) and its checkpoint
//! extends the earlier one's: a size at least as large and an RFC 9162 consistency proof
//! (`supersedes.consistency`) from the earlier checkpoint to the later one that verifies (for
//! equal sizes, an empty proof and equal roots). Nothing of the earlier log was rewritten, so a
//! reader takes the latest revision of a chain as the period's figures; the earlier ones stay
//! valid history.
//!
//! The revisions of a period form one chain: each aggregate names at most one predecessor and a
//! predecessor has at most one successor. Two different aggregates of one signer, level and
//! period therefore **prove an equivocation** ([`AggregateConflict`]) when
//! - they name the same predecessor, or both name none ([`AggregateConflict::Fork`]): the chain
//!   forks, e.g. two "first" aggregates with different figures; or
//! - one names the other but is not a valid revision of it ([`AggregateConflict::BadRevision`]):
//!   its checkpoint does not extend the earlier one (smaller, or the consistency proof fails —
//!   the log was rewritten).
//!
//! Two aggregates of one chain that are not neighbours (the first and the third) prove nothing
//! by themselves, and [`conflict`] says so.

use super::{AggregateId, SignedAggregate};
use crate::merkle::verify_consistency;

/// Why an aggregate is not a valid revision of another.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RevisionError {
    /// The later aggregate names no predecessor.
    #[error("aggregate {later} supersedes nothing: a revision names the aggregate it supersedes")]
    NamesNothing {
        /// The later aggregate.
        later: AggregateId,
    },
    /// The later aggregate names another predecessor.
    #[error("aggregate {later} supersedes {named}, not {earlier}")]
    OtherPredecessor {
        /// The later aggregate.
        later: AggregateId,
        /// What it names.
        named: AggregateId,
        /// The aggregate it was checked against.
        earlier: AggregateId,
    },
    /// Signer, level or period differ.
    #[error(
        "aggregate {later} cannot revise {earlier}: a revision has the same {field} ({earlier_value} and {later_value})"
    )]
    Different {
        /// The earlier aggregate.
        earlier: AggregateId,
        /// The later aggregate.
        later: AggregateId,
        /// `signer`, `level` or `period`.
        field: &'static str,
        /// The earlier value.
        earlier_value: String,
        /// The later value.
        later_value: String,
    },
    /// The later checkpoint does not extend the earlier one.
    #[error(
        "aggregate {later} (checkpoint size {later_size}) does not extend {earlier} (checkpoint size {earlier_size}): {reason}"
    )]
    DoesNotExtend {
        /// The earlier aggregate.
        earlier: AggregateId,
        /// The later aggregate.
        later: AggregateId,
        /// The earlier checkpoint size.
        earlier_size: u64,
        /// The later checkpoint size.
        later_size: u64,
        /// Why: a smaller size, or the consistency proof's failure.
        reason: String,
    },
}

impl SignedAggregate {
    /// Checks that this aggregate is a valid revision of `earlier` (see the module
    /// documentation): it names `earlier`, has its signer, level and period, and its checkpoint
    /// extends `earlier`'s by the consistency proof it carries. Signatures are not checked.
    pub fn check_revises(&self, earlier: &SignedAggregate) -> Result<(), Box<RevisionError>> {
        self.revision_of(earlier).map_err(Box::new)
    }

    // Boxed by its only caller, `check_revises`.
    #[allow(clippy::result_large_err)]
    fn revision_of(&self, earlier: &SignedAggregate) -> Result<(), RevisionError> {
        let (a, b) = (earlier.aggregate(), self.aggregate());
        let (earlier_id, later) = (earlier.id(), self.id());
        let Some(link) = &b.supersedes else {
            return Err(RevisionError::NamesNothing { later });
        };
        if link.id != earlier_id {
            return Err(RevisionError::OtherPredecessor {
                later,
                named: link.id,
                earlier: earlier_id,
            });
        }
        let different = |field, e: String, l: String| RevisionError::Different {
            earlier: earlier_id,
            later,
            field,
            earlier_value: e,
            later_value: l,
        };
        if a.signer != b.signer {
            return Err(different(
                "signer",
                hex::encode(a.signer.as_bytes()),
                hex::encode(b.signer.as_bytes()),
            ));
        }
        if a.level != b.level {
            return Err(different("level", a.level.to_string(), b.level.to_string()));
        }
        if a.period != b.period {
            return Err(different(
                "period",
                a.period.to_string(),
                b.period.to_string(),
            ));
        }
        let extends = if b.checkpoint_size < a.checkpoint_size {
            Err("the later checkpoint is smaller".to_owned())
        } else {
            verify_consistency(
                a.checkpoint_size,
                b.checkpoint_size,
                &a.checkpoint_root,
                &b.checkpoint_root,
                &link.consistency,
            )
            .map_err(|e| format!("the consistency proof does not verify: {e}"))
        };
        extends.map_err(|reason| RevisionError::DoesNotExtend {
            earlier: earlier_id,
            later,
            earlier_size: a.checkpoint_size,
            later_size: b.checkpoint_size,
            reason,
        })
    }

    /// The id of the aggregate this one supersedes, if any.
    pub fn supersedes_id(&self) -> Option<AggregateId> {
        self.aggregate().supersedes.as_ref().map(|s| s.id)
    }
}

/// How two aggregates of one signer, level and period prove an equivocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AggregateConflict {
    /// Both name the same predecessor (or both none): the revision chain forks.
    Fork,
    /// One names the other but does not extend it.
    BadRevision(RevisionError),
}

impl std::fmt::Display for AggregateConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fork => f.write_str(
                "both name the same superseded aggregate (or none): the revision chain forks",
            ),
            Self::BadRevision(e) => write!(f, "one names the other but is not a revision: {e}"),
        }
    }
}

/// Whether two signed aggregates prove that their signer equivocated (see the module
/// documentation): `Ok` with how, or `Err` saying why the pair proves nothing. Signatures are
/// not checked here (verify both before acting on the answer).
pub fn conflict(a: &SignedAggregate, b: &SignedAggregate) -> Result<AggregateConflict, String> {
    let (x, y) = (a.aggregate(), b.aggregate());
    if x.signer != y.signer {
        return Err("the two aggregates have different signers".to_owned());
    }
    if x.level != y.level {
        return Err(format!(
            "the two aggregates are of levels {} and {}",
            x.level, y.level
        ));
    }
    if x.period != y.period {
        return Err(format!(
            "the two aggregates are for {} and {}",
            x.period, y.period
        ));
    }
    let (ida, idb) = (a.id(), b.id());
    if ida == idb {
        return Err(format!("the two aggregates are one aggregate ({ida})"));
    }
    if a.supersedes_id() == b.supersedes_id() {
        return Ok(AggregateConflict::Fork);
    }
    let (earlier, later) = if b.supersedes_id() == Some(ida) {
        (a, b)
    } else if a.supersedes_id() == Some(idb) {
        (b, a)
    } else {
        return Err(format!(
            "{ida} and {idb} name different superseded aggregates and neither names the other: they may be two steps of one revision chain"
        ));
    };
    match later.check_revises(earlier) {
        Ok(()) => Err(format!(
            "{} is a valid revision of {}",
            later.id(),
            earlier.id()
        )),
        Err(e) => Ok(AggregateConflict::BadRevision(*e)),
    }
}
