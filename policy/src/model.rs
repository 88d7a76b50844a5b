//! The materialised policy: plain Rust values, their canonical JSON snapshot and its hash.
//!
//! A [`Policy`] is what the Automerge document says at some point of its history, read into
//! typed values. Its canonical snapshot (see the crate documentation) depends only on these
//! values, never on the document's history, so every peer holding the same policy computes the
//! same [`PolicyHash`].

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use ed25519_dalek::VerifyingKey;
use maillage_protocol::Indicator;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// The version of the policy schema this build reads and writes.
pub const SCHEMA_VERSION: u64 = 1;

/// Prefixed to the canonical snapshot to form the hashed message.
pub const HASH_DOMAIN: &[u8] = b"maillage/policy/v1\0";

/// A 32-byte ed25519 public key as policies write it: 64 lowercase hexadecimal characters.
///
/// Whether the bytes are a usable key (a point of the curve, not of small order) is checked by
/// [`Policy::validate`], so that a document holding a bad key can still be read and shown.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// The key as an ed25519 verifying key, if it is a usable one.
    pub fn verifying_key(&self) -> Result<VerifyingKey, &'static str> {
        let key = VerifyingKey::from_bytes(&self.0)
            .map_err(|_| "the bytes are not a point of the ed25519 curve")?;
        if key.is_weak() {
            return Err("the key is of small order (weak)");
        }
        Ok(key)
    }

    /// The key in lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 16 hex digits, for display.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..8])
    }
}

impl From<VerifyingKey> for PublicKey {
    fn from(key: VerifyingKey) -> Self {
        Self(key.to_bytes())
    }
}

impl From<&VerifyingKey> for PublicKey {
    fn from(key: &VerifyingKey) -> Self {
        Self(key.to_bytes())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Why a public key's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{value:?} is not a public key: expected 64 lowercase hexadecimal characters (an ed25519 public key)"
)]
pub struct KeyParseError {
    /// What was given (or its beginning).
    pub value: String,
}

impl FromStr for PublicKey {
    type Err = KeyParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || KeyParseError {
            value: s.chars().take(80).collect(),
        };
        // One spelling per key: uppercase hex would let one key appear twice in a map.
        if s.len() != 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(err());
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| err())?;
        Ok(Self(bytes))
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The hash of a policy's canonical snapshot: the policy version's identifier.
///
/// `SHA-256("maillage/policy/v1\0" ‖ canonical snapshot)`, written as 64 lowercase hex digits
/// (which fits a release's `params` field).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyHash(pub [u8; 32]);

impl PolicyHash {
    /// The hash of canonical snapshot bytes.
    pub fn of_snapshot(snapshot: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(HASH_DOMAIN);
        h.update(snapshot);
        Self(h.finalize().into())
    }

    /// The hash in lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 12 hex digits, for display.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Debug for PolicyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PolicyHash({})", self.to_hex())
    }
}

impl fmt::Display for PolicyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Why a policy hash's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a policy hash: expected 64 hexadecimal characters")]
pub struct HashParseError {
    /// What was given (or its beginning).
    pub value: String,
}

impl FromStr for PolicyHash {
    type Err = HashParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut bytes).map_err(|_| HashParseError {
            value: s.chars().take(80).collect(),
        })?;
        Ok(Self(bytes))
    }
}

impl Serialize for PolicyHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for PolicyHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The noise mechanism every release follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mechanism {
    /// Discrete Laplace noise, pure ε-DP; the budget is ε.
    Laplace,
    /// Discrete Gaussian noise, ρ-zCDP; the budget is ρ.
    Gaussian,
}

impl Mechanism {
    /// `laplace` or `gaussian`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Laplace => "laplace",
            Self::Gaussian => "gaussian",
        }
    }

    /// `ε` or `ρ`.
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Laplace => "ε",
            Self::Gaussian => "ρ",
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The contribution bounds that make every indicator's sensitivity finite (the same four as
/// `maillage_privacy::bounded::Bounds`, with the same accepted ranges).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    /// K: at most this many rows of one person count per period (1–100).
    pub max_rows_per_person: u32,
    /// D: durations are clamped to this many minutes (1–1440).
    pub max_duration_min: u32,
    /// T: at most this many themes of a row count (1–19).
    pub max_themes_per_row: u32,
    /// M: at most this many equipment values of a row count (1–5).
    pub max_materiel_per_row: u32,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            max_rows_per_person: 10,
            max_duration_min: 240,
            max_themes_per_row: 3,
            max_materiel_per_row: 2,
        }
    }
}

impl Bounds {
    /// Each bound's name, value and accepted range.
    pub fn entries(&self) -> [(&'static str, u32, u32, u32); 4] {
        [
            ("max_rows_per_person", self.max_rows_per_person, 1, 100),
            ("max_duration_min", self.max_duration_min, 1, 1440),
            ("max_themes_per_row", self.max_themes_per_row, 1, 19),
            ("max_materiel_per_row", self.max_materiel_per_row, 1, 5),
        ]
    }
}

/// The privacy parameters of every release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Privacy {
    /// The noise mechanism.
    pub mechanism: Mechanism,
    /// The budget per node and period in millionths: ε×10⁶ for Laplace, ρ×10⁶ for Gaussian
    /// (integers keep the snapshot free of floating point). Accepted: 1 to 10,000,000.
    pub budget_micro: u64,
    /// The contribution bounds.
    pub bounds: Bounds,
}

impl Privacy {
    /// The largest accepted budget, in millionths (ε or ρ = 10).
    pub const MAX_BUDGET_MICRO: u64 = 10_000_000;

    /// The budget as a number (ε or ρ).
    pub fn budget(&self) -> f64 {
        // Both are exact integers below 2^53, so the quotient is the correctly rounded decimal.
        self.budget_micro as f64 / 1e6
    }
}

impl Default for Privacy {
    fn default() -> Self {
        Self {
            mechanism: Mechanism::Laplace,
            budget_micro: 1_000_000,
            bounds: Bounds::default(),
        }
    }
}

/// One released indicator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndicatorEntry {
    /// Its kind: `count`, `count_by`, `sum` or `histogram` (must match the catalogue).
    pub kind: String,
    /// Its categories, in catalogue order (empty for a count or sum; must match the catalogue).
    pub categories: Vec<String>,
    /// Whether it is an optional module rather than part of the common core.
    pub module: bool,
    /// Its relative share of the period budget: it receives `weight / Σ weights` (1 to 1,000,000).
    pub weight: u32,
}

impl IndicatorEntry {
    /// The catalogue's entry for `indicator`, with a weight.
    pub fn from_catalogue(indicator: Indicator, weight: u32) -> Self {
        Self {
            kind: indicator.kind().as_str().to_owned(),
            categories: indicator
                .categories()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            module: !indicator.is_common_core(),
            weight,
        }
    }
}

/// An indicator of an optional module that the catalogue compiled into `maillage-protocol`
/// does not know: declared by the policy, with everything a node needs to compute and bound
/// it. Its identifier is the key of `modules` in the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleIndicator {
    /// The module it belongs to (an identifier: lowercase letters, digits, `_`).
    pub module: String,
    /// Its kind: `count`, `count_by`, `sum` or `histogram`.
    pub kind: String,
    /// Its categories (2 to 64 identifiers for `count_by` and `histogram`, none otherwise).
    pub categories: Vec<String>,
    /// The most one person adds to it in a period (its contribution bound, which scales its
    /// noise): 1 to 1,000,000.
    pub max_contribution: u32,
    /// Its relative share of the period budget, as catalogue indicators' weights (1 to
    /// 1,000,000).
    pub weight: u32,
}

/// The period calendar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calendar {
    /// The reporting period: `month` (the only one this version knows).
    pub period: String,
    /// Releases of a month are due this many days after the month ends (1–90).
    pub submission_deadline_days: u32,
    /// After a new version is adopted, releases naming the version it replaced are still
    /// accepted for this many days (0–90).
    pub superseded_grace_days: u32,
}

impl Default for Calendar {
    fn default() -> Self {
        Self {
            period: "month".into(),
            submission_deadline_days: 10,
            superseded_grace_days: 15,
        }
    }
}

/// A member's role in the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A structure that records activities and publishes releases.
    Structure,
    /// A regional hub that aggregates its members.
    Hub,
    /// The national node.
    National,
    /// A read-only verifying peer.
    Auditor,
}

impl Role {
    /// The role's name in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Structure => "structure",
            Self::Hub => "hub",
            Self::National => "national",
            Self::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of the membership registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// The organisation's name (1–200 characters, no control characters).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// SIRET, RNA or RIDET of the organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pivot: Option<String>,
    /// The key of the hub it reports to: required for a structure, which must name a
    /// registered hub; absent for other roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub: Option<PublicKey>,
    /// COG code of its commune.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commune: Option<String>,
    /// Its `id` in the places standard (schéma des lieux de médiation numérique), if it has one;
    /// a place is registered under at most one key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place_id: Option<String>,
}

/// One steering-committee member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitteeMember {
    /// Who holds the key (1–200 characters).
    pub name: String,
}

/// The steering committee: the keys whose signatures adopt a policy version.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Committee {
    /// How many distinct committee signatures adopt a version: more than half the committee.
    pub quorum: u32,
    /// The committee, by key.
    pub members: BTreeMap<PublicKey, CommitteeMember>,
}

/// The whole policy, as of one point of the document's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The schema version: [`SCHEMA_VERSION`].
    pub schema: u64,
    /// The privacy parameters.
    pub privacy: Privacy,
    /// The indicators released, by identifier.
    pub indicators: BTreeMap<Indicator, IndicatorEntry>,
    /// Indicators of optional modules beyond the compiled catalogue, by identifier (absent
    /// from the snapshot when empty, so policies without them keep their hash).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub modules: BTreeMap<String, ModuleIndicator>,
    /// The period calendar.
    pub calendar: Calendar,
    /// The membership registry, by public key.
    pub members: BTreeMap<PublicKey, Member>,
    /// The steering committee.
    pub committee: Committee,
}

impl Default for Policy {
    /// The v1 default: the ten common-core indicators, weight 1 each, discrete Laplace with
    /// ε = 1 per period, the default bounds, a monthly calendar, and an empty registry and
    /// committee (which does not validate: a real policy names its committee).
    fn default() -> Self {
        Self {
            schema: SCHEMA_VERSION,
            privacy: Privacy::default(),
            indicators: Indicator::COMMON_CORE
                .iter()
                .map(|&i| (i, IndicatorEntry::from_catalogue(i, 1)))
                .collect(),
            modules: BTreeMap::new(),
            calendar: Calendar::default(),
            members: BTreeMap::new(),
            committee: Committee::default(),
        }
    }
}

/// Why canonical snapshot bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Not a policy in JSON.
    #[error("not a policy snapshot: {0}")]
    Malformed(String),
    /// A policy, but not written in the one canonical form.
    #[error(
        "the policy snapshot is not in canonical form (first difference at byte {offset}): keys sorted, no whitespace, integers only, absent optional fields omitted"
    )]
    NotCanonical {
        /// The first differing byte.
        offset: usize,
    },
}

impl Policy {
    /// The canonical snapshot: JSON with object keys sorted by their bytes, no whitespace,
    /// integers only, strings escaped as RFC 8785 (JCS) does, absent optional fields omitted.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Serializing plain structs, maps with string keys, strings and integers cannot fail.
        let value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        let mut out = Vec::with_capacity(256 + 160 * self.members.len());
        write_canonical(&value, &mut out);
        out
    }

    /// The policy version's identifier.
    pub fn hash(&self) -> PolicyHash {
        PolicyHash::of_snapshot(&self.canonical_bytes())
    }

    /// Reads a canonical snapshot, refusing any other spelling of the same policy.
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let policy: Policy =
            serde_json::from_slice(bytes).map_err(|e| SnapshotError::Malformed(e.to_string()))?;
        let again = policy.canonical_bytes();
        if again != bytes {
            let offset = again
                .iter()
                .zip(bytes)
                .position(|(a, b)| a != b)
                .unwrap_or(again.len().min(bytes.len()));
            return Err(SnapshotError::NotCanonical { offset });
        }
        Ok(policy)
    }

    /// The indicators and weights in catalogue order.
    pub fn indicator_weights(&self) -> Vec<(Indicator, u32)> {
        self.indicators
            .iter()
            .map(|(i, e)| (*i, e.weight))
            .collect()
    }

    /// The registered members with a role.
    pub fn members_with_role(&self, role: Role) -> impl Iterator<Item = (&PublicKey, &Member)> {
        self.members.iter().filter(move |(_, m)| m.role == role)
    }

    /// The structures registered under a hub.
    pub fn members_of_hub<'a>(
        &'a self,
        hub: &'a PublicKey,
    ) -> impl Iterator<Item = (&'a PublicKey, &'a Member)> + 'a {
        self.members
            .iter()
            .filter(move |(_, m)| m.hub.as_ref() == Some(hub))
    }
}

/// Any serializable value of strings, integers, booleans, lists and maps in the canonical form.
pub(crate) fn canonical_json<T: Serialize>(value: &T) -> Vec<u8> {
    let value = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
    let mut out = Vec::new();
    write_canonical(&value, &mut out);
    out
}

/// Writes `value` in the canonical form.
fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        // Only integers occur (every numeric field is an integer type).
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // Sorted here, whatever order the map type keeps (serde_json's preserve_order).
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push(b'}');
        }
    }
}

/// A JSON string as RFC 8785 writes it: `"` and `\` escaped, control characters as `\b`,
/// `\t`, `\n`, `\f`, `\r` or `\u00xx` (lowercase hex), everything else as UTF-8.
fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\r' => out.extend_from_slice(b"\\r"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_snapshot_round_trips_and_is_canonical() -> Result<(), SnapshotError> {
        let policy = Policy::default();
        let bytes = policy.canonical_bytes();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.starts_with("{\"calendar\":{\"period\":\"month\""),
            "{text}"
        );
        assert!(
            !text.contains(' ') || text.contains("\"name\""),
            "no whitespace"
        );
        assert_eq!(Policy::from_canonical_bytes(&bytes)?, policy);
        assert_eq!(policy.indicators.len(), 10);
        assert_eq!(policy.privacy.budget(), 1.0);
        Ok(())
    }

    #[test]
    fn non_canonical_spellings_are_refused() {
        let bytes = Policy::default().canonical_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let spaced = text.replacen(':', ": ", 1);
        assert!(matches!(
            Policy::from_canonical_bytes(spaced.as_bytes()),
            Err(SnapshotError::NotCanonical { offset: 12 })
        ));
        let float = text.replace("\"budget_micro\":1000000", "\"budget_micro\":1000000.0");
        assert!(Policy::from_canonical_bytes(float.as_bytes()).is_err());
        let extra = text.replacen('{', "{\"zzz\":1,", 1);
        assert!(matches!(
            Policy::from_canonical_bytes(extra.as_bytes()),
            Err(SnapshotError::Malformed(_))
        ));
    }

    #[test]
    fn strings_are_escaped_as_jcs() {
        let mut out = Vec::new();
        write_string("a\"b\\c\n\u{1}é", &mut out);
        assert_eq!(String::from_utf8_lossy(&out), "\"a\\\"b\\\\c\\n\\u0001é\"");
        let parsed: String = serde_json::from_slice(&out).unwrap_or_default();
        assert_eq!(parsed, "a\"b\\c\n\u{1}é");
    }

    #[test]
    fn keys_have_one_spelling() {
        let lower = "ab".repeat(32);
        assert!(lower.parse::<PublicKey>().is_ok());
        assert!(lower.to_uppercase().parse::<PublicKey>().is_err());
        assert!("ab".parse::<PublicKey>().is_err());
        assert!(format!("{lower}0").parse::<PublicKey>().is_err());
    }

    #[test]
    fn hash_is_domain_separated_sha256() {
        let bytes = Policy::default().canonical_bytes();
        let plain: [u8; 32] = Sha256::digest(&bytes).into();
        assert_ne!(PolicyHash::of_snapshot(&bytes).0, plain);
        let mut h = Sha256::new();
        h.update(b"maillage/policy/v1\0");
        h.update(&bytes);
        let expected: [u8; 32] = h.finalize().into();
        assert_eq!(Policy::default().hash().0, expected);
    }
}
