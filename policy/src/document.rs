//! The policy as an Automerge document: creation, edits, merge, save/load and sync.
//!
//! The document's layout mirrors the canonical snapshot field for field (see the crate
//! documentation), so reading it is a walk of the document into JSON values followed by the
//! typed checks of [`Policy`]'s deserializer, section by section so that an error names its
//! path.

use std::fmt;

use automerge::sync::{self, SyncDoc};
use automerge::transaction::{CommitOptions, Transactable, Transaction};
use automerge::{ActorId, Automerge, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, ScalarValue};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::edit::{Edit, EditError};
use crate::model::{Committee, Policy, PublicKey};

/// The actor of the genesis change: every peer that builds the genesis document from the same
/// policy builds the same change (same actor, time 0), so two such documents merge as one.
const GENESIS_ACTOR: &[u8] = b"maillage-policy-genesis";

/// The largest sync message accepted or produced, in bytes. A registry of 20,000 members saves
/// to well under this; it bounds what one peer can make another decode.
pub const MAX_SYNC_MESSAGE: usize = 32 * 1024 * 1024;

/// What can go wrong with the document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DocError {
    /// The bytes are not an Automerge document, or a change could not be applied.
    #[error("policy document: {0}")]
    Automerge(String),
    /// The document does not follow the policy schema at `path`.
    #[error("policy document, at {path}: {reason}")]
    Schema {
        /// Where, e.g. `members.<key>.role`.
        path: String,
        /// What is wrong and what would be accepted.
        reason: String,
    },
    /// A sync message larger than [`MAX_SYNC_MESSAGE`].
    #[error("policy sync message of {len} bytes refused: at most {MAX_SYNC_MESSAGE} bytes")]
    MessageTooLarge {
        /// Its length.
        len: usize,
    },
    /// A sync message that does not decode.
    #[error("policy sync message refused: {0}")]
    BadMessage(String),
    /// Heads that are not all in the document (sync first).
    #[error(
        "the policy document does not hold change(s) {missing}: sync with a peer that has them first"
    )]
    MissingChanges {
        /// The missing change hashes, hex, comma-separated.
        missing: String,
    },
}

fn am(e: automerge::AutomergeError) -> DocError {
    DocError::Automerge(e.to_string())
}

/// A set of document heads: the change hashes that identify one point of its history.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Heads(pub Vec<[u8; 32]>);

impl Heads {
    fn from_automerge(heads: &[ChangeHash]) -> Self {
        let mut v: Vec<[u8; 32]> = heads.iter().map(|h| h.0).collect();
        v.sort_unstable();
        Self(v)
    }

    fn to_automerge(&self) -> Vec<ChangeHash> {
        self.0.iter().map(|h| ChangeHash(*h)).collect()
    }

    /// The heads in hex, comma-separated.
    pub fn to_hex_list(&self) -> String {
        self.0.iter().map(hex::encode).collect::<Vec<_>>().join(",")
    }
}

/// The sync state kept for one remote peer (Automerge's `sync::State`).
///
/// Keep one per peer for the length of a connection; [`SyncState::encode`] persists the part
/// worth keeping across connections (what the peer is known to have).
pub struct SyncState(sync::State);

impl fmt::Debug for SyncState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncState")
            .field("shared_heads", &self.0.shared_heads.len())
            .finish_non_exhaustive()
    }
}

impl Default for SyncState {
    fn default() -> Self {
        Self::new()
    }
}

impl SyncState {
    /// A fresh state for a new peer.
    pub fn new() -> Self {
        Self(sync::State::new())
    }

    /// The persistent part, to resume with a peer later.
    pub fn encode(&self) -> Vec<u8> {
        self.0.encode()
    }

    /// A state from [`SyncState::encode`]'s bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DocError> {
        sync::State::decode(bytes)
            .map(Self)
            .map_err(|e| DocError::BadMessage(e.to_string()))
    }
}

/// The replicated policy document.
pub struct PolicyDoc {
    doc: Automerge,
}

impl fmt::Debug for PolicyDoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyDoc")
            .field("heads", &self.heads().to_hex_list())
            .finish_non_exhaustive()
    }
}

impl PolicyDoc {
    /// An empty document, to fill by syncing with a peer.
    pub fn empty() -> Self {
        Self {
            doc: Automerge::new().with_actor(ActorId::random()),
        }
    }

    /// The genesis document of `policy`: one change, made identically by every peer that calls
    /// this with the same policy, so independently created genesis documents merge as one.
    pub fn genesis(policy: &Policy) -> Result<Self, DocError> {
        let mut doc = Automerge::new().with_actor(ActorId::from(GENESIS_ACTOR));
        let value = serde_json::to_value(policy).map_err(|e| DocError::Schema {
            path: String::new(),
            reason: e.to_string(),
        })?;
        let Value::Object(root) = value else {
            return Err(DocError::Schema {
                path: String::new(),
                reason: "the policy is not an object".into(),
            });
        };
        let mut root = root;
        // The map of module indicators exists from the genesis on, even empty: two peers that
        // each created it with their first module indicator would make two conflicting maps,
        // and one peer's indicators would disappear in the merge.
        root.entry("modules")
            .or_insert_with(|| Value::Object(Map::new()));
        doc.transact_with(
            |_| {
                CommitOptions::default()
                    .with_message("genesis")
                    .with_time(0)
            },
            |tx| -> Result<(), automerge::AutomergeError> {
                let mut keys: Vec<&String> = root.keys().collect();
                keys.sort_unstable();
                for key in keys {
                    if let Some(v) = root.get(key) {
                        put_json(tx, &ROOT, key, v)?;
                    }
                }
                Ok(())
            },
        )
        .map_err(|f| am(f.error))?;
        // Later edits are this peer's own, under a fresh actor.
        doc.set_actor(ActorId::random());
        Ok(Self { doc })
    }

    /// Loads a document saved by [`PolicyDoc::save`].
    pub fn load(bytes: &[u8]) -> Result<Self, DocError> {
        let mut doc = Automerge::load(bytes).map_err(am)?;
        doc.set_actor(ActorId::random());
        Ok(Self { doc })
    }

    /// The whole document, compressed, for a file.
    pub fn save(&self) -> Vec<u8> {
        self.doc.save()
    }

    /// The current heads.
    pub fn heads(&self) -> Heads {
        Heads::from_automerge(&self.doc.get_heads())
    }

    /// Whether the document holds every change of `heads`.
    pub fn has_heads(&self, heads: &Heads) -> bool {
        heads
            .to_automerge()
            .iter()
            .all(|h| self.doc.get_change_by_hash(h).is_some())
    }

    /// How many changes the document holds.
    pub fn change_count(&self) -> usize {
        self.doc.get_changes(&[]).len()
    }

    /// Whether the document has no content yet (an empty document waiting for a sync).
    pub fn is_empty(&self) -> bool {
        self.doc.get_heads().is_empty()
    }

    /// The policy as the document says it now.
    pub fn policy(&self) -> Result<Policy, DocError> {
        self.policy_at_opt(None)
    }

    /// The policy as the document said it at `heads`.
    pub fn policy_at(&self, heads: &Heads) -> Result<Policy, DocError> {
        let missing: Vec<String> = heads
            .to_automerge()
            .iter()
            .filter(|h| self.doc.get_change_by_hash(h).is_none())
            .map(|h| h.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(DocError::MissingChanges {
                missing: missing.join(", "),
            });
        }
        self.policy_at_opt(Some(&heads.to_automerge()))
    }

    fn policy_at_opt(&self, heads: Option<&[ChangeHash]>) -> Result<Policy, DocError> {
        if self.doc.get_heads().is_empty() {
            return Err(DocError::Schema {
                path: "(root)".into(),
                reason: "the document is empty: sync it from a peer or create the genesis".into(),
            });
        }
        let hydrated = self.doc.hydrate(heads);
        let Value::Object(root) = to_json(&hydrated, "")? else {
            return Err(DocError::Schema {
                path: "(root)".into(),
                reason: "not a map".into(),
            });
        };
        read_policy(root)
    }

    /// Applies a proposal's edits as one change; nothing is changed if any edit fails.
    /// `message` is recorded in the change (e.g. who proposed it and why).
    pub fn apply(&mut self, edits: &[Edit], message: &str) -> Result<Heads, EditError> {
        if self.is_empty() {
            return Err(EditError::EmptyDocument);
        }
        let message = message.to_owned();
        self.doc
            .transact_with(
                |_| CommitOptions::default().with_message(message),
                |tx| -> Result<(), EditError> {
                    for (index, edit) in edits.iter().enumerate() {
                        edit.apply(tx).map_err(|reason| EditError::Edit {
                            index,
                            op: edit.op(),
                            reason,
                        })?;
                    }
                    Ok(())
                },
            )
            .map_err(|f| f.error)?;
        Ok(self.heads())
    }

    /// Merges every change of `other` into this document.
    pub fn merge(&mut self, other: &PolicyDoc) -> Result<(), DocError> {
        let mut copy = other.doc.clone();
        self.doc.merge(&mut copy).map_err(am)?;
        Ok(())
    }

    /// The next sync message for `peer`, or `None` when there is nothing to send.
    pub fn generate_sync_message(&self, peer: &mut SyncState) -> Option<Vec<u8>> {
        self.doc
            .generate_sync_message(&mut peer.0)
            .map(sync::Message::encode)
    }

    /// Applies a sync message received from `peer`.
    pub fn receive_sync_message(
        &mut self,
        peer: &mut SyncState,
        message: &[u8],
    ) -> Result<(), DocError> {
        if message.len() > MAX_SYNC_MESSAGE {
            return Err(DocError::MessageTooLarge { len: message.len() });
        }
        let message =
            sync::Message::decode(message).map_err(|e| DocError::BadMessage(e.to_string()))?;
        self.doc
            .receive_sync_message(&mut peer.0, message)
            .map_err(am)
    }

    /// The committee as the document says it now (without reading the whole registry).
    pub fn committee(&self) -> Result<Committee, DocError> {
        let Some((_, id)) = self.doc.get(ROOT, "committee").map_err(am)? else {
            return Err(missing("committee"));
        };
        let hydrated = ReadDoc::hydrate(&self.doc, id, None).map_err(am)?;
        let value = to_json(&hydrated, "committee")?;
        read_committee(value)
    }
}

fn missing(path: &str) -> DocError {
    DocError::Schema {
        path: path.to_owned(),
        reason: "missing".into(),
    }
}

/// Writes a JSON value under `key` of the map `obj`.
pub(crate) fn put_json(
    tx: &mut Transaction<'_>,
    obj: &ObjId,
    key: &str,
    value: &Value,
) -> Result<(), automerge::AutomergeError> {
    match value {
        Value::Object(map) => {
            let id = tx.put_object(obj, key, ObjType::Map)?;
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            for k in keys {
                if let Some(v) = map.get(k) {
                    put_json(tx, &id, k, v)?;
                }
            }
        }
        Value::Array(items) => {
            let id = tx.put_object(obj, key, ObjType::List)?;
            for (i, item) in items.iter().enumerate() {
                tx.insert(&id, i, scalar(item))?;
            }
        }
        v => tx.put(obj, key, scalar(v))?,
    }
    Ok(())
}

/// The scalar for a JSON leaf (policies have no nested lists, and no floats).
fn scalar(value: &Value) -> ScalarValue {
    match value {
        Value::Null => ScalarValue::Null,
        Value::Bool(b) => ScalarValue::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => ScalarValue::Int(i),
            (None, Some(u)) => ScalarValue::Uint(u),
            _ => ScalarValue::F64(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => ScalarValue::Str(s.as_str().into()),
        // Nested containers in a list do not occur in the schema.
        Value::Array(_) | Value::Object(_) => ScalarValue::Null,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// A hydrated Automerge value as JSON, refusing what the schema never holds.
fn to_json(value: &automerge::hydrate::Value, path: &str) -> Result<Value, DocError> {
    use automerge::hydrate::Value as H;
    Ok(match value {
        H::Map(map) => {
            let mut out = Map::new();
            for (k, v) in map.iter() {
                out.insert(k.clone(), to_json(&v.value, &join(path, k))?);
            }
            Value::Object(out)
        }
        H::List(list) => Value::Array(
            list.iter()
                .enumerate()
                .map(|(i, v)| to_json(&v.value, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        H::Text(text) => Value::String(text.to_string()),
        H::Scalar(s) => match s {
            ScalarValue::Str(s) => Value::String(s.to_string()),
            ScalarValue::Int(i) => Value::from(*i),
            ScalarValue::Uint(u) => Value::from(*u),
            ScalarValue::Boolean(b) => Value::Bool(*b),
            ScalarValue::Null => Value::Null,
            other => {
                return Err(DocError::Schema {
                    path: path.to_owned(),
                    reason: format!(
                        "a {} value: the schema holds only maps, lists, strings, integers and booleans",
                        scalar_kind(other)
                    ),
                });
            }
        },
    })
}

fn scalar_kind(s: &ScalarValue) -> &'static str {
    match s {
        ScalarValue::Bytes(_) => "bytes",
        ScalarValue::F64(_) => "floating-point",
        ScalarValue::Counter(_) => "counter",
        ScalarValue::Timestamp(_) => "timestamp",
        ScalarValue::Unknown { .. } => "unknown-type",
        _ => "other",
    }
}

fn typed<T: DeserializeOwned>(value: Value, path: &str) -> Result<T, DocError> {
    serde_json::from_value(value).map_err(|e| DocError::Schema {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn take_object(
    root: &mut Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Map<String, Value>, DocError> {
    match root.remove(key) {
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(DocError::Schema {
            path: join(path, key),
            reason: "expected a map".into(),
        }),
        None => Err(missing(&join(path, key))),
    }
}

fn key_of(text: &str, path: &str) -> Result<PublicKey, DocError> {
    text.parse()
        .map_err(|e: crate::model::KeyParseError| DocError::Schema {
            path: join(path, text),
            reason: e.to_string(),
        })
}

fn read_committee(value: Value) -> Result<Committee, DocError> {
    let Value::Object(mut c) = value else {
        return Err(DocError::Schema {
            path: "committee".into(),
            reason: "expected a map".into(),
        });
    };
    let quorum: u32 = typed(
        c.remove("quorum")
            .ok_or_else(|| missing("committee.quorum"))?,
        "committee.quorum",
    )?;
    let members_map = take_object(&mut c, "members", "committee")?;
    if let Some(extra) = c.keys().next() {
        return Err(unknown_field(&join("committee", extra)));
    }
    let mut members = std::collections::BTreeMap::new();
    for (k, v) in members_map {
        let key = key_of(&k, "committee.members")?;
        members.insert(key, typed(v, &format!("committee.members.{k}"))?);
    }
    Ok(Committee { quorum, members })
}

fn unknown_field(path: &str) -> DocError {
    DocError::Schema {
        path: path.to_owned(),
        reason: "unknown field: the schema has no such field".into(),
    }
}

fn read_policy(mut root: Map<String, Value>) -> Result<Policy, DocError> {
    let schema: u64 = typed(
        root.remove("schema").ok_or_else(|| missing("schema"))?,
        "schema",
    )?;
    let privacy = typed(
        Value::Object(take_object(&mut root, "privacy", "")?),
        "privacy",
    )?;
    let calendar = typed(
        Value::Object(take_object(&mut root, "calendar", "")?),
        "calendar",
    )?;
    let mut indicators = std::collections::BTreeMap::new();
    for (k, v) in take_object(&mut root, "indicators", "")? {
        let path = format!("indicators.{k}");
        let indicator = typed(Value::String(k), &path)?;
        indicators.insert(indicator, typed(v, &path)?);
    }
    let mut modules = std::collections::BTreeMap::new();
    if root.contains_key("modules") {
        for (k, v) in take_object(&mut root, "modules", "")? {
            let path = format!("modules.{k}");
            modules.insert(k, typed(v, &path)?);
        }
    }
    let mut members = std::collections::BTreeMap::new();
    for (k, v) in take_object(&mut root, "members", "")? {
        let key = key_of(&k, "members")?;
        members.insert(key, typed(v, &format!("members.{k}"))?);
    }
    let committee = read_committee(Value::Object(take_object(&mut root, "committee", "")?))?;
    if let Some(extra) = root.keys().next() {
        return Err(unknown_field(extra));
    }
    Ok(Policy {
        schema,
        privacy,
        indicators,
        modules,
        calendar,
        members,
        committee,
    })
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;

    use super::*;

    fn doc_with(f: impl FnOnce(&mut Transaction<'_>, &ObjId)) -> PolicyDoc {
        let mut doc = PolicyDoc::empty();
        let mut p = Policy::default();
        p.committee.quorum = 1;
        if let Ok(d) = PolicyDoc::genesis(&p) {
            doc = d;
        }
        let mut tx = doc.doc.transaction();
        let privacy = match tx.get(ROOT, "privacy") {
            Ok(Some((_, id))) => id,
            _ => ROOT,
        };
        f(&mut tx, &privacy);
        tx.commit();
        doc
    }

    #[test]
    fn schema_errors_name_their_path() {
        let doc = doc_with(|tx, privacy| {
            let _ = tx.put(privacy, "budget_micro", 1.5f64);
        });
        assert!(matches!(
            doc.policy(),
            Err(DocError::Schema { path, reason }) if path == "privacy.budget_micro" && reason.contains("floating-point")
        ));
        let doc = doc_with(|tx, _| {
            let _ = tx.put(ROOT, "surprise", 1);
        });
        assert!(matches!(doc.policy(), Err(DocError::Schema { path, .. }) if path == "surprise"));
        let doc = doc_with(|tx, privacy| {
            let _ = tx.put(privacy, "mechanism", "uniform");
        });
        assert!(matches!(
            doc.policy(),
            Err(DocError::Schema { path, reason }) if path == "privacy" && reason.contains("uniform")
        ));
        let doc = doc_with(|tx, _| {
            if let Ok(Some((_, members))) = tx.get(ROOT, "members") {
                let _ = tx.put_object(&members, "ABC", ObjType::Map);
            }
        });
        assert!(
            matches!(doc.policy(), Err(DocError::Schema { path, .. }) if path == "members.ABC")
        );
        let doc = doc_with(|tx, _| {
            let _ = tx.delete(ROOT, "committee");
        });
        assert!(
            matches!(doc.policy(), Err(DocError::Schema { path, reason }) if path == "committee" && reason == "missing")
        );
    }
}
