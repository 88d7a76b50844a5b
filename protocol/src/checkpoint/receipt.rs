//! Receipts: the answer of a hub that accepted a contribution, a signed checkpoint that already
//! covers it plus the leaf's index and its inclusion proof (layout in the parent module's
//! documentation).
//!
//! A hub accepts contributions in batches: it appends a batch, makes it durable, signs one
//! checkpoint of the grown log, and answers every contribution of the batch with that checkpoint,
//! its leaf index and its audit path. One signature serves the whole batch, and each receipt is
//! verifiable offline by anyone holding only the hub's key: the checkpoint's signature, then the
//! path from the contribution's leaf to the signed root.

use ed25519_dalek::{Signature, VerifyingKey};

use super::cbor::{Reader, Writer};
use super::{
    CheckpointError, RECEIPT_VERSION, SignedCheckpoint, check_reencoding, contribution_leaf_hash,
    json, read_versioned_header,
};
use crate::merkle::{self, Hash, MerkleError, MerkleLog};
use crate::release::ReleaseId;

const RECEIPT_FIELDS: usize = 5;

/// What a receipt states, read from its checkpoint and its leaf: the contribution `release_id`
/// is leaf `index` of the log `origin` of `hub`, covered by the hub's checkpoint of size
/// `checkpoint_size` made at `timestamp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The log the contribution is in (the checkpoint's origin).
    pub origin: String,
    /// The hub's key: it signed the checkpoint.
    pub hub: VerifyingKey,
    /// The contribution.
    pub release_id: ReleaseId,
    /// Its leaf index in the log.
    pub index: u64,
    /// The size of the signed checkpoint that covers it; greater than `index`.
    pub checkpoint_size: u64,
    /// When the checkpoint was signed, in Unix seconds.
    pub timestamp: u64,
}

/// A hub's signed checkpoint with one contribution's leaf index and inclusion proof in it, not
/// necessarily verified: call [`SignedReceipt::verify`], or read it with
/// [`SignedReceipt::decode_and_verify`] or [`SignedReceipt::from_json_and_verify`].
///
/// Made by [`SignedReceipt::new`] or [`SignedReceipt::issue`], which check that the index is in
/// the checkpoint and that the proof has the length the index and size call for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedReceipt {
    receipt: Receipt,
    checkpoint: SignedCheckpoint,
    proof: Vec<Hash>,
}

impl SignedReceipt {
    /// The receipt of `release_id` as leaf `index` of `checkpoint`, with `proof` its inclusion
    /// proof. Checks the index and the proof's length; the signature and the proof's hashes are
    /// checked by [`SignedReceipt::verify`].
    pub fn new(
        checkpoint: SignedCheckpoint,
        release_id: ReleaseId,
        index: u64,
        proof: Vec<Hash>,
    ) -> Result<Self, CheckpointError> {
        let c = checkpoint.checkpoint();
        let Some(expected) = merkle::inclusion_proof_len(index, c.tree_size) else {
            return Err(CheckpointError::IndexBeyondCheckpoint {
                index,
                checkpoint_size: c.tree_size,
            });
        };
        if proof.len() != expected {
            return Err(CheckpointError::NotIncluded {
                origin: c.origin.clone(),
                leaf_hash: contribution_leaf_hash(&release_id),
                index,
                tree_size: c.tree_size,
                reason: Box::new(MerkleError::InclusionProofLength {
                    index,
                    size: c.tree_size,
                    found: proof.len(),
                    expected,
                }),
            });
        }
        let receipt = Receipt {
            origin: c.origin.clone(),
            hub: c.signer,
            release_id,
            index,
            checkpoint_size: c.tree_size,
            timestamp: c.timestamp,
        };
        Ok(Self {
            receipt,
            checkpoint,
            proof,
        })
    }

    /// The receipt of leaf `index` of `log`, whose signed checkpoint `checkpoint` is (its size
    /// must not exceed the log's, and its root should be the log's at that size, which
    /// [`SignedReceipt::verify`] checks).
    pub fn issue(
        log: &MerkleLog,
        checkpoint: SignedCheckpoint,
        release_id: ReleaseId,
        index: u64,
    ) -> Result<Self, CheckpointError> {
        let size = checkpoint.checkpoint().tree_size;
        let proof =
            log.inclusion_proof(index, size)
                .map_err(|reason| CheckpointError::NotIncluded {
                    origin: checkpoint.checkpoint().origin.clone(),
                    leaf_hash: contribution_leaf_hash(&release_id),
                    index,
                    tree_size: size,
                    reason: Box::new(reason),
                })?;
        Self::new(checkpoint, release_id, index, proof)
    }

    /// What the receipt states.
    pub fn receipt(&self) -> &Receipt {
        &self.receipt
    }

    /// The hub's signed checkpoint that covers the contribution.
    pub fn checkpoint(&self) -> &SignedCheckpoint {
        &self.checkpoint
    }

    /// The inclusion proof of the contribution's leaf in the checkpoint's tree.
    pub fn proof(&self) -> &[Hash] {
        &self.proof
    }

    /// The checkpoint's signature, the only signature of a receipt.
    pub fn signature(&self) -> &Signature {
        self.checkpoint.signature()
    }

    /// The leaf hash of the contribution in the log.
    pub fn leaf_hash(&self) -> Hash {
        contribution_leaf_hash(&self.receipt.release_id)
    }

    /// The checkpoint, the contribution's id, its index and its proof.
    pub fn into_parts(self) -> (SignedCheckpoint, ReleaseId, u64, Vec<Hash>) {
        (
            self.checkpoint,
            self.receipt.release_id,
            self.receipt.index,
            self.proof,
        )
    }

    /// Checks the inclusion proof against the checkpoint's root, without the signature (for a
    /// verifier that has already verified this checkpoint, e.g. one shared by a batch).
    pub fn verify_inclusion(&self) -> Result<(), CheckpointError> {
        self.checkpoint
            .verify_inclusion(&self.leaf_hash(), self.receipt.index, &self.proof)
    }

    /// Checks the checkpoint's signature (`verify_strict`) and that the proof leads from the
    /// contribution's leaf to the signed root.
    pub fn verify(&self) -> Result<(), CheckpointError> {
        self.checkpoint.verify()?;
        self.verify_inclusion()
    }

    /// The wire encoding: the CBOR array `[2, signed checkpoint, release_id, index, proof]`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.array(RECEIPT_FIELDS);
        w.uint(RECEIPT_VERSION);
        self.checkpoint.encode_into(&mut w);
        w.bytes(self.receipt.release_id.as_bytes());
        w.uint(self.receipt.index);
        w.array(self.proof.len());
        for hash in &self.proof {
            w.bytes(hash);
        }
        w.into_bytes()
    }

    /// Reads the wire encoding, refusing anything not canonical; neither the signature nor the
    /// proof's hashes are checked.
    pub fn decode(bytes: &[u8]) -> Result<Self, CheckpointError> {
        const WHAT: &str = "signed receipt";
        let mut r = Reader::new(bytes, WHAT);
        read_versioned_header(&mut r, WHAT, RECEIPT_FIELDS, RECEIPT_VERSION)?;
        let checkpoint = SignedCheckpoint::decode_from(&mut r)?;
        let release_id = ReleaseId::from_bytes(r.bytes::<32>("release_id")?);
        let index = r.uint("index")?;
        let size = checkpoint.checkpoint().tree_size;
        let Some(expected) = merkle::inclusion_proof_len(index, size) else {
            return Err(CheckpointError::IndexBeyondCheckpoint {
                index,
                checkpoint_size: size,
            });
        };
        r.array_of(expected, "proof")?;
        let mut proof = Vec::with_capacity(expected);
        for _ in 0..expected {
            proof.push(r.bytes::<32>("proof")?);
        }
        r.finish()?;
        let signed = Self::new(checkpoint, release_id, index, proof)?;
        check_reencoding(WHAT, &signed.to_bytes(), bytes, 0)?;
        Ok(signed)
    }

    /// Reads the wire encoding and checks the signature and the proof.
    pub fn decode_and_verify(bytes: &[u8]) -> Result<Self, CheckpointError> {
        let signed = Self::decode(bytes)?;
        signed.verify()?;
        Ok(signed)
    }

    /// The JSON view, indented.
    pub fn to_json_pretty(&self) -> String {
        json::to_string_pretty(&json::ReceiptJson::new(self))
    }

    /// Reads the JSON view; neither the signature nor the proof's hashes are checked.
    pub fn from_json(text: &str) -> Result<Self, CheckpointError> {
        json::parse::<json::ReceiptJson>(text, "receipt")?.into_signed()
    }

    /// Reads the JSON view and checks the signature and the proof.
    pub fn from_json_and_verify(text: &str) -> Result<Self, CheckpointError> {
        let signed = Self::from_json(text)?;
        signed.verify()?;
        Ok(signed)
    }
}
