//! Audit bundles: everything an auditor needs to check one period of a hub, offline, trusting
//! nobody. `maillage log export` writes them; `maillage audit` reads them.
//!
//! A bundle is a directory of JSON documents:
//!
//! | file | content |
//! |---|---|
//! | `manifest.json` | [`Manifest`]: format, hub key, log origin, period, the hub's policy (mechanism, budget per period), the log size covered |
//! | `members.json` | the member list ([`crate::members::Member`]s) the hub admits |
//! | `releases.jsonl` | (hub) one line per log leaf, in index order, from 0 to the covered size: [`LeafLine`] `{"index": n, "release": <signed release JSON>}` |
//! | `contributions.jsonl` | (national, instead of `releases.jsonl`) [`AggregateLine`] `{"index": n, "aggregate": <hub's signed aggregate JSON>}` |
//! | `receipts.jsonl` | one receipt JSON per line, in index order: the signed checkpoint of the leaf's batch, its index and inclusion proof |
//! | `checkpoints.json` | every checkpoint the hub signed up to the covered size, by increasing size |
//! | `proofs.json` | [`Proofs`]: an inclusion proof of every leaf against the covered checkpoint, and a consistency proof between each pair of consecutive checkpoints |
//! | `aggregate.json` | the hub's signed aggregate of the period (absent if none was made) |
//! | `equivocations.json` | [`EquivocationLine`]s: pairs of different releases one member signed for one period (national: [`AggregateEquivocationLine`]s, pairs of aggregates of one hub) |
//! | `policy-adoptions.json` | (hub or national node, when it has adopted a policy) its adoption chain: every adopted version with its committee signatures, genesis first |
//! | `hubs/<aggregate id>/` | (national) the hub bundle of each hub aggregate the national aggregate sums, as the hub exported it: the chain from the national total to every release |
//!
//! Every release of the log up to the covered size is included (not only the period's), so
//! that an auditor can rebuild the whole tree and prove that no release of the period was left
//! out of the aggregate.

use std::path::Path;

use std::collections::BTreeMap;

use maillage_protocol::{Period, SignedAggregate, SignedCheckpoint, SignedRelease};
use serde::{Deserialize, Serialize};

use crate::hub::{Hub, HubError};
use crate::members::Member;

/// The bundle format written here.
pub const FORMAT: &str = "maillage-audit-bundle/v1";

/// The directory of a national bundle holding the hub bundles, one per summed hub aggregate.
pub const HUBS_DIR: &str = "hubs";

/// The directory of a national node holding the hub bundles it was given, by aggregate id.
pub const HUB_BUNDLES_DIR: &str = "hub-bundles";

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The hub's public key, hex.
    pub hub: String,
    /// The log's origin string (as in checkpoints and receipts).
    pub origin: String,
    /// The audited period.
    pub period: Period,
    /// The hub's policy.
    pub policy: Policy,
    /// The log size the bundle covers (the aggregate's checkpoint, or the latest one).
    pub log_size: u64,
    /// When the bundle was written (Unix seconds).
    pub created_at: u64,
    /// `national` for the national node's bundle; absent for a hub's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
}

/// The part of the hub's policy an auditor checks releases against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// `laplace` or `gaussian`.
    pub mechanism: String,
    /// The budget per member and period (ε or ρ).
    pub budget: f64,
}

/// One line of `releases.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeafLine {
    /// The leaf index.
    pub index: u64,
    /// The signed release.
    pub release: SignedRelease,
}

/// One line of `contributions.jsonl` (national bundles).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateLine {
    /// The leaf index.
    pub index: u64,
    /// The hub's signed aggregate.
    pub aggregate: SignedAggregate,
}

/// One entry of a national bundle's `equivocations.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateEquivocationLine {
    /// The aggregate the national node logged.
    pub first: SignedAggregate,
    /// The different aggregate the same hub signed for the same period.
    pub second: SignedAggregate,
}

/// An inclusion proof of one leaf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// The leaf index.
    pub index: u64,
    /// The size of the tree it is proved against.
    pub tree_size: u64,
    /// The proof's hashes, hex.
    pub proof: Vec<String>,
}

/// A consistency proof between two tree sizes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    /// The older size.
    pub old_size: u64,
    /// The newer size.
    pub new_size: u64,
    /// The proof's hashes, hex.
    pub proof: Vec<String>,
}

/// `proofs.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proofs {
    /// One per leaf, against the covered size.
    pub inclusion: Vec<InclusionProof>,
    /// One per pair of consecutive checkpoints.
    pub consistency: Vec<ConsistencyProof>,
}

/// One entry of `equivocations.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EquivocationLine {
    /// The release the hub logged.
    pub first: SignedRelease,
    /// The different release the same member signed for the same period.
    pub second: SignedRelease,
}

/// What can go wrong writing a bundle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The hub's state.
    #[error(transparent)]
    Hub(#[from] HubError),
    /// The output directory exists and is not empty.
    #[error("{0} exists and is not empty; choose a new directory for the bundle")]
    NotEmpty(String),
    /// Writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Encoding a document.
    #[error("encoding {file}: {reason}")]
    Encode {
        /// The file.
        file: &'static str,
        /// Why.
        reason: String,
    },
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportSummary {
    /// Log leaves included.
    pub releases: u64,
    /// Releases of the period among them.
    pub period_releases: u64,
    /// Checkpoints included.
    pub checkpoints: u64,
    /// Equivocations included.
    pub equivocations: u64,
    /// Whether an aggregate of the period was included.
    pub aggregate: bool,
    /// National bundles: hub bundles included, and summed hub aggregates without one.
    pub hub_bundles: u64,
    /// National bundles: summed hub aggregates whose bundle the national node was not given.
    pub hub_bundles_missing: u64,
}

fn hexes(hashes: &[[u8; 32]]) -> Vec<String> {
    hashes.iter().map(hex::encode).collect()
}

fn json<T: Serialize>(file: &'static str, value: &T) -> Result<String, BundleError> {
    serde_json::to_string_pretty(value).map_err(|e| BundleError::Encode {
        file,
        reason: e.to_string(),
    })
}

/// Writes the audit bundle of `period` into `out` (a new or empty directory). The files are
/// written into a sibling temporary directory renamed into place at the end, so a bundle that
/// exists is complete.
pub fn export(
    hub: &Hub<'_>,
    period: Period,
    aggregate: Option<String>,
    out: &Path,
    now: u64,
) -> Result<ExportSummary, BundleError> {
    let shown = out.display().to_string();
    if out.exists()
        && std::fs::read_dir(out)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(BundleError::NotEmpty(shown));
    }
    let checkpoints = hub.checkpoints()?;
    let size = hub.log_size();
    let covered: Vec<&SignedCheckpoint> = checkpoints
        .iter()
        .filter(|c| c.checkpoint().tree_size <= size)
        .collect();

    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let staging = parent.join(format!(
        ".{}.export-{}",
        out.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    let io = |path: &Path| {
        let shown = path.display().to_string();
        move |source| BundleError::Io {
            path: shown,
            source,
        }
    };
    std::fs::create_dir_all(&staging).map_err(io(&staging))?;
    let write = |name: &str, text: String| -> Result<(), BundleError> {
        let path = staging.join(name);
        std::fs::write(&path, text).map_err(io(&path))
    };

    let node = hub.node();
    let policy = &node.config.privacy;
    let manifest = Manifest {
        format: FORMAT.into(),
        hub: hex::encode(node.identity.public().as_bytes()),
        origin: hub.origin(),
        period,
        policy: Policy {
            mechanism: match policy.mechanism {
                maillage_privacy::release::Mechanism::DiscreteLaplace => "laplace".into(),
                maillage_privacy::release::Mechanism::DiscreteGaussian => "gaussian".into(),
            },
            budget: policy.budget,
        },
        log_size: size,
        created_at: now,
        level: hub.is_national().then(|| "national".to_owned()),
    };
    write("manifest.json", json("manifest.json", &manifest)?)?;
    let members: Vec<&Member> = hub.members().iter().collect();
    write("members.json", json("members.json", &members)?)?;
    // The adoption chain of a node that follows an adopted policy, for the auditor to re-verify
    // (and to check against the genesis it pins).
    if let Some(governance) = crate::policy::Governance::load(node.dir())
        .map_err(|e| BundleError::Hub(HubError::Policy(format!("{e:#}"))))?
    {
        write(
            "policy-adoptions.json",
            json("policy-adoptions.json", &governance.chain().entries())?,
        )?;
    }

    let mut leaves = String::new();
    let mut receipts = String::new();
    let mut proofs = Proofs::default();
    let mut period_releases = 0;
    let mut known: BTreeMap<u64, SignedCheckpoint> = covered
        .iter()
        .map(|c| (c.checkpoint().tree_size, (*c).clone()))
        .collect();
    let encode = |file: &'static str| {
        move |e: serde_json::Error| BundleError::Encode {
            file,
            reason: e.to_string(),
        }
    };
    for index in 0..size {
        let (id, bytes) = hub.contribution_wire(index)?;
        let line = if hub.is_national() {
            let aggregate = SignedAggregate::decode(&bytes)
                .map_err(|e| BundleError::Hub(HubError::Corrupt(format!("aggregate {id}: {e}"))))?;
            if aggregate.aggregate().period == period {
                period_releases += 1;
            }
            serde_json::to_string(&AggregateLine { index, aggregate })
                .map_err(encode("contributions.jsonl"))?
        } else {
            let release = SignedRelease::decode(&bytes)
                .map_err(|e| BundleError::Hub(HubError::Corrupt(format!("release {id}: {e}"))))?;
            if release.release().period == period {
                period_releases += 1;
            }
            serde_json::to_string(&LeafLine { index, release }).map_err(encode("releases.jsonl"))?
        };
        leaves.push_str(&line);
        leaves.push('\n');
        let receipt = hub.receipt_with(&id, &mut known)?.ok_or_else(|| {
            BundleError::Hub(HubError::Corrupt(format!("leaf {index}: no receipt")))
        })?;
        receipts.push_str(&serde_json::to_string(&receipt).map_err(encode("receipts.jsonl"))?);
        receipts.push('\n');
        let proof = hub
            .log()
            .inclusion_proof(index, size)
            .map_err(|e| BundleError::Encode {
                file: "proofs.json",
                reason: e.to_string(),
            })?;
        proofs.inclusion.push(InclusionProof {
            index,
            tree_size: size,
            proof: hexes(&proof),
        });
    }
    for pair in covered.windows(2) {
        let (old, new) = (
            pair[0].checkpoint().tree_size,
            pair[1].checkpoint().tree_size,
        );
        let proof = hub
            .log()
            .consistency_proof(old, new)
            .map_err(|e| BundleError::Encode {
                file: "proofs.json",
                reason: e.to_string(),
            })?;
        proofs.consistency.push(ConsistencyProof {
            old_size: old,
            new_size: new,
            proof: hexes(&proof),
        });
    }
    let leaves_file = if hub.is_national() {
        "contributions.jsonl"
    } else {
        "releases.jsonl"
    };
    write(leaves_file, leaves)?;
    write("receipts.jsonl", receipts)?;
    write("checkpoints.json", json("checkpoints.json", &covered)?)?;
    write("proofs.json", json("proofs.json", &proofs)?)?;
    let equivocations = if hub.is_national() {
        let list: Vec<AggregateEquivocationLine> = hub
            .aggregate_equivocations()?
            .into_iter()
            .map(|(first, second)| AggregateEquivocationLine { first, second })
            .collect();
        write("equivocations.json", json("equivocations.json", &list)?)?;
        list.len()
    } else {
        let list: Vec<EquivocationLine> = hub
            .equivocations()?
            .into_iter()
            .map(|(first, second)| EquivocationLine { first, second })
            .collect();
        write("equivocations.json", json("equivocations.json", &list)?)?;
        list.len()
    };
    // The chain to every release: the bundle of each hub aggregate the national one sums.
    let (mut hub_bundles, mut hub_bundles_missing) = (0, 0);
    if hub.is_national()
        && let Some(text) = &aggregate
        && let Ok(national) = SignedAggregate::from_json(text)
    {
        for c in &national.aggregate().contributions {
            let name = c.id.to_string();
            let from = node.dir().join(HUB_BUNDLES_DIR).join(&name);
            if from.is_dir() {
                copy_dir(&from, &staging.join(HUBS_DIR).join(&name))?;
                hub_bundles += 1;
            } else {
                hub_bundles_missing += 1;
            }
        }
    }
    let has_aggregate = aggregate.is_some();
    if let Some(text) = aggregate {
        write("aggregate.json", text)?;
    }
    std::fs::rename(&staging, out).map_err(|source| {
        let _ = std::fs::remove_dir_all(&staging);
        BundleError::Io {
            path: shown.clone(),
            source,
        }
    })?;
    Ok(ExportSummary {
        releases: size,
        period_releases,
        checkpoints: covered.len() as u64,
        equivocations: equivocations as u64,
        aggregate: has_aggregate,
        hub_bundles,
        hub_bundles_missing,
    })
}

/// Copies a directory tree (files and subdirectories).
fn copy_dir(from: &Path, to: &Path) -> Result<(), BundleError> {
    let io = |path: &Path| {
        let shown = path.display().to_string();
        move |source| BundleError::Io {
            path: shown,
            source,
        }
    };
    std::fs::create_dir_all(to).map_err(io(to))?;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &target)?;
        } else {
            std::fs::copy(&path, &target).map_err(io(&path))?;
        }
    }
    Ok(())
}

/// Keeps a hub's bundle at the national node, under its aggregate's id, so that the national
/// bundle can carry the chain to every release. Written into a temporary directory renamed into
/// place: a kept bundle is complete. Keeping the same aggregate's bundle again does nothing.
pub fn keep_hub_bundle(
    hub: &Hub<'_>,
    aggregate: &SignedAggregate,
    from: &Path,
) -> Result<(), BundleError> {
    let dir = hub.node().dir().join(HUB_BUNDLES_DIR);
    let target = dir.join(aggregate.id().to_string());
    if target.is_dir() {
        return Ok(());
    }
    let staging = dir.join(format!(
        ".{}.partial-{}",
        aggregate.id(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    copy_dir(from, &staging)?;
    std::fs::rename(&staging, &target).map_err(|source| {
        let _ = std::fs::remove_dir_all(&staging);
        BundleError::Io {
            path: target.display().to_string(),
            source,
        }
    })
}
