//! The JSON view of signed aggregates (layout in the parent module's documentation).
//!
//! Parsing goes through a plain serde shape that refuses unknown fields, then through the same
//! validation as the canonical decoder, so an accepted JSON aggregate has exactly one canonical
//! encoding and its signature verifies if the bytes' did.

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{
    Aggregate, AggregateCell, AggregateError, AggregateId, CONTRIBUTED, ContributionRef, MISSING,
    SignedAggregate, Supersedes, VERSION, VERSION_1, excerpt, key_from_bytes,
};
use crate::indicator::Indicator;
use crate::release::ReleaseId;
use crate::vocab::Vocabulary;

const KEY: &str = "64 hexadecimal digits (a 32-byte ed25519 public key)";
const HASH: &str = "64 hexadecimal digits (a 32-byte SHA-256 hash)";
const SIGNATURE: &str = "128 hexadecimal digits (a 64-byte ed25519 signature)";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AggregateJson {
    version: u64,
    signer: String,
    level: String,
    period: String,
    checkpoint: CheckpointJson,
    contributions: Vec<ContributionJson>,
    cells: Vec<CellJson>,
    coverage: CoverageJson,
    created_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    supersedes: Option<SupersedesJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    structures: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SupersedesJson {
    id: String,
    consistency: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointJson {
    size: u64,
    root: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContributionJson {
    index: u64,
    id: String,
    signer: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CellJson {
    indicator: String,
    #[serde(default)]
    category: Option<String>,
    sum: i64,
    variance: f64,
    ci95_half_width: f64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CoverageJson {
    contributed: Vec<String>,
    missing: Vec<String>,
}

/// Decodes exactly `N` bytes of hex.
fn from_hex<const N: usize>(
    field: impl FnOnce() -> String,
    value: &str,
    expected: &'static str,
) -> Result<[u8; N], AggregateError> {
    let mut out = [0; N];
    hex::decode_to_slice(value, &mut out).map_err(|_| AggregateError::InvalidHex {
        field: field(),
        value: excerpt(value),
        expected,
    })?;
    Ok(out)
}

/// A key from its hex form; `field` names it in errors.
fn key(field: &dyn Fn() -> String, value: &str) -> Result<VerifyingKey, AggregateError> {
    key_from_bytes(field(), &from_hex(field, value, KEY)?)
}

fn keys(list: &'static str, values: &[String]) -> Result<Vec<VerifyingKey>, AggregateError> {
    values
        .iter()
        .enumerate()
        .map(|(n, v)| key(&|| format!("{list}[{n}]"), v))
        .collect()
}

fn hex_keys(keys: &[VerifyingKey]) -> Vec<String> {
    keys.iter().map(|k| hex::encode(k.as_bytes())).collect()
}

impl AggregateJson {
    pub(super) fn new(signed: &SignedAggregate) -> Self {
        let a = signed.aggregate();
        Self {
            version: a.version(),
            signer: hex::encode(a.signer.as_bytes()),
            level: a.level.as_str().to_owned(),
            period: a.period.to_string(),
            checkpoint: CheckpointJson {
                size: a.checkpoint_size,
                root: hex::encode(a.checkpoint_root),
            },
            contributions: a
                .contributions
                .iter()
                .map(|c| ContributionJson {
                    index: c.index,
                    id: c.id.to_string(),
                    signer: hex::encode(c.signer.as_bytes()),
                })
                .collect(),
            cells: a
                .cells
                .iter()
                .map(|c| CellJson {
                    indicator: c.indicator.code().to_owned(),
                    category: c.category.clone(),
                    sum: c.sum,
                    variance: c.variance,
                    ci95_half_width: c.ci95_half_width,
                })
                .collect(),
            coverage: CoverageJson {
                contributed: hex_keys(&a.contributed),
                missing: hex_keys(&a.missing),
            },
            created_at: a.created_at,
            supersedes: a.supersedes.as_ref().map(|s| SupersedesJson {
                id: s.id.to_string(),
                consistency: s.consistency.iter().map(hex::encode).collect(),
            }),
            structures: a.structures,
            signature: Some(hex::encode(signed.signature().to_bytes())),
        }
    }

    /// The validated aggregate with its signature (not verified).
    pub(super) fn into_signed(self) -> Result<SignedAggregate, AggregateError> {
        match (self.version, self.structures.is_some()) {
            (VERSION, true) => {}
            (VERSION_1, false) if self.supersedes.is_none() => {}
            (VERSION_1, _) => {
                return Err(AggregateError::Json {
                    line: 0,
                    column: 0,
                    message: "version 1 aggregates have no supersedes or structures field; those are version 2".to_owned(),
                });
            }
            (VERSION, false) => {
                return Err(AggregateError::Json {
                    line: 0,
                    column: 0,
                    message: "missing field `structures`: version 2 aggregates state how many structures they cover".to_owned(),
                });
            }
            (found, _) => {
                return Err(AggregateError::UnsupportedVersion {
                    found,
                    supported: VERSION,
                });
            }
        }
        let supersedes = match &self.supersedes {
            None => None,
            Some(s) => Some(Supersedes {
                id: AggregateId::from_bytes(from_hex(|| "supersedes.id".to_owned(), &s.id, HASH)?),
                consistency: s
                    .consistency
                    .iter()
                    .enumerate()
                    .map(|(n, h)| from_hex(|| format!("supersedes.consistency[{n}]"), h, HASH))
                    .collect::<Result<Vec<_>, AggregateError>>()?,
            }),
        };
        let signer = key(&|| "signer".to_owned(), &self.signer)?;
        let level = self.level.parse()?;
        let period = self.period.parse().map_err(AggregateError::InvalidPeriod)?;
        let checkpoint_root =
            from_hex(|| "checkpoint.root".to_owned(), &self.checkpoint.root, HASH)?;
        let contributions = self
            .contributions
            .iter()
            .enumerate()
            .map(|(n, c)| {
                Ok(ContributionRef {
                    index: c.index,
                    id: ReleaseId::from_bytes(from_hex(
                        || format!("contributions[{n}].id"),
                        &c.id,
                        HASH,
                    )?),
                    signer: key(&|| format!("contributions[{n}].signer"), &c.signer)?,
                })
            })
            .collect::<Result<Vec<_>, AggregateError>>()?;
        let cells = self
            .cells
            .into_iter()
            .enumerate()
            .map(|(n, c)| {
                let indicator = Indicator::from_code(&c.indicator).ok_or_else(|| {
                    AggregateError::UnknownIndicator {
                        cell: n,
                        value: excerpt(&c.indicator),
                    }
                })?;
                Ok(AggregateCell {
                    indicator,
                    category: c.category,
                    sum: c.sum,
                    variance: c.variance,
                    ci95_half_width: c.ci95_half_width,
                })
            })
            .collect::<Result<Vec<_>, AggregateError>>()?;
        let aggregate = Aggregate {
            signer,
            level,
            period,
            checkpoint_size: self.checkpoint.size,
            checkpoint_root,
            contributions,
            cells,
            contributed: keys(CONTRIBUTED, &self.coverage.contributed)?,
            missing: keys(MISSING, &self.coverage.missing)?,
            created_at: self.created_at,
            supersedes,
            structures: self.structures,
        };
        aggregate.validate()?;
        let signature = self.signature.ok_or(AggregateError::MissingSignature)?;
        let signature =
            Signature::from_bytes(&from_hex(|| "signature".to_owned(), &signature, SIGNATURE)?);
        SignedAggregate::from_parts(aggregate, signature)
    }
}

pub(super) fn parse(text: &str) -> Result<AggregateJson, AggregateError> {
    serde_json::from_str(text).map_err(|e| AggregateError::Json {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })
}

pub(super) fn to_string_pretty(view: &AggregateJson) -> String {
    // unwrap safety: the view holds only strings, integers, floats and arrays and objects of
    // them, which serde_json always serializes (non-finite floats would become null, not an
    // error).
    #[allow(clippy::unwrap_used)]
    serde_json::to_string_pretty(view).unwrap()
}

/// Serialized as the JSON view.
impl Serialize for SignedAggregate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        AggregateJson::new(self).serialize(serializer)
    }
}

/// Read from the JSON view, validated; the signature is not checked.
impl<'de> Deserialize<'de> for SignedAggregate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        AggregateJson::deserialize(deserializer)?
            .into_signed()
            .map_err(serde::de::Error::custom)
    }
}
