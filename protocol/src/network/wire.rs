//! The messages of the request-response protocol [`super::REQUEST_PROTOCOL`].
//!
//! They travel as CBOR (the `cbor` codec of libp2p's request-response, which uses cbor4ii) and
//! carry the signed protocol objects as their own canonical bytes ([`crate::SignedRelease::to_bytes`]
//! and friends): the envelope is only transport, the bytes inside are what is signed, logged and
//! verified, so a peer never re-encodes what it relays. Byte strings are CBOR byte strings, not
//! arrays of integers (see [`bytes`] and [`hashes`]).
//!
//! Nothing here is trusted: a receiver decodes the inner bytes with the `decode_and_verify`
//! functions of the protocol types and answers [`Response::Refused`] with the reason when they
//! fail.

use serde::{Deserialize, Serialize};

/// A request from one peer to another (a member to its hub, a hub to the national node, anyone
/// to a node that answers queries or serves its log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// A member submits its release for the period: the wire bytes of a
    /// [`crate::SignedRelease`]. Answered by [`Response::Receipt`] or [`Response::Refused`].
    SubmitRelease {
        /// [`crate::SignedRelease::to_bytes`].
        #[serde(with = "bytes")]
        release: Vec<u8>,
    },
    /// A hub submits its aggregate to the national node: the wire bytes of a
    /// [`crate::SignedAggregate`]. Answered by [`Response::Receipt`] or [`Response::Refused`].
    SubmitAggregate {
        /// [`crate::SignedAggregate::to_bytes`].
        #[serde(with = "bytes")]
        aggregate: Vec<u8>,
    },
    /// Published totals of one indicator for one period. Answered by [`Response::Totals`].
    Query {
        /// An indicator code of the catalogue, e.g. `accompagnements`.
        indicator: String,
        /// A period, `YYYY-MM`.
        period: String,
        /// `None` for the whole of what the node covers, `Some("region")` or
        /// `Some("departement")` for one row per territory.
        by: Option<String>,
    },
    /// The node's latest signed checkpoint of its contributions log, or the one of the given
    /// size. Answered by [`Response::Checkpoint`].
    FetchCheckpoint {
        /// The log size wanted; `None` for the latest.
        size: Option<u64>,
    },
    /// One contribution of the log and its receipt. Answered by [`Response::Contribution`].
    FetchContribution {
        /// The leaf index.
        index: u64,
    },
    /// The inclusion proof of leaf `index` in the log of `size` leaves. Answered by
    /// [`Response::Proof`].
    FetchProof {
        /// The leaf index.
        index: u64,
        /// The log size the proof is against; greater than `index`.
        size: u64,
    },
    /// One round of Automerge's sync protocol on the policy document: the requester's next
    /// sync message (`None` when it has nothing to send but wants the peer's). Answered by
    /// [`Response::PolicySync`] or [`Response::Refused`]. Rounds go on until neither side has
    /// anything to send.
    PolicySync {
        /// An encoded `automerge::sync::Message`, at most
        /// [`super::MAX_POLICY_SYNC_MESSAGE`] bytes.
        #[serde(with = "opt_bytes")]
        message: Option<Vec<u8>>,
    },
    /// The adoption records after sequence `after` (what a peer that adopted up to `after`
    /// lacks). Answered by [`Response::PolicyAdoptions`].
    FetchAdoptions {
        /// The last adoption the requester holds (0 for none).
        after: u64,
    },
}

impl Request {
    /// The variant's name, for logs and refusals (never the payload).
    pub fn kind(&self) -> &'static str {
        match self {
            Request::SubmitRelease { .. } => "submit_release",
            Request::SubmitAggregate { .. } => "submit_aggregate",
            Request::Query { .. } => "query",
            Request::FetchCheckpoint { .. } => "fetch_checkpoint",
            Request::FetchContribution { .. } => "fetch_contribution",
            Request::FetchProof { .. } => "fetch_proof",
            Request::PolicySync { .. } => "policy_sync",
            Request::FetchAdoptions { .. } => "fetch_adoptions",
        }
    }
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// The submission is in the log: the wire bytes of a [`crate::SignedReceipt`].
    Receipt {
        /// [`crate::SignedReceipt::to_bytes`].
        #[serde(with = "bytes")]
        receipt: Vec<u8>,
    },
    /// The request was understood and declined: not a member, bad signature, wrong period,
    /// rate limited... `reason` names what is wrong and what would be accepted.
    Refused {
        /// For a human; never parsed.
        reason: String,
    },
    /// The answer to [`Request::Query`].
    Totals {
        /// The published figures.
        totals: Totals,
    },
    /// A signed checkpoint: the wire bytes of a [`crate::SignedCheckpoint`].
    Checkpoint {
        /// [`crate::SignedCheckpoint::to_bytes`].
        #[serde(with = "bytes")]
        checkpoint: Vec<u8>,
    },
    /// A contribution of the log with its receipt.
    Contribution {
        /// [`crate::SignedRelease::to_bytes`] (or, in the national log,
        /// [`crate::SignedAggregate::to_bytes`]).
        #[serde(with = "bytes")]
        release: Vec<u8>,
        /// [`crate::SignedReceipt::to_bytes`].
        #[serde(with = "bytes")]
        receipt: Vec<u8>,
    },
    /// An inclusion proof, from the leaf up (see [`crate::verify_inclusion`]).
    Proof {
        /// The sibling hashes.
        #[serde(with = "hashes")]
        hashes: Vec<[u8; 32]>,
    },
    /// The answer to [`Request::PolicySync`]: the responder's next sync message, `None` when it
    /// has nothing to send.
    PolicySync {
        /// An encoded `automerge::sync::Message`.
        #[serde(with = "opt_bytes")]
        message: Option<Vec<u8>>,
    },
    /// The answer to [`Request::FetchAdoptions`]: adoption records (JSON bytes of
    /// `maillage_policy::AdoptionRecord`), in chain order, at most
    /// [`super::MAX_ADOPTIONS_PER_RESPONSE`].
    PolicyAdoptions {
        /// The records.
        records: Vec<ByteString>,
    },
    /// The node failed to answer a request it accepted (storage error, shutting down...).
    Error {
        /// For a human; never parsed.
        message: String,
    },
}

/// Published totals of one indicator for one period, as answered to [`Request::Query`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// The indicator code, as asked.
    pub indicator: String,
    /// The period, `YYYY-MM`, as asked.
    pub period: String,
    /// The breakdown, as asked.
    pub by: Option<String>,
    /// One row per territory and category (one territory when `by` is `None`).
    pub rows: Vec<TotalsRow>,
}

/// One territory's total.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TotalsRow {
    /// The territory: `CODE Name` of a région or département (COG), or the node's own scope
    /// for an overall total.
    pub territory: String,
    /// The indicator's category (`None` for a single count).
    #[serde(default)]
    pub category: Option<String>,
    /// The noisy total.
    pub estimate: f64,
    /// The variance of its noise (so that totals can be combined further).
    #[serde(default)]
    pub variance: f64,
    /// Lower bound of the 95% interval.
    pub ci95_low: f64,
    /// Upper bound of the 95% interval.
    pub ci95_high: f64,
    /// How many releases the total sums.
    pub contributors: u64,
    /// How many members the territory has in the registry (contributors ≤ members).
    pub members: u64,
}

/// One byte string inside a list (a CBOR byte string on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteString(#[serde(with = "bytes")] pub Vec<u8>);

/// `Option<Vec<u8>>` as a CBOR byte string or null.
pub(crate) mod opt_bytes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(crate) fn serialize<S: Serializer>(
        value: &Option<Vec<u8>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        value
            .as_ref()
            .map(|v| super::ByteString(v.clone()))
            .serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<super::ByteString>::deserialize(d)?.map(|b| b.0))
    }
}

/// `Vec<u8>` as a CBOR byte string (serde's default is an array of integers, up to twice the
/// size on the wire).
pub(crate) mod bytes {
    use std::fmt;

    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(value: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(value)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        // Self-describing formats without byte strings (JSON) write an array of integers.
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            // Never trust a length announced by the peer for an allocation.
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

/// `Vec<[u8; 32]>` as an array of 32-byte CBOR byte strings.
pub(crate) mod hashes {
    use std::fmt;

    use serde::de::{Error, SeqAccess, Visitor};
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    struct Hash([u8; 32]);

    impl Serialize for Hash {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }

    impl<'de> Deserialize<'de> for Hash {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            super::bytes::deserialize(d)?
                .try_into()
                .map(Hash)
                .map_err(|v: Vec<u8>| D::Error::invalid_length(v.len(), &"a 32-byte hash"))
        }
    }

    pub(crate) fn serialize<S: Serializer>(value: &[[u8; 32]], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(value.len()))?;
        for h in value {
            seq.serialize_element(&Hash(*h))?;
        }
        seq.end()
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[u8; 32]>, D::Error> {
        d.deserialize_seq(HashesVisitor)
    }

    struct HashesVisitor;

    impl<'de> Visitor<'de> for HashesVisitor {
        type Value = Vec<[u8; 32]>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array of 32-byte hashes")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            // A proof has at most 64 hashes per level walk; the bound is only a capacity hint.
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(128));
            while let Some(Hash(h)) = seq.next_element()? {
                out.push(h);
            }
            Ok(out)
        }
    }
}
