//! The JSON view of releases, for people and files (layout in the parent module's documentation).
//!
//! Parsing goes through a plain serde shape that refuses unknown fields, then through the same
//! validation as the canonical decoder, so a JSON release that is accepted has exactly one
//! canonical encoding.

use std::borrow::Cow;

use ed25519_dalek::Signature;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Cell, Mechanism, Release, ReleaseError, SignedRelease, SignerKeys, VERSION, excerpt};
use crate::indicator::Indicator;
use crate::vocab::Vocabulary;

/// The JSON fields as written; strings are borrowed from the input when they can be (no
/// escapes), so that reading many releases allocates little.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReleaseJson<'a> {
    version: u64,
    #[serde(borrow)]
    signer: Cow<'a, str>,
    #[serde(borrow)]
    period: Cow<'a, str>,
    #[serde(borrow)]
    params: Cow<'a, str>,
    #[serde(borrow)]
    mechanism: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    epsilon: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rho: Option<f64>,
    created_at: u64,
    #[serde(borrow)]
    cells: Vec<CellJson<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CellJson<'a> {
    #[serde(borrow)]
    indicator: Cow<'a, str>,
    #[serde(default)]
    category: Option<String>,
    value: i64,
    scale: f64,
    ci95_half_width: f64,
}

/// Decodes exactly `N` bytes of hex.
fn from_hex<const N: usize>(
    field: &'static str,
    value: &str,
    expected: &'static str,
) -> Result<[u8; N], ReleaseError> {
    let mut out = [0; N];
    hex::decode_to_slice(value, &mut out).map_err(|_| ReleaseError::InvalidHex {
        field,
        value: excerpt(value),
        expected,
    })?;
    Ok(out)
}

impl<'a> ReleaseJson<'a> {
    pub(super) fn new(release: &'a Release, signature: Option<&Signature>) -> Self {
        let (epsilon, rho) = match release.mechanism {
            Mechanism::Laplace { epsilon } => (Some(epsilon), None),
            Mechanism::Gaussian { rho } => (None, Some(rho)),
        };
        Self {
            version: VERSION,
            signer: Cow::Owned(hex::encode(release.signer.as_bytes())),
            period: Cow::Owned(release.period.to_string()),
            params: Cow::Borrowed(&release.params),
            mechanism: Cow::Borrowed(release.mechanism.name()),
            epsilon,
            rho,
            created_at: release.created_at,
            cells: release
                .cells
                .iter()
                .map(|c| CellJson {
                    indicator: Cow::Borrowed(c.indicator.code()),
                    category: c.category.clone(),
                    value: c.value,
                    scale: c.scale,
                    ci95_half_width: c.ci95_half_width,
                })
                .collect(),
            signature: signature.map(|s| hex::encode(s.to_bytes())),
        }
    }

    /// The validated release and the signature, if the JSON has one (not verified).
    pub(super) fn into_parts(self) -> Result<(Release, Option<Signature>), ReleaseError> {
        self.into_parts_with(&SignerKeys::default())
    }

    /// [`ReleaseJson::into_parts`], taking the signer's decoded key from `keys` if it is there.
    pub(super) fn into_parts_with(
        self,
        keys: &SignerKeys,
    ) -> Result<(Release, Option<Signature>), ReleaseError> {
        if self.version != VERSION {
            return Err(ReleaseError::UnsupportedVersion {
                found: self.version,
                supported: VERSION,
            });
        }
        let signer_bytes: [u8; 32] = from_hex(
            "signer",
            &self.signer,
            "64 hexadecimal digits (a 32-byte ed25519 public key)",
        )?;
        let signer = keys.decode(&signer_bytes)?;
        let period = self.period.parse().map_err(ReleaseError::InvalidPeriod)?;
        let mechanism = match (&*self.mechanism, self.epsilon, self.rho) {
            ("laplace", Some(epsilon), None) => Mechanism::Laplace { epsilon },
            ("gaussian", None, Some(rho)) => Mechanism::Gaussian { rho },
            ("laplace", _, rho) => {
                let found = rho.map(|_| "rho");
                return Err(ReleaseError::LossField {
                    mechanism: "laplace",
                    expected: "epsilon",
                    found,
                });
            }
            ("gaussian", epsilon, _) => {
                let found = epsilon.map(|_| "epsilon");
                return Err(ReleaseError::LossField {
                    mechanism: "gaussian",
                    expected: "rho",
                    found,
                });
            }
            (other, _, _) => {
                return Err(ReleaseError::UnknownMechanism {
                    value: excerpt(other),
                });
            }
        };
        let cells = self
            .cells
            .into_iter()
            .enumerate()
            .map(|(n, c)| {
                let indicator = Indicator::from_code(&c.indicator).ok_or_else(|| {
                    ReleaseError::UnknownIndicator {
                        cell: n,
                        value: excerpt(&c.indicator),
                    }
                })?;
                Ok(Cell {
                    indicator,
                    category: c.category,
                    value: c.value,
                    scale: c.scale,
                    ci95_half_width: c.ci95_half_width,
                })
            })
            .collect::<Result<Vec<_>, ReleaseError>>()?;
        let release = Release {
            signer,
            period,
            params: self.params.into_owned(),
            mechanism,
            created_at: self.created_at,
            cells,
        };
        release.validate()?;
        let signature = match self.signature {
            Some(hex) => Some(Signature::from_bytes(&from_hex(
                "signature",
                &hex,
                "128 hexadecimal digits (a 64-byte ed25519 signature)",
            )?)),
            None => None,
        };
        Ok((release, signature))
    }
}

pub(super) fn parse(text: &str) -> Result<ReleaseJson<'_>, ReleaseError> {
    serde_json::from_str(text).map_err(|e| ReleaseError::Json {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })
}

pub(super) fn to_string_pretty(view: &ReleaseJson<'_>) -> String {
    // unwrap safety: the view holds only strings, integers, floats and arrays of them, which
    // serde_json always serializes (non-finite floats would become null, not an error).
    #[allow(clippy::unwrap_used)]
    serde_json::to_string_pretty(view).unwrap()
}

/// Serialized as the JSON view without signature; fails if the release is not valid.
impl Serialize for Release {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.validate().map_err(serde::ser::Error::custom)?;
        ReleaseJson::new(self, None).serialize(serializer)
    }
}

/// Read from the JSON view without signature, validated.
impl<'de> Deserialize<'de> for Release {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match ReleaseJson::deserialize(deserializer)?.into_parts() {
            Ok((release, None)) => Ok(release),
            Ok((_, Some(_))) => Err(serde::de::Error::custom(ReleaseError::UnexpectedSignature)),
            Err(e) => Err(serde::de::Error::custom(e)),
        }
    }
}

/// Serialized as the JSON view with signature.
impl Serialize for SignedRelease {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ReleaseJson::new(&self.release, Some(&self.signature)).serialize(serializer)
    }
}

/// Read from the JSON view with signature, validated; the signature is not checked.
impl<'de> Deserialize<'de> for SignedRelease {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match ReleaseJson::deserialize(deserializer)?.into_parts() {
            Ok((release, Some(signature))) => Ok(SignedRelease { release, signature }),
            Ok((_, None)) => Err(serde::de::Error::custom(ReleaseError::MissingSignature)),
            Err(e) => Err(serde::de::Error::custom(e)),
        }
    }
}

/// A signed release's JSON view as read, not yet validated: for readers of many releases (an
/// auditor) that embed signed releases in their own JSON documents and want the signer's key
/// from a [`SignerKeys`] rather than decoded again. Strings are borrowed from the input where
/// they can be.
#[derive(Debug)]
pub struct SignedReleaseJson<'a>(ReleaseJson<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for SignedReleaseJson<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        ReleaseJson::deserialize(deserializer).map(SignedReleaseJson)
    }
}

impl SignedReleaseJson<'_> {
    /// Validates it into a signed release (as [`SignedRelease::from_json`] does; the signature
    /// is not checked), taking the signer's decoded key from `keys` when it is there.
    pub fn into_signed(self, keys: &SignerKeys) -> Result<SignedRelease, ReleaseError> {
        match self.0.into_parts_with(keys)? {
            (release, Some(signature)) => Ok(SignedRelease { release, signature }),
            (_, None) => Err(ReleaseError::MissingSignature),
        }
    }
}
