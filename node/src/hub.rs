//! The hub role: accepting members' signed releases into an append-only Merkle log, answering
//! with receipts, catching equivocations, signing checkpoints and period aggregates, and
//! exporting what an auditor needs. The national role is the same over hubs' signed aggregates
//! ([`Hub::accept_aggregates`]): its log's leaves are aggregate ids, and its aggregate sums the
//! latest revision of each hub's aggregate. A hub that aggregates a period again (late releases)
//! signs a revision naming the previous aggregate with a consistency proof; the national node
//! logs every revision (nothing is rewritten) and `S` points at the head of the hub's chain.
//!
//! Contributions live in an append-only file beside the store, `contributions.bin` (see
//! `hub/ledger.rs`): each batch's wire bytes (signed releases at a hub, hubs' signed aggregates at the
//! national node) are written there and synced before the batch's record enters sled. The rest
//! lives in the node's sled database, in one tree `hub_state` whose keys start with a table's
//! byte (so that a batch is one atomic `apply_batch`):
//! - `B`: first leaf index (u64 BE) → a record of up to 64 leaves of a batch: the size of the
//!   checkpoint that covers the batch and, per leaf, the contribution id (release id, or aggregate id at national
//!   level; the leaf is `contribution_leaf_hash(id)`), its place in the file and signer ‖
//!   `YYYY-MM`. Read back at open to rebuild the Merkle log and, in memory, the id index and the
//!   latest contribution of each signer and period (one per member and period; at national
//!   level the head of the hub's revision chain).
//! - `C`: tree size (u64 BE) → the signed checkpoint's wire bytes
//! - `E`: signer key ‖ `YYYY-MM` ‖ second id → the refused contribution's bytes, in parts of at most
//!   4 KiB (a refused hub aggregate at the national node may be large)
//! - `L`, `W` (or `R`/`A`), `S`, `I`: the leaves of stores written before the contribution file
//!   (leaf → id, bytes by index or by id, signer ‖ period → id, id → index ‖ checkpoint size);
//!   still read, never written.
//!
//! and in the tree `hub_aggregates`: `YYYY-MM` ‖ tree size (u64 BE) → this node's signed
//! aggregate, in parts of at most 4 KiB (`store::insert_parts`: a hub's aggregate lists every
//! member and may exceed what sled keeps durable in one value).
//!
//! # Ingest
//!
//! A batch of submissions is decoded, its signatures verified together
//! (`audit::verify_all`: one `verify_batch`, bisected only if it fails), checked
//! against the member list and the policy, and the new contributions appended. Then the hub
//! signs **one** checkpoint of the grown log, writes the contributions' bytes to the file and
//! syncs it, then writes the batch record and that checkpoint in one atomic sled batch, and
//! flushes once. Only then are receipts returned:
//! each is that signed checkpoint with the contribution's leaf index and inclusion proof
//! ([`SignedReceipt`]), so a receipt always names a leaf that is durably in the log, and a batch
//! costs one signature and one flush whatever its size. A resent contribution gets its original
//! receipt again (same checkpoint, same proof), rebuilt from the index entry.

mod ledger;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::HashMap;

use ed25519_dalek::{Signature, VerifyingKey};
use maillage_protocol::aggregate::{
    Aggregate, AggregateCell, ContributionRef, Level, SignedAggregate, Supersedes,
};
use maillage_protocol::checkpoint::{
    Checkpoint, SignedCheckpoint, SignedReceipt, contribution_leaf_hash, contributions_origin,
};
use maillage_protocol::merkle::MerkleLog;
use maillage_protocol::release::{Mechanism, SIGNING_DOMAIN, SignerKeys};
use maillage_protocol::{Period, ReleaseHead, ReleaseId, SignedRelease};
use sha2::{Digest, Sha256};

use crate::config::Role;
use crate::members::{Members, MembersError};
use crate::node::{FileStamp, Node, file_stamp};
use crate::policy::Governance;
use crate::store::{StoreError, get_parts, insert_parts, parts};
pub use ledger::CONTRIBUTIONS_FILE;
use ledger::{Ledger, NewLeaf};

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
    /// The contribution file could not be written or read.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// Stored hub state that does not decode or contradicts itself.
    #[error("hub state damaged: {0}")]
    Corrupt(String),
    /// Signing a checkpoint or receipt failed.
    #[error("signing: {0}")]
    Sign(String),
    /// The node's adopted policy could not be read or verified.
    #[error("policy: {0}")]
    Policy(String),
}

/// Why one submission was refused. Nothing of a refused submission enters the log.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Not a well-formed, correctly signed release.
    #[error("invalid release: {0}")]
    Invalid(String),
    /// A member sent a release signed by another key.
    #[error(
        "a member may only submit its own releases: this one was sent by {sender} and signed by {signer}"
    )]
    NotTheSender {
        /// The member that sent it, hex.
        sender: String,
        /// The release's signer, hex.
        signer: String,
    },
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
    /// An aggregate that is not a hub's (a national node takes hub aggregates only).
    #[error(
        "aggregate of {signer} for {period} is of level {found}; a national node accepts hub aggregates only"
    )]
    WrongLevel {
        /// Signer, hex.
        signer: String,
        /// Period.
        period: Period,
        /// The level found.
        found: Level,
    },
    /// This node does not take this kind of contribution (releases at a national node,
    /// aggregates at a hub).
    #[error("this node is a {role}: it accepts {accepts}, not {offered}")]
    WrongKind {
        /// The node's role.
        role: Role,
        /// What it accepts.
        accepts: &'static str,
        /// What was offered.
        offered: &'static str,
    },
    /// The release does not follow a policy this hub accepts (a hub that has adopted a policy
    /// takes releases under the current version, or the one it replaced during its grace period).
    #[error("release of {signer} for {period} refused: {mismatch}")]
    Policy {
        /// Signer, hex.
        signer: String,
        /// Period.
        period: Period,
        /// What the release names and what is accepted.
        mismatch: crate::policy::PolicyMismatch,
    },
    /// A hub aggregate that revises an aggregate this national node has not logged: refused
    /// and not kept; the hub delivers the superseded one first.
    #[error(
        "aggregate of {signer} for {period} supersedes {named}, which this node has not logged: deliver the revisions of a period in order"
    )]
    UnknownPredecessor {
        /// Signer, hex.
        signer: String,
        /// Period.
        period: Period,
        /// The superseded aggregate it names.
        named: ReleaseId,
    },
    /// The signer already submitted a different contribution for this period: both are kept as
    /// proof and the second is refused.
    #[error(
        "equivocation: {signer} already submitted contribution {first} for {period}; this different contribution {second} is refused and both are kept as proof"
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
    /// The receipt (the same one again for a resent contribution).
    pub receipt: SignedReceipt,
    /// `false` when the same contribution had been accepted before.
    pub new: bool,
}

/// The outcome of one submission.
pub type Outcome = Result<Accepted, Refusal>;

/// What the hub checks of a decoded release, once its own encoding checks have passed.
struct Submitted {
    /// Its position in the submitted batch.
    slot: usize,
    signer: VerifyingKey,
    period: Period,
    params: String,
    mechanism: Mechanism,
    signature: Signature,
}

impl Submitted {
    fn of(slot: usize, (r, signature): (ReleaseHead, Signature)) -> Self {
        Self {
            slot,
            signer: r.signer,
            period: r.period,
            params: r.params,
            mechanism: r.mechanism,
            signature,
        }
    }
}

/// A contribution that passed its own checks, waiting for its place in the log.
struct Candidate<'s> {
    /// Its position in the submitted batch.
    slot: usize,
    id: ReleaseId,
    signer: VerifyingKey,
    period: Period,
    /// Its wire bytes (borrowed from the submitted batch when they came as bytes).
    bytes: Cow<'s, [u8]>,
    /// At the national node, the head of the signer's revision chain for the period that this
    /// aggregate validly revises (checked by [`Hub::accept_aggregates`]): it is appended as
    /// the new head instead of being refused as an equivocation.
    revises: Option<ReleaseId>,
}

/// A contribution the batch appends.
struct Appended<'s> {
    index: u64,
    id: ReleaseId,
    /// signer ‖ period
    key: Vec<u8>,
    bytes: Cow<'s, [u8]>,
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

/// The files the admitted members are read from: the adoption chain and `members.json`.
fn admission_stamp(node: &Node) -> [FileStamp; 2] {
    let dir = node.dir();
    [
        file_stamp(&crate::policy::PolicyFiles::of_node(dir).chain_path()),
        file_stamp(&dir.join(crate::members::MEMBERS_FILE)),
    ]
}

fn load_governance(node: &Node) -> Result<Option<Governance>, HubError> {
    Governance::load(node.dir()).map_err(|e| HubError::Policy(format!("{e:#}")))
}

/// The members a hub admits: the adopted policy's registry if any, else `members.json`.
/// The members' keys, decoded once for the ingest path (an unparsable key is simply not cached:
/// membership itself is checked against `Members`).
fn signer_keys(members: &Members) -> SignerKeys {
    members
        .iter()
        .filter_map(|m| crate::members::parse_key(&m.key).ok())
        .collect()
}

fn members_of(node: &Node, governance: Option<&Governance>) -> Result<Members, HubError> {
    let adopted = governance.and_then(|g| g.current().ok()).map(|a| &a.policy);
    Ok(Members::effective(
        node.dir(),
        adopted,
        &node.identity.public(),
        node.config.node.role,
    )?)
}

/// The hub's view of its node's store.
#[derive(Debug)]
pub struct Hub<'a> {
    node: &'a Node,
    members: Members,
    /// The members' keys, decoded once (a release's signer is taken from here).
    member_keys: SignerKeys,
    log: MerkleLog,
    trees: Trees,
    /// The contributions: their bytes, where they are, and the indexes.
    ledger: Ledger,
    aggregates: sled::Tree,
    /// The node's public key, decoded once.
    key: VerifyingKey,
    origin: String,
    /// The adopted policies (`None`: the hub follows its local settings), reloaded when the
    /// adoption chain file changes.
    governance: Option<Governance>,
    /// The adoption chain file and `members.json` when `governance` and `members` were read.
    admission: [FileStamp; 2],
}

/// The hub's tables, each a key prefix of the one sled tree `hub_state`, so that a batch is
/// written with one atomic `apply_batch` (much cheaper than a transaction over several trees).
#[derive(Debug, Clone)]
struct Trees {
    state: sled::Tree,
    log: Table,
    /// Contribution bytes by leaf index.
    wires: Table,
    /// Stores written before `wires`: release bytes (hub) or hub aggregate bytes (national), by
    /// id. Read only.
    legacy_contents: Table,
    by_signer: Table,
    index: Table,
    checkpoints: Table,
    equivocations: Table,
    /// One record per ingested batch (see [`ledger`]).
    batches: Table,
}

/// One table of `hub_state`: its keys are the prefix byte then the table's own key.
#[derive(Debug, Clone)]
struct Table {
    tree: sled::Tree,
    prefix: u8,
}

impl Table {
    fn key(&self, key: impl AsRef<[u8]>) -> Vec<u8> {
        let key = key.as_ref();
        let mut full = Vec::with_capacity(1 + key.len());
        full.push(self.prefix);
        full.extend_from_slice(key);
        full
    }

    fn get(&self, key: impl AsRef<[u8]>) -> sled::Result<Option<sled::IVec>> {
        self.tree.get(self.key(key))
    }

    fn insert(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> sled::Result<()> {
        self.tree.insert(self.key(key), value.as_ref()).map(|_| ())
    }

    /// Adds an insert of this table to `batch`.
    fn put(&self, batch: &mut sled::Batch, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        batch.insert(self.key(key), value.as_ref());
    }

    /// Adds the inserts of `value` under `key` in [`parts`] to `batch`, so that no sled value
    /// is large (see [`insert_parts`]); read back with [`Table::values_in_parts`].
    fn put_parts(&self, batch: &mut sled::Batch, key: &[u8], value: &[u8]) {
        for (part_key, part) in parts(key, value) {
            self.put(batch, part_key, part);
        }
    }

    /// The values [`Table::put_parts`] stored (or older versions stored whole), each whole,
    /// with its key (the first `key_len` bytes of the table's keys).
    fn values_in_parts(&self, key_len: usize) -> sled::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for entry in self.iter() {
            let (key, part) = entry?;
            let base = key.get(..key_len).unwrap_or(&key);
            match out.last_mut() {
                Some((last, value)) if last == base => value.extend_from_slice(&part),
                _ => out.push((base.to_vec(), part.to_vec())),
            }
        }
        Ok(out)
    }

    /// The table's entries by key, the prefix stripped.
    fn iter(&self) -> impl DoubleEndedIterator<Item = sled::Result<(Vec<u8>, sled::IVec)>> {
        self.tree
            .scan_prefix([self.prefix])
            .map(|entry| entry.map(|(k, v)| (k.get(1..).unwrap_or_default().to_vec(), v)))
    }
}

/// Two contributions' bytes (an equivocation: the logged one, the refused one).
type BytesPair = (Vec<u8>, Vec<u8>);

/// Keys of the refused contributions (`E`): signer key ‖ `YYYY-MM` ‖ the refused one's id.
const EQUIVOCATION_KEY_LEN: usize = 32 + 7 + 32;

fn signer_period_key(signer: &VerifyingKey, period: Period) -> Vec<u8> {
    let mut key = signer.as_bytes().to_vec();
    key.extend_from_slice(period.to_string().as_bytes());
    key
}

fn release_id_from(bytes: &[u8]) -> Result<ReleaseId, HubError> {
    <[u8; 32]>::try_from(bytes)
        .map(ReleaseId::from_bytes)
        .map_err(|_| HubError::Corrupt(format!("a contribution id of {} bytes", bytes.len())))
}

fn u64_from(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_be_bytes)
}

/// The canonical release inside a signed release's wire bytes, sliced from the bytes
/// `SignedRelease::decode` accepted: `0x82 ‖ release ‖ 0x58 0x40 ‖ sig`.
fn canonical_release(wire: &[u8]) -> Option<&[u8]> {
    wire.get(1..wire.len().checked_sub(66)?)
}

impl<'a> Hub<'a> {
    /// Opens the hub state of a hub or national node, rebuilding the Merkle log from the store.
    pub fn open(node: &'a Node) -> Result<Self, HubError> {
        let role = node.config.node.role;
        if !matches!(role, Role::Hub | Role::National) {
            return Err(HubError::NotAHub { role });
        }
        let store = &node.store;
        let state = store.tree("hub_state")?;
        let table = |prefix: u8| Table {
            tree: state.clone(),
            prefix,
        };
        let trees = Trees {
            log: table(b'L'),
            wires: table(b'W'),
            legacy_contents: table(if role == Role::National { b'A' } else { b'R' }),
            by_signer: table(b'S'),
            index: table(b'I'),
            checkpoints: table(b'C'),
            equivocations: table(b'E'),
            batches: table(b'B'),
            state,
        };
        let ledger = Ledger::open(node.dir(), &trees)?;
        let mut log = MerkleLog::new();
        for id in ledger.ids() {
            log.append_leaf_hash(contribution_leaf_hash(&id));
        }
        let aggregates = store.tree("hub_aggregates")?;
        let key = node.identity.public();
        let admission = admission_stamp(node);
        let governance = load_governance(node)?;
        let members = members_of(node, governance.as_ref())?;
        let member_keys = signer_keys(&members);
        Ok(Self {
            node,
            members,
            member_keys,
            log,
            trees,
            ledger,
            aggregates,
            key,
            origin: contributions_origin(&key),
            governance,
            admission,
        })
    }

    /// Whether this is the national node (its contributions are hub aggregates).
    pub fn is_national(&self) -> bool {
        self.node.config.node.role == Role::National
    }

    /// Re-reads the adopted policy and the members it admits (after an adoption).
    pub fn reload_policy(&mut self) -> Result<(), HubError> {
        self.admission = admission_stamp(self.node);
        self.governance = load_governance(self.node)?;
        self.members = members_of(self.node, self.governance.as_ref())?;
        self.member_keys = signer_keys(&self.members);
        Ok(())
    }

    /// Re-reads the adopted policy and the members if the adoption chain or `members.json`
    /// changed since they were read (another process adopted a policy or added a member).
    fn refresh_admission(&mut self) -> Result<(), HubError> {
        if admission_stamp(self.node) != self.admission {
            self.reload_policy()?;
        }
        Ok(())
    }

    /// The member list.
    pub fn members(&self) -> &Members {
        &self.members
    }

    /// The log's name in checkpoints and receipts.
    pub fn origin(&self) -> String {
        self.origin.clone()
    }

    /// How many contributions the log holds.
    pub fn log_size(&self) -> u64 {
        self.log.len()
    }

    /// The Merkle log.
    pub fn log(&self) -> &MerkleLog {
        &self.log
    }

    /// Checks, appends and acknowledges a batch of signed releases (wire bytes) at a hub.
    /// Signatures are verified as a batch; the accepted releases and one signed checkpoint of
    /// the grown log are written in one atomic batch and flushed before this returns, and each
    /// receipt is that checkpoint with the release's index and inclusion proof.
    pub fn accept_batch(
        &mut self,
        submissions: &[Vec<u8>],
        now: u64,
    ) -> Result<Vec<Outcome>, HubError> {
        self.accept_from(submissions, None, now)
    }

    /// [`Hub::accept_batch`] for releases sent by members over the network: `senders[i]` sent
    /// `submissions[i]`, which is refused ([`Refusal::NotTheSender`]) unless its signer.
    pub fn accept_from(
        &mut self,
        submissions: &[Vec<u8>],
        senders: Option<&[VerifyingKey]>,
        now: u64,
    ) -> Result<Vec<Outcome>, HubError> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; submissions.len()];
        if self.is_national() {
            let refusal = Refusal::WrongKind {
                role: Role::National,
                accepts: "hub aggregates",
                offered: "a release",
            };
            return Ok(vec![Err(refusal); submissions.len()]);
        }
        // Each release is checked in full, but only its head is kept (its cells are not built:
        // the hub stores the bytes as they came).
        // The signed messages (`SIGNING_DOMAIN ‖ canonical release`), end to end in one buffer.
        let mut decoded: Vec<Submitted> = Vec::with_capacity(submissions.len());
        let mut buffer: Vec<u8> = Vec::with_capacity(
            submissions
                .iter()
                .map(|s| s.len() + SIGNING_DOMAIN.len())
                .sum(),
        );
        let mut ends: Vec<usize> = Vec::with_capacity(submissions.len());
        for (slot, bytes) in submissions.iter().enumerate() {
            match SignedRelease::check_with(bytes, &self.member_keys) {
                Ok(release) => match canonical_release(bytes) {
                    Some(canonical) => {
                        decoded.push(Submitted::of(slot, release));
                        buffer.extend_from_slice(SIGNING_DOMAIN);
                        buffer.extend_from_slice(canonical);
                        ends.push(buffer.len());
                    }
                    None => {
                        outcomes[slot] = Some(Err(Refusal::Invalid("truncated release".into())));
                    }
                },
                Err(e) => outcomes[slot] = Some(Err(Refusal::Invalid(e.to_string()))),
            }
        }
        let messages: Vec<&[u8]> = ends
            .iter()
            .scan(0, |start, &end| {
                let message = buffer.get(*start..end).unwrap_or_default();
                *start = end;
                Some(message)
            })
            .collect();
        let signatures: Vec<Signature> = decoded.iter().map(|r| r.signature).collect();
        let keys: Vec<VerifyingKey> = decoded.iter().map(|r| r.signer).collect();
        let verified = crate::audit::verify_all(&messages, &signatures, &keys);

        self.refresh_admission()?;
        let local = &self.node.config.privacy;
        let mut candidates = Vec::with_capacity(decoded.len());
        for ((r, message), ok) in decoded.iter().zip(&messages).zip(verified) {
            let i = r.slot;
            if !ok {
                // Name the failure precisely (verify_all already isolated this signature).
                let reason = SignedRelease::decode_with(&submissions[i], &self.member_keys)
                    .and_then(|release| release.verify())
                    .err()
                    .map_or_else(
                        || "the signature does not verify".to_owned(),
                        |e| e.to_string(),
                    );
                outcomes[i] = Some(Err(Refusal::Invalid(reason)));
                continue;
            }
            let signer = || hex::encode(r.signer.as_bytes());
            // Under an adopted policy, the release must name a version this hub accepts, and
            // is checked against that version's parameters.
            let adopted = match &self.governance {
                Some(g) => match g.check(&r.params, now) {
                    Ok(a) => Ok(Some(crate::policy::privacy_params(&a.policy))),
                    Err(mismatch) => Err(Refusal::Policy {
                        signer: signer(),
                        period: r.period,
                        mismatch,
                    }),
                },
                None => Ok(None),
            };
            let (policy, policy_refusal) = match &adopted {
                Ok(Some(p)) => (p, None),
                Ok(None) => (local, None),
                Err(refusal) => (local, Some(refusal.clone())),
            };
            let expected_mechanism = match policy.mechanism {
                maillage_privacy::release::Mechanism::DiscreteLaplace => "laplace",
                maillage_privacy::release::Mechanism::DiscreteGaussian => "gaussian",
            };
            let sender = senders
                .and_then(|s| s.get(i))
                .filter(|sender| **sender != r.signer);
            let refusal = match (sender, self.members.get(&r.signer)) {
                (Some(sender), _) => Some(Refusal::NotTheSender {
                    sender: hex::encode(sender.as_bytes()),
                    signer: signer(),
                }),
                (None, Some(m)) if m.role == Role::Structure => None,
                (None, _) => Some(Refusal::NotMember { signer: signer() }),
            }
            .or(policy_refusal)
            .or_else(|| {
                (r.mechanism.name() != expected_mechanism).then(|| Refusal::WrongMechanism {
                    signer: signer(),
                    period: r.period,
                    found: r.mechanism.name().into(),
                    expected: expected_mechanism.into(),
                })
            })
            .or_else(|| {
                (r.mechanism.loss() > policy.budget).then(|| Refusal::OverBudget {
                    signer: signer(),
                    period: r.period,
                    unit: r.mechanism.loss_field().into(),
                    spent: r.mechanism.loss(),
                    budget: policy.budget,
                })
            });
            if let Some(refusal) = refusal {
                outcomes[i] = Some(Err(refusal));
                continue;
            }
            // The release id is SHA-256 of the signed message.
            let id = ReleaseId::from_bytes(Sha256::digest(message).into());
            let (signer, period) = (r.signer, r.period);
            candidates.push(Candidate {
                slot: i,
                id,
                signer,
                period,
                bytes: Cow::Borrowed(&submissions[i]),
                revises: None,
            });
        }
        self.append(candidates, &mut outcomes, now)?;
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(Refusal::Invalid("not processed".into()))))
            .collect())
    }

    /// Checks, appends and acknowledges hub aggregates at the national node (as
    /// [`Hub::accept_batch`] does releases at a hub): each must be a hub-level aggregate whose
    /// signature verifies and whose signer is a member hub.
    ///
    /// A hub's aggregates of one period form a revision chain (see
    /// [`maillage_protocol::aggregate::conflict`]): a later aggregate that names the chain's
    /// head (`supersedes`) and whose checkpoint extends the head's (its consistency proof
    /// verifies) is a revision, appended to the log as the new head — nothing is rewritten, every
    /// revision stays in the log. Any other second, different aggregate (a second first one, a
    /// second revision of one aggregate, a "revision" whose log does not extend the head's) is
    /// refused and kept as an equivocation proof. A revision of an aggregate this node has not
    /// logged is refused without being kept ([`Refusal::UnknownPredecessor`]): the hub delivers
    /// its chain in order. Any aggregate already logged (the head or an earlier revision) gets
    /// its receipt again. Durable before it returns.
    pub fn accept_aggregates(
        &mut self,
        aggregates: &[SignedAggregate],
        now: u64,
    ) -> Result<Vec<Outcome>, HubError> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; aggregates.len()];
        if !self.is_national() {
            let refusal = Refusal::WrongKind {
                role: self.node.config.node.role,
                accepts: "members' releases",
                offered: "an aggregate",
            };
            return Ok(vec![Err(refusal); aggregates.len()]);
        }
        let messages: Vec<Vec<u8>> = aggregates
            .iter()
            .map(|a| {
                [
                    maillage_protocol::aggregate::SIGNING_DOMAIN,
                    &a.canonical_aggregate(),
                ]
                .concat()
            })
            .collect();
        let signatures: Vec<Signature> = aggregates.iter().map(|a| *a.signature()).collect();
        let keys: Vec<VerifyingKey> = aggregates.iter().map(|a| a.aggregate().signer).collect();
        let verified = crate::audit::verify_all(&messages, &signatures, &keys);
        self.refresh_admission()?;
        let mut candidates = Vec::new();
        // signer ‖ period → the head of its revision chain after this batch's candidates so far.
        let mut heads: HashMap<Vec<u8>, (ReleaseId, SignedAggregate)> = HashMap::new();
        for (i, ((signed, message), ok)) in
            aggregates.iter().zip(&messages).zip(verified).enumerate()
        {
            let a = signed.aggregate();
            let signer = hex::encode(a.signer.as_bytes());
            let refusal = if !ok {
                Some(Refusal::Invalid(signed.verify().err().map_or_else(
                    || "the signature does not verify".to_owned(),
                    |e| e.to_string(),
                )))
            } else if a.level != Level::Hub {
                Some(Refusal::WrongLevel {
                    signer,
                    period: a.period,
                    found: a.level,
                })
            } else {
                match self.members.get(&a.signer) {
                    Some(m) if m.role == Role::Hub => None,
                    _ => Some(Refusal::NotMember { signer }),
                }
            };
            if let Some(refusal) = refusal {
                outcomes[i] = Some(Err(refusal));
                continue;
            }
            // The aggregate id is SHA-256 of the signed message.
            let id = ReleaseId::from_bytes(Sha256::digest(message).into());
            if self.ledger.entry(&id).is_some() {
                // Logged before (the head or an earlier revision): its receipt again.
                outcomes[i] = Some(match self.receipt_of(&id)? {
                    Some(receipt) => Ok(Accepted {
                        receipt,
                        new: false,
                    }),
                    None => Err(Refusal::Invalid(format!(
                        "{id} is in the log without an index entry"
                    ))),
                });
                continue;
            }
            let signer = hex::encode(a.signer.as_bytes());
            let key = signer_period_key(&a.signer, a.period);
            let head = match heads.get(&key) {
                Some((head_id, head)) => Some((*head_id, head.clone())),
                None => match self.ledger.head(&key) {
                    Some(head_id) => Some((head_id, self.logged_aggregate(&head_id)?)),
                    None => None,
                },
            };
            let named = signed.supersedes_id().map(|s| s.as_contribution_id());
            let mut revises = None;
            match (&head, named) {
                (None, Some(named)) => {
                    outcomes[i] = Some(Err(Refusal::UnknownPredecessor {
                        signer,
                        period: a.period,
                        named,
                    }));
                    continue;
                }
                (Some((head_id, head)), Some(named)) if named == *head_id => {
                    match signed.check_revises(head) {
                        Ok(()) => revises = Some(*head_id),
                        // Not a revision of the head it names: an equivocation, kept below.
                        Err(e) => {
                            tracing::warn!(%signer, period = %a.period, error = %e, "a revision that does not extend its predecessor")
                        }
                    }
                }
                // A revision of something this node has not logged: wait for the chain.
                (_, Some(named))
                    if self.ledger.entry(&named).is_none()
                        && !heads.values().any(|(h, _)| *h == named) =>
                {
                    outcomes[i] = Some(Err(Refusal::UnknownPredecessor {
                        signer,
                        period: a.period,
                        named,
                    }));
                    continue;
                }
                // A first aggregate, or a fork of the chain (an equivocation, kept by `append`).
                _ => {}
            }
            if head.is_none() || revises.is_some() {
                heads.insert(key, (id, signed.clone()));
            }
            candidates.push(Candidate {
                slot: i,
                id,
                signer: a.signer,
                period: a.period,
                bytes: Cow::Owned(signed.to_bytes()),
                revises,
            });
        }
        self.append(candidates, &mut outcomes, now)?;
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(Refusal::Invalid("not processed".into()))))
            .collect())
    }

    /// A hub aggregate in the national log, by id.
    fn logged_aggregate(&self, id: &ReleaseId) -> Result<SignedAggregate, HubError> {
        let (index, _) = self
            .ledger
            .entry(id)
            .ok_or_else(|| HubError::Corrupt(format!("aggregate {id} has no index entry")))?;
        let (_, bytes) = self.contribution_bytes(index)?;
        SignedAggregate::decode(&bytes)
            .map_err(|e| HubError::Corrupt(format!("aggregate {id}: {e}")))
    }

    /// Accepts one hub aggregate at the national node: what the network layer calls for a
    /// `SubmitAggregate` request. `Ok(Ok(accepted))` carries the receipt to send back.
    pub fn accept_aggregate(
        &mut self,
        aggregate: &SignedAggregate,
        now: u64,
    ) -> Result<Outcome, HubError> {
        let mut outcomes = self.accept_aggregates(std::slice::from_ref(aggregate), now)?;
        Ok(outcomes
            .pop()
            .unwrap_or_else(|| Err(Refusal::Invalid("not processed".into()))))
    }

    /// Places checked candidates: duplicates get their receipt again, equivocations are kept,
    /// new ones are appended, durably, under one new signed checkpoint.
    fn append(
        &mut self,
        candidates: Vec<Candidate<'_>>,
        outcomes: &mut [Option<Outcome>],
        now: u64,
    ) -> Result<(), HubError> {
        let start = self.log.len();
        // signer ‖ period → id, for what this batch appends.
        let mut pending: HashMap<Vec<u8>, ReleaseId> = HashMap::new();
        let mut appended: Vec<Appended<'_>> = Vec::new();
        let mut again: Vec<(usize, ReleaseId)> = Vec::new();
        let mut new_slots: Vec<usize> = Vec::new();
        let mut equivocations: Vec<(Vec<u8>, Cow<'_, [u8]>)> = Vec::new();
        for c in candidates {
            let key = signer_period_key(&c.signer, c.period);
            let existing = match pending.get(&key) {
                Some(id) => Some(*id),
                None => self.ledger.head(&key),
            };
            match existing {
                Some(first) if first == c.id => again.push((c.slot, c.id)),
                Some(first) if c.revises != Some(first) => {
                    let signer = hex::encode(c.signer.as_bytes());
                    let mut ekey = key;
                    ekey.extend_from_slice(c.id.as_bytes());
                    equivocations.push((ekey, c.bytes));
                    tracing::warn!(%signer, period = %c.period, %first, second = %c.id, "equivocation refused");
                    outcomes[c.slot] = Some(Err(Refusal::Equivocation {
                        signer,
                        period: c.period,
                        first,
                        second: c.id,
                    }));
                }
                _ => {
                    let index = self.log.append_leaf_hash(contribution_leaf_hash(&c.id));
                    pending.insert(key.clone(), c.id);
                    new_slots.push(c.slot);
                    appended.push(Appended {
                        index,
                        id: c.id,
                        key,
                        bytes: c.bytes,
                    });
                }
            }
        }
        let checkpoint = if appended.is_empty() {
            None
        } else {
            match self.sign_checkpoint(now) {
                Ok(c) => Some(c),
                Err(e) => {
                    self.log.truncate(start);
                    return Err(e);
                }
            }
        };
        if !appended.is_empty() || !equivocations.is_empty() {
            let size = self.log.len();
            // The contributions' bytes first, synced; then their batch record, the checkpoint
            // and the equivocations in one atomic sled batch: after a crash, either all of it
            // is in the log or none (bytes without a record are never read).
            let new: Vec<NewLeaf<'_>> = appended
                .iter()
                .map(|a| NewLeaf {
                    id: a.id,
                    key: &a.key,
                    bytes: &a.bytes,
                })
                .collect();
            let staged = if new.is_empty() {
                None
            } else {
                match self.ledger.stage(start, size, &new) {
                    Ok(staged) => Some(staged),
                    Err(e) => {
                        self.log.truncate(start);
                        return Err(e);
                    }
                }
            };
            let t = &self.trees;
            let mut batch = sled::Batch::default();
            if let Some(staged) = &staged {
                for (key, record) in &staged.records {
                    t.batches.put(&mut batch, key, record);
                }
            }
            if let Some(checkpoint) = &checkpoint {
                t.checkpoints
                    .put(&mut batch, size.to_be_bytes(), checkpoint.to_bytes());
            }
            for (key, bytes) in &equivocations {
                t.equivocations.put_parts(&mut batch, key, bytes);
            }
            let written = t
                .state
                .apply_batch(batch)
                .map_err(HubError::Sled)
                .and_then(|()| Ok(self.node.store.flush()?));
            if let Err(e) = written {
                self.log.truncate(start);
                return Err(e);
            }
            if let Some(staged) = staged {
                self.ledger.commit(staged);
            }
        }
        // Durable: the receipts can go out.
        if let Some(checkpoint) = &checkpoint {
            for (slot, a) in new_slots.into_iter().zip(&appended) {
                let receipt = SignedReceipt::issue(&self.log, checkpoint.clone(), a.id, a.index)
                    .map_err(|e| HubError::Sign(e.to_string()))?;
                outcomes[slot] = Some(Ok(Accepted { receipt, new: true }));
            }
        }
        for (slot, id) in again {
            outcomes[slot] = Some(match self.receipt_of(&id)? {
                Some(receipt) => Ok(Accepted {
                    receipt,
                    new: false,
                }),
                None => Err(Refusal::Invalid(format!(
                    "{id} is in the log without an index entry"
                ))),
            });
        }
        Ok(())
    }

    /// The receipt of a contribution in the log: the checkpoint its batch signed, its index and
    /// its inclusion proof, rebuilt from the index entry.
    pub fn receipt_of(&self, id: &ReleaseId) -> Result<Option<SignedReceipt>, HubError> {
        self.receipt_with(id, &mut std::collections::BTreeMap::new())
    }

    /// [`Hub::receipt_of`], with the checkpoints already read (and those read now kept) in
    /// `checkpoints`, by size: for exports, which make a receipt per leaf.
    pub fn receipt_with(
        &self,
        id: &ReleaseId,
        checkpoints: &mut std::collections::BTreeMap<u64, SignedCheckpoint>,
    ) -> Result<Option<SignedReceipt>, HubError> {
        let Some((index, size)) = self.ledger.entry(id) else {
            return Ok(None);
        };
        let checkpoint = match checkpoints.get(&size) {
            Some(c) => c.clone(),
            None => {
                let c = self.checkpoint_at(size)?.ok_or_else(|| {
                    HubError::Corrupt(format!("no checkpoint of size {size} for {id}"))
                })?;
                checkpoints.insert(size, c.clone());
                c
            }
        };
        SignedReceipt::issue(&self.log, checkpoint, *id, index)
            .map(Some)
            .map_err(|e| HubError::Corrupt(format!("receipt of {id}: {e}")))
    }

    /// The id at a leaf index and the stored wire bytes of its contribution (a signed release at
    /// a hub, a hub's signed aggregate at the national node).
    pub fn contribution_wire(&self, index: u64) -> Result<(ReleaseId, Vec<u8>), HubError> {
        self.contribution_bytes(index)
    }

    fn checkpoint_at(&self, size: u64) -> Result<Option<SignedCheckpoint>, HubError> {
        match self.trees.checkpoints.get(size.to_be_bytes())? {
            Some(bytes) => SignedCheckpoint::decode(&bytes)
                .map(Some)
                .map_err(|e| HubError::Corrupt(format!("checkpoint {size}: {e}"))),
            None => Ok(None),
        }
    }

    fn sign_checkpoint(&self, now: u64) -> Result<SignedCheckpoint, HubError> {
        Checkpoint {
            origin: self.origin.clone(),
            tree_size: self.log.len(),
            root: self.log.root(),
            timestamp: now,
            signer: self.key,
        }
        .sign(self.node.identity.signing_key())
        .map_err(|e| HubError::Sign(e.to_string()))
    }

    /// Signs a checkpoint of the log at its current size (or returns the stored one if the log
    /// has not grown since).
    pub fn checkpoint(&mut self, now: u64) -> Result<SignedCheckpoint, HubError> {
        let size = self.log.len();
        if let Some(checkpoint) = self.checkpoint_at(size)? {
            return Ok(checkpoint);
        }
        let checkpoint = self.sign_checkpoint(now)?;
        self.trees
            .checkpoints
            .insert(size.to_be_bytes(), checkpoint.to_bytes())?;
        self.node.store.flush()?;
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

    /// The id at a leaf index and the stored bytes of its contribution.
    fn contribution_bytes(&self, index: u64) -> Result<(ReleaseId, Vec<u8>), HubError> {
        self.ledger.read(index, &self.trees)
    }

    /// The release at a leaf index of a hub's log, with its receipt.
    pub fn contribution(&self, index: u64) -> Result<(SignedRelease, SignedReceipt), HubError> {
        let (id, bytes) = self.contribution_bytes(index)?;
        let release = SignedRelease::decode(&bytes)
            .map_err(|e| HubError::Corrupt(format!("release {id}: {e}")))?;
        let receipt = self
            .receipt_of(&id)?
            .ok_or_else(|| HubError::Corrupt(format!("leaf {index}: no index entry")))?;
        Ok((release, receipt))
    }

    /// The period of the contribution at a leaf index (a release's at a hub, a hub aggregate's
    /// at the national node).
    pub fn contribution_period(&self, index: u64) -> Result<Period, HubError> {
        let (id, bytes) = self.contribution_bytes(index)?;
        if self.is_national() {
            SignedAggregate::decode(&bytes)
                .map(|a| a.aggregate().period)
                .map_err(|e| HubError::Corrupt(format!("aggregate {id}: {e}")))
        } else {
            SignedRelease::decode(&bytes)
                .map(|r| r.release().period)
                .map_err(|e| HubError::Corrupt(format!("release {id}: {e}")))
        }
    }

    /// The hub aggregate at a leaf index of the national log, with its receipt.
    pub fn aggregate_contribution(
        &self,
        index: u64,
    ) -> Result<(SignedAggregate, SignedReceipt), HubError> {
        let (id, bytes) = self.contribution_bytes(index)?;
        let aggregate = SignedAggregate::decode(&bytes)
            .map_err(|e| HubError::Corrupt(format!("aggregate {id}: {e}")))?;
        let receipt = self
            .receipt_of(&id)?
            .ok_or_else(|| HubError::Corrupt(format!("leaf {index}: no index entry")))?;
        Ok((aggregate, receipt))
    }

    /// Every equivocation caught: (contribution in the log, refused contribution), as stored
    /// bytes (signed releases at a hub, signed aggregates at the national node).
    fn equivocation_bytes(&self) -> Result<Vec<BytesPair>, HubError> {
        let mut out = Vec::new();
        for (key, second) in self
            .trees
            .equivocations
            .values_in_parts(EQUIVOCATION_KEY_LEN)?
        {
            let first_id = self
                .ledger
                .head(&key[..key.len().saturating_sub(32)])
                .ok_or_else(|| {
                    HubError::Corrupt("equivocation without a first contribution".into())
                })?;
            let (index, _) = self.ledger.entry(&first_id).ok_or_else(|| {
                HubError::Corrupt(format!(
                    "equivocation's first contribution {first_id} has no index entry"
                ))
            })?;
            let (_, first) = self.contribution_bytes(index)?;
            out.push((first, second));
        }
        Ok(out)
    }

    /// Every equivocation caught at a hub: (release in the log, refused release).
    pub fn equivocations(&self) -> Result<Vec<(SignedRelease, SignedRelease)>, HubError> {
        if self.is_national() {
            return Ok(Vec::new());
        }
        let decode =
            |b: &[u8]| SignedRelease::decode(b).map_err(|e| HubError::Corrupt(e.to_string()));
        self.equivocation_bytes()?
            .into_iter()
            .map(|(a, b)| Ok((decode(&a)?, decode(&b)?)))
            .collect()
    }

    /// Every equivocation caught at the national node: (hub aggregate in the log, refused one),
    /// a pair that proves it by itself ([`maillage_protocol::aggregate::conflict`]): the logged
    /// aggregate of the hub's revision chain that names the same predecessor as the refused one
    /// (a fork), or the predecessor the refused one names but does not extend.
    pub fn aggregate_equivocations(
        &self,
    ) -> Result<Vec<(SignedAggregate, SignedAggregate)>, HubError> {
        if !self.is_national() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for (key, bytes) in self
            .trees
            .equivocations
            .values_in_parts(EQUIVOCATION_KEY_LEN)?
        {
            let second = SignedAggregate::decode(&bytes)
                .map_err(|e| HubError::Corrupt(format!("equivocation: {e}")))?;
            let chain = self.revision_chain(&key[..key.len().saturating_sub(32)])?;
            let named = second.supersedes_id();
            let predecessor = chain.iter().position(|a| Some(a.id()) == named);
            let partner = match predecessor {
                Some(p) if second.check_revises(&chain[p]).is_err() => chain.get(p),
                Some(p) => chain.get(p + 1),
                None => chain.iter().find(|a| a.supersedes_id() == named),
            }
            .or(chain.last())
            .ok_or_else(|| HubError::Corrupt("equivocation without a first contribution".into()))?;
            out.push((partner.clone(), second));
        }
        Ok(out)
    }

    /// The logged revision chain of a hub and period (`signer ‖ YYYY-MM`), first to head.
    fn revision_chain(&self, key: &[u8]) -> Result<Vec<SignedAggregate>, HubError> {
        let mut chain = Vec::new();
        let mut next = self.ledger.head(key);
        while let Some(id) = next {
            if chain.len() > self.log.len() as usize {
                return Err(HubError::Corrupt(format!("a revision chain loops at {id}")));
            }
            let aggregate = self.logged_aggregate(&id)?;
            next = aggregate
                .supersedes_id()
                .map(|s| s.as_contribution_id())
                .filter(|s| self.ledger.entry(s).is_some());
            chain.push(aggregate);
        }
        chain.reverse();
        Ok(chain)
    }

    /// The node this hub runs in.
    pub fn node(&self) -> &Node {
        self.node
    }
}

/// The standard normal quantile at 0.975.
const Z_95: f64 = 1.959_963_984_540_054;

/// The half-width of the 95% interval of a sum of many independent noisy values with total
/// noise variance `variance`: the normal interval `z·sd`, as an integer with a continuity
/// correction, `⌈z·sd − ½⌉` (what `maillage_privacy::accuracy::combine` gives for many
/// summands). A national cell sums every structure of every hub, so the normal approximation
/// holds; a hub aggregate does not carry the fourth cumulants a tail correction would need.
pub fn ci95_of_variance(variance: f64) -> f64 {
    if variance > 0.0 {
        (Z_95 * variance.sqrt() - 0.5).ceil().max(0.0)
    } else {
        0.0
    }
}

/// Sums hub aggregates cell by cell, as the national node does: for every cell that appears in
/// any of them (in catalogue order), the sum of the sums, the sum of the variances (the hubs'
/// noises are independent) and the interval [`ci95_of_variance`]. The national node and the
/// auditor both call this, over the aggregates in log order, so an audit recomputes exactly
/// what was signed.
pub fn sum_aggregate_cells<'a>(
    aggregates: impl IntoIterator<Item = &'a Aggregate>,
) -> Result<Vec<AggregateCell>, String> {
    use maillage_protocol::vocab::Vocabulary as _;
    let mut cells: std::collections::BTreeMap<(usize, usize), AggregateCell> =
        std::collections::BTreeMap::new();
    for aggregate in aggregates {
        for cell in &aggregate.cells {
            let categories = cell.indicator.categories();
            let position = cell
                .category
                .as_deref()
                .and_then(|c| categories.iter().position(|k| *k == c))
                .unwrap_or(0);
            let sum = cells
                .entry((cell.indicator.index(), position))
                .or_insert_with(|| AggregateCell {
                    indicator: cell.indicator,
                    category: cell.category.clone(),
                    sum: 0,
                    variance: 0.0,
                    ci95_half_width: 0.0,
                });
            sum.sum = sum.sum.checked_add(cell.sum).ok_or_else(|| {
                format!(
                    "{} {}: the sum overflows a 64-bit integer",
                    cell.indicator,
                    cell.category.as_deref().unwrap_or("")
                )
            })?;
            sum.variance += cell.variance;
        }
    }
    Ok(cells
        .into_values()
        .map(|mut cell| {
            cell.ci95_half_width = ci95_of_variance(cell.variance);
            cell
        })
        .collect())
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
    /// after new contributions signs a **revision** over the larger log: an aggregate that names
    /// the period's previous one (`supersedes`) with the consistency proof from its checkpoint
    /// to the new one. At the national node, the contributions are the latest revision of each
    /// hub's aggregate in the log (the head of its chain), and `structures` is the sum of theirs.
    pub fn aggregate(&mut self, period: Period, now: u64) -> Result<SignedAggregate, HubError> {
        let checkpoint = self.checkpoint(now)?;
        let size = checkpoint.checkpoint().tree_size;
        if let Some(bytes) = get_parts(&self.aggregates, &aggregate_key(period, size))? {
            return SignedAggregate::decode(&bytes)
                .map_err(|e| HubError::Corrupt(format!("aggregate: {e}")));
        }
        let mut contributions = Vec::new();
        let mut structures = 0u64;
        let cells = if self.is_national() {
            // The latest revision of each hub: the accepted revisions of a chain are appended in
            // order, so the head is the hub's last aggregate of the period in the log.
            let mut latest: HashMap<[u8; 32], (u64, SignedAggregate)> = HashMap::new();
            for index in 0..size {
                let (aggregate, _) = self.aggregate_contribution(index)?;
                if aggregate.aggregate().period == period {
                    latest.insert(aggregate.aggregate().signer.to_bytes(), (index, aggregate));
                }
            }
            let mut aggregates: Vec<(u64, SignedAggregate)> = latest.into_values().collect();
            aggregates.sort_by_key(|(index, _)| *index);
            for (index, aggregate) in &aggregates {
                contributions.push(ContributionRef {
                    index: *index,
                    id: aggregate.id().as_contribution_id(),
                    signer: aggregate.aggregate().signer,
                });
                structures = structures.saturating_add(structures_of(aggregate.aggregate()));
            }
            sum_aggregate_cells(aggregates.iter().map(|(_, a)| a.aggregate()))
                .map_err(|e| HubError::Corrupt(format!("summing aggregates of {period}: {e}")))?
        } else {
            let mut releases = Vec::new();
            for index in 0..size {
                let (id, bytes) = self.contribution_bytes(index)?;
                let release = SignedRelease::decode(&bytes)
                    .map_err(|e| HubError::Corrupt(format!("release {id}: {e}")))?;
                if release.release().period == period {
                    contributions.push(ContributionRef {
                        index,
                        id,
                        signer: release.release().signer,
                    });
                    releases.push(release);
                }
            }
            sum_cells(releases.iter().map(|r| r.release()))
                .map_err(|e| HubError::Corrupt(format!("summing releases of {period}: {e}")))?
        };
        let member_role = if self.is_national() {
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
        if !self.is_national() {
            structures = contributed.len() as u64;
        }
        let supersedes = match self.latest_aggregate(period)? {
            Some(previous) => {
                let old_size = previous.aggregate().checkpoint_size;
                let consistency = self.log.consistency_proof(old_size, size).map_err(|e| {
                    HubError::Corrupt(format!(
                        "the aggregate of {period} at size {old_size} cannot be revised at size {size}: {e}"
                    ))
                })?;
                Some(Supersedes {
                    id: previous.id(),
                    consistency,
                })
            }
            None => None,
        };
        let aggregate = Aggregate {
            signer: self.key,
            level: if self.is_national() {
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
            supersedes,
            structures: Some(structures),
        }
        .sign(self.node.identity.signing_key())
        .map_err(|e| HubError::Sign(e.to_string()))?;
        insert_parts(
            &self.aggregates,
            &aggregate_key(period, size),
            &aggregate.to_bytes(),
        )?;
        self.node.store.flush()?;
        tracing::info!(%period, size, id = %aggregate.id(), "aggregate signed");
        Ok(aggregate)
    }

    /// The latest aggregate signed for a period.
    pub fn latest_aggregate(&self, period: Period) -> Result<Option<SignedAggregate>, HubError> {
        let prefix = period.to_string();
        let Some(last) = self
            .aggregates
            .scan_prefix(prefix.as_bytes())
            .keys()
            .next_back()
        else {
            return Ok(None);
        };
        let key = last?;
        let base = key.get(..AGGREGATE_KEY_LEN).unwrap_or(&key);
        match get_parts(&self.aggregates, base)? {
            Some(bytes) => SignedAggregate::decode(&bytes)
                .map(Some)
                .map_err(|e| HubError::Corrupt(format!("aggregate: {e}"))),
            None => Ok(None),
        }
    }
}

/// How many structures an aggregate covers: its `structures` (version 2), or its number of
/// contributing members (a version 1 hub aggregate).
pub fn structures_of(aggregate: &Aggregate) -> u64 {
    aggregate
        .structures
        .unwrap_or(aggregate.contributed.len() as u64)
}

/// `YYYY-MM` ‖ tree size (u64 BE).
const AGGREGATE_KEY_LEN: usize = 15;

fn aggregate_key(period: Period, size: u64) -> Vec<u8> {
    let mut key = period.to_string().into_bytes();
    key.extend_from_slice(&size.to_be_bytes());
    key
}
