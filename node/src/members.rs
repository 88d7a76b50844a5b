//! The member list of a hub or of the national node: which keys may contribute, and who they
//! are. With an adopted policy it is read from the policy's registry ([`Members::from_policy`]:
//! a hub's members are the structures whose `hub` is the hub's key, the national node's are the
//! hubs); without one, from `members.json` in the node directory ([`Members::load`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::config::Role;

/// The file's name inside a node directory.
pub const MEMBERS_FILE: &str = "members.json";

/// One member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// The member's public key, hex.
    pub key: String,
    /// The organisation's name.
    pub name: String,
    /// Its role (a hub's members are structures; the national node's are hubs).
    pub role: Role,
    /// COG code of its commune, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_insee: Option<String>,
}

/// What can go wrong with the member list.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MembersError {
    /// Reading or writing the file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a member list.
    #[error(
        "{path}: not a member list ({reason}); expected a JSON array of {{\"key\": \"<64 hex>\", \"name\": \"...\", \"role\": \"structure\"}}"
    )]
    Malformed {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A key is not an ed25519 public key.
    #[error("member key {key:?} is not an ed25519 public key: expected 64 hexadecimal characters")]
    BadKey {
        /// The key as given.
        key: String,
    },
    /// A key is listed twice.
    #[error("member key {key} is listed twice")]
    Duplicate {
        /// The key.
        key: String,
    },
}

/// A validated member list, by key.
#[derive(Debug, Clone, Default)]
pub struct Members {
    path: PathBuf,
    by_key: BTreeMap<[u8; 32], Member>,
}

/// Parses a member key.
pub fn parse_key(key: &str) -> Result<VerifyingKey, MembersError> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(key.trim(), &mut bytes)
        .map_err(|_| MembersError::BadKey { key: key.into() })?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| MembersError::BadKey { key: key.into() })
}

impl Members {
    /// Reads the list of a node directory (an absent file is an empty list).
    pub fn load(dir: &Path) -> Result<Self, MembersError> {
        let path = dir.join(MEMBERS_FILE);
        let shown = path.display().to_string();
        let list: Vec<Member> = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| MembersError::Malformed {
                path: shown.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(MembersError::Io {
                    path: shown,
                    source,
                });
            }
        };
        let mut members = Self {
            path,
            by_key: BTreeMap::new(),
        };
        for m in list {
            members.insert(m)?;
        }
        Ok(members)
    }

    /// The members a node of `role` with key `me` admits under the adopted `policy`: for a
    /// hub, the registry's structures whose hub is `me`; for the national node, the registry's
    /// hubs; for both, the registry's auditors; nobody for other roles.
    pub fn from_policy(
        dir: &Path,
        policy: &maillage_policy::Policy,
        me: &VerifyingKey,
        role: Role,
    ) -> Self {
        let me = maillage_policy::PublicKey::from(*me);
        let wanted = match role {
            Role::Hub => Some(maillage_policy::Role::Structure),
            Role::National => Some(maillage_policy::Role::Hub),
            Role::Structure | Role::Auditor => None,
        };
        let by_key = policy
            .members
            .iter()
            .filter(|(_, m)| {
                // Auditors of the registry may query and verify any hub or the national node
                // (they submit nothing: answers check the role).
                (Some(m.role) == wanted && (role != Role::Hub || m.hub == Some(me)))
                    || (wanted.is_some() && m.role == maillage_policy::Role::Auditor)
            })
            .filter_map(|(k, m)| {
                let key = k.verifying_key().ok()?.to_bytes();
                let member = Member {
                    key: hex::encode(key),
                    name: m.name.clone(),
                    role: match m.role {
                        maillage_policy::Role::Structure => Role::Structure,
                        maillage_policy::Role::Hub => Role::Hub,
                        maillage_policy::Role::National => Role::National,
                        maillage_policy::Role::Auditor => Role::Auditor,
                    },
                    code_insee: m.commune.clone(),
                };
                Some((key, member))
            })
            .collect();
        Self {
            path: dir.join(MEMBERS_FILE),
            by_key,
        }
    }

    /// The members of the node in `dir`: from the adopted policy's registry if it has one
    /// (`members.json` is then ignored), else from `members.json`.
    pub fn effective(
        dir: &Path,
        adopted: Option<&maillage_policy::Policy>,
        me: &VerifyingKey,
        role: Role,
    ) -> Result<Self, MembersError> {
        match adopted {
            Some(policy) => Ok(Self::from_policy(dir, policy, me, role)),
            None => Self::load(dir),
        }
    }

    fn insert(&mut self, member: Member) -> Result<(), MembersError> {
        let key = parse_key(&member.key)?.to_bytes();
        if self.by_key.contains_key(&key) {
            return Err(MembersError::Duplicate { key: member.key });
        }
        self.by_key.insert(
            key,
            Member {
                key: hex::encode(key),
                ..member
            },
        );
        Ok(())
    }

    /// Adds a member and writes the file (atomically: a temporary file renamed into place).
    pub fn add(&mut self, member: Member) -> Result<(), MembersError> {
        self.insert(member)?;
        let shown = self.path.display().to_string();
        let list: Vec<&Member> = self.by_key.values().collect();
        let text = serde_json::to_string_pretty(&list).map_err(|e| MembersError::Malformed {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let tmp = self.path.with_extension("json.partial");
        let io = |source| MembersError::Io {
            path: shown.clone(),
            source,
        };
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(|source| MembersError::Io {
            path: shown.clone(),
            source,
        })
    }

    /// The member with that key.
    pub fn get(&self, key: &VerifyingKey) -> Option<&Member> {
        self.by_key.get(key.as_bytes())
    }

    /// Every member, by key.
    pub fn iter(&self) -> impl Iterator<Item = &Member> {
        self.by_key.values()
    }

    /// The keys of members with a role, sorted by bytes.
    pub fn keys_with_role(&self, role: Role) -> Vec<VerifyingKey> {
        self.by_key
            .iter()
            .filter(|(_, m)| m.role == role)
            .filter_map(|(k, _)| VerifyingKey::from_bytes(k).ok())
            .collect()
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}
