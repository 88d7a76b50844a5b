//! Signed statements about a hub's Merkle log: checkpoints (signed tree heads) and receipts.
//!
//! This module owns the two wire types a log's signer makes, their one canonical encoding, their
//! domain-separated ed25519 signatures and their JSON views, and the checks an auditor makes on
//! them: that two checkpoints of one log are consistent, or prove that the log forked, and that a
//! receipt's contribution is in the log. The tree, its proofs and their verification are
//! [`crate::merkle`]'s; this module does no I/O and keeps no log.
//!
//! # The contributions log
//!
//! A hub's contributions log is named by its origin, [`contributions_origin`]: the hub's public
//! key in hex, then `/contributions`. Its leaf data is the 32 bytes of a contribution's
//! [`ReleaseId`], so its leaf hash is [`contribution_leaf_hash`]. The id leaves the release's
//! signature out, so another valid signature of the same release is the same leaf.
//!
//! # Checkpoint, canonical encoding version 1
//!
//! A CBOR data item (RFC 8949), an array of 6 elements in this order:
//!
//! | # | field     | CBOR                   | accepted values |
//! |---|-----------|------------------------|-----------------|
//! | 0 | version   | unsigned integer       | `1` |
//! | 1 | origin    | text string            | 1 to [`MAX_ORIGIN_LEN`] bytes, each 0x21–0x7e (printable ASCII, no space) |
//! | 2 | tree_size | unsigned integer       | any `u64` |
//! | 3 | root      | byte string, 32 bytes  | the tree's root (RFC 9162 `MTH`); must be [`EMPTY_ROOT`] when `tree_size` is 0 |
//! | 4 | timestamp | unsigned integer       | Unix time in seconds |
//! | 5 | signer    | byte string, 32 bytes  | an ed25519 public key in canonical encoding, not of small order |
//!
//! `signature = Ed25519(key, "maillage/checkpoint/v1\0" ‖ canonical checkpoint)` (pure Ed25519,
//! verified with `verify_strict`). A signed checkpoint on the wire is the array
//! `[checkpoint, signature]`: `0x82`, the canonical checkpoint, `0x58 0x40` and 64 bytes.
//!
//! # Receipt, canonical encoding version 2
//!
//! What a hub answers when it accepts a contribution: the signed checkpoint of its log right
//! after the batch that appended the contribution, the contribution's leaf index and its
//! inclusion proof in that checkpoint's tree. A receipt carries no signature of its own: the
//! checkpoint's signature and the proof together show, offline and to anyone, that the hub's
//! signed log holds the contribution at that index, so one signature serves a whole batch.
//! An array of 5 elements:
//!
//! | # | field      | CBOR                                  | accepted values |
//! |---|------------|---------------------------------------|-----------------|
//! | 0 | version    | unsigned integer                      | `2` ([`RECEIPT_VERSION`]; version 1 was a separately signed promise) |
//! | 1 | checkpoint | a signed checkpoint, as on the wire   | the hub's checkpoint covering the leaf: `[checkpoint, signature]` |
//! | 2 | release_id | byte string, 32 bytes                 | the contribution's [`ReleaseId`] (the leaf data) |
//! | 3 | index      | unsigned integer                      | the leaf index, below the checkpoint's tree size |
//! | 4 | proof      | array of byte strings, 32 bytes each  | the inclusion proof (RFC 9162 audit path), exactly as many hashes as the index and size call for |
//!
//! Both encodings admit exactly one form: definite lengths, every integer and length in its
//! shortest form, no tags, maps, floats or simple values, nothing after the item. The decoders
//! refuse anything else, and re-encode what they read to check it. The domain tag keeps a
//! checkpoint signature from being a release or aggregate signature, or the reverse.
//!
//! # JSON views
//!
//! ```json
//! {"version": 1, "origin": "<64 hex digits>/contributions", "tree_size": 20000,
//!  "root": "<64 hex digits>", "timestamp": 1793491200, "signer": "<64 hex digits>",
//!  "signature": "<128 hex digits>"}
//! {"version": 2, "checkpoint": {<signed checkpoint as above>},
//!  "release_id": "<64 hex digits>", "index": 17, "proof": ["<64 hex digits>", ...]}
//! ```
//!
//! Unknown fields are refused; every field is required. The JSON is a view of the signed bytes,
//! not a second canonical form: whitespace, key order and hex case do not matter.

mod cbor;
mod json;
mod receipt;
#[cfg(test)]
mod tests;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::merkle::{self, EMPTY_ROOT, Hash, MerkleError};
use crate::release::ReleaseId;
use cbor::{Reader, Writer};

pub use receipt::{Receipt, SignedReceipt};

/// The version of the checkpoint encoding this build writes and reads.
pub const VERSION: u64 = 1;

/// The version of the receipt encoding this build writes and reads.
pub const RECEIPT_VERSION: u64 = 2;

/// Prefixed to the canonical checkpoint bytes to form the message that is signed.
pub const CHECKPOINT_SIGNING_DOMAIN: &[u8] = b"maillage/checkpoint/v1\0";

/// The longest accepted origin, in bytes.
pub const MAX_ORIGIN_LEN: usize = 256;

/// The name of a hub's contributions log, after its key in the origin.
pub const CONTRIBUTIONS_LOG: &str = "contributions";

const CHECKPOINT_FIELDS: usize = 6;
/// How much of a refused text value an error message quotes.
const EXCERPT_LEN: usize = 80;

/// The origin of `hub`'s contributions log: its public key in hex, `/contributions`.
pub fn contributions_origin(hub: &VerifyingKey) -> String {
    format!("{}/{CONTRIBUTIONS_LOG}", hex::encode(hub.as_bytes()))
}

/// The leaf hash of a contribution in a contributions log: the leaf data is the release id.
pub fn contribution_leaf_hash(id: &ReleaseId) -> Hash {
    merkle::leaf_hash(id.as_bytes())
}

/// Why a checkpoint or a receipt, its bytes, its JSON or its signature was refused, or why two
/// checkpoints do not fit together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The bytes end in the middle of an item.
    #[error("{what} bytes end at byte {offset}, inside {field}: expected {expected}")]
    Truncated {
        /// What was being read: `checkpoint`, `signed receipt`, ...
        what: &'static str,
        /// Where the input ended.
        offset: usize,
        /// The field being read.
        field: &'static str,
        /// What was being read.
        expected: &'static str,
    },
    /// Bytes follow the end of the item.
    #[error(
        "{count} trailing byte(s) from byte {offset} after the end of the {what}: nothing may follow it"
    )]
    TrailingBytes {
        /// What had ended.
        what: &'static str,
        /// Where the extra bytes start.
        offset: usize,
        /// How many there are.
        count: usize,
    },
    /// An item of the wrong type, an indefinite length or a reserved value.
    #[error("{what}, at byte {offset} ({field}): expected {expected}, found {found}")]
    UnexpectedItem {
        /// What was being read.
        what: &'static str,
        /// Where the item starts.
        offset: usize,
        /// The field being read.
        field: &'static str,
        /// What would be accepted.
        expected: &'static str,
        /// The initial byte found and what it means.
        found: String,
    },
    /// An integer or length written with more bytes than it needs.
    #[error(
        "{what}, at byte {offset} ({field}): {value} is written with a {width}-byte argument; the canonical encoding uses the shortest form"
    )]
    NonShortestHead {
        /// What was being read.
        what: &'static str,
        /// Where the item starts.
        offset: usize,
        /// The field being read.
        field: &'static str,
        /// The integer or length.
        value: u64,
        /// The argument width used.
        width: usize,
    },
    /// An array with the wrong number of elements.
    #[error(
        "{what}, at byte {offset} ({field}): an array of {found} elements, expected exactly {expected}"
    )]
    ArrayLength {
        /// What was being read.
        what: &'static str,
        /// Where the array starts.
        offset: usize,
        /// The field being read.
        field: &'static str,
        /// The length found.
        found: u64,
        /// The length accepted.
        expected: usize,
    },
    /// A byte string of the wrong length.
    #[error(
        "{what}, at byte {offset} ({field}): a byte string of {found} bytes, expected exactly {expected}"
    )]
    WrongLength {
        /// What was being read.
        what: &'static str,
        /// Where the string starts.
        offset: usize,
        /// The field being read.
        field: &'static str,
        /// The length found.
        found: u64,
        /// The length accepted.
        expected: usize,
    },
    /// A text string longer than the field allows.
    #[error(
        "{what}, at byte {offset} ({field}): a text string of {len} bytes, at most {max} accepted"
    )]
    TooLong {
        /// What was being read.
        what: &'static str,
        /// Where the string starts.
        offset: usize,
        /// The field being read.
        field: &'static str,
        /// The length found.
        len: u64,
        /// The most accepted.
        max: usize,
    },
    /// A text string that is not UTF-8.
    #[error("{what}, at byte {offset} ({field}): the text string is not valid UTF-8")]
    InvalidUtf8 {
        /// What was being read.
        what: &'static str,
        /// Where the string starts.
        offset: usize,
        /// The field being read.
        field: &'static str,
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
    #[error("{what} version {found} is not supported: this build reads version {supported}")]
    UnsupportedVersion {
        /// What was read.
        what: &'static str,
        /// The version found.
        found: u64,
        /// The version this build reads.
        supported: u64,
    },
    /// A key that is not a usable ed25519 public key.
    #[error("{field}: {value} is not accepted as an ed25519 public key: {reason}")]
    InvalidKey {
        /// `signer` or `hub`.
        field: &'static str,
        /// The key, in hex.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// An origin that is empty, too long or has characters outside printable ASCII.
    #[error(
        "origin: {value:?} is not accepted: expected 1 to {MAX_ORIGIN_LEN} bytes of printable ASCII without spaces (0x21-0x7e), e.g. \"<hub key in hex>/contributions\""
    )]
    InvalidOrigin {
        /// What was given (or its beginning).
        value: String,
    },
    /// A checkpoint of an empty tree with another root than the empty tree's.
    #[error(
        "root: a checkpoint of tree size 0 has the root of the empty tree, SHA-256(\"\") = {}, not {}",
        hex::encode(EMPTY_ROOT),
        hex::encode(.root)
    )]
    EmptyTreeRoot {
        /// The root given.
        root: Hash,
    },
    /// A receipt whose leaf index is not inside the checkpoint it promises.
    #[error(
        "index: leaf {index} cannot be in a checkpoint of size {checkpoint_size}: expected an index below checkpoint_size"
    )]
    IndexBeyondCheckpoint {
        /// The leaf index.
        index: u64,
        /// The promised checkpoint size.
        checkpoint_size: u64,
    },
    /// A hex field that does not decode.
    #[error("{field}: {value:?} is not accepted: expected {expected}")]
    InvalidHex {
        /// The JSON field.
        field: &'static str,
        /// What was given (or its beginning).
        value: String,
        /// What would be accepted.
        expected: &'static str,
    },
    /// Malformed JSON, or JSON not of the expected shape.
    #[error("JSON {what}: {message}")]
    Json {
        /// What was being read.
        what: &'static str,
        /// The line of the error (1-based), 0 if unknown.
        line: usize,
        /// The column of the error (1-based), 0 if unknown.
        column: usize,
        /// serde_json's description, with its position.
        message: String,
    },
    /// Signing with a key that is not the one the statement names.
    #[error("{field}: the signing key's public key {key} is not the {what}'s {field} {expected}")]
    SignerMismatch {
        /// What was being signed.
        what: &'static str,
        /// `signer` or `hub`.
        field: &'static str,
        /// The key the statement names, in hex.
        expected: String,
        /// The signing key's public key, in hex.
        key: String,
    },
    /// A signature that does not verify.
    #[error("signature: does not verify: it was not made by {signer} over this {what} ({summary})")]
    BadSignature {
        /// What was verified.
        what: &'static str,
        /// The key that should have signed, in hex.
        signer: String,
        /// The statement's main fields, to tell which one.
        summary: String,
    },
    /// Two checkpoints, or a receipt and a checkpoint, that are not about the same log.
    #[error(
        "{what} are not about the same log: the first is of origin {first_origin:?} signed by {first_signer}, the second of origin {second_origin:?} signed by {second_signer}"
    )]
    DifferentLogs {
        /// What was compared: `the two checkpoints` or `the receipt and the checkpoint`.
        what: &'static str,
        /// The first one's origin.
        first_origin: String,
        /// The first one's signer, in hex.
        first_signer: String,
        /// The second one's origin.
        second_origin: String,
        /// The second one's signer, in hex.
        second_signer: String,
    },
    /// Two signed checkpoints of one log and one size with different roots: proof that the log
    /// showed two different histories.
    #[error(
        "log {origin:?} signed by {signer} forked: two signed checkpoints of tree size {tree_size} have different roots {first_root} and {second_root}"
    )]
    Fork {
        /// The log's origin.
        origin: String,
        /// Its signer, in hex.
        signer: String,
        /// The size of both checkpoints.
        tree_size: u64,
        /// The first checkpoint's root, in hex.
        first_root: String,
        /// The second checkpoint's root, in hex.
        second_root: String,
    },
    /// Two checkpoints of one log whose consistency proof fails.
    #[error(
        "log {origin:?}: checkpoints of tree sizes {old_size} and {new_size} are not shown consistent: {reason}"
    )]
    Inconsistent {
        /// The log's origin.
        origin: String,
        /// The smaller size.
        old_size: u64,
        /// The larger size.
        new_size: u64,
        /// Why the proof failed (part of the message, so not also an error `source`).
        reason: Box<MerkleError>,
    },
    /// An inclusion proof of a leaf in a checkpoint that fails.
    #[error("log {origin:?}: leaf {index} ({leaf}) is not shown in the checkpoint of tree size {tree_size}: {reason}", leaf = hex::encode(.leaf_hash))]
    NotIncluded {
        /// The log's origin.
        origin: String,
        /// The leaf hash.
        leaf_hash: Hash,
        /// The leaf index.
        index: u64,
        /// The checkpoint's tree size.
        tree_size: u64,
        /// Why the proof failed (part of the message, so not also an error `source`).
        reason: Box<MerkleError>,
    },
}

/// The beginning of `s`, for quoting a refused value without quoting megabytes.
fn excerpt(s: &str) -> String {
    match s.char_indices().nth(EXCERPT_LEN) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

/// Whether 32 bytes are the one canonical encoding of the Edwards point they decode to (RFC 8032
/// §5.1.3): the y coordinate, the low 255 bits, is below p = 2^255 − 19, and the sign bit is not
/// set on a point whose x is 0 (y = 1 or y = p − 1, the only such points). Compared on the
/// bytes, with no field arithmetic: the same answer as decoding and re-encoding, for a fraction
/// of the cost.
pub(crate) fn is_canonical_point_encoding(bytes: &[u8; 32]) -> bool {
    const P_MINUS_1: [u8; 32] = {
        let mut p = [0xff; 32];
        p[0] = 0xec;
        p[31] = 0x7f;
        p
    };
    let mut y = *bytes;
    y[31] &= 0x7f;
    // y >= p: the bytes, little-endian, from 0xed ff … ff 7f upwards.
    let high_all_ones = y[1..31].iter().all(|&b| b == 0xff) && y[31] == 0x7f;
    if high_all_ones && y[0] >= 0xed {
        return false;
    }
    let sign = bytes[31] & 0x80 != 0;
    let mut one = [0u8; 32];
    one[0] = 1;
    !(sign && (y == one || y == P_MINUS_1))
}

/// Refuses keys in a non-canonical encoding or of small order (as releases do).
fn check_key(field: &'static str, key: &VerifyingKey) -> Result<(), CheckpointError> {
    let reason = if !is_canonical_point_encoding(key.as_bytes()) {
        "the point is not in its canonical encoding"
    } else if key.is_weak() {
        "the point has small order, so signatures by it prove nothing"
    } else {
        return Ok(());
    };
    Err(CheckpointError::InvalidKey {
        field,
        value: hex::encode(key.as_bytes()),
        reason,
    })
}

/// A key read from 32 bytes, checked.
fn key_from_bytes(field: &'static str, bytes: &[u8; 32]) -> Result<VerifyingKey, CheckpointError> {
    let key = VerifyingKey::from_bytes(bytes).map_err(|_| CheckpointError::InvalidKey {
        field,
        value: hex::encode(bytes),
        reason: "the bytes are not the encoding of a curve point",
    })?;
    check_key(field, &key)?;
    Ok(key)
}

fn check_origin(origin: &str) -> Result<(), CheckpointError> {
    let ok = (1..=MAX_ORIGIN_LEN).contains(&origin.len())
        && origin.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if ok {
        Ok(())
    } else {
        Err(CheckpointError::InvalidOrigin {
            value: excerpt(origin),
        })
    }
}

/// `domain ‖ canonical`.
fn signing_message(domain: &[u8], canonical: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(domain.len() + canonical.len());
    message.extend_from_slice(domain);
    message.extend_from_slice(canonical);
    message
}

/// Checks that `read` (found at byte `start` of the input) is exactly `again`, the re-encoding of
/// what was decoded from it.
fn check_reencoding(
    what: &'static str,
    again: &[u8],
    read: &[u8],
    start: usize,
) -> Result<(), CheckpointError> {
    if again == read {
        return Ok(());
    }
    let offset = start + again.iter().zip(read).take_while(|(a, b)| a == b).count();
    Err(CheckpointError::NotCanonical { what, offset })
}

/// Reads an array header of `fields` elements whose first element is the version, refusing
/// another version as such before the length (a later version may have other fields).
fn read_versioned_header(
    r: &mut Reader<'_>,
    what: &'static str,
    fields: usize,
    supported: u64,
) -> Result<(), CheckpointError> {
    let (offset, len) = r.array(what)?;
    let wrong_length = || CheckpointError::ArrayLength {
        what,
        offset,
        field: what,
        found: len,
        expected: fields,
    };
    if len == 0 {
        return Err(wrong_length());
    }
    let version = r.uint("version")?;
    if version != supported {
        return Err(CheckpointError::UnsupportedVersion {
            what,
            found: version,
            supported,
        });
    }
    if len != fields as u64 {
        return Err(wrong_length());
    }
    Ok(())
}

/// A signed tree head's content: the size and root of one log at one time.
///
/// Fields are public so a hub can fill them; [`Checkpoint::validate`] checks them, and every
/// encoding and signing function validates first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's name, e.g. [`contributions_origin`] of the hub.
    pub origin: String,
    /// How many leaves the tree has.
    pub tree_size: u64,
    /// The Merkle tree hash of those leaves.
    pub root: Hash,
    /// When the checkpoint was made, in Unix seconds.
    pub timestamp: u64,
    /// The key of the log's operator; the signature must be made by its secret key.
    pub signer: VerifyingKey,
}

impl Checkpoint {
    /// Checks every field against the rules of the encoding (see the module documentation).
    pub fn validate(&self) -> Result<(), CheckpointError> {
        check_origin(&self.origin)?;
        check_key("signer", &self.signer)?;
        if self.tree_size == 0 && self.root != EMPTY_ROOT {
            return Err(CheckpointError::EmptyTreeRoot { root: self.root });
        }
        Ok(())
    }

    /// The canonical encoding, after [`Checkpoint::validate`].
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, CheckpointError> {
        self.validate()?;
        Ok(self.encode_unchecked())
    }

    /// Reads a canonical checkpoint, refusing any other encoding of it.
    pub fn decode(bytes: &[u8]) -> Result<Self, CheckpointError> {
        let mut r = Reader::new(bytes, "checkpoint");
        let checkpoint = Self::decode_from(&mut r)?;
        r.finish()?;
        checkpoint.validate()?;
        check_reencoding("checkpoint", &checkpoint.encode_unchecked(), bytes, 0)?;
        Ok(checkpoint)
    }

    /// Signs the checkpoint with `key`, which must be the secret key of [`Checkpoint::signer`].
    pub fn sign(self, key: &SigningKey) -> Result<SignedCheckpoint, CheckpointError> {
        SignedCheckpoint::sign(self, key)
    }

    /// One line naming the checkpoint, for messages.
    fn summary(&self) -> String {
        format!(
            "origin {:?}, tree size {}, root {}, timestamp {}",
            self.origin,
            self.tree_size,
            hex::encode(self.root),
            self.timestamp
        )
    }

    fn encode_into(&self, w: &mut Writer) {
        w.array(CHECKPOINT_FIELDS);
        w.uint(VERSION);
        w.text(&self.origin);
        w.uint(self.tree_size);
        w.bytes(&self.root);
        w.uint(self.timestamp);
        w.bytes(self.signer.as_bytes());
    }

    fn encode_unchecked(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.encode_into(&mut w);
        w.into_bytes()
    }

    /// Reads the structure of a checkpoint; values are checked by [`Checkpoint::validate`] after.
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CheckpointError> {
        read_versioned_header(r, "checkpoint", CHECKPOINT_FIELDS, VERSION)?;
        let origin = r.text(MAX_ORIGIN_LEN, "origin")?.to_owned();
        let tree_size = r.uint("tree_size")?;
        let root = r.bytes::<32>("root")?;
        let timestamp = r.uint("timestamp")?;
        let signer = key_from_bytes("signer", &r.bytes::<32>("signer")?)?;
        Ok(Self {
            origin,
            tree_size,
            root,
            timestamp,
            signer,
        })
    }
}

/// A valid checkpoint with a signature, not necessarily verified: call
/// [`SignedCheckpoint::verify`], or read it with [`SignedCheckpoint::decode_and_verify`] or
/// [`SignedCheckpoint::from_json_and_verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    checkpoint: Checkpoint,
    signature: Signature,
}

impl SignedCheckpoint {
    /// Validates `checkpoint` and signs it with `key`, which must be its signer's.
    pub fn sign(checkpoint: Checkpoint, key: &SigningKey) -> Result<Self, CheckpointError> {
        let canonical = checkpoint.canonical_bytes()?;
        let public = key.verifying_key();
        if public != checkpoint.signer {
            return Err(CheckpointError::SignerMismatch {
                what: "checkpoint",
                field: "signer",
                expected: hex::encode(checkpoint.signer.as_bytes()),
                key: hex::encode(public.as_bytes()),
            });
        }
        let signature = key.sign(&signing_message(CHECKPOINT_SIGNING_DOMAIN, &canonical));
        Ok(Self {
            checkpoint,
            signature,
        })
    }

    /// Puts a checkpoint and a signature together after validating the checkpoint; the
    /// signature is not checked (see [`SignedCheckpoint::verify`]).
    pub fn from_parts(
        checkpoint: Checkpoint,
        signature: Signature,
    ) -> Result<Self, CheckpointError> {
        checkpoint.validate()?;
        Ok(Self {
            checkpoint,
            signature,
        })
    }

    /// The checkpoint.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The checkpoint and the signature.
    pub fn into_parts(self) -> (Checkpoint, Signature) {
        (self.checkpoint, self.signature)
    }

    /// The canonical bytes of the checkpoint alone, as signed after
    /// [`CHECKPOINT_SIGNING_DOMAIN`].
    pub fn canonical_checkpoint(&self) -> Vec<u8> {
        // Validated when this value was made, and immutable since.
        self.checkpoint.encode_unchecked()
    }

    /// Checks the signature, with `verify_strict`, over the re-encoded checkpoint.
    pub fn verify(&self) -> Result<(), CheckpointError> {
        let message = signing_message(CHECKPOINT_SIGNING_DOMAIN, &self.canonical_checkpoint());
        self.checkpoint
            .signer
            .verify_strict(&message, &self.signature)
            .map_err(|_| CheckpointError::BadSignature {
                what: "checkpoint",
                signer: hex::encode(self.checkpoint.signer.as_bytes()),
                summary: self.checkpoint.summary(),
            })
    }

    /// The wire encoding: the CBOR array `[checkpoint, signature]`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.encode_into(&mut w);
        w.into_bytes()
    }

    fn encode_into(&self, w: &mut Writer) {
        w.array(2);
        self.checkpoint.encode_into(w);
        w.bytes(&self.signature.to_bytes());
    }

    /// Reads `[checkpoint, signature]` and validates the checkpoint.
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CheckpointError> {
        r.array_of(2, "signed checkpoint")?;
        let checkpoint = Checkpoint::decode_from(r)?;
        let signature = Signature::from_bytes(&r.bytes::<64>("signature")?);
        checkpoint.validate()?;
        Ok(Self {
            checkpoint,
            signature,
        })
    }

    /// Reads the wire encoding, refusing anything not canonical; the signature is not checked.
    pub fn decode(bytes: &[u8]) -> Result<Self, CheckpointError> {
        const WHAT: &str = "signed checkpoint";
        let mut r = Reader::new(bytes, WHAT);
        let signed = Self::decode_from(&mut r)?;
        r.finish()?;
        check_reencoding(WHAT, &signed.to_bytes(), bytes, 0)?;
        Ok(signed)
    }

    /// Reads the wire encoding and checks the signature.
    pub fn decode_and_verify(bytes: &[u8]) -> Result<Self, CheckpointError> {
        let signed = Self::decode(bytes)?;
        signed.verify()?;
        Ok(signed)
    }

    /// The JSON view, indented.
    pub fn to_json_pretty(&self) -> String {
        json::to_string_pretty(&json::CheckpointJson::new(self))
    }

    /// Reads the JSON view; the signature is not checked.
    pub fn from_json(text: &str) -> Result<Self, CheckpointError> {
        json::parse::<json::CheckpointJson>(text, "checkpoint")?.into_signed()
    }

    /// Reads the JSON view and checks the signature.
    pub fn from_json_and_verify(text: &str) -> Result<Self, CheckpointError> {
        let signed = Self::from_json(text)?;
        signed.verify()?;
        Ok(signed)
    }

    /// Whether `self` and `other`, both verified, prove that their log forked: one signer, one
    /// origin, one tree size, two roots.
    pub fn forks_with(&self, other: &SignedCheckpoint) -> bool {
        let (a, b) = (&self.checkpoint, &other.checkpoint);
        a.signer == b.signer
            && a.origin == b.origin
            && a.tree_size == b.tree_size
            && a.root != b.root
    }

    /// Checks that `proof` shows the leaf with hash `leaf_hash` as leaf `index` of this
    /// checkpoint's tree (the signature is not checked here).
    pub fn verify_inclusion(
        &self,
        leaf_hash: &Hash,
        index: u64,
        proof: &[Hash],
    ) -> Result<(), CheckpointError> {
        let c = &self.checkpoint;
        merkle::verify_inclusion(leaf_hash, index, c.tree_size, proof, &c.root).map_err(|reason| {
            CheckpointError::NotIncluded {
                origin: c.origin.clone(),
                leaf_hash: *leaf_hash,
                index,
                tree_size: c.tree_size,
                reason: Box::new(reason),
            }
        })
    }

    fn is_same_log(&self, other: &Self) -> Result<(), CheckpointError> {
        let (a, b) = (&self.checkpoint, &other.checkpoint);
        if a.signer == b.signer && a.origin == b.origin {
            return Ok(());
        }
        Err(CheckpointError::DifferentLogs {
            what: "the two checkpoints",
            first_origin: a.origin.clone(),
            first_signer: hex::encode(a.signer.as_bytes()),
            second_origin: b.origin.clone(),
            second_signer: hex::encode(b.signer.as_bytes()),
        })
    }
}

/// Checks two signed checkpoints of one log against each other, in either order: verifies both
/// signatures, then
/// - same tree size: the roots must be equal, else the log forked ([`CheckpointError::Fork`],
///   which the two checkpoints prove to anyone); `proof` must be empty;
/// - different sizes: `proof` must be the consistency proof from the smaller to the larger
///   ([`CheckpointError::Inconsistent`] if not: the log failed to show it only appended, which
///   is suspicious but, unlike a fork, proves nothing by itself).
pub fn check_consistency(
    first: &SignedCheckpoint,
    second: &SignedCheckpoint,
    proof: &[Hash],
) -> Result<(), CheckpointError> {
    first.verify()?;
    second.verify()?;
    first.is_same_log(second)?;
    let (a, b) = (&first.checkpoint, &second.checkpoint);
    if first.forks_with(second) {
        return Err(CheckpointError::Fork {
            origin: a.origin.clone(),
            signer: hex::encode(a.signer.as_bytes()),
            tree_size: a.tree_size,
            first_root: hex::encode(a.root),
            second_root: hex::encode(b.root),
        });
    }
    let (old, new) = if a.tree_size <= b.tree_size {
        (a, b)
    } else {
        (b, a)
    };
    merkle::verify_consistency(old.tree_size, new.tree_size, &old.root, &new.root, proof).map_err(
        |reason| CheckpointError::Inconsistent {
            origin: a.origin.clone(),
            old_size: old.tree_size,
            new_size: new.tree_size,
            reason: Box::new(reason),
        },
    )
}
