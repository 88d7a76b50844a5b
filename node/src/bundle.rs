//! Audit bundles: everything an auditor needs to check one period of a hub, offline, trusting
//! nobody. `maillage log export` writes them; `maillage audit` reads them.
//!
//! A bundle is a directory of JSON documents:
//!
//! | file | content |
//! |---|---|
//! | `manifest.json` | [`Manifest`]: format, hub key, log origin, period, the hub's policy (mechanism, budget per period), the log size covered |
//! | `members.json` | the member list ([`crate::members::Member`]s) the hub admits |
//! | `releases.jsonl` | one line per log leaf, in index order, from 0 to the covered size: [`LeafLine`] `{"index": n, "release": <signed release JSON>}` |
//! | `receipts.jsonl` | one signed receipt JSON per line, in index order |
//! | `checkpoints.json` | every checkpoint the hub signed up to the covered size, by increasing size |
//! | `proofs.json` | [`Proofs`]: an inclusion proof of every leaf against the covered checkpoint, and a consistency proof between each pair of consecutive checkpoints |
//! | `aggregate.json` | the hub's signed aggregate of the period (absent if none was made) |
//! | `equivocations.json` | [`EquivocationLine`]s: pairs of different releases one member signed for one period |
//!
//! Every release of the log up to the covered size is included (not only the period's), so
//! that an auditor can rebuild the whole tree and prove that no release of the period was left
//! out of the aggregate.

use std::path::Path;

use maillage_protocol::{Period, SignedCheckpoint, SignedReceipt, SignedRelease};
use serde::{Deserialize, Serialize};

use crate::hub::{Hub, HubError};
use crate::members::Member;

/// The bundle format written here.
pub const FORMAT: &str = "maillage-audit-bundle/v1";

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
    };
    write("manifest.json", json("manifest.json", &manifest)?)?;
    let members: Vec<&Member> = hub.members().iter().collect();
    write("members.json", json("members.json", &members)?)?;

    let mut releases = String::new();
    let mut receipts = String::new();
    let mut proofs = Proofs::default();
    let mut period_releases = 0;
    for index in 0..size {
        let (release, receipt): (SignedRelease, SignedReceipt) = hub.contribution(index)?;
        if release.release().period == period {
            period_releases += 1;
        }
        let line = serde_json::to_string(&LeafLine { index, release }).map_err(|e| {
            BundleError::Encode {
                file: "releases.jsonl",
                reason: e.to_string(),
            }
        })?;
        releases.push_str(&line);
        releases.push('\n');
        let line = serde_json::to_string(&receipt).map_err(|e| BundleError::Encode {
            file: "receipts.jsonl",
            reason: e.to_string(),
        })?;
        receipts.push_str(&line);
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
    write("releases.jsonl", releases)?;
    write("receipts.jsonl", receipts)?;
    write("checkpoints.json", json("checkpoints.json", &covered)?)?;
    write("proofs.json", json("proofs.json", &proofs)?)?;
    let equivocations: Vec<EquivocationLine> = hub
        .equivocations()?
        .into_iter()
        .map(|(first, second)| EquivocationLine { first, second })
        .collect();
    write(
        "equivocations.json",
        json("equivocations.json", &equivocations)?,
    )?;
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
        equivocations: equivocations.len() as u64,
        aggregate: has_aggregate,
    })
}
