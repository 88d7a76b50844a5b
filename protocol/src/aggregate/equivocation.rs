//! Proof that a node equivocated: two different signed releases from one signer for one period.
//!
//! A node publishes one release per period; a retry resends the same stored release, whose
//! [`ReleaseId`] does not change (it leaves the signature out). Two verified releases with one
//! signer and one period but different ids therefore prove, to anyone and with no other
//! context, that the node signed two different sets of figures, e.g. to show each hub
//! something else or to spend its privacy budget twice.
//!
//! The proof is the two releases, ordered by id (the smaller first), so that one equivocation
//! has one proof. Its JSON view is `{"first": <signed release JSON>, "second": <signed release
//! JSON>}`; unknown fields are refused, and reading it orders the two again.

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Deserializer, Serialize};

use crate::period::Period;
use crate::release::{ReleaseError, ReleaseId, SignedRelease};

/// Why two releases are not a proof of equivocation, or the proof's JSON was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EquivocationError {
    /// Both are the same release (a retry, or another signature of the same bytes).
    #[error(
        "the two releases are one release (id {id}): resending or re-signing a release is not equivocation; a proof needs two different releases"
    )]
    SameRelease {
        /// Their common id.
        id: ReleaseId,
    },
    /// The releases have different signers.
    #[error(
        "the releases are signed by different keys, {first} and {second}: equivocation is one signer signing two releases"
    )]
    DifferentSigners {
        /// The first release's signer, in hex.
        first: String,
        /// The second release's signer, in hex.
        second: String,
    },
    /// The releases are for different periods.
    #[error(
        "the releases of {signer} are for different periods, {first} and {second}: equivocation is two releases for one period"
    )]
    DifferentPeriods {
        /// The signer, in hex.
        signer: String,
        /// The first release's period.
        first: Period,
        /// The second release's period.
        second: Period,
    },
    /// One of the releases does not verify.
    #[error("{which} release: {error}")]
    InvalidRelease {
        /// `first` or `second`.
        which: &'static str,
        /// Why it was refused.
        error: ReleaseError,
    },
    /// Malformed JSON, or JSON not of the proof's shape (including an invalid release in it).
    #[error("JSON equivocation proof: {message}")]
    Json {
        /// The line of the error (1-based), 0 if unknown.
        line: usize,
        /// The column of the error (1-based), 0 if unknown.
        column: usize,
        /// serde_json's description, with its position.
        message: String,
    },
}

/// Two signed releases of one signer for one period with different ids, the smaller id first.
///
/// Made by [`EquivocationProof::new`], which checks everything but the signatures; call
/// [`EquivocationProof::verify`] before acting on a proof from elsewhere.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EquivocationProof {
    first: SignedRelease,
    second: SignedRelease,
}

impl EquivocationProof {
    /// The proof made of `a` and `b`, in either order: checks that they have one signer, one
    /// period and different ids, and orders them by id. Signatures are not checked here.
    pub fn new(a: SignedRelease, b: SignedRelease) -> Result<Self, EquivocationError> {
        let (ra, rb) = (a.release(), b.release());
        if ra.signer != rb.signer {
            return Err(EquivocationError::DifferentSigners {
                first: hex::encode(ra.signer.as_bytes()),
                second: hex::encode(rb.signer.as_bytes()),
            });
        }
        if ra.period != rb.period {
            return Err(EquivocationError::DifferentPeriods {
                signer: hex::encode(ra.signer.as_bytes()),
                first: ra.period,
                second: rb.period,
            });
        }
        let (ida, idb) = (a.id(), b.id());
        if ida == idb {
            return Err(EquivocationError::SameRelease { id: ida });
        }
        let (first, second) = if ida < idb { (a, b) } else { (b, a) };
        Ok(Self { first, second })
    }

    /// Checks both signatures (the rest was checked when the proof was made): on success, the
    /// proof shows that [`EquivocationProof::signer`] equivocated.
    pub fn verify(&self) -> Result<(), EquivocationError> {
        for (which, release) in [("first", &self.first), ("second", &self.second)] {
            release
                .verify()
                .map_err(|error| EquivocationError::InvalidRelease { which, error })?;
        }
        // Guaranteed by `new`, the only way to make a proof; checked again since it is cheap and
        // is what the proof claims.
        if self.first.equivocates_with(&self.second) {
            Ok(())
        } else {
            Err(EquivocationError::SameRelease {
                id: self.first.id(),
            })
        }
    }

    /// The node that equivocated.
    pub fn signer(&self) -> &VerifyingKey {
        &self.first.release().signer
    }

    /// The period it signed two releases for.
    pub fn period(&self) -> Period {
        self.first.release().period
    }

    /// The release with the smaller id.
    pub fn first(&self) -> &SignedRelease {
        &self.first
    }

    /// The release with the larger id.
    pub fn second(&self) -> &SignedRelease {
        &self.second
    }

    /// The two releases, smaller id first.
    pub fn into_parts(self) -> (SignedRelease, SignedRelease) {
        (self.first, self.second)
    }

    /// The JSON view, indented.
    pub fn to_json_pretty(&self) -> String {
        // unwrap safety: the proof holds two signed releases, whose JSON views always serialize.
        #[allow(clippy::unwrap_used)]
        serde_json::to_string_pretty(self).unwrap()
    }

    /// Reads the JSON view; the signatures are not checked.
    pub fn from_json(text: &str) -> Result<Self, EquivocationError> {
        serde_json::from_str(text).map_err(|e| EquivocationError::Json {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })
    }

    /// Reads the JSON view and checks both signatures.
    pub fn from_json_and_verify(text: &str) -> Result<Self, EquivocationError> {
        let proof = Self::from_json(text)?;
        proof.verify()?;
        Ok(proof)
    }
}

/// The proof's JSON shape before its checks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProofJson {
    first: SignedRelease,
    second: SignedRelease,
}

/// Read from the JSON view through [`EquivocationProof::new`] (so ordered and checked); the
/// signatures are not checked.
impl<'de> Deserialize<'de> for EquivocationProof {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ProofJson { first, second } = ProofJson::deserialize(deserializer)?;
        Self::new(first, second).map_err(serde::de::Error::custom)
    }
}
