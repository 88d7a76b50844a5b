//! The hub role: accepting members' signed releases into an append-only Merkle log, answering
//! with signed receipts, catching equivocations, signing checkpoints and period aggregates, and
//! exporting what an auditor needs.
//!
//! State lives in the node's sled database:
//! - `hub_log`: leaf index (u64 BE) → release id; the leaves are `contribution_leaf_hash(id)`
//! - `hub_releases`: release id → the signed release's wire bytes
//! - `hub_by_signer`: signer key ‖ `YYYY-MM` → release id (one release per member and period)
//! - `hub_receipts`: release id → the signed receipt's wire bytes
//! - `hub_checkpoints`: tree size (u64 BE) → the signed checkpoint's wire bytes
//! - `hub_equivocations`: signer key ‖ `YYYY-MM` ‖ second id → the second release's wire bytes
//! - `hub_aggregates`: `YYYY-MM` ‖ tree size (u64 BE) → the signed aggregate's wire bytes
//!
//! A batch of submissions is written in one transaction and flushed before any receipt is
//! returned, so a receipt always names a leaf that is durably in the log.

use std::collections::HashMap;

use ed25519_dalek::{Signature, VerifyingKey};
use maillage_protocol::aggregate::{
    Aggregate, AggregateCell, ContributionRef, Level, SignedAggregate,
};
use maillage_protocol::checkpoint::{
    Checkpoint, Receipt, SignedCheckpoint, SignedReceipt, contribution_leaf_hash,
    contributions_origin,
};
use maillage_protocol::merkle::MerkleLog;
use maillage_protocol::release::{Mechanism, SIGNING_DOMAIN};
use maillage_protocol::{Period, ReleaseId, SignedRelease};
use sled::Transactional;
use sled::transaction::TransactionError;

use crate::config::Role;
use crate::members::{Members, MembersError};
use crate::node::Node;
use crate::store::StoreError;

/// What can stop the hub from working at all (as opposed to refusing one submission).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// This node is not a hub or national node.
    #[error("this node's role is {role}; only a hub or the national node keeps a contribution log")]
    NotAHub {
        /// The node's role.
        role: Role,
    },
    /// The member list.
    #[error(transparent)]
    Members(#[from] MembersError),
    /// The store.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// sled.
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    /// Stored hub state that does not decode or contradicts itself.
    #[error("hub state damaged: {0}")]
    Corrupt(String),
    /// Signing a checkpoint or receipt failed.
    #[error("signing: {0}")]
    Sign(String),
}

/// Why one submission was refused. Nothing of a refused submission enters the log.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Not a well-formed, correctly signed release.
    #[error("invalid release: {0}")]
    Invalid(String),
    /// The signer is not a member of this hub.
    #[error(
        "signer {signer} is not a member of this hub; ask the hub to add your key (maillage members add)"
    )]
    NotMember {
        /// The signer's key, hex.
        signer: String,
    },
    /// The release used another mechanism than the hub's policy.
    #[error("release of {signer} for {period} uses {found}; this hub's policy is {expected}")]
    WrongMechanism {
        /// Signer, hex.
        signer: String,
        /// Period.
        period: Period,
        /// Mechanism found.
        found: String,
        /// Mechanism expected.
        expected: String,
    },
    /// The release spent more than the period's budget.
    #[error(
        "release of {signer} for {period} spends {unit} = {spent}, over this hub's budget of {budget} per period"
    )]
    OverBudget {
        /// Signer, hex.
        signer: String,
        /// Period.
        period: Period,
        /// `epsilon` or `rho`.
        unit: String,
        /// What it spent.
        spent: f64,
        /// The budget.
        budget: f64,
    },
    /// The signer already submitted a different release for this period: both are kept as
    /// proof and the second is refused.
    #[error(
        "equivocation: {signer} already submitted release {first} for {period}; this different release {second} is refused and both are kept as proof"
    )]
    Equivocation {
        /// Signer, hex.
        signer: String,
        /// Period.
        period: Period,
        /// The release in the log.
        first: ReleaseId,
        /// The refused one.
        second: ReleaseId,
    },
}

/// What happened to one accepted submission.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The receipt (the same one again for a resent release).
    pub receipt: SignedReceipt,
    /// `false` when the same release had been accepted before.
    pub new: bool,
}

/// A contribution appended by the batch being processed.
struct Appended {
    index: u64,
    id: ReleaseId,
    /// signer ‖ period
    key: Vec<u8>,
    /// the release's wire bytes
    bytes: Vec<u8>,
    receipt: SignedReceipt,
}

/// Cells being summed, by (catalogue position of the indicator, of the category).
type CellSums = std::collections::BTreeMap<
    (usize, usize),
    (
        maillage_protocol::Indicator,
        Option<String>,
        Vec<maillage_privacy::accuracy::Summand>,
    ),
>;

/// The outcome of one submission.
pub type Outcome = Result<Accepted, Refusal>;

/// The hub's view of its node's store.
#[derive(Debug)]
pub struct Hub<'a> {
    node: &'a Node,
    members: Members,
    log: MerkleLog,
    trees: Trees,
    aggregates: sled::Tree,
}

#[derive(Debug, Clone)]
struct Trees {
    log: sled::Tree,
    releases: sled::Tree,
    by_signer: sled::Tree,
    receipts: sled::Tree,
    checkpoints: sled::Tree,
    equivocations: sled::Tree,
}

fn signer_period_key(signer: &VerifyingKey, period: Period) -> Vec<u8> {
    let mut key = signer.as_bytes().to_vec();
    key.extend_from_slice(period.to_string().as_bytes());
    key
}

fn release_id_from(bytes: &[u8]) -> Result<ReleaseId, HubError> {
    <[u8; 32]>::try_from(bytes)
        .map(ReleaseId::from_bytes)
        .map_err(|_| HubError::Corrupt(format!("a release id of {} bytes", bytes.len())))
}

impl<'a> Hub<'a> {
    /// Opens the hub state of a hub or national node, rebuilding the Merkle log from the store.
    pub fn open(node: &'a Node) -> Result<Self, HubError> {
        let role = node.config.node.role;
        if !matches!(role, Role::Hub | Role::National) {
            return Err(HubError::NotAHub { role });
        }
        let store = &node.store;
        let trees = Trees {
            log: store.tree("hub_log")?,
            releases: store.tree("hub_releases")?,
            by_signer: store.tree("hub_by_signer")?,
            receipts: store.tree("hub_receipts")?,
            checkpoints: store.tree("hub_checkpoints")?,
            equivocations: store.tree("hub_equivocations")?,
        };
        let mut log = MerkleLog::new();
        for (expected, entry) in trees.log.iter().enumerate() {
            let (key, id) = entry?;
            let index = <[u8; 8]>::try_from(key.as_ref())
                .map(u64::from_be_bytes)
                .unwrap_or(u64::MAX);
            if index != expected as u64 {
                return Err(HubError::Corrupt(format!(
                    "log leaf {index} where {expected} was expected"
                )));
            }
            log.append_leaf_hash(contribution_leaf_hash(&release_id_from(&id)?));
        }
        let members = Members::load(node.dir())?;
        let aggregates = store.tree("hub_aggregates")?;
        Ok(Self {
            node,
            members,
            log,
            trees,
            aggregates,
        })
    }

    /// The member list.
    pub fn members(&self) -> &Members {
        &self.members
    }

    /// The log's name in checkpoints and receipts.
    pub fn origin(&self) -> String {
        contributions_origin(&self.node.identity.public())
    }

    /// How many contributions the log holds.
    pub fn log_size(&self) -> u64 {
        self.log.len()
    }

    /// The Merkle log.
    pub fn log(&self) -> &MerkleLog {
        &self.log
    }

    /// Checks, appends and acknowledges a batch of signed releases (wire bytes). Signatures are
    /// verified as a batch; the accepted ones are written in one transaction and flushed before
    /// this returns. Then a checkpoint covering the new log is signed.
    pub fn accept_batch(
        &mut self,
        submissions: &[Vec<u8>],
        now: u64,
    ) -> Result<Vec<Outcome>, HubError> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; submissions.len()];
        let mut decoded: Vec<(usize, SignedRelease)> = Vec::with_capacity(submissions.len());
        for (i, bytes) in submissions.iter().enumerate() {
            match SignedRelease::decode(bytes) {
                Ok(release) => decoded.push((i, release)),
                Err(e) => outcomes[i] = Some(Err(Refusal::Invalid(e.to_string()))),
            }
        }
        // One batch verification for all; if it fails, find the culprits one by one.
        let messages: Vec<Vec<u8>> = decoded
            .iter()
            .map(|(_, r)| [SIGNING_DOMAIN, r.canonical_release().as_slice()].concat())
            .collect();
        let message_refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let signatures: Vec<Signature> = decoded.iter().map(|(_, r)| *r.signature()).collect();
        let keys: Vec<VerifyingKey> = decoded.iter().map(|(_, r)| r.release().signer).collect();
        if ed25519_dalek::verify_batch(&message_refs, &signatures, &keys).is_err() {
            decoded.retain(|(i, r)| match r.verify() {
                Ok(()) => true,
                Err(e) => {
                    outcomes[*i] = Some(Err(Refusal::Invalid(e.to_string())));
                    false
                }
            });
        }

        let policy = &self.node.config.privacy;
        let expected_mechanism = match policy.mechanism {
            maillage_privacy::release::Mechanism::DiscreteLaplace => "laplace",
            maillage_privacy::release::Mechanism::DiscreteGaussian => "gaussian",
        };
        let hub_key = self.node.identity.public();
        let origin = self.origin();
        // Within the batch: signer+period → id of what this batch already appends.
        let mut pending: HashMap<Vec<u8>, ReleaseId> = HashMap::new();
        let mut appended: Vec<Appended> = Vec::new();
        let mut equivocations: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for (i, release) in decoded {
            let r = release.release();
            let signer = hex::encode(r.signer.as_bytes());
            let outcome = (|| {
                match self.members.get(&r.signer) {
                    Some(m)
                        if m.role == Role::Structure
                            || self.node.config.node.role == Role::National => {}
                    _ => {
                        return Err(Refusal::NotMember {
                            signer: signer.clone(),
                        });
                    }
                }
                if r.mechanism.name() != expected_mechanism {
                    return Err(Refusal::WrongMechanism {
                        signer: signer.clone(),
                        period: r.period,
                        found: r.mechanism.name().into(),
                        expected: expected_mechanism.into(),
                    });
                }
                if r.mechanism.loss() > policy.budget {
                    return Err(Refusal::OverBudget {
                        signer: signer.clone(),
                        period: r.period,
                        unit: r.mechanism.loss_field().into(),
                        spent: r.mechanism.loss(),
                        budget: policy.budget,
                    });
                }
                Ok(())
            })();
            if let Err(refusal) = outcome {
                outcomes[i] = Some(Err(refusal));
                continue;
            }
            let id = release.id();
            let key = signer_period_key(&r.signer, r.period);
            let existing = match pending.get(&key) {
                Some(id) => Some(*id),
                None => self
                    .trees
                    .by_signer
                    .get(&key)?
                    .map(|v| release_id_from(&v))
                    .transpose()?,
            };
            match existing {
                Some(first) if first == id => {
                    outcomes[i] = Some(match self.receipt_of(&id, &appended)? {
                        Some(receipt) => Ok(Accepted {
                            receipt,
                            new: false,
                        }),
                        None => Err(Refusal::Invalid(
                            "duplicate of a release with no receipt".into(),
                        )),
                    });
                }
                Some(first) => {
                    let mut ekey = key.clone();
                    ekey.extend_from_slice(id.as_bytes());
                    equivocations.push((ekey, release.to_bytes()));
                    tracing::warn!(signer = %signer, period = %r.period, %first, second = %id, "equivocation refused");
                    outcomes[i] = Some(Err(Refusal::Equivocation {
                        signer,
                        period: r.period,
                        first,
                        second: id,
                    }));
                }
                None => {
                    let index = self.log.len() + appended.len() as u64;
                    let receipt = Receipt {
                        origin: origin.clone(),
                        hub: hub_key,
                        release_id: id,
                        index,
                        checkpoint_size: index + 1,
                        timestamp: now,
                    }
                    .sign(self.node.identity.signing_key())
                    .map_err(|e| HubError::Sign(e.to_string()))?;
                    pending.insert(key.clone(), id);
                    appended.push(Appended {
                        index,
                        id,
                        key,
                        bytes: release.to_bytes(),
                        receipt: receipt.clone(),
                    });
                    outcomes[i] = Some(Ok(Accepted { receipt, new: true }));
                }
            }
        }

        let t = &self.trees;
        (
            &t.log,
            &t.releases,
            &t.by_signer,
            &t.receipts,
            &t.equivocations,
        )
            .transaction(|(log, releases, by_signer, receipts, equivs)| {
                for Appended {
                    index,
                    id,
                    key,
                    bytes,
                    receipt,
                } in &appended
                {
                    log.insert(&index.to_be_bytes(), id.as_bytes())?;
                    releases.insert(id.as_bytes(), bytes.as_slice())?;
                    by_signer.insert(key.as_slice(), id.as_bytes())?;
                    receipts.insert(id.as_bytes(), receipt.to_bytes())?;
                }
                for (key, bytes) in &equivocations {
                    equivs.insert(key.as_slice(), bytes.as_slice())?;
                }
                Ok(())
            })
            .map_err(|e: TransactionError<()>| match e {
                TransactionError::Abort(()) => HubError::Corrupt("transaction aborted".into()),
                TransactionError::Storage(e) => HubError::Sled(e),
            })?;
        for a in &appended {
            self.log.append_leaf_hash(contribution_leaf_hash(&a.id));
        }
        if !appended.is_empty() {
            self.checkpoint(now)?;
        }
        self.node.store.flush()?;
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(Refusal::Invalid("not processed".into()))))
            .collect())
    }

    fn receipt_of(
        &self,
        id: &ReleaseId,
        appended: &[Appended],
    ) -> Result<Option<SignedReceipt>, HubError> {
        if let Some(a) = appended.iter().find(|a| a.id == *id) {
            return Ok(Some(a.receipt.clone()));
        }
        match self.trees.receipts.get(id.as_bytes())? {
            Some(bytes) => SignedReceipt::decode(&bytes)
                .map(Some)
                .map_err(|e| HubError::Corrupt(format!("receipt of {id}: {e}"))),
            None => Ok(None),
        }
    }

    /// Signs a checkpoint of the log at its current size (or returns the latest if the log has
    /// not grown since).
    pub fn checkpoint(&mut self, now: u64) -> Result<SignedCheckpoint, HubError> {
        let size = self.log.len();
        if let Some(bytes) = self.trees.checkpoints.get(size.to_be_bytes())? {
            return SignedCheckpoint::decode(&bytes)
                .map_err(|e| HubError::Corrupt(format!("checkpoint {size}: {e}")));
        }
        let checkpoint = Checkpoint {
            origin: self.origin(),
            tree_size: size,
            root: self.log.root(),
            timestamp: now,
            signer: self.node.identity.public(),
        }
        .sign(self.node.identity.signing_key())
        .map_err(|e| HubError::Sign(e.to_string()))?;
        self.trees
            .checkpoints
            .insert(size.to_be_bytes(), checkpoint.to_bytes())?;
        Ok(checkpoint)
    }

    /// Every checkpoint signed so far, by increasing size.
    pub fn checkpoints(&self) -> Result<Vec<SignedCheckpoint>, HubError> {
        self.trees
            .checkpoints
            .iter()
            .map(|e| {
                let (_, bytes) = e?;
                SignedCheckpoint::decode(&bytes)
                    .map_err(|e| HubError::Corrupt(format!("checkpoint: {e}")))
            })
            .collect()
    }

    /// The contribution at a leaf index, with its receipt.
    pub fn contribution(&self, index: u64) -> Result<(SignedRelease, SignedReceipt), HubError> {
        let id = self
            .trees
            .log
            .get(index.to_be_bytes())?
            .ok_or_else(|| HubError::Corrupt(format!("no leaf {index}")))?;
        let id = release_id_from(&id)?;
        let release = self
            .trees
            .releases
            .get(id.as_bytes())?
            .ok_or_else(|| HubError::Corrupt(format!("leaf {index}: release {id} missing")))?;
        let release = SignedRelease::decode(&release)
            .map_err(|e| HubError::Corrupt(format!("release {id}: {e}")))?;
        let receipt = self
            .receipt_of(&id, &[])?
            .ok_or_else(|| HubError::Corrupt(format!("leaf {index}: receipt missing")))?;
        Ok((release, receipt))
    }

    /// Every equivocation caught: (release in the log, refused release).
    pub fn equivocations(&self) -> Result<Vec<(SignedRelease, SignedRelease)>, HubError> {
        let mut out = Vec::new();
        for entry in self.trees.equivocations.iter() {
            let (key, second) = entry?;
            let first_id = self
                .trees
                .by_signer
                .get(&key[..key.len().saturating_sub(32)])?
                .ok_or_else(|| HubError::Corrupt("equivocation without a first release".into()))?;
            let first =
                self.trees.releases.get(&first_id)?.ok_or_else(|| {
                    HubError::Corrupt("equivocation's first release missing".into())
                })?;
            let decode =
                |b: &[u8]| SignedRelease::decode(b).map_err(|e| HubError::Corrupt(e.to_string()));
            out.push((decode(&first)?, decode(&second)?));
        }
        Ok(out)
    }

    /// The node this hub runs in.
    pub fn node(&self) -> &Node {
        self.node
    }
}

/// The privacy crate's name of a wire mechanism.
pub fn privacy_mechanism(mechanism: &Mechanism) -> maillage_privacy::release::Mechanism {
    match mechanism {
        Mechanism::Laplace { .. } => maillage_privacy::release::Mechanism::DiscreteLaplace,
        Mechanism::Gaussian { .. } => maillage_privacy::release::Mechanism::DiscreteGaussian,
    }
}

/// Sums releases cell by cell: for every cell that appears in any of them (in catalogue
/// order), the sum of the noisy values, the variance of the summed noise and the 95% interval,
/// from `maillage_privacy::combine` over the releases in the order given. Hubs and auditors
/// both call this, so an audit recomputes exactly what the hub signed.
pub fn sum_cells<'r>(
    releases: impl IntoIterator<Item = &'r maillage_protocol::Release>,
) -> Result<Vec<AggregateCell>, maillage_privacy::PrivacyError> {
    use maillage_privacy::accuracy::{Summand, combine};
    use maillage_protocol::vocab::Vocabulary as _;
    let mut cells = CellSums::new();
    for release in releases {
        let mechanism = privacy_mechanism(&release.mechanism);
        for cell in &release.cells {
            let categories = cell.indicator.categories();
            let position = cell
                .category
                .as_deref()
                .and_then(|c| categories.iter().position(|k| *k == c))
                .unwrap_or(0);
            cells
                .entry((cell.indicator.index(), position))
                .or_insert_with(|| (cell.indicator, cell.category.clone(), Vec::new()))
                .2
                .push(Summand {
                    value: cell.value,
                    mechanism,
                    scale: cell.scale,
                });
        }
    }
    cells
        .into_values()
        .map(|(indicator, category, summands)| {
            let estimate = combine(summands)?;
            Ok(AggregateCell {
                indicator,
                category,
                sum: estimate.value,
                variance: estimate.variance,
                ci95_half_width: estimate.ci95_half_width,
            })
        })
        .collect()
}

impl Hub<'_> {
    /// Signs the aggregate of `period` over every contribution of that period in the log, with
    /// a checkpoint covering exactly the log it was computed from, and stores it. Asking again
    /// after new contributions signs a new aggregate over the larger log.
    pub fn aggregate(&mut self, period: Period, now: u64) -> Result<SignedAggregate, HubError> {
        let checkpoint = self.checkpoint(now)?;
        let size = checkpoint.checkpoint().tree_size;
        if let Some(bytes) = self.aggregates.get(aggregate_key(period, size))? {
            return SignedAggregate::decode(&bytes)
                .map_err(|e| HubError::Corrupt(format!("aggregate: {e}")));
        }
        let mut contributions = Vec::new();
        let mut releases = Vec::new();
        for index in 0..size {
            let (release, _) = self.contribution(index)?;
            if release.release().period == period {
                contributions.push(ContributionRef {
                    index,
                    id: release.id(),
                    signer: release.release().signer,
                });
                releases.push(release);
            }
        }
        let cells = sum_cells(releases.iter().map(|r| r.release()))
            .map_err(|e| HubError::Corrupt(format!("summing releases of {period}: {e}")))?;
        let member_role = if self.node.config.node.role == Role::National {
            Role::Hub
        } else {
            Role::Structure
        };
        let mut contributed: Vec<VerifyingKey> = contributions.iter().map(|c| c.signer).collect();
        contributed.sort_by_key(|k| k.to_bytes());
        contributed.dedup();
        let missing: Vec<VerifyingKey> = self
            .members
            .keys_with_role(member_role)
            .into_iter()
            .filter(|k| !contributed.contains(k))
            .collect();
        let aggregate = Aggregate {
            signer: self.node.identity.public(),
            level: if self.node.config.node.role == Role::National {
                Level::National
            } else {
                Level::Hub
            },
            period,
            checkpoint_size: size,
            checkpoint_root: checkpoint.checkpoint().root,
            contributions,
            cells,
            contributed,
            missing,
            created_at: now,
        }
        .sign(self.node.identity.signing_key())
        .map_err(|e| HubError::Sign(e.to_string()))?;
        self.aggregates
            .insert(aggregate_key(period, size), aggregate.to_bytes())?;
        self.node.store.flush()?;
        tracing::info!(%period, size, id = %aggregate.id(), "aggregate signed");
        Ok(aggregate)
    }

    /// The latest aggregate signed for a period.
    pub fn latest_aggregate(&self, period: Period) -> Result<Option<SignedAggregate>, HubError> {
        let prefix = period.to_string();
        match self.aggregates.scan_prefix(prefix.as_bytes()).next_back() {
            Some(entry) => {
                let (_, bytes) = entry?;
                SignedAggregate::decode(&bytes)
                    .map(Some)
                    .map_err(|e| HubError::Corrupt(format!("aggregate: {e}")))
            }
            None => Ok(None),
        }
    }
}

fn aggregate_key(period: Period, size: u64) -> Vec<u8> {
    let mut key = period.to_string().into_bytes();
    key.extend_from_slice(&size.to_be_bytes());
    key
}
