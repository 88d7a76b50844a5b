//! Adoption by quorum: committee signatures over a policy hash, adoption records and their chain.
//!
//! # What a committee member signs
//!
//! `Ed25519(key, "maillage/policy-adoption/v1\0" ‖ sequence ‖ previous ‖ policy)` where
//! `sequence` is the adoption's position in the chain (1 for the genesis) as a big-endian `u64`,
//! `previous` the hash of the currently adopted version (32 zero bytes for the genesis) and
//! `policy` the hash of the version being adopted ([`PolicyHash`]). Verified with
//! `verify_strict`. Binding the sequence and the previous hash makes every signature good for
//! one step of one chain only: a signature given for an earlier adoption, or for another
//! proposal, never counts again.
//!
//! # Who may sign
//!
//! The committee of the *currently adopted* version; for the genesis (sequence 1), the
//! committee the genesis itself names. A version that changes the committee is therefore
//! adopted by the old committee, and the new committee adopts the versions after it. A version
//! is adopted when at least `quorum` distinct committee keys signed it, every signature in the
//! record is valid, and the version passes [`Policy::validate`].
//!
//! # Trust anchor
//!
//! A genesis is self-certified by its own committee, so anyone can write one: peers must pin
//! the genesis hash they accept ([`AdoptionChain::verify_from`]).

use std::collections::BTreeMap;
use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::document::{DocError, Heads, PolicyDoc};
use crate::model::{Committee, Policy, PolicyHash, PublicKey};
use crate::validate::ValidationErrors;

/// Prefixed to the signed adoption message.
pub const ADOPTION_DOMAIN: &[u8] = b"maillage/policy-adoption/v1\0";

/// The largest adoption record accepted from the network, in bytes.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// An ed25519 signature, written as 128 hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SignatureBytes(pub [u8; 64]);

impl fmt::Debug for SignatureBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignatureBytes({})", hex::encode(&self.0[..8]))
    }
}

impl Serialize for SignatureBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for SignatureBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        let mut bytes = [0u8; 64];
        hex::decode_to_slice(text.as_ref(), &mut bytes).map_err(|_| {
            serde::de::Error::custom(format_args!(
                "{:?} is not a signature: expected 128 hexadecimal characters",
                text.chars().take(140).collect::<String>()
            ))
        })?;
        Ok(Self(bytes))
    }
}

/// One step of the chain that a signature is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdoptionTarget {
    /// The adoption's position in the chain, 1 for the genesis.
    pub sequence: u64,
    /// The currently adopted version (absent for the genesis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<PolicyHash>,
    /// The version being adopted.
    pub policy: PolicyHash,
}

impl AdoptionTarget {
    /// The message committee members sign.
    pub fn message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(ADOPTION_DOMAIN.len() + 8 + 64);
        m.extend_from_slice(ADOPTION_DOMAIN);
        m.extend_from_slice(&self.sequence.to_be_bytes());
        m.extend_from_slice(&self.previous.map(|p| p.0).unwrap_or([0; 32]));
        m.extend_from_slice(&self.policy.0);
        m
    }
}

impl fmt::Display for AdoptionTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "adoption n°{} of {}", self.sequence, self.policy)?;
        match &self.previous {
            Some(p) => write!(f, " replacing {p}"),
            None => f.write_str(" (genesis)"),
        }
    }
}

/// One committee member's signature, as `maillage policy sign` writes it to a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdoptionSignature {
    /// What it signs.
    pub target: AdoptionTarget,
    /// The committee key.
    pub signer: PublicKey,
    /// The signature of [`AdoptionTarget::message`].
    pub signature: SignatureBytes,
}

/// Signs `target` with a committee key.
pub fn sign_adoption(key: &SigningKey, target: AdoptionTarget) -> AdoptionSignature {
    let signature = key.sign(&target.message());
    AdoptionSignature {
        target,
        signer: PublicKey::from(key.verifying_key()),
        signature: SignatureBytes(signature.to_bytes()),
    }
}

/// A signer and its signature inside a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignerSignature {
    /// The committee key.
    pub signer: PublicKey,
    /// Its signature of the record's target.
    pub signature: SignatureBytes,
}

/// The proof that a version was adopted: its target, the committee signatures, and the
/// document heads at which the version can be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdoptionRecord {
    /// What was adopted, and where in the chain.
    pub target: AdoptionTarget,
    /// The signatures, sorted by signer key.
    pub signatures: Vec<SignerSignature>,
    /// Document heads whose state is the adopted version (lets a peer that synced the
    /// document rebuild the version without receiving it whole).
    pub heads: Heads,
}

impl AdoptionRecord {
    /// The record as JSON bytes, for the network or a file.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Plain structs of strings and integers: serializing cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A record from [`AdoptionRecord::to_bytes`]'s output.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AdoptionError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(AdoptionError::Malformed(format!(
                "a record of {} bytes: at most {MAX_RECORD_BYTES} accepted",
                bytes.len()
            )));
        }
        serde_json::from_slice(bytes).map_err(|e| AdoptionError::Malformed(e.to_string()))
    }
}

/// An adopted version: its record and its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdoptedPolicy {
    /// The adoption record.
    pub record: AdoptionRecord,
    /// The adopted policy (its canonical snapshot hashes to `record.target.policy`).
    pub policy: Policy,
}

impl AdoptedPolicy {
    /// The adopted version's hash.
    pub fn hash(&self) -> PolicyHash {
        self.record.target.policy
    }

    /// Its position in the chain.
    pub fn sequence(&self) -> u64 {
        self.record.target.sequence
    }
}

/// Why a signature, a record or a chain was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdoptionError {
    /// The version breaks validation rules: it cannot be adopted.
    #[error("{0}")]
    Invalid(ValidationErrors),
    /// The content does not hash to the record's policy hash.
    #[error(
        "the policy content hashes to {found}, but the adoption record names {expected}: the content was altered or is another version"
    )]
    HashMismatch {
        /// The record's hash.
        expected: PolicyHash,
        /// The content's hash.
        found: PolicyHash,
    },
    /// A signature made for another step of the chain (replayed, stale or for another proposal).
    #[error(
        "signature by {signer} is for {signed}, not for {expected}: a signature counts only for the adoption it was made for (replayed, stale or for another proposal)"
    )]
    OtherTarget {
        /// The signer.
        signer: PublicKey,
        /// What it signs.
        signed: Box<AdoptionTarget>,
        /// What is being adopted.
        expected: Box<AdoptionTarget>,
    },
    /// A key outside the committee that may adopt this step.
    #[error(
        "{signer} is not on the steering committee of {committee_of}: only its {size} key(s) may sign this adoption"
    )]
    NotOnCommittee {
        /// The signer.
        signer: PublicKey,
        /// `the adopted version <hash>` or `the genesis itself`.
        committee_of: String,
        /// The committee's size.
        size: usize,
    },
    /// A signature that does not verify.
    #[error(
        "the signature by {signer} on {target} does not verify: it is forged, altered or made with another key"
    )]
    BadSignature {
        /// The claimed signer.
        signer: PublicKey,
        /// What it claims to sign.
        target: Box<AdoptionTarget>,
    },
    /// The same signer twice in one record.
    #[error("{signer} signs the record twice: each committee key counts once")]
    DuplicateSigner {
        /// The signer.
        signer: PublicKey,
    },
    /// Fewer valid distinct signatures than the quorum.
    #[error("{valid} valid committee signature(s) of {quorum} needed: {target} is not adopted")]
    QuorumNotReached {
        /// Valid distinct signatures.
        valid: usize,
        /// The quorum.
        quorum: u32,
        /// The step.
        target: Box<AdoptionTarget>,
    },
    /// A record whose sequence does not follow the chain.
    #[error(
        "adoption n°{found} does not follow the chain: expected n°{expected} (an older record replayed, or records missing in between)"
    )]
    OutOfSequence {
        /// The record's sequence.
        found: u64,
        /// The next sequence of the chain.
        expected: u64,
    },
    /// A record that does not name the current version as the one it replaces.
    #[error(
        "adoption n°{sequence} replaces {}, but the currently adopted version is {}",
        found.map(|h| h.to_string()).unwrap_or_else(|| "nothing (a genesis)".into()),
        expected.map(|h| h.to_string()).unwrap_or_else(|| "none (the chain is empty)".into())
    )]
    WrongPrevious {
        /// The record's sequence.
        sequence: u64,
        /// What it names.
        found: Option<PolicyHash>,
        /// The current version.
        expected: Option<PolicyHash>,
    },
    /// The version is already the adopted one.
    #[error("{policy} is already the adopted version (adoption n°{sequence})")]
    AlreadyAdopted {
        /// The version.
        policy: PolicyHash,
        /// Its adoption.
        sequence: u64,
    },
    /// The chain does not start at the pinned genesis.
    #[error("the adoption chain starts at {found}, not at the pinned genesis {expected}")]
    GenesisMismatch {
        /// The pinned genesis.
        expected: PolicyHash,
        /// The chain's first version.
        found: PolicyHash,
    },
    /// The document could not give the version at the record's heads.
    #[error("{0}")]
    Document(DocError),
    /// Bytes that are not a record.
    #[error("not an adoption record: {0}")]
    Malformed(String),
}

/// A chain entry that failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("adoption chain, entry {} (n°{sequence}): {source}", index + 1)]
pub struct ChainError {
    /// The entry's position, from 0.
    pub index: usize,
    /// Its claimed sequence.
    pub sequence: u64,
    /// Why it was refused.
    pub source: AdoptionError,
}

/// Signatures being gathered for one adoption step.
#[derive(Debug, Clone)]
pub struct Ballot {
    target: AdoptionTarget,
    committee: Committee,
    committee_of: String,
    signatures: BTreeMap<PublicKey, SignatureBytes>,
}

/// What [`Ballot::add`] did with a valid signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// A new signer was counted.
    Counted,
    /// The signer had already been counted.
    AlreadyCounted,
}

impl Ballot {
    /// The step being signed.
    pub fn target(&self) -> &AdoptionTarget {
        &self.target
    }

    /// The committee that may sign it.
    pub fn committee(&self) -> &Committee {
        &self.committee
    }

    /// How many distinct valid signatures are counted.
    pub fn count(&self) -> usize {
        self.signatures.len()
    }

    /// The quorum.
    pub fn quorum(&self) -> u32 {
        self.committee.quorum
    }

    /// Whether the quorum is reached.
    pub fn is_complete(&self) -> bool {
        self.signatures.len() >= self.committee.quorum as usize
    }

    /// The keys counted so far.
    pub fn signers(&self) -> impl Iterator<Item = &PublicKey> {
        self.signatures.keys()
    }

    /// Checks one signature (target, committee membership, validity) and counts it.
    pub fn add(&mut self, sig: &AdoptionSignature) -> Result<Added, AdoptionError> {
        if sig.target != self.target {
            return Err(AdoptionError::OtherTarget {
                signer: sig.signer,
                signed: Box::new(sig.target),
                expected: Box::new(self.target),
            });
        }
        check_signature(
            &self.committee,
            &self.committee_of,
            &self.target,
            &sig.signer,
            &sig.signature,
        )?;
        if self.signatures.contains_key(&sig.signer) {
            return Ok(Added::AlreadyCounted);
        }
        self.signatures.insert(sig.signer, sig.signature);
        Ok(Added::Counted)
    }

    /// The adoption record, once the quorum is reached.
    pub fn into_record(self, heads: Heads) -> Result<AdoptionRecord, AdoptionError> {
        if !self.is_complete() {
            return Err(AdoptionError::QuorumNotReached {
                valid: self.signatures.len(),
                quorum: self.committee.quorum,
                target: Box::new(self.target),
            });
        }
        Ok(AdoptionRecord {
            target: self.target,
            signatures: self
                .signatures
                .into_iter()
                .map(|(signer, signature)| SignerSignature { signer, signature })
                .collect(),
            heads,
        })
    }
}

fn check_signature(
    committee: &Committee,
    committee_of: &str,
    target: &AdoptionTarget,
    signer: &PublicKey,
    signature: &SignatureBytes,
) -> Result<(), AdoptionError> {
    if !committee.members.contains_key(signer) {
        return Err(AdoptionError::NotOnCommittee {
            signer: *signer,
            committee_of: committee_of.to_owned(),
            size: committee.members.len(),
        });
    }
    let bad = || AdoptionError::BadSignature {
        signer: *signer,
        target: Box::new(*target),
    };
    let key = signer.verifying_key().map_err(|_| bad())?;
    key.verify_strict(&target.message(), &Signature::from_bytes(&signature.0))
        .map_err(|_| bad())
}

/// Where a policy version stands in the chain (for hubs deciding whether to accept a release).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyStatus {
    /// The currently adopted version.
    Current {
        /// Its adoption's sequence.
        sequence: u64,
    },
    /// A version adopted once and replaced since.
    Superseded {
        /// Its (latest) adoption's sequence.
        sequence: u64,
        /// The sequence of the adoption that replaced it.
        replaced_by: u64,
        /// Whether it is the version the current one replaced directly (the one a grace period
        /// may still accept).
        is_previous: bool,
        /// The current version's grace period, in days.
        grace_days: u32,
    },
    /// Never adopted in this chain.
    NotAdopted,
}

/// The adopted versions, in order, each verified against the one before.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdoptionChain {
    entries: Vec<AdoptedPolicy>,
}

impl AdoptionChain {
    /// An empty chain (no version adopted yet).
    pub fn new() -> Self {
        Self::default()
    }

    /// Verifies every entry from the genesis on.
    pub fn verify(entries: Vec<AdoptedPolicy>) -> Result<Self, ChainError> {
        let mut chain = Self::new();
        for (index, entry) in entries.into_iter().enumerate() {
            let sequence = entry.record.target.sequence;
            chain
                .append(entry.record, entry.policy)
                .map_err(|source| ChainError {
                    index,
                    sequence,
                    source,
                })?;
        }
        Ok(chain)
    }

    /// Verifies every entry, and that the chain starts at the pinned `genesis`.
    pub fn verify_from(
        genesis: &PolicyHash,
        entries: Vec<AdoptedPolicy>,
    ) -> Result<Self, ChainError> {
        if let Some(first) = entries.first()
            && first.record.target.policy != *genesis
        {
            return Err(ChainError {
                index: 0,
                sequence: first.record.target.sequence,
                source: AdoptionError::GenesisMismatch {
                    expected: *genesis,
                    found: first.record.target.policy,
                },
            });
        }
        Self::verify(entries)
    }

    /// The adopted versions, genesis first.
    pub fn entries(&self) -> &[AdoptedPolicy] {
        &self.entries
    }

    /// The currently adopted version.
    pub fn current(&self) -> Option<&AdoptedPolicy> {
        self.entries.last()
    }

    /// The genesis.
    pub fn genesis(&self) -> Option<&AdoptedPolicy> {
        self.entries.first()
    }

    /// The sequence of the next adoption.
    pub fn next_sequence(&self) -> u64 {
        self.current().map_or(1, |c| c.sequence() + 1)
    }

    /// The step that would adopt `policy` next.
    pub fn next_target(&self, policy: &PolicyHash) -> AdoptionTarget {
        AdoptionTarget {
            sequence: self.next_sequence(),
            previous: self.current().map(AdoptedPolicy::hash),
            policy: *policy,
        }
    }

    /// The committee that adopts the next step (`None` before the genesis: the genesis names
    /// its own).
    pub fn adopting_committee(&self) -> Option<&Committee> {
        self.current().map(|c| &c.policy.committee)
    }

    /// Opens the ballot that would adopt `policy` next; refuses an invalid or already adopted one.
    pub fn ballot(&self, policy: &Policy) -> Result<Ballot, AdoptionError> {
        policy.validate().map_err(AdoptionError::Invalid)?;
        let hash = policy.hash();
        if let Some(current) = self.current()
            && current.hash() == hash
        {
            return Err(AdoptionError::AlreadyAdopted {
                policy: hash,
                sequence: current.sequence(),
            });
        }
        let (committee, committee_of) = match self.current() {
            Some(c) => (
                c.policy.committee.clone(),
                format!("the adopted version {}", c.hash()),
            ),
            None => (policy.committee.clone(), "the genesis itself".to_owned()),
        };
        Ok(Ballot {
            target: self.next_target(&hash),
            committee,
            committee_of,
            signatures: BTreeMap::new(),
        })
    }

    /// Verifies `record` as the next step with `policy` as its content, and appends it.
    pub fn append(
        &mut self,
        record: AdoptionRecord,
        policy: Policy,
    ) -> Result<&AdoptedPolicy, AdoptionError> {
        let t = record.target;
        let expected = self.next_sequence();
        if t.sequence != expected {
            return Err(AdoptionError::OutOfSequence {
                found: t.sequence,
                expected,
            });
        }
        let current = self.current().map(AdoptedPolicy::hash);
        if t.previous != current {
            return Err(AdoptionError::WrongPrevious {
                sequence: t.sequence,
                found: t.previous,
                expected: current,
            });
        }
        let found = policy.hash();
        if found != t.policy {
            return Err(AdoptionError::HashMismatch {
                expected: t.policy,
                found,
            });
        }
        let mut ballot = self.ballot(&policy)?;
        let mut seen = std::collections::BTreeSet::new();
        for s in &record.signatures {
            if !seen.insert(s.signer) {
                return Err(AdoptionError::DuplicateSigner { signer: s.signer });
            }
            ballot.add(&AdoptionSignature {
                target: t,
                signer: s.signer,
                signature: s.signature,
            })?;
        }
        if !ballot.is_complete() {
            return Err(AdoptionError::QuorumNotReached {
                valid: ballot.count(),
                quorum: ballot.quorum(),
                target: Box::new(t),
            });
        }
        self.entries.push(AdoptedPolicy { record, policy });
        // Just pushed.
        self.entries
            .last()
            .ok_or(AdoptionError::Malformed(String::new()))
    }

    /// Checks a record received from a peer as the next step, before its content is at hand:
    /// its sequence follows the chain, it names the current version as previous, and its
    /// signatures (each signer once) reach the quorum of the currently adopted committee.
    /// [`AdoptionChain::append`] still checks the content (hash, validation) afterwards. A
    /// genesis record is refused: the genesis is pinned locally, never taken from a peer.
    pub fn check_record(&self, record: &AdoptionRecord) -> Result<(), AdoptionError> {
        let t = record.target;
        let expected = self.next_sequence();
        if t.sequence != expected {
            return Err(AdoptionError::OutOfSequence {
                found: t.sequence,
                expected,
            });
        }
        let Some(current) = self.current() else {
            return Err(AdoptionError::Malformed(
                "a genesis record from a peer: the genesis is adopted locally (maillage policy adopt or import), never over the network".into(),
            ));
        };
        if t.previous != Some(current.hash()) {
            return Err(AdoptionError::WrongPrevious {
                sequence: t.sequence,
                found: t.previous,
                expected: Some(current.hash()),
            });
        }
        let committee = &current.policy.committee;
        let committee_of = format!("the adopted version {}", current.hash());
        let mut seen = std::collections::BTreeSet::new();
        for s in &record.signatures {
            if !seen.insert(s.signer) {
                return Err(AdoptionError::DuplicateSigner { signer: s.signer });
            }
            check_signature(committee, &committee_of, &t, &s.signer, &s.signature)?;
        }
        if seen.len() < committee.quorum as usize {
            return Err(AdoptionError::QuorumNotReached {
                valid: seen.len(),
                quorum: committee.quorum,
                target: Box::new(t),
            });
        }
        Ok(())
    }

    /// Appends a record received from a peer, reading its version from the synced document at
    /// the record's heads (sync the document first if it lacks them).
    pub fn append_from_document(
        &mut self,
        record: AdoptionRecord,
        doc: &PolicyDoc,
    ) -> Result<&AdoptedPolicy, AdoptionError> {
        let policy = doc
            .policy_at(&record.heads)
            .map_err(AdoptionError::Document)?;
        self.append(record, policy)
    }

    /// The records after `sequence` (what a peer that has adopted up to `sequence` is missing).
    pub fn records_after(&self, sequence: u64) -> impl Iterator<Item = &AdoptionRecord> {
        self.entries
            .iter()
            .filter(move |e| e.sequence() > sequence)
            .map(|e| &e.record)
    }

    /// Where `hash` stands in the chain.
    pub fn status(&self, hash: &PolicyHash) -> PolicyStatus {
        let Some(current) = self.current() else {
            return PolicyStatus::NotAdopted;
        };
        if current.hash() == *hash {
            return PolicyStatus::Current {
                sequence: current.sequence(),
            };
        }
        match self.entries.iter().rposition(|e| e.hash() == *hash) {
            Some(i) => PolicyStatus::Superseded {
                sequence: self.entries[i].sequence(),
                replaced_by: self.entries[i + 1].sequence(),
                is_previous: i + 2 == self.entries.len(),
                grace_days: current.policy.calendar.superseded_grace_days,
            },
            None => PolicyStatus::NotAdopted,
        }
    }
}
