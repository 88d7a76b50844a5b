//! Receipts: the signed answer of a hub that accepted a contribution (layout in the parent
//! module's documentation).

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use super::cbor::{Reader, Writer};
use super::{
    CheckpointError, MAX_ORIGIN_LEN, SignedCheckpoint, VERSION, check_key, check_origin,
    check_reencoding, contribution_leaf_hash, json, key_from_bytes, read_versioned_header,
    signing_message,
};
use crate::merkle::Hash;
use crate::release::ReleaseId;

/// Prefixed to the canonical receipt bytes to form the message that is signed.
pub const RECEIPT_SIGNING_DOMAIN: &[u8] = b"maillage/receipt/v1\0";

const RECEIPT_FIELDS: usize = 7;

/// What a hub promises about one contribution it accepted.
///
/// Fields are public so a hub can fill them; [`Receipt::validate`] checks them, and every
/// encoding and signing function validates first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The log the contribution is in, e.g. [`super::contributions_origin`] of the hub.
    pub origin: String,
    /// The hub's key: it signs the receipt and the log's checkpoints.
    pub hub: VerifyingKey,
    /// The contribution.
    pub release_id: ReleaseId,
    /// Its leaf index in the log.
    pub index: u64,
    /// The size of the checkpoint that will cover it; greater than `index`.
    pub checkpoint_size: u64,
    /// When the hub accepted the contribution, in Unix seconds.
    pub timestamp: u64,
}

impl Receipt {
    /// Checks every field against the rules of the encoding.
    pub fn validate(&self) -> Result<(), CheckpointError> {
        check_origin(&self.origin)?;
        check_key("hub", &self.hub)?;
        if self.index >= self.checkpoint_size {
            return Err(CheckpointError::IndexBeyondCheckpoint {
                index: self.index,
                checkpoint_size: self.checkpoint_size,
            });
        }
        Ok(())
    }

    /// The canonical encoding, after [`Receipt::validate`].
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, CheckpointError> {
        self.validate()?;
        Ok(self.encode_unchecked())
    }

    /// Reads a canonical receipt, refusing any other encoding of it.
    pub fn decode(bytes: &[u8]) -> Result<Self, CheckpointError> {
        let mut r = Reader::new(bytes, "receipt");
        let receipt = Self::decode_from(&mut r)?;
        r.finish()?;
        receipt.validate()?;
        check_reencoding("receipt", &receipt.encode_unchecked(), bytes, 0)?;
        Ok(receipt)
    }

    /// Signs the receipt with `key`, which must be the secret key of [`Receipt::hub`].
    pub fn sign(self, key: &SigningKey) -> Result<SignedReceipt, CheckpointError> {
        SignedReceipt::sign(self, key)
    }

    /// The leaf hash of the contribution in the log.
    pub fn leaf_hash(&self) -> Hash {
        contribution_leaf_hash(&self.release_id)
    }

    fn summary(&self) -> String {
        format!(
            "origin {:?}, release {}, index {}, checkpoint size {}, timestamp {}",
            self.origin, self.release_id, self.index, self.checkpoint_size, self.timestamp
        )
    }

    fn encode_into(&self, w: &mut Writer) {
        w.array(RECEIPT_FIELDS);
        w.uint(VERSION);
        w.text(&self.origin);
        w.bytes(self.hub.as_bytes());
        w.bytes(self.release_id.as_bytes());
        w.uint(self.index);
        w.uint(self.checkpoint_size);
        w.uint(self.timestamp);
    }

    fn encode_unchecked(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.encode_into(&mut w);
        w.into_bytes()
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CheckpointError> {
        read_versioned_header(r, "receipt", RECEIPT_FIELDS)?;
        let origin = r.text(MAX_ORIGIN_LEN, "origin")?.to_owned();
        let hub = key_from_bytes("hub", &r.bytes::<32>("hub")?)?;
        let release_id = ReleaseId(r.bytes::<32>("release_id")?);
        let index = r.uint("index")?;
        let checkpoint_size = r.uint("checkpoint_size")?;
        let timestamp = r.uint("timestamp")?;
        Ok(Self {
            origin,
            hub,
            release_id,
            index,
            checkpoint_size,
            timestamp,
        })
    }
}

/// A valid receipt with a signature, not necessarily verified: call [`SignedReceipt::verify`],
/// or read it with [`SignedReceipt::decode_and_verify`] or [`SignedReceipt::from_json_and_verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedReceipt {
    receipt: Receipt,
    signature: Signature,
}

impl SignedReceipt {
    /// Validates `receipt` and signs it with `key`, which must be its hub's.
    pub fn sign(receipt: Receipt, key: &SigningKey) -> Result<Self, CheckpointError> {
        let canonical = receipt.canonical_bytes()?;
        let public = key.verifying_key();
        if public != receipt.hub {
            return Err(CheckpointError::SignerMismatch {
                what: "receipt",
                field: "hub",
                expected: hex::encode(receipt.hub.as_bytes()),
                key: hex::encode(public.as_bytes()),
            });
        }
        let signature = key.sign(&signing_message(RECEIPT_SIGNING_DOMAIN, &canonical));
        Ok(Self { receipt, signature })
    }

    /// Puts a receipt and a signature together after validating the receipt; the signature is
    /// not checked (see [`SignedReceipt::verify`]).
    pub fn from_parts(receipt: Receipt, signature: Signature) -> Result<Self, CheckpointError> {
        receipt.validate()?;
        Ok(Self { receipt, signature })
    }

    /// The receipt.
    pub fn receipt(&self) -> &Receipt {
        &self.receipt
    }

    /// The signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The receipt and the signature.
    pub fn into_parts(self) -> (Receipt, Signature) {
        (self.receipt, self.signature)
    }

    /// The canonical bytes of the receipt alone, as signed after [`RECEIPT_SIGNING_DOMAIN`].
    pub fn canonical_receipt(&self) -> Vec<u8> {
        // Validated when this value was made, and immutable since.
        self.receipt.encode_unchecked()
    }

    /// Checks the signature, with `verify_strict`, over the re-encoded receipt.
    pub fn verify(&self) -> Result<(), CheckpointError> {
        let message = signing_message(RECEIPT_SIGNING_DOMAIN, &self.canonical_receipt());
        self.receipt
            .hub
            .verify_strict(&message, &self.signature)
            .map_err(|_| CheckpointError::BadSignature {
                what: "receipt",
                signer: hex::encode(self.receipt.hub.as_bytes()),
                summary: self.receipt.summary(),
            })
    }

    /// The wire encoding: the CBOR array `[receipt, signature]`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.array(2);
        self.receipt.encode_into(&mut w);
        w.bytes(&self.signature.to_bytes());
        w.into_bytes()
    }

    /// Reads the wire encoding, refusing anything not canonical; the signature is not checked.
    pub fn decode(bytes: &[u8]) -> Result<Self, CheckpointError> {
        const WHAT: &str = "signed receipt";
        let mut r = Reader::new(bytes, WHAT);
        r.array_of(2, WHAT)?;
        let receipt = Receipt::decode_from(&mut r)?;
        let signature = Signature::from_bytes(&r.bytes::<64>("signature")?);
        r.finish()?;
        receipt.validate()?;
        let signed = Self { receipt, signature };
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
        json::to_string_pretty(&json::ReceiptJson::new(self))
    }

    /// Reads the JSON view; the signature is not checked.
    pub fn from_json(text: &str) -> Result<Self, CheckpointError> {
        json::parse::<json::ReceiptJson>(text, "receipt")?.into_signed()
    }

    /// Reads the JSON view and checks the signature.
    pub fn from_json_and_verify(text: &str) -> Result<Self, CheckpointError> {
        let signed = Self::from_json(text)?;
        signed.verify()?;
        Ok(signed)
    }

    /// Checks that the hub kept its promise as far as `checkpoint` shows: both signatures
    /// verify, the checkpoint is of the receipt's log (same origin, signed by the hub), and
    /// `proof` shows the contribution as leaf `index` of the checkpoint's tree.
    ///
    /// Whether the checkpoint came late (a size below `checkpoint_size` that already covers the
    /// leaf is fine; a size that does not cover it fails here) is for the caller to judge.
    pub fn check_included(
        &self,
        checkpoint: &SignedCheckpoint,
        proof: &[Hash],
    ) -> Result<(), CheckpointError> {
        self.verify()?;
        checkpoint.verify()?;
        let (r, c) = (&self.receipt, checkpoint.checkpoint());
        if r.hub != c.signer || r.origin != c.origin {
            return Err(CheckpointError::DifferentLogs {
                what: "the receipt and the checkpoint",
                first_origin: r.origin.clone(),
                first_signer: hex::encode(r.hub.as_bytes()),
                second_origin: c.origin.clone(),
                second_signer: hex::encode(c.signer.as_bytes()),
            });
        }
        checkpoint.verify_inclusion(&r.leaf_hash(), r.index, proof)
    }
}
