//! The JSON views of signed checkpoints and receipts (layout in the parent module's
//! documentation).
//!
//! Parsing goes through a plain serde shape that refuses unknown fields, then through the same
//! validation as the canonical decoders, so an accepted JSON value has exactly one canonical
//! encoding and its signature verifies if the bytes' did.

use ed25519_dalek::Signature;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{
    Checkpoint, CheckpointError, RECEIPT_VERSION, SignedCheckpoint, SignedReceipt, VERSION,
    excerpt, key_from_bytes,
};
use crate::release::ReleaseId;

const KEY: &str = "64 hexadecimal digits (a 32-byte ed25519 public key)";
const HASH: &str = "64 hexadecimal digits (a 32-byte SHA-256 hash)";
const SIGNATURE: &str = "128 hexadecimal digits (a 64-byte ed25519 signature)";

/// Decodes exactly `N` bytes of hex.
fn from_hex<const N: usize>(
    field: &'static str,
    value: &str,
    expected: &'static str,
) -> Result<[u8; N], CheckpointError> {
    let mut out = [0; N];
    hex::decode_to_slice(value, &mut out).map_err(|_| CheckpointError::InvalidHex {
        field,
        value: excerpt(value),
        expected,
    })?;
    Ok(out)
}

fn check_version(what: &'static str, version: u64) -> Result<(), CheckpointError> {
    if version == VERSION {
        Ok(())
    } else {
        Err(CheckpointError::UnsupportedVersion {
            what,
            found: version,
            supported: VERSION,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CheckpointJson {
    version: u64,
    origin: String,
    tree_size: u64,
    root: String,
    timestamp: u64,
    signer: String,
    signature: String,
}

impl CheckpointJson {
    pub(super) fn new(signed: &SignedCheckpoint) -> Self {
        let c = signed.checkpoint();
        Self {
            version: VERSION,
            origin: c.origin.clone(),
            tree_size: c.tree_size,
            root: hex::encode(c.root),
            timestamp: c.timestamp,
            signer: hex::encode(c.signer.as_bytes()),
            signature: hex::encode(signed.signature().to_bytes()),
        }
    }

    /// The validated checkpoint with its signature (not verified).
    pub(super) fn into_signed(self) -> Result<SignedCheckpoint, CheckpointError> {
        check_version("checkpoint", self.version)?;
        let checkpoint = Checkpoint {
            origin: self.origin,
            tree_size: self.tree_size,
            root: from_hex("root", &self.root, HASH)?,
            timestamp: self.timestamp,
            signer: key_from_bytes("signer", &from_hex("signer", &self.signer, KEY)?)?,
        };
        let signature = Signature::from_bytes(&from_hex("signature", &self.signature, SIGNATURE)?);
        SignedCheckpoint::from_parts(checkpoint, signature)
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReceiptJson {
    version: u64,
    checkpoint: CheckpointJson,
    release_id: String,
    index: u64,
    proof: Vec<String>,
}

impl ReceiptJson {
    pub(super) fn new(signed: &SignedReceipt) -> Self {
        let r = signed.receipt();
        Self {
            version: RECEIPT_VERSION,
            checkpoint: CheckpointJson::new(signed.checkpoint()),
            release_id: hex::encode(r.release_id.as_bytes()),
            index: r.index,
            proof: signed.proof().iter().map(hex::encode).collect(),
        }
    }

    /// The receipt (index and proof length checked; signature and proof not verified).
    pub(super) fn into_signed(self) -> Result<SignedReceipt, CheckpointError> {
        if self.version != RECEIPT_VERSION {
            return Err(CheckpointError::UnsupportedVersion {
                what: "receipt",
                found: self.version,
                supported: RECEIPT_VERSION,
            });
        }
        let checkpoint = self.checkpoint.into_signed()?;
        let release_id = ReleaseId(from_hex("release_id", &self.release_id, HASH)?);
        let proof = self
            .proof
            .iter()
            .map(|h| from_hex("proof", h, HASH))
            .collect::<Result<Vec<_>, _>>()?;
        SignedReceipt::new(checkpoint, release_id, self.index, proof)
    }
}

pub(super) fn parse<T: DeserializeOwned>(
    text: &str,
    what: &'static str,
) -> Result<T, CheckpointError> {
    serde_json::from_str(text).map_err(|e| CheckpointError::Json {
        what,
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })
}

pub(super) fn to_string_pretty<T: Serialize>(view: &T) -> String {
    // unwrap safety: the views hold only strings and unsigned integers, which serde_json always
    // serializes.
    #[allow(clippy::unwrap_used)]
    serde_json::to_string_pretty(view).unwrap()
}

/// Serialized as the JSON view.
impl Serialize for SignedCheckpoint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        CheckpointJson::new(self).serialize(serializer)
    }
}

/// Read from the JSON view, validated; the signature is not checked.
impl<'de> Deserialize<'de> for SignedCheckpoint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        CheckpointJson::deserialize(deserializer)?
            .into_signed()
            .map_err(serde::de::Error::custom)
    }
}

/// Serialized as the JSON view.
impl Serialize for SignedReceipt {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ReceiptJson::new(self).serialize(serializer)
    }
}

/// Read from the JSON view, validated; the signature is not checked.
impl<'de> Deserialize<'de> for SignedReceipt {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        ReceiptJson::deserialize(deserializer)?
            .into_signed()
            .map_err(serde::de::Error::custom)
    }
}
