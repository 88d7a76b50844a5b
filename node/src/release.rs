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
    /// The node's adopted policy could not be read or verified.
    #[error("policy: {0}")]
    Policy(String),
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

fn to_wire(noisy: &NoisyRelease, params_label: String, node: &Node, now: u64) -> Release {
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
        params: params_label,
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
    // A node that has adopted a policy releases under it and names it; otherwise it follows
    // its local settings.
    let governance = crate::policy::Governance::load(node.dir())
        .map_err(|e| ReleaseError::Policy(format!("{e:#}")))?;
    let (params, label) = match &governance {
        Some(g) => g
            .release_params()
            .map_err(|e| ReleaseError::Policy(format!("{e:#}")))?,
        None => (node.config.privacy.clone(), params_id(&node.config.privacy)),
    };
    let params = &params;
    let activities = node.activities_in(period)?;
    let noisy = maillage_privacy::release::release(params, period, &activities)?;
    let signed = to_wire(&noisy, label, node, now).sign(node.identity.signing_key())?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;
    use crate::node::InitOptions;

    fn node_with_data(dir: &std::path::Path) -> Node {
        let node = Node::init(
            &dir.join("node"),
            InitOptions {
                role: Role::Structure,
                name: "t".into(),
                code_insee: None,
                pivot: None,
            },
        )
        .expect("init");
        let csv = dir.join("data.csv");
        let file = std::fs::File::create(&csv).expect("csv");
        crate::synth::generate(&crate::synth::SynthOptions::default(), file).expect("generate");
        node.import_file(&csv, &mut ()).expect("import");
        node
    }

    fn day(s: &str) -> Date {
        Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).expect("date")
    }

    #[test]
    fn concurrent_releases_of_one_period_spend_the_budget_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let node = node_with_data(dir.path());
        let period: Period = "2026-09".parse().expect("period");
        let outcomes: Vec<Outcome> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8u64)
                .map(|i| {
                    let node = &node;
                    scope.spawn(move || {
                        release_period(node, period, false, day("2026-11-01"), 1_800_000_000 + i)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread").expect("release"))
                .collect()
        });
        let first = outcomes[0].release.to_bytes();
        assert!(
            outcomes.iter().all(|o| o.release.to_bytes() == first),
            "one release, whoever asked"
        );
        assert_eq!(outcomes.iter().filter(|o| o.created).count(), 1);
        let ledger = node.ledger().expect("ledger");
        assert_eq!(ledger.len(), 1);
        let (_, entry) = &ledger[0];
        assert!(entry.spent <= entry.budget, "{entry:?}");
        assert_eq!(entry.release_id, outcomes[0].release.id().to_string());
    }

    #[test]
    fn a_node_with_an_adopted_policy_releases_under_it_and_names_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let node = node_with_data(dir.path());
        let period: Period = "2026-09".parse().expect("period");
        let local = release_period(&node, period, false, day("2026-11-01"), 1_800_000_000)
            .expect("release");
        assert!(
            local.release.release().params.starts_with("local/"),
            "{}",
            local.release.release().params
        );
        let hash =
            crate::policy::testing::adopt_with(node.dir(), node.identity.signing_key(), |p| {
                p.privacy.budget_micro = 250_000;
            })
            .expect("adopt");
        let period: Period = "2026-10".parse().expect("period");
        let out = release_period(&node, period, false, day("2026-11-01"), 1_800_000_000)
            .expect("release");
        let r = out.release.release();
        assert_eq!(r.params, hash);
        assert!(r.mechanism.loss() <= 0.25 + 1e-12, "{:?}", r.mechanism);
        let ledger = node.ledger().expect("ledger");
        let entry = &ledger
            .iter()
            .find(|(p, _)| *p == period.to_string())
            .expect("entry")
            .1;
        assert!((entry.budget - 0.25).abs() < 1e-12, "{entry:?}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(12))]
        /// Whatever sequence of periods is asked for, each is released at most once and no
        /// ledger entry records more spend than its budget.
        #[test]
        fn the_ledger_never_overspends(asks in proptest::collection::vec(0usize..3, 1..8)) {
            let dir = tempfile::tempdir().expect("tmp");
            let node = node_with_data(dir.path());
            let periods: Vec<Period> = ["2026-08", "2026-09", "2026-10"].iter().map(|p| p.parse().expect("p")).collect();
            let mut first: std::collections::HashMap<usize, Vec<u8>> = Default::default();
            for i in asks {
                let out = release_period(&node, periods[i], false, day("2026-12-01"), 1_800_000_000).expect("release");
                let bytes = out.release.to_bytes();
                proptest::prop_assert_eq!(first.entry(i).or_insert_with(|| bytes.clone()).clone(), bytes);
            }
            let ledger = node.ledger().expect("ledger");
            proptest::prop_assert_eq!(ledger.len(), first.len());
            for (_, e) in ledger {
                proptest::prop_assert!(e.spent <= e.budget);
            }
        }
    }
}
