//! The node's embedded store (sled): activity records, imports, and later releases and budgets.
//!
//! Trees:
//! - `activities`: `activite_id` → CBOR [`Activity`]
//! - `by_period`: `YYYY-MM` `\0` `activite_id` → empty (the period index)
//! - `imports`: batch id (big-endian u64) → CBOR [`ImportRecord`]
//! - `releases`: `YYYY-MM` → the signed release of that period, in its wire bytes
//! - `ledger`: `YYYY-MM` → CBOR [`LedgerEntry`], the budget that release spent
//! - `meta`: `schema` → the store's format version
//!
//! Every import is one sled transaction over all trees followed by a flush: either the whole
//! file is stored durably, or nothing of it is. A release and its budget spend are likewise
//! written in one transaction, and never overwritten: a period is released once.

use std::collections::BTreeMap;
use std::path::Path;

use maillage_privacy::Activity;
use maillage_protocol::Period;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

const SCHEMA_VERSION: u64 = 1;

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// sled failed (disk full, permissions, a second process holding the lock…).
    #[error("store error: {0}")]
    Sled(#[from] sled::Error),
    /// A stored value does not decode: the store was damaged or written by another version.
    #[error(
        "stored value {key:?} in tree {tree} cannot be read ({reason}); the store may be damaged"
    )]
    Corrupt {
        /// The tree.
        tree: &'static str,
        /// The key, shown lossily.
        key: String,
        /// The decoder's message.
        reason: String,
    },
    /// The store was written by an incompatible version of Maillage.
    #[error("the store has format version {found}, this maillage reads version {SCHEMA_VERSION}")]
    Version {
        /// The version found.
        found: u64,
    },
}

/// What one import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportSummary {
    /// Activities not stored before.
    pub added: u64,
    /// Activities stored before with other content, now replaced.
    pub replaced: u64,
    /// Activities stored before with the same content, left as they were.
    pub unchanged: u64,
    /// Rows (accompaniments) in the file.
    pub rows: u64,
}

/// A record of one import, kept for the structure's own history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRecord {
    /// The file's name as given.
    pub file: String,
    /// SHA-256 of the file's bytes, hex.
    pub sha256: String,
    /// When it was imported (RFC 3339).
    pub at: String,
    /// What it did.
    pub summary: ImportSummary,
}

/// Counts of what is stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    /// Activities stored.
    pub activities: u64,
    /// Rows (accompaniments) stored.
    pub rows: u64,
    /// Imports done.
    pub imports: u64,
    /// Per period: (activities, rows).
    pub periods: BTreeMap<Period, (u64, u64)>,
}

/// What one period's release spent, as the budget ledger records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The period's budget when it was released (ε or ρ).
    pub budget: f64,
    /// What the release spent, from OpenDP's privacy map.
    pub spent: f64,
    /// `epsilon` or `rho`.
    pub unit: String,
    /// The release's id (hex SHA-256 of its signed message).
    pub release_id: String,
    /// When it was created (Unix seconds).
    pub created_at: u64,
}

/// The result of asking to store a period's release.
#[derive(Debug, Clone, PartialEq)]
pub enum Committed {
    /// The release given was stored, with its ledger entry.
    Stored,
    /// A release of that period was already stored: these are its bytes, unchanged.
    Existing(Vec<u8>),
}

/// The node's store.
#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
    activities: sled::Tree,
    by_period: sled::Tree,
    imports: sled::Tree,
    releases: sled::Tree,
    ledger: sled::Tree,
    meta: sled::Tree,
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = Vec::new();
    // unwrap safety: serializing plain data into a Vec cannot fail.
    #[allow(clippy::unwrap_used)]
    ciborium::into_writer(value, &mut bytes).unwrap();
    bytes
}

fn decode<T: DeserializeOwned>(
    tree: &'static str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, StoreError> {
    ciborium::from_reader(bytes).map_err(|e| StoreError::Corrupt {
        tree,
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

fn period_key(period: Period, id: &str) -> Vec<u8> {
    let mut key = period.to_string().into_bytes();
    key.push(0);
    key.extend_from_slice(id.as_bytes());
    key
}

impl Store {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::LowSpace)
            .open()?;
        let store = Self {
            activities: db.open_tree("activities")?,
            by_period: db.open_tree("by_period")?,
            imports: db.open_tree("imports")?,
            releases: db.open_tree("releases")?,
            ledger: db.open_tree("ledger")?,
            meta: db.open_tree("meta")?,
            db,
        };
        match store.meta.get("schema")? {
            None => {
                store.meta.insert("schema", &SCHEMA_VERSION.to_be_bytes())?;
                store.db.flush()?;
            }
            Some(v) => {
                let found = <[u8; 8]>::try_from(v.as_ref())
                    .map(u64::from_be_bytes)
                    .unwrap_or(0);
                if found != SCHEMA_VERSION {
                    return Err(StoreError::Version { found });
                }
            }
        }
        Ok(store)
    }

    /// A new batch number for an import: increasing across the store's life.
    pub fn next_batch(&self) -> Result<u64, StoreError> {
        Ok(self.db.generate_id()?)
    }

    /// Stores a whole parsed file atomically and durably: each activity replaces any stored
    /// activity with the same id, unless it holds the same facts (then it is left untouched, so
    /// importing a file twice changes nothing). Returns only once the data is on disk.
    pub fn import(
        &self,
        activities: &[Activity],
        record: ImportRecord,
    ) -> Result<ImportSummary, StoreError> {
        let batch = activities.first().map_or(0, |a| a.batch);
        let result = (&self.activities, &self.by_period, &self.imports).transaction(
            |(acts, index, imports)| {
                let mut summary = ImportSummary::default();
                for activity in activities {
                    summary.rows += activity.participants.len() as u64;
                    let key = activity.id.as_bytes();
                    if let Some(bytes) = acts.get(key)? {
                        let stored: Activity = decode("activities", key, &bytes)
                            .map_err(ConflictableTransactionError::Abort)?;
                        if stored.same_content(activity) {
                            summary.unchanged += 1;
                            continue;
                        }
                        index.remove(period_key(stored.period(), &stored.id))?;
                        summary.replaced += 1;
                    } else {
                        summary.added += 1;
                    }
                    acts.insert(key, encode(activity))?;
                    index.insert(period_key(activity.period(), &activity.id), &[])?;
                }
                let record = ImportRecord {
                    summary: summary.clone(),
                    ..record.clone()
                };
                imports.insert(&batch.to_be_bytes(), encode(&record))?;
                Ok(summary)
            },
        );
        let summary = result.map_err(|e| match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => StoreError::Sled(e),
        })?;
        self.db.flush()?;
        Ok(summary)
    }

    /// Every activity of a period, in id order.
    pub fn activities_in(&self, period: Period) -> Result<Vec<Activity>, StoreError> {
        let mut prefix = period.to_string().into_bytes();
        prefix.push(0);
        let mut out = Vec::new();
        for entry in self.by_period.scan_prefix(&prefix) {
            let (key, _) = entry?;
            let id = &key[prefix.len()..];
            let bytes = self
                .activities
                .get(id)?
                .ok_or_else(|| StoreError::Corrupt {
                    tree: "by_period",
                    key: String::from_utf8_lossy(&key).into_owned(),
                    reason: "indexes an activity that is not stored".into(),
                })?;
            out.push(decode("activities", id, &bytes)?);
        }
        Ok(out)
    }

    /// Counts of what is stored.
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let mut stats = StoreStats {
            imports: self.imports.len() as u64,
            ..Default::default()
        };
        for entry in self.activities.iter() {
            let (key, bytes) = entry?;
            let activity: Activity = decode("activities", &key, &bytes)?;
            let rows = activity.participants.len() as u64;
            stats.activities += 1;
            stats.rows += rows;
            let cell = stats.periods.entry(activity.period()).or_default();
            cell.0 += 1;
            cell.1 += rows;
        }
        Ok(stats)
    }

    /// Stores a period's signed release and its budget spend in one transaction, durably, unless
    /// the period already has a release: then nothing is written and the stored bytes are
    /// returned. This is the only way a release enters the store, so a period's budget is spent
    /// at most once and a release, once stored, never changes.
    pub fn commit_release(
        &self,
        period: Period,
        release: &[u8],
        entry: &LedgerEntry,
    ) -> Result<Committed, StoreError> {
        let key = period.to_string();
        let outcome = (&self.releases, &self.ledger)
            .transaction(|(releases, ledger)| {
                if let Some(existing) = releases.get(key.as_bytes())? {
                    return Ok(Committed::Existing(existing.to_vec()));
                }
                if ledger.get(key.as_bytes())?.is_some() {
                    return Err(ConflictableTransactionError::Abort(StoreError::Corrupt {
                        tree: "ledger",
                        key: key.clone(),
                        reason: "a budget spend is recorded but its release is missing; refusing to spend the budget again".into(),
                    }));
                }
                releases.insert(key.as_bytes(), release)?;
                ledger.insert(key.as_bytes(), encode(entry))?;
                Ok(Committed::Stored)
            })
            .map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => StoreError::Sled(e),
            })?;
        self.db.flush()?;
        Ok(outcome)
    }

    /// The stored release of a period, in its wire bytes.
    pub fn release(&self, period: Period) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.releases.get(period.to_string())?.map(|v| v.to_vec()))
    }

    /// The budget ledger: every released period with what it spent, oldest first.
    pub fn ledger(&self) -> Result<Vec<(String, LedgerEntry)>, StoreError> {
        self.ledger
            .iter()
            .map(|entry| {
                let (key, bytes) = entry?;
                Ok((
                    String::from_utf8_lossy(&key).into_owned(),
                    decode("ledger", &key, &bytes)?,
                ))
            })
            .collect()
    }

    /// Every import, oldest first.
    pub fn imports(&self) -> Result<Vec<ImportRecord>, StoreError> {
        self.imports
            .iter()
            .map(|entry| {
                let (key, bytes) = entry?;
                decode("imports", &key, &bytes)
            })
            .collect()
    }
}
