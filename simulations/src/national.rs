//! The national level, built from `maillage-protocol` pieces: the node's hub code accepts only
//! members' releases today, so the national node's ingest of hub aggregates is assembled here
//! from the protocol's signed aggregates, Merkle log and checkpoints. When the node gains its
//! own national aggregation, this module is what the lead replaces (through `node_adapter`).
//!
//! What it checks of each hub aggregate: canonical bytes and signature
//! (`SignedAggregate::decode_and_verify`), hub level, period, and that the signer is a hub of
//! the national member list. The national total of a cell is the sum of the hubs' sums, its
//! variance the sum of their variances, its 95% half-width the normal one,
//! `⌈1.96·√variance − ½⌉` (hundreds of independent summands: the Laplace kurtosis correction
//! of `maillage_privacy::combine` is negligible).

use std::collections::BTreeMap;

use ed25519_dalek::{SigningKey, VerifyingKey};
use maillage_protocol::aggregate::{Aggregate, AggregateCell, ContributionRef, Level};
use maillage_protocol::checkpoint::{Checkpoint, contribution_leaf_hash, contributions_origin};
use maillage_protocol::merkle::MerkleLog;
use maillage_protocol::{Indicator, Period, ReleaseId, SignedAggregate, SignedCheckpoint};

const Z_95: f64 = 1.959_963_984_540_054;

/// A national cell being summed: indicator, category, sum, variance.
type CellSum = (Indicator, Option<String>, i64, f64);

/// The national node of the simulation.
#[derive(Debug)]
pub struct National {
    key: SigningKey,
    hubs: Vec<VerifyingKey>,
    log: MerkleLog,
    /// Leaf index → accepted hub aggregate.
    accepted: Vec<SignedAggregate>,
}

/// What the national node made at one time.
#[derive(Debug, Clone)]
pub struct NationalTotal {
    /// The signed national aggregate.
    pub aggregate: SignedAggregate,
    /// The checkpoint of the national log it covers.
    pub checkpoint: SignedCheckpoint,
}

impl National {
    /// A national node with this key, admitting these hubs.
    pub fn new(key: SigningKey, hubs: Vec<VerifyingKey>) -> National {
        National {
            key,
            hubs,
            log: MerkleLog::new(),
            accepted: Vec::new(),
        }
    }

    /// Accepts a hub aggregate (wire bytes) for `period`, or says why not.
    pub fn submit(&mut self, bytes: &[u8], period: Period) -> Result<(), String> {
        let signed = SignedAggregate::decode_and_verify(bytes).map_err(|e| e.to_string())?;
        let a = signed.aggregate();
        if a.level != Level::Hub {
            return Err(format!("level {} where hub was expected", a.level));
        }
        if a.period != period {
            return Err(format!("period {} where {period} was expected", a.period));
        }
        if !self.hubs.contains(&a.signer) {
            return Err(format!(
                "signer {} is not a hub of the national member list",
                hex::encode(a.signer.as_bytes())
            ));
        }
        if self.accepted.iter().any(|x| x.id() == signed.id()) {
            return Ok(());
        }
        let id = ReleaseId::from_bytes(*signed.id().as_bytes());
        self.log.append_leaf_hash(contribution_leaf_hash(&id));
        self.accepted.push(signed);
        Ok(())
    }

    /// Signs the national aggregate over the latest aggregate of each hub.
    pub fn aggregate(&self, period: Period, now: u64) -> anyhow::Result<NationalTotal> {
        let public = self.key.verifying_key();
        let checkpoint = Checkpoint {
            origin: contributions_origin(&public),
            tree_size: self.log.len(),
            root: self.log.root(),
            timestamp: now,
            signer: public,
        }
        .sign(&self.key)?;
        // The latest aggregate of each hub (a hub re-aggregates after late releases).
        let mut latest: BTreeMap<[u8; 32], usize> = BTreeMap::new();
        for (i, a) in self.accepted.iter().enumerate() {
            latest.insert(a.aggregate().signer.to_bytes(), i);
        }
        let mut indices: Vec<usize> = latest.values().copied().collect();
        indices.sort_unstable();
        let mut sums: BTreeMap<(usize, usize), CellSum> = BTreeMap::new();
        let mut contributions = Vec::new();
        for &i in &indices {
            let signed = &self.accepted[i];
            let a = signed.aggregate();
            contributions.push(ContributionRef {
                index: i as u64,
                id: ReleaseId::from_bytes(*signed.id().as_bytes()),
                signer: a.signer,
            });
            for c in &a.cells {
                let position = c
                    .category
                    .as_deref()
                    .and_then(|k| c.indicator.categories().iter().position(|x| *x == k))
                    .unwrap_or(0);
                let e = sums
                    .entry((c.indicator.index_in_catalogue(), position))
                    .or_insert((c.indicator, c.category.clone(), 0, 0.0));
                e.2 =
                    e.2.checked_add(c.sum)
                        .ok_or_else(|| anyhow::anyhow!("national sum overflows"))?;
                e.3 += c.variance;
            }
        }
        let cells = sums
            .into_values()
            .map(|(indicator, category, sum, variance)| AggregateCell {
                indicator,
                category,
                sum,
                variance,
                ci95_half_width: if variance > 0.0 {
                    (Z_95 * variance.sqrt() - 0.5).ceil().max(0.0)
                } else {
                    0.0
                },
            })
            .collect();
        let mut contributed: Vec<VerifyingKey> = contributions.iter().map(|c| c.signer).collect();
        contributed.sort_by_key(|k| k.to_bytes());
        let mut missing: Vec<VerifyingKey> = self
            .hubs
            .iter()
            .filter(|k| !contributed.contains(k))
            .copied()
            .collect();
        missing.sort_by_key(|k| k.to_bytes());
        let aggregate = Aggregate {
            signer: public,
            level: Level::National,
            period,
            checkpoint_size: self.log.len(),
            checkpoint_root: self.log.root(),
            contributions,
            cells,
            contributed,
            missing,
            created_at: now,
            supersedes: None,
            structures: None,
        }
        .sign(&self.key)?;
        Ok(NationalTotal {
            aggregate,
            checkpoint,
        })
    }
}

/// The catalogue position of an indicator.
trait CataloguePosition {
    fn index_in_catalogue(self) -> usize;
}

impl CataloguePosition for Indicator {
    fn index_in_catalogue(self) -> usize {
        use maillage_protocol::vocab::Vocabulary as _;
        self.index()
    }
}
