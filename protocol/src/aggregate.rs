//! Signed aggregates: what a hub (or the national node) publishes for one period, and proofs
//! that a node equivocated.
//!
//! This module owns the aggregate wire type, its one canonical byte encoding, the
//! domain-separated ed25519 signature over it, the aggregate id, and the JSON view. An aggregate
//! states the cell-by-cell sums of the contributions a hub accepted, the combined noise variance
//! and the 95% interval of each sum, which contributions were summed (by their leaf in the hub's
//! contributions log and the checkpoint that covers exactly them), and which members did or did
//! not contribute. It does not compute the sums or the intervals (the node and
//! `maillage-privacy` do), and does no I/O. [`EquivocationProof`] packs two signed releases that
//! prove a node signed two different releases for one period.
//!
//! # Canonical encoding, versions 1 and 2
//!
//! An aggregate is one CBOR data item (RFC 8949): an array of 13 elements (version 2, what
//! this build writes) or 11 (version 1, still read, and written for an aggregate without
//! `structures`) in this fixed order.
//!
//! | #  | field           | CBOR                          | accepted values |
//! |----|-----------------|-------------------------------|-----------------|
//! | 0  | version         | unsigned integer              | `1` |
//! | 1  | signer          | byte string, 32 bytes         | the aggregator's ed25519 public key, canonical encoding, not of small order |
//! | 2  | level           | text string                   | `"hub"` or `"national"` |
//! | 3  | period          | text string                   | `YYYY-MM`, 2000-01 to 2999-12 |
//! | 4  | checkpoint_size | unsigned integer              | the tree size of the signer's checkpoint that covers the contributions |
//! | 5  | checkpoint_root | byte string, 32 bytes         | that checkpoint's root; [`EMPTY_ROOT`] when the size is 0 |
//! | 6  | contributions   | array of contributions        | see below; indices strictly increasing, each below `checkpoint_size`; signers distinct |
//! | 7  | cells           | array of 0 to [`max_cells`] cells | see below; catalogue order, each indicator complete |
//! | 8  | contributed     | array of byte strings, 32 bytes each | member keys that contributed: strictly increasing by bytes; exactly the contributions' signers |
//! | 9  | missing         | array of byte strings, 32 bytes each | member keys that did not: strictly increasing by bytes; none in `contributed` |
//! | 10 | created_at      | unsigned integer              | Unix time in seconds |
//! | 11 | supersedes      | `null`, or an array of 2: byte string (32 bytes), array of byte strings (32 bytes each) | (version 2) the [`AggregateId`] of the aggregate this one revises and the RFC 9162 consistency proof from that aggregate's checkpoint to this one's, at most [`MAX_CONSISTENCY_PROOF_LEN`] hashes; `null` for a period's first aggregate (revisions: [`conflict`]) |
//! | 12 | structures      | unsigned integer              | (version 2) structures covered: at hub level exactly the length of `contributed`; at national level the sum over the summed hub aggregates |
//!
//! Each contribution is an array of 3 elements: its leaf index in the signer's contributions log
//! (unsigned integer), its id (byte string, 32 bytes: the [`ReleaseId`] of a node's release at
//! hub level, the [`AggregateId`] bytes of a hub's aggregate at national level) and its signer
//! (byte string, 32 bytes, an ed25519 public key as above).
//!
//! Each cell is an array of 5 elements: the indicator code (text string), the category code
//! (text string) or `null` (`0xf6`) for a plain count or sum, the sum of the contributions' noisy
//! values (integer, major type 0 or 1, within `i64`), the variance of the sum's noise (64-bit
//! float, finite and ≥ 0) and the half-width of its 95% interval (64-bit float, finite and ≥ 0).
//! Cells follow the release rule, checked by the same code: each indicator at most once, in the
//! order of [`Indicator::ALL`](crate::vocab::Vocabulary::ALL), listing every one of its categories
//! in the order of [`Indicator::categories`](crate::Indicator::categories), or exactly one `null`
//! cell for a count or sum. Unlike a release, the list may be empty (e.g. when nobody
//! contributed).
//!
//! The encoding admits exactly one form: definite lengths; every integer, string length and
//! array length in its shortest form; no tags, maps or simple values other than `null` where
//! stated; every float as a 64-bit big-endian IEEE 754 value (`0xfb` + 8 bytes), never a 16- or
//! 32-bit one, and never NaN, ±∞ or −0.0; nothing after the item. The decoder refuses anything
//! else and, as a last check, re-encodes what it read and refuses the input unless the bytes are
//! identical.
//!
//! # Signature and id
//!
//! `signature = Ed25519(key, "maillage/aggregate/v1\0" ‖ canonical aggregate)` for both
//! versions (the version number is the first element of the signed bytes) (pure Ed25519,
//! RFC 8032, verified with `verify_strict`). The domain tag ([`SIGNING_DOMAIN`]) keeps an
//! aggregate signature from being valid as a release, checkpoint or receipt signature. A signed
//! aggregate on the wire is the CBOR array `[aggregate, signature]`: `0x82`, the canonical
//! aggregate, then `0x58 0x40` and the 64 signature bytes.
//!
//! [`AggregateId`] is SHA-256 of the signed message, `"maillage/aggregate/v1\0" ‖ canonical
//! aggregate`, without the signature (another valid signature of the same aggregate is the same
//! aggregate).
//!
//! # JSON view
//!
//! ```json
//! {"version": 1, "signer": "<64 hex digits>", "level": "hub", "period": "2026-10",
//!  "checkpoint": {"size": 18, "root": "<64 hex digits>"},
//!  "contributions": [{"index": 0, "id": "<64 hex digits>", "signer": "<64 hex digits>"}, ...],
//!  "cells": [{"indicator": "accompagnements", "category": "individuel", "sum": 123,
//!             "variance": 4.5, "ci95_half_width": 9.0}, ...],
//!  "coverage": {"contributed": ["<64 hex digits>", ...], "missing": ["<64 hex digits>", ...]},
//!  "created_at": 1793491200,
//!  "supersedes": {"id": "<64 hex digits>", "consistency": ["<64 hex digits>", ...]},
//!  "structures": 3, "signature": "<128 hex digits>"}
//! ```
//!
//! `supersedes` (absent or `null` for a first aggregate) and `structures` are version 2 fields:
//! required (`structures`) in version 2, refused in version 1.
//!
//! `category` is `null` (or absent) for plain counts and sums; every other field is required and
//! unknown fields are refused. Floats are written in their shortest round-trip form and read back
//! bit for bit, so a JSON aggregate gives the same canonical bytes and its signature verifies.
//! The JSON is a view, not a second canonical form: whitespace, key order and hex case do not
//! matter.

mod cbor;
mod equivocation;
mod json;
mod revision;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::checkpoint::{self, Checkpoint};
use crate::indicator::Indicator;
use crate::merkle::{EMPTY_ROOT, Hash};
use crate::period::{Period, PeriodError};
use crate::release::{CellOrder, ReleaseError, ReleaseId};
use crate::vocab::Vocabulary;
use cbor::{Field, Reader, Writer};

pub use crate::release::max_cells;
pub use equivocation::{EquivocationError, EquivocationProof};
pub use revision::{AggregateConflict, RevisionError, conflict};

/// The version of the canonical encoding this build writes (it reads [`VERSION_1`] too).
pub const VERSION: u64 = 2;

/// The first version of the encoding, without `supersedes` and `structures`; still read, and
/// written for an aggregate whose [`Aggregate::structures`] is `None`.
pub const VERSION_1: u64 = 1;

/// Prefixed to the canonical aggregate bytes to form the message that is signed.
pub const SIGNING_DOMAIN: &[u8] = b"maillage/aggregate/v1\0";

const AGGREGATE_FIELDS_V1: usize = 11;
const AGGREGATE_FIELDS: usize = 13;
const SUPERSEDES_FIELDS: usize = 2;
/// More than any RFC 9162 consistency proof between two trees of at most 2^64 leaves.
pub const MAX_CONSISTENCY_PROOF_LEN: usize = 128;
const CONTRIBUTION_FIELDS: usize = 3;
const CELL_FIELDS: usize = 5;
/// The smallest encoded contribution: a 3-array head, a 1-byte index, two 34-byte strings.
const MIN_CONTRIBUTION_LEN: usize = 70;
/// An encoded key: a 2-byte head and 32 bytes.
const KEY_LEN: usize = 34;
/// Longer than any indicator or category code; bounds what the decoder reads.
const MAX_CODE_LEN: usize = 64;
const MAX_LEVEL_LEN: usize = 16;
const MAX_PERIOD_LEN: usize = 16;
/// How much of a refused text value an error message quotes.
const EXCERPT_LEN: usize = 80;

/// The JSON and error-message names of the two coverage lists.
const CONTRIBUTED: &str = "coverage.contributed";
const MISSING: &str = "coverage.missing";

/// Which aggregator signed: a hub over its members' releases, or the national node over hubs'
/// aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// A regional hub; its contributions are members' [`SignedRelease`](crate::SignedRelease)s.
    Hub,
    /// The national node; its contributions are hubs' [`SignedAggregate`]s.
    National,
}

impl Level {
    /// The name on the wire and in JSON: `hub` or `national`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hub => "hub",
            Self::National => "national",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = AggregateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hub" => Ok(Self::Hub),
            "national" => Ok(Self::National),
            _ => Err(AggregateError::UnknownLevel { value: excerpt(s) }),
        }
    }
}

/// One summed contribution: where it is in the aggregator's contributions log, and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContributionRef {
    /// Its leaf index in the signer's contributions log.
    pub index: u64,
    /// Its id: a [`ReleaseId`] at hub level; at national level the bytes of the hub aggregate's
    /// [`AggregateId`] (`ReleaseId::from_bytes(*aggregate_id.as_bytes())`), which are also the
    /// leaf data of the national log.
    pub id: ReleaseId,
    /// Who signed the contribution: a member node, or a hub at national level.
    pub signer: VerifyingKey,
}

/// One summed figure: an indicator, or one category of it, over all contributions.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateCell {
    /// The indicator.
    pub indicator: Indicator,
    /// The category code for a `count_by` or `histogram` indicator, `None` for a count or sum.
    pub category: Option<String>,
    /// The sum of the contributions' noisy values.
    pub sum: i64,
    /// The variance of the sum's noise (the sum of the contributions' noise variances), finite
    /// and ≥ 0.
    pub variance: f64,
    /// Half the width of the 95% interval around `sum`, finite and ≥ 0.
    pub ci95_half_width: f64,
}

/// What an aggregator publishes for one period, before or without its signature.
///
/// Fields are public so a node can fill them; [`Aggregate::validate`] checks them, and every
/// encoding, decoding and signing function validates first.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    /// The aggregator's public key; the signature must be made by its secret key.
    pub signer: VerifyingKey,
    /// Hub or national.
    pub level: Level,
    /// The month the figures describe.
    pub period: Period,
    /// The tree size of the signer's signed checkpoint of its contributions log whose leaves are
    /// exactly the summed contributions.
    pub checkpoint_size: u64,
    /// That checkpoint's root.
    pub checkpoint_root: Hash,
    /// The summed contributions, by strictly increasing leaf index.
    pub contributions: Vec<ContributionRef>,
    /// The sums, in catalogue order (see the module documentation).
    pub cells: Vec<AggregateCell>,
    /// The members that contributed, strictly increasing by key bytes.
    pub contributed: Vec<VerifyingKey>,
    /// The members that did not, strictly increasing by key bytes.
    pub missing: Vec<VerifyingKey>,
    /// When the aggregate was made, in Unix seconds.
    pub created_at: u64,
    /// The aggregate this one revises (version 2 only): an aggregate of the same signer, level
    /// and period, whose checkpoint this one's extends. `None` for a period's first aggregate.
    pub supersedes: Option<Supersedes>,
    /// How many structures the figures cover (version 2): at hub level, exactly the number of
    /// contributing members; at national level, the sum of the summed hub aggregates'
    /// `structures` (or of their contributing members for version 1 hub aggregates). `None`
    /// writes the version 1 encoding, which has neither this field nor `supersedes`.
    pub structures: Option<u64>,
}

/// The link from a revision to the aggregate it supersedes: the earlier aggregate's id and the
/// RFC 9162 consistency proof from the earlier aggregate's checkpoint to this one's (empty when
/// the sizes are equal, then the roots must be equal too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Supersedes {
    /// The id of the superseded aggregate.
    pub id: AggregateId,
    /// The consistency proof, at most [`MAX_CONSISTENCY_PROOF_LEN`] hashes.
    pub consistency: Vec<Hash>,
}

/// Why an aggregate, its bytes, its JSON or its signature was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AggregateError {
    /// The bytes end in the middle of an item.
    #[error("aggregate bytes end at byte {offset}, inside {field}: expected {expected}")]
    Truncated {
        /// Where the input ended.
        offset: usize,
        /// The field being read.
        field: String,
        /// What was being read.
        expected: &'static str,
    },
    /// Bytes follow the end of the item.
    #[error(
        "{count} trailing byte(s) from byte {offset} after the end of the {what}: nothing may follow it"
    )]
    TrailingBytes {
        /// Where the extra bytes start.
        offset: usize,
        /// How many there are.
        count: usize,
        /// What had ended.
        what: &'static str,
    },
    /// An item of the wrong type (or an indefinite length, a reserved value, another float width).
    #[error("aggregate, at byte {offset} ({field}): expected {expected}, found {found}")]
    UnexpectedItem {
        /// Where the item starts.
        offset: usize,
        /// The field being read.
        field: String,
        /// What would be accepted.
        expected: &'static str,
        /// The initial byte found and what it means.
        found: String,
    },
    /// An integer or length written with more bytes than it needs.
    #[error(
        "aggregate, at byte {offset} ({field}): {value} is written with a {width}-byte argument; the canonical encoding uses the shortest form"
    )]
    NonShortestHead {
        /// Where the item starts.
        offset: usize,
        /// The field being read.
        field: String,
        /// The integer or length.
        value: u64,
        /// The argument width used.
        width: usize,
    },
    /// An array with the wrong number of elements.
    #[error(
        "aggregate, at byte {offset} ({field}): an array of {found} elements, expected {expected}"
    )]
    ArrayLength {
        /// Where the array starts.
        offset: usize,
        /// The field being read.
        field: String,
        /// The length found.
        found: usize,
        /// The length(s) accepted.
        expected: String,
    },
    /// A byte string of the wrong length.
    #[error(
        "aggregate, at byte {offset} ({field}): a byte string of {found} bytes, expected exactly {expected}"
    )]
    WrongLength {
        /// Where the string starts.
        offset: usize,
        /// The field being read.
        field: String,
        /// The length found.
        found: u64,
        /// The length accepted.
        expected: usize,
    },
    /// A text string longer than the field allows.
    #[error(
        "aggregate, at byte {offset} ({field}): a text string of {len} bytes, at most {max} accepted"
    )]
    TooLong {
        /// Where the string starts.
        offset: usize,
        /// The field being read.
        field: String,
        /// The length found.
        len: u64,
        /// The most accepted.
        max: usize,
    },
    /// An integer outside the field's range.
    #[error("aggregate, at byte {offset} ({field}): {value} is out of range: expected {expected}")]
    IntegerOutOfRange {
        /// Where the integer starts.
        offset: usize,
        /// The field being read.
        field: String,
        /// The integer found.
        value: i128,
        /// The range accepted.
        expected: &'static str,
    },
    /// A text string that is not UTF-8.
    #[error("aggregate, at byte {offset} ({field}): the text string is not valid UTF-8")]
    InvalidUtf8 {
        /// Where the string starts.
        offset: usize,
        /// The field being read.
        field: String,
    },
    /// What was read does not re-encode to the same bytes (a decoder bug guard).
    #[error(
        "the decoded {what} does not re-encode to the bytes it was read from (first difference at byte {offset}); refusing a non-canonical encoding"
    )]
    NotCanonical {
        /// What was read.
        what: &'static str,
        /// The first differing byte.
        offset: usize,
    },
    /// Another version of the encoding.
    #[error(
        "version: aggregate version {found} is not supported: this build reads versions 1 to {supported}"
    )]
    UnsupportedVersion {
        /// The version found.
        found: u64,
        /// The version this build reads.
        supported: u64,
    },
    /// A key that is not a usable ed25519 public key.
    #[error("{field}: {value} is not accepted as an ed25519 public key: {reason}")]
    InvalidKey {
        /// Where the key is, e.g. `signer` or `coverage.missing[2]`.
        field: String,
        /// The key, in hex.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// A hex field that does not decode.
    #[error("{field}: {value:?} is not accepted: expected {expected}")]
    InvalidHex {
        /// The JSON field, e.g. `checkpoint.root` or `contributions[0].id`.
        field: String,
        /// What was given (or its beginning).
        value: String,
        /// What would be accepted.
        expected: &'static str,
    },
    /// Not a level.
    #[error("level: {value:?} is not a level: expected \"hub\" or \"national\"")]
    UnknownLevel {
        /// What was given (or its beginning).
        value: String,
    },
    /// The period is not a month in range.
    #[error("period: {0}")]
    InvalidPeriod(PeriodError),
    /// A checkpoint of an empty log with another root than the empty tree's.
    #[error(
        "checkpoint_root: a checkpoint of size 0 has the root of the empty tree, SHA-256(\"\") = {}, not {}",
        hex::encode(EMPTY_ROOT),
        hex::encode(.root)
    )]
    EmptyTreeRoot {
        /// The root given.
        root: Hash,
    },
    /// A contribution whose leaf index is not inside the checkpoint.
    #[error(
        "contributions[{contribution}].index: leaf {index} is not in the checkpoint of size {checkpoint_size}: expected an index below checkpoint_size"
    )]
    IndexBeyondCheckpoint {
        /// The contribution's position.
        contribution: usize,
        /// Its leaf index.
        index: u64,
        /// The checkpoint's size.
        checkpoint_size: u64,
    },
    /// A contribution whose leaf index is not above the previous one's.
    #[error(
        "contributions[{contribution}].index: leaf {index} after leaf {previous}: contributions are listed by strictly increasing leaf index"
    )]
    ContributionOrder {
        /// The contribution's position.
        contribution: usize,
        /// Its leaf index.
        index: u64,
        /// The previous contribution's leaf index.
        previous: u64,
    },
    /// Two contributions by one signer: a period's sum counts each signer once.
    #[error(
        "contributions[{contribution}].signer: {signer} already signed contribution {first}: an aggregate sums at most one contribution per signer and period"
    )]
    DuplicateContributor {
        /// The second contribution's position.
        contribution: usize,
        /// The first one's position.
        first: usize,
        /// The signer, in hex.
        signer: String,
    },
    /// An indicator code outside the catalogue.
    #[error("cells[{cell}].indicator: {value:?} is not an indicator of the catalogue: expected one of {}", Indicator::codes().join(", "))]
    UnknownIndicator {
        /// The cell's position.
        cell: usize,
        /// What was given (or its beginning).
        value: String,
    },
    /// Cells out of catalogue order, incomplete or duplicated: the release rule, whose error
    /// (one of [`ReleaseError::IndicatorOrder`], [`ReleaseError::UnexpectedCategory`],
    /// [`ReleaseError::DuplicateCell`] or [`ReleaseError::MissingCategories`]) this wraps.
    #[error("{0}")]
    CellOrder(ReleaseError),
    /// A variance or interval half-width out of range.
    #[error("cells[{cell}].{field}: {value} is not accepted: expected {expected}")]
    InvalidCellFloat {
        /// The cell's position.
        cell: usize,
        /// `variance` or `ci95_half_width`.
        field: &'static str,
        /// What was given.
        value: f64,
        /// What would be accepted.
        expected: &'static str,
    },
    /// A coverage list not strictly increasing by key bytes (or with a key twice).
    #[error(
        "{list}[{position}]: {key} comes after {previous}: the list is strictly increasing by key bytes, each key once"
    )]
    CoverageOrder {
        /// `coverage.contributed` or `coverage.missing`.
        list: &'static str,
        /// The key's position.
        position: usize,
        /// The key, in hex.
        key: String,
        /// The key before it, in hex.
        previous: String,
    },
    /// A key listed both as contributed and as missing.
    #[error(
        "coverage.missing[{position}]: {key} is also in coverage.contributed: a member either contributed or is missing"
    )]
    CoverageOverlap {
        /// The key's position in `coverage.missing`.
        position: usize,
        /// The key, in hex.
        key: String,
    },
    /// `coverage.contributed` that is not exactly the set of the contributions' signers.
    #[error("coverage.contributed: {}", coverage_mismatch(.key, *.listed))]
    CoverageMismatch {
        /// The key in one set and not the other, in hex.
        key: String,
        /// Whether it is listed in `coverage.contributed` (and signed no contribution), or
        /// signed a contribution (and is not listed).
        listed: bool,
    },
    /// An aggregate read without its signature.
    #[error(
        "signature: missing: a signed aggregate carries its 64-byte ed25519 signature as 128 hex digits"
    )]
    MissingSignature,
    /// Signing with a key that is not the aggregate's signer.
    #[error("signer: the signing key's public key {key} is not the aggregate's signer {signer}")]
    SignerMismatch {
        /// The aggregate's signer, in hex.
        signer: String,
        /// The signing key's public key, in hex.
        key: String,
    },
    /// The signature does not verify.
    #[error(
        "signature: does not verify: it was not made by signer {signer} over this aggregate ({level}, period {period}, checkpoint size {checkpoint_size})"
    )]
    BadSignature {
        /// The aggregate's signer, in hex.
        signer: String,
        /// Its level.
        level: Level,
        /// Its period.
        period: Period,
        /// Its checkpoint size.
        checkpoint_size: u64,
    },
    /// A checkpoint that is not the one the aggregate names.
    #[error(
        "checkpoint: the aggregate's {field} is {expected} but the checkpoint's is {found}: the aggregate must name a checkpoint of its signer's contributions log with exactly its size and root"
    )]
    CheckpointMismatch {
        /// `signer`, `origin`, `checkpoint_size` or `checkpoint_root`.
        field: &'static str,
        /// The aggregate's value.
        expected: String,
        /// The checkpoint's value.
        found: String,
    },
    /// A revision in the version 1 encoding, which cannot say what it supersedes.
    #[error(
        "supersedes: a revision is written in the version 2 encoding, which also states structures; structures is missing"
    )]
    RevisionNeedsVersion2,
    /// A consistency proof longer than any valid one.
    #[error("supersedes.consistency: {len} hashes, at most {MAX_CONSISTENCY_PROOF_LEN} accepted")]
    ConsistencyProofTooLong {
        /// The length found.
        len: usize,
    },
    /// A hub aggregate whose `structures` is not its number of contributing members.
    #[error(
        "structures: {stated} where the hub aggregate lists {contributed} contributing member(s); at hub level structures is exactly coverage.contributed's length"
    )]
    StructuresMismatch {
        /// The stated count.
        stated: u64,
        /// The number of contributing members.
        contributed: usize,
    },
    /// Malformed JSON, or JSON not of the aggregate's shape.
    #[error("JSON aggregate: {message}")]
    Json {
        /// The line of the error (1-based), 0 if unknown.
        line: usize,
        /// The column of the error (1-based), 0 if unknown.
        column: usize,
        /// serde_json's description, with its position.
        message: String,
    },
}

fn coverage_mismatch(key: &str, listed: bool) -> String {
    if listed {
        format!(
            "{key} is listed but signed no contribution: the list is exactly the contributions' signers"
        )
    } else {
        format!(
            "{key} signed a contribution but is not listed: the list is exactly the contributions' signers"
        )
    }
}

/// The beginning of `s`, for quoting a refused value without quoting megabytes.
fn excerpt(s: &str) -> String {
    match s.char_indices().nth(EXCERPT_LEN) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

/// Refuses keys in a non-canonical encoding or of small order (as releases do).
fn check_key(field: impl fmt::Display, key: &VerifyingKey) -> Result<(), AggregateError> {
    let reason = if !crate::checkpoint::is_canonical_point_encoding(key.as_bytes()) {
        "the point is not in its canonical encoding"
    } else if key.is_weak() {
        "the point has small order, so signatures by it prove nothing"
    } else {
        return Ok(());
    };
    Err(AggregateError::InvalidKey {
        field: field.to_string(),
        value: hex::encode(key.as_bytes()),
        reason,
    })
}

/// A key read from 32 bytes; its canonical form and order are checked by validation.
fn key_from_bytes(
    field: impl fmt::Display,
    bytes: &[u8; 32],
) -> Result<VerifyingKey, AggregateError> {
    VerifyingKey::from_bytes(bytes).map_err(|_| AggregateError::InvalidKey {
        field: field.to_string(),
        value: hex::encode(bytes),
        reason: "the bytes are not the encoding of a curve point",
    })
}

fn check_float(cell: usize, field: &'static str, value: f64) -> Result<(), AggregateError> {
    if value.is_finite() && value >= 0.0 && value.is_sign_positive() {
        Ok(())
    } else {
        Err(AggregateError::InvalidCellFloat {
            cell,
            field,
            value,
            expected: "a finite number greater than or equal to 0 (and not -0)",
        })
    }
}

fn check_contributions(
    contributions: &[ContributionRef],
    checkpoint_size: u64,
) -> Result<(), AggregateError> {
    let mut previous: Option<u64> = None;
    for (n, c) in contributions.iter().enumerate() {
        check_key(Field::Contribution(n, "signer"), &c.signer)?;
        if let Some(previous) = previous.filter(|&p| c.index <= p) {
            return Err(AggregateError::ContributionOrder {
                contribution: n,
                index: c.index,
                previous,
            });
        }
        if c.index >= checkpoint_size {
            return Err(AggregateError::IndexBeyondCheckpoint {
                contribution: n,
                index: c.index,
                checkpoint_size,
            });
        }
        previous = Some(c.index);
    }
    // Quadratic only in the error path's search for the first occurrence.
    let mut seen = BTreeSet::new();
    for (n, c) in contributions.iter().enumerate() {
        if !seen.insert(c.signer.as_bytes()) {
            let first = contributions
                .iter()
                .position(|d| d.signer == c.signer)
                .unwrap_or(n);
            return Err(AggregateError::DuplicateContributor {
                contribution: n,
                first,
                signer: hex::encode(c.signer.as_bytes()),
            });
        }
    }
    Ok(())
}

fn check_cells(cells: &[AggregateCell]) -> Result<(), AggregateError> {
    let mut order = CellOrder::default();
    for (n, cell) in cells.iter().enumerate() {
        check_float(n, "variance", cell.variance)?;
        check_float(n, "ci95_half_width", cell.ci95_half_width)?;
        order
            .accept(n, cell.indicator, cell.category.as_deref())
            .map_err(AggregateError::CellOrder)?;
    }
    order.finish(cells.len()).map_err(AggregateError::CellOrder)
}

/// Checks one coverage list: valid keys, strictly increasing by bytes.
fn check_key_list(list: &'static str, keys: &[VerifyingKey]) -> Result<(), AggregateError> {
    for (n, key) in keys.iter().enumerate() {
        check_key(Field::Key(list, n), key)?;
        let previous = n.checked_sub(1).and_then(|p| keys.get(p));
        if let Some(previous) = previous.filter(|p| key.as_bytes() <= p.as_bytes()) {
            return Err(AggregateError::CoverageOrder {
                list,
                position: n,
                key: hex::encode(key.as_bytes()),
                previous: hex::encode(previous.as_bytes()),
            });
        }
    }
    Ok(())
}

fn check_coverage(aggregate: &Aggregate) -> Result<(), AggregateError> {
    check_key_list(CONTRIBUTED, &aggregate.contributed)?;
    check_key_list(MISSING, &aggregate.missing)?;
    let contributed: BTreeSet<&[u8; 32]> =
        aggregate.contributed.iter().map(|k| k.as_bytes()).collect();
    for (position, key) in aggregate.missing.iter().enumerate() {
        if contributed.contains(key.as_bytes()) {
            return Err(AggregateError::CoverageOverlap {
                position,
                key: hex::encode(key.as_bytes()),
            });
        }
    }
    let signers: BTreeSet<&[u8; 32]> = aggregate
        .contributions
        .iter()
        .map(|c| c.signer.as_bytes())
        .collect();
    if let Some(key) = signers.difference(&contributed).next() {
        return Err(AggregateError::CoverageMismatch {
            key: hex::encode(key),
            listed: false,
        });
    }
    if let Some(key) = contributed.difference(&signers).next() {
        return Err(AggregateError::CoverageMismatch {
            key: hex::encode(key),
            listed: true,
        });
    }
    Ok(())
}

/// `SIGNING_DOMAIN ‖ canonical`.
fn signing_message(canonical: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNING_DOMAIN.len() + canonical.len());
    message.extend_from_slice(SIGNING_DOMAIN);
    message.extend_from_slice(canonical);
    message
}

/// Reads a list of `count` elements, never reserving more than `remaining / min_len` slots, so
/// a huge declared length costs nothing before the input runs out.
fn with_capacity_for<T>(count: usize, remaining: usize, min_len: usize) -> Vec<T> {
    Vec::with_capacity(count.min(remaining / min_len))
}

impl Aggregate {
    /// Checks every field against the rules of the encoding (see the module documentation).
    pub fn validate(&self) -> Result<(), AggregateError> {
        check_key("signer", &self.signer)?;
        if self.checkpoint_size == 0 && self.checkpoint_root != EMPTY_ROOT {
            return Err(AggregateError::EmptyTreeRoot {
                root: self.checkpoint_root,
            });
        }
        check_contributions(&self.contributions, self.checkpoint_size)?;
        check_cells(&self.cells)?;
        check_coverage(self)?;
        match (&self.supersedes, self.structures) {
            (Some(_), None) => return Err(AggregateError::RevisionNeedsVersion2),
            (Some(s), _) if s.consistency.len() > MAX_CONSISTENCY_PROOF_LEN => {
                return Err(AggregateError::ConsistencyProofTooLong {
                    len: s.consistency.len(),
                });
            }
            _ => {}
        }
        match self.structures {
            Some(stated) if self.level == Level::Hub && stated != self.contributed.len() as u64 => {
                Err(AggregateError::StructuresMismatch {
                    stated,
                    contributed: self.contributed.len(),
                })
            }
            _ => Ok(()),
        }
    }

    /// The version of the encoding this aggregate is written in: [`VERSION`] when it states
    /// `structures`, [`VERSION_1`] otherwise.
    pub fn version(&self) -> u64 {
        if self.structures.is_some() {
            VERSION
        } else {
            VERSION_1
        }
    }

    /// The canonical encoding, after [`Aggregate::validate`].
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, AggregateError> {
        self.validate()?;
        Ok(self.encode_unchecked())
    }

    /// The aggregate id: SHA-256 of the signed message (see the module documentation).
    pub fn id(&self) -> Result<AggregateId, AggregateError> {
        Ok(AggregateId::of_canonical(&self.canonical_bytes()?))
    }

    /// Reads a canonical aggregate, refusing any other encoding of it.
    pub fn decode(bytes: &[u8]) -> Result<Self, AggregateError> {
        let mut reader = Reader::new(bytes);
        let aggregate = Self::decode_from(&mut reader)?;
        reader.finish("aggregate")?;
        aggregate.check_read(bytes, 0)?;
        Ok(aggregate)
    }

    /// Signs the aggregate with `key`, which must be the secret key of [`Aggregate::signer`].
    pub fn sign(self, key: &SigningKey) -> Result<SignedAggregate, AggregateError> {
        SignedAggregate::sign(self, key)
    }

    /// Checks that `checkpoint` is the one this aggregate names: signed by the aggregate's
    /// signer, of its contributions log ([`checkpoint::contributions_origin`]), with the
    /// aggregate's size and root. The checkpoint's signature is not checked here.
    pub fn check_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), AggregateError> {
        let mismatch = |field, expected: String, found: String| {
            Err(AggregateError::CheckpointMismatch {
                field,
                expected,
                found,
            })
        };
        let origin = checkpoint::contributions_origin(&self.signer);
        if checkpoint.signer != self.signer {
            mismatch(
                "signer",
                hex::encode(self.signer.as_bytes()),
                hex::encode(checkpoint.signer.as_bytes()),
            )
        } else if checkpoint.origin != origin {
            mismatch("origin", origin, checkpoint.origin.clone())
        } else if checkpoint.tree_size != self.checkpoint_size {
            mismatch(
                "checkpoint_size",
                self.checkpoint_size.to_string(),
                checkpoint.tree_size.to_string(),
            )
        } else if checkpoint.root != self.checkpoint_root {
            mismatch(
                "checkpoint_root",
                hex::encode(self.checkpoint_root),
                hex::encode(checkpoint.root),
            )
        } else {
            Ok(())
        }
    }

    /// Validates an aggregate just decoded from `read` (found at byte `start` of the input) and
    /// checks that it encodes back to exactly those bytes.
    fn check_read(&self, read: &[u8], start: usize) -> Result<(), AggregateError> {
        self.validate()?;
        let again = self.encode_unchecked();
        if again != read {
            let offset = start + again.iter().zip(read).take_while(|(a, b)| a == b).count();
            return Err(AggregateError::NotCanonical {
                what: "aggregate",
                offset,
            });
        }
        Ok(())
    }

    fn encode_into(&self, w: &mut Writer) {
        if self.structures.is_some() {
            w.array(AGGREGATE_FIELDS);
        } else {
            w.array(AGGREGATE_FIELDS_V1);
        }
        w.uint(self.version());
        w.bytes(self.signer.as_bytes());
        w.text(self.level.as_str());
        w.text(&self.period.to_string());
        w.uint(self.checkpoint_size);
        w.bytes(&self.checkpoint_root);
        w.array(self.contributions.len());
        for c in &self.contributions {
            w.array(CONTRIBUTION_FIELDS);
            w.uint(c.index);
            w.bytes(c.id.as_bytes());
            w.bytes(c.signer.as_bytes());
        }
        w.array(self.cells.len());
        for cell in &self.cells {
            w.array(CELL_FIELDS);
            w.text(cell.indicator.code());
            w.opt_text(cell.category.as_deref());
            w.int(cell.sum);
            w.f64(cell.variance);
            w.f64(cell.ci95_half_width);
        }
        for keys in [&self.contributed, &self.missing] {
            w.array(keys.len());
            for key in keys {
                w.bytes(key.as_bytes());
            }
        }
        w.uint(self.created_at);
        if let Some(structures) = self.structures {
            match &self.supersedes {
                None => w.null(),
                Some(s) => {
                    w.array(SUPERSEDES_FIELDS);
                    w.bytes(s.id.as_bytes());
                    w.array(s.consistency.len());
                    for hash in &s.consistency {
                        w.bytes(hash);
                    }
                }
            }
            w.uint(structures);
        }
    }

    /// The encoding of the fields as they are, valid or not; callers validate first.
    fn encode_unchecked(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.encode_into(&mut w);
        w.into_bytes()
    }

    fn decode_keys(
        r: &mut Reader<'_>,
        list: &'static str,
    ) -> Result<Vec<VerifyingKey>, AggregateError> {
        let (_, count) = r.array(Field::Top(list))?;
        let mut keys = with_capacity_for(count, r.remaining(), KEY_LEN);
        for n in 0..count {
            let field = Field::Key(list, n);
            keys.push(key_from_bytes(field, &r.bytes::<32>(field)?)?);
        }
        Ok(keys)
    }

    /// Reads the structure of an aggregate; values are checked by [`Aggregate::validate`] after.
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, AggregateError> {
        let (offset, len) = r.array(Field::Top("aggregate"))?;
        let wrong_length = || AggregateError::ArrayLength {
            offset,
            field: "aggregate".to_owned(),
            found: len,
            expected: format!("exactly {AGGREGATE_FIELDS}"),
        };
        if len == 0 {
            return Err(wrong_length());
        }
        // The version is read before the length is checked, so that a future version with
        // other fields is refused as such.
        let version = r.uint(Field::Top("version"))?;
        let expected_len = match version {
            VERSION_1 => AGGREGATE_FIELDS_V1,
            VERSION => AGGREGATE_FIELDS,
            _ => {
                return Err(AggregateError::UnsupportedVersion {
                    found: version,
                    supported: VERSION,
                });
            }
        };
        if len != expected_len {
            return Err(AggregateError::ArrayLength {
                offset,
                field: "aggregate".to_owned(),
                found: len,
                expected: format!("exactly {expected_len} in version {version}"),
            });
        }
        let signer = key_from_bytes("signer", &r.bytes::<32>(Field::Top("signer"))?)?;
        let level = r.text(MAX_LEVEL_LEN, Field::Top("level"))?.parse()?;
        let period = r.text(MAX_PERIOD_LEN, Field::Top("period"))?;
        let period: Period = period.parse().map_err(AggregateError::InvalidPeriod)?;
        let checkpoint_size = r.uint(Field::Top("checkpoint_size"))?;
        let checkpoint_root = r.bytes::<32>(Field::Top("checkpoint_root"))?;

        let (_, count) = r.array(Field::Top("contributions"))?;
        let mut contributions = with_capacity_for(count, r.remaining(), MIN_CONTRIBUTION_LEN);
        for n in 0..count {
            r.array_of(CONTRIBUTION_FIELDS, Field::Contribution(n, ""))?;
            let index = r.uint(Field::Contribution(n, "index"))?;
            let id = ReleaseId::from_bytes(r.bytes::<32>(Field::Contribution(n, "id"))?);
            let field = Field::Contribution(n, "signer");
            let signer = key_from_bytes(field, &r.bytes::<32>(field)?)?;
            contributions.push(ContributionRef { index, id, signer });
        }

        let (offset, count) = r.array(Field::Top("cells"))?;
        let max = max_cells();
        if count > max {
            return Err(AggregateError::ArrayLength {
                offset,
                field: "cells".to_owned(),
                found: count,
                expected: format!("0 to {max}"),
            });
        }
        let mut cells = Vec::with_capacity(count);
        for n in 0..count {
            r.array_of(CELL_FIELDS, Field::Cell(n, ""))?;
            let code = r.text(MAX_CODE_LEN, Field::Cell(n, "indicator"))?;
            let indicator =
                Indicator::from_code(code).ok_or_else(|| AggregateError::UnknownIndicator {
                    cell: n,
                    value: excerpt(code),
                })?;
            let category = r
                .opt_text(MAX_CODE_LEN, Field::Cell(n, "category"))?
                .map(str::to_owned);
            let sum = r.int(Field::Cell(n, "sum"))?;
            let variance = r.f64(Field::Cell(n, "variance"))?;
            let ci95_half_width = r.f64(Field::Cell(n, "ci95_half_width"))?;
            cells.push(AggregateCell {
                indicator,
                category,
                sum,
                variance,
                ci95_half_width,
            });
        }
        let contributed = Self::decode_keys(r, CONTRIBUTED)?;
        let missing = Self::decode_keys(r, MISSING)?;
        let created_at = r.uint(Field::Top("created_at"))?;
        let (supersedes, structures) = if version == VERSION {
            let supersedes = if r.null() {
                None
            } else {
                r.array_of(SUPERSEDES_FIELDS, Field::Top("supersedes"))?;
                let id = AggregateId(r.bytes::<32>(Field::Top("supersedes.id"))?);
                let (offset, count) = r.array(Field::Top("supersedes.consistency"))?;
                if count > MAX_CONSISTENCY_PROOF_LEN {
                    return Err(AggregateError::ArrayLength {
                        offset,
                        field: "supersedes.consistency".to_owned(),
                        found: count,
                        expected: format!("0 to {MAX_CONSISTENCY_PROOF_LEN}"),
                    });
                }
                let mut consistency = Vec::with_capacity(count);
                for n in 0..count {
                    consistency.push(r.bytes::<32>(Field::Key("supersedes.consistency", n))?);
                }
                Some(Supersedes { id, consistency })
            };
            (supersedes, Some(r.uint(Field::Top("structures"))?))
        } else {
            (None, None)
        };
        Ok(Self {
            signer,
            level,
            period,
            checkpoint_size,
            checkpoint_root,
            contributions,
            cells,
            contributed,
            missing,
            created_at,
            supersedes,
            structures,
        })
    }
}

/// The id of an aggregate: SHA-256 of `SIGNING_DOMAIN ‖ canonical aggregate`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AggregateId([u8; 32]);

impl AggregateId {
    fn of_canonical(canonical: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(SIGNING_DOMAIN);
        hasher.update(canonical);
        Self(hasher.finalize().into())
    }

    /// The id with these 32 bytes, e.g. read back from a store.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The same 32 bytes as a [`ContributionRef::id`], for a national aggregate that sums this
    /// hub aggregate (and for the leaf of the national contributions log).
    pub fn as_contribution_id(&self) -> ReleaseId {
        ReleaseId::from_bytes(self.0)
    }
}

impl fmt::Display for AggregateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for AggregateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AggregateId({self})")
    }
}

/// Reads 64 hexadecimal digits (either case), as `Display` writes them.
impl FromStr for AggregateId {
    type Err = AggregateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| AggregateError::InvalidHex {
            field: "aggregate_id".to_owned(),
            value: excerpt(s),
            expected: "64 hexadecimal digits (a 32-byte SHA-256 hash)",
        })?;
        Ok(Self(bytes))
    }
}

/// A valid aggregate with a signature, not necessarily verified: call
/// [`SignedAggregate::verify`], or read it with [`SignedAggregate::decode_and_verify`] or
/// [`SignedAggregate::from_json_and_verify`].
///
/// Its aggregate always passes [`Aggregate::validate`], so it always has a canonical encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedAggregate {
    aggregate: Aggregate,
    signature: Signature,
}

impl SignedAggregate {
    /// Validates `aggregate` and signs it with `key`, which must be the aggregate's signer.
    pub fn sign(aggregate: Aggregate, key: &SigningKey) -> Result<Self, AggregateError> {
        let canonical = aggregate.canonical_bytes()?;
        let public = key.verifying_key();
        if public != aggregate.signer {
            return Err(AggregateError::SignerMismatch {
                signer: hex::encode(aggregate.signer.as_bytes()),
                key: hex::encode(public.as_bytes()),
            });
        }
        let signature = key.sign(&signing_message(&canonical));
        Ok(Self {
            aggregate,
            signature,
        })
    }

    /// Puts an aggregate and a signature together after validating the aggregate; the signature
    /// is not checked (see [`SignedAggregate::verify`]).
    pub fn from_parts(aggregate: Aggregate, signature: Signature) -> Result<Self, AggregateError> {
        aggregate.validate()?;
        Ok(Self {
            aggregate,
            signature,
        })
    }

    /// The aggregate.
    pub fn aggregate(&self) -> &Aggregate {
        &self.aggregate
    }

    /// The signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The aggregate and the signature.
    pub fn into_parts(self) -> (Aggregate, Signature) {
        (self.aggregate, self.signature)
    }

    /// Checks the signature, with `verify_strict`, over the re-encoded aggregate.
    pub fn verify(&self) -> Result<(), AggregateError> {
        let a = &self.aggregate;
        let message = signing_message(&self.canonical_aggregate());
        a.signer
            .verify_strict(&message, &self.signature)
            .map_err(|_| AggregateError::BadSignature {
                signer: hex::encode(a.signer.as_bytes()),
                level: a.level,
                period: a.period,
                checkpoint_size: a.checkpoint_size,
            })
    }

    /// The canonical bytes of the aggregate alone, as signed after [`SIGNING_DOMAIN`].
    pub fn canonical_aggregate(&self) -> Vec<u8> {
        // The aggregate was validated when this value was made and cannot have changed since.
        self.aggregate.encode_unchecked()
    }

    /// The wire encoding: the CBOR array `[aggregate, signature]`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.array(2);
        self.aggregate.encode_into(&mut w);
        w.bytes(&self.signature.to_bytes());
        w.into_bytes()
    }

    /// Reads the wire encoding, refusing anything not canonical; the signature is not checked.
    pub fn decode(bytes: &[u8]) -> Result<Self, AggregateError> {
        let mut r = Reader::new(bytes);
        r.array_of(2, Field::Top("signed aggregate"))?;
        let start = r.position();
        let aggregate = Aggregate::decode_from(&mut r)?;
        let end = r.position();
        let signature = Signature::from_bytes(&r.bytes::<64>(Field::Top("signature"))?);
        r.finish("signed aggregate")?;
        // The reader's positions lie inside `bytes`, so the range is always there.
        aggregate.check_read(bytes.get(start..end).unwrap_or_default(), start)?;
        Ok(Self {
            aggregate,
            signature,
        })
    }

    /// Reads the wire encoding and checks the signature.
    pub fn decode_and_verify(bytes: &[u8]) -> Result<Self, AggregateError> {
        let signed = Self::decode(bytes)?;
        signed.verify()?;
        Ok(signed)
    }

    /// The aggregate id (the signature does not enter it).
    pub fn id(&self) -> AggregateId {
        AggregateId::of_canonical(&self.canonical_aggregate())
    }

    /// The JSON view, with signature, indented.
    pub fn to_json_pretty(&self) -> String {
        json::to_string_pretty(&json::AggregateJson::new(self))
    }

    /// Reads the JSON view of a signed aggregate; the signature is not checked.
    pub fn from_json(text: &str) -> Result<Self, AggregateError> {
        json::parse(text)?.into_signed()
    }

    /// Reads the JSON view of a signed aggregate and checks the signature.
    pub fn from_json_and_verify(text: &str) -> Result<Self, AggregateError> {
        let signed = Self::from_json(text)?;
        signed.verify()?;
        Ok(signed)
    }
}
