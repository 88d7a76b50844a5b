//! Closing a period: the node's noisy, signed release, persisted with its budget spend before
//! anyone sees it.
//!
//! The order is the privacy guarantee: noise is drawn, the release is signed, then the release
//! and the budget it spends are written in one transaction and flushed; only then is it shown
//! or sent. Asking again for the same period returns the stored bytes, whatever the flags, so
//! noise is never redrawn for a period whose budget was spent. A crash before the write leaves
//! nothing released and nothing spent.

use maillage_privacy::release::{Mechanism as PrivacyMechanism, NoisyRelease, PrivacyParams};
use maillage_protocol::Period;
use maillage_protocol::release::{Cell, Mechanism, Release, SignedRelease};
use maillage_protocol::vocab::Vocabulary as _;
use sha2::{Digest, Sha256};
use time::Date;

use crate::node::{Node, NodeError};
use crate::store::{Committed, LedgerEntry};

/// Why a period cannot be released now.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    /// The month has not ended.
    #[error(
        "{period} has not ended yet (it ends on {last_day}); a release closes the month, so wait for it to end, or pass --force-open-period to release it as it is now"
    )]
    PeriodOpen {
        /// The period.
        period: Period,
        /// Its last day.
        last_day: Date,
    },
    /// The privacy parameters are unusable or the mechanism failed.
    #[error("privacy: {0}")]
    Privacy(#[from] maillage_privacy::PrivacyError),
    /// The signed release could not be built.
    #[error("release: {0}")]
    Release(#[from] maillage_protocol::ReleaseError),
    /// The store holds bytes that are not a valid release.
    #[error("the stored release of {period} does not verify ({source}); the store is damaged")]
    StoredInvalid {
        /// The period.
        period: Period,
        /// Why.
        source: maillage_protocol::ReleaseError,
    },
    /// The node directory or its store.
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// A period's release and whether this call created it.
#[derive(Debug)]
pub struct Outcome {
    /// The signed release.
    pub release: SignedRelease,
    /// `true` if it was created now, `false` if it had been stored before.
    pub created: bool,
}

/// The `params` field of a release made under local settings: readable, and pinned to the
/// exact parameters by a hash of their JSON form.
pub fn params_id(params: &PrivacyParams) -> String {
    let json = serde_json::to_vec(params).unwrap_or_default();
    let digest = hex::encode(Sha256::digest(&json));
    let b = &params.bounds;
    format!(
        "local/{}/budget={}/K={}/D={}/T={}/M={}/sha256={}",
        params.mechanism,
        params.budget,
        b.max_rows_per_person,
        b.max_duration_min,
        b.max_themes_per_row,
        b.max_materiel_per_row,
        &digest[..16]
    )
}

fn to_wire(noisy: &NoisyRelease, params: &PrivacyParams, node: &Node, now: u64) -> Release {
    let mechanism = match noisy.mechanism {
        PrivacyMechanism::DiscreteLaplace => Mechanism::Laplace {
            epsilon: noisy.privacy_loss,
        },
        PrivacyMechanism::DiscreteGaussian => Mechanism::Gaussian {
            rho: noisy.privacy_loss,
        },
    };
    let mut cells: Vec<Cell> = noisy
        .cells
        .iter()
        .map(|c| Cell {
            indicator: c.indicator,
            category: c.category.map(str::to_owned),
            value: c.value,
            scale: c.scale,
            ci95_half_width: c.ci95_half_width,
        })
        .collect();
    // The wire format lists indicators in catalogue order; categories keep their order.
    cells.sort_by_key(|c| c.indicator.index());
    Release {
        signer: node.identity.public(),
        period: noisy.period,
        params: params_id(params),
        mechanism,
        created_at: now,
        cells,
    }
}

/// Produces, or returns the stored, release of `period`. `today` and `now` (Unix seconds) are
/// the caller's clock.
pub fn release_period(
    node: &Node,
    period: Period,
    force_open: bool,
    today: Date,
    now: u64,
) -> Result<Outcome, ReleaseError> {
    if let Some(bytes) = node.stored_release(period)? {
        return stored(period, &bytes);
    }
    if !period.has_ended(today) && !force_open {
        return Err(ReleaseError::PeriodOpen {
            period,
            last_day: period.last_day(),
        });
    }
    let params = &node.config.privacy;
    let activities = node.activities_in(period)?;
    let noisy = maillage_privacy::release::release(params, period, &activities)?;
    let signed = to_wire(&noisy, params, node, now).sign(node.identity.signing_key())?;
    let entry = LedgerEntry {
        budget: params.budget,
        spent: noisy.privacy_loss,
        unit: signed.release().mechanism.loss_field().to_owned(),
        release_id: signed.id().to_string(),
        created_at: now,
    };
    match node.commit_release(period, &signed.to_bytes(), &entry)? {
        Committed::Stored => {
            tracing::info!(%period, id = %signed.id(), spent = noisy.privacy_loss, "release stored");
            Ok(Outcome {
                release: signed,
                created: true,
            })
        }
        // Another process released the period between our check and our write: theirs stands.
        Committed::Existing(bytes) => stored(period, &bytes),
    }
}

fn stored(period: Period, bytes: &[u8]) -> Result<Outcome, ReleaseError> {
    let release = SignedRelease::decode_and_verify(bytes)
        .map_err(|source| ReleaseError::StoredInvalid { period, source })?;
    Ok(Outcome {
        release,
        created: false,
    })
}
