//! The node's embedded store (sled): activity records, imports, releases and the budget ledger.
//!
//! Values are encoded with postcard (compact and fast; they never leave the node, so they
//! need no canonical form). Trees:
//! - `segments`: `YYYY-MM` + bucket (u8) → postcard list of that period's [`Activity`]s whose id
//!   hashes to the bucket, sorted by id. Activities are stored in a few dozen values per month,
//!   not one key each, so that importing a million rows costs a few thousand writes.
//! - `ids`: bucket (u8) → map `activite_id` → period: where each activity is stored.
//! - `period_stats`: `YYYY-MM` + bucket → (activities, rows) of that segment.
//! - `imports`: batch id (big-endian u64) → [`ImportRecord`]
//! - `releases`: `YYYY-MM` → the signed release of that period, in its wire bytes
//! - `ledger`: `YYYY-MM` → [`LedgerEntry`], the budget that release spent
//! - `meta`: `schema` → the format version; `pending_import` → the import being applied
//!
//! An import is all or nothing without holding the file in memory: the rows are validated and
//! written to a staging file as the file is read; only a file that passed every check is
//! committed, by recording it as `pending_import` (one durable write). Applying it to the
//! segments is idempotent and done period by period; if the process dies in between, opening
//! the store finishes the job (roll forward), and a staging file never committed is deleted.
//! A release and its budget spend are written in one transaction, and never overwritten: a
//! period is released once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use maillage_privacy::Activity;

use crate::import::{self, Row};
use maillage_protocol::Period;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

mod staging;

pub use staging::{StagingWriter, stable_hash};

const SCHEMA_VERSION: u64 = 3;

/// Buckets of activities per period.
const SEGMENT_BUCKETS: u8 = 16;
/// Buckets of the id index.
const ID_BUCKETS: u8 = 64;
/// At most about this many rows of one import are held in memory while it is applied.
const APPLY_CHUNK_ROWS: u64 = 50_000;
/// sled's page cache.
const SLED_CACHE_BYTES: u64 = 32 * 1024 * 1024;

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
    /// The staging file of an import could not be written or read.
    #[error("import staging file {path}: {reason}")]
    Staging {
        /// The file.
        path: String,
        /// What went wrong.
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

/// An import whose rows are staged and which is being applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PendingImport {
    batch: u64,
    staging: String,
    record: ImportRecord,
}

/// The node's store.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    db: sled::Db,
    segments: sled::Tree,
    ids: sled::Tree,
    period_stats: sled::Tree,
    imports: sled::Tree,
    releases: sled::Tree,
    ledger: sled::Tree,
    meta: sled::Tree,
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // unwrap safety: serializing plain data (no maps with non-string keys, no skipped fields)
    // into a Vec cannot fail.
    #[allow(clippy::unwrap_used)]
    postcard::to_allocvec(value).unwrap()
}

fn decode<T: DeserializeOwned>(
    tree: &'static str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        tree,
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

fn segment_key(period: Period, bucket: u8) -> Vec<u8> {
    let mut key = period.to_string().into_bytes();
    key.push(bucket);
    key
}

fn bucket_of(id: &str, buckets: u8) -> u8 {
    // The remainder is below `buckets`, a u8.
    (stable_hash(id) % u64::from(buckets)) as u8
}

fn staging_error(path: &Path, reason: impl ToString) -> StoreError {
    StoreError::Staging {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// An import in progress: the staging file being written. Drop it (or call
/// [`ImportStaging::abandon`]) to leave the store as it was.
#[derive(Debug)]
pub struct ImportStaging {
    batch: u64,
    writer: Option<StagingWriter>,
}

impl ImportStaging {
    /// The import's batch number (orders rows "in import order").
    pub fn batch(&self) -> u64 {
        self.batch
    }

    /// Appends a validated row.
    pub fn push(&mut self, row: &Row) -> std::io::Result<()> {
        match &mut self.writer {
            Some(w) => w.push(row, SEGMENT_BUCKETS),
            None => Err(std::io::Error::other("staging already finished")),
        }
    }

    /// Deletes the staging file: nothing of this import reaches the store.
    pub fn abandon(mut self) {
        self.remove_file();
    }

    fn remove_file(&mut self) {
        if let Some(w) = self.writer.take() {
            let _ = std::fs::remove_file(w.path());
        }
    }
}

impl Drop for ImportStaging {
    fn drop(&mut self) {
        self.remove_file();
    }
}

impl Store {
    /// Opens (or creates) the store at `path`, finishing any import a crash interrupted.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // A small page cache: nodes run on 512 MB servers, and sled's default is 1 GB.
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::LowSpace)
            .cache_capacity(SLED_CACHE_BYTES)
            .open()?;
        let store = Self {
            dir: path.to_path_buf(),
            segments: db.open_tree("segments")?,
            ids: db.open_tree("ids")?,
            period_stats: db.open_tree("period_stats")?,
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
        store.recover()?;
        Ok(store)
    }

    /// Rolls a committed import forward and deletes staging files never committed.
    fn recover(&self) -> Result<(), StoreError> {
        let pending: Option<PendingImport> = match self.meta.get("pending_import")? {
            Some(bytes) => Some(decode("meta", b"pending_import", &bytes)?),
            None => None,
        };
        if let Some(pending) = &pending {
            tracing::warn!(batch = pending.batch, file = %pending.record.file, "finishing an import interrupted by a crash");
            self.apply(pending)?;
        }
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("staging-") && name.ends_with(".rows") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }

    /// Starts an import: a new batch number and an empty staging file.
    pub fn begin_import(&self) -> Result<ImportStaging, StoreError> {
        let batch = self.db.generate_id()?;
        let path = self.dir.join(format!("staging-{batch}.rows"));
        let writer = StagingWriter::create(&path).map_err(|e| staging_error(&path, e))?;
        Ok(ImportStaging {
            batch,
            writer: Some(writer),
        })
    }

    /// Commits a fully validated import and applies it; durable when it returns. Each activity
    /// replaces any stored activity with the same id, unless it holds the same facts (then it is
    /// left untouched, so importing a file twice changes nothing).
    pub fn commit_import(
        &self,
        mut staging: ImportStaging,
        record: ImportRecord,
    ) -> Result<ImportSummary, StoreError> {
        let Some(writer) = staging.writer.take() else {
            return Err(staging_error(Path::new("?"), "already finished"));
        };
        let shown = writer.path().to_path_buf();
        let path = writer.finish().map_err(|e| {
            let _ = std::fs::remove_file(&shown);
            staging_error(&shown, e)
        })?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let pending = PendingImport {
            batch: staging.batch,
            staging: name,
            record,
        };
        self.meta.insert("pending_import", encode(&pending))?;
        self.db.flush()?;
        self.apply(&pending)
    }

    /// Applies a committed import (idempotent: it may run again after a crash).
    fn apply(&self, pending: &PendingImport) -> Result<ImportSummary, StoreError> {
        let path = self.dir.join(&pending.staging);
        let read_err = |e: String| staging_error(&path, e);

        // 1. Which ids the import holds, in which period, and how many rows per (period, bucket).
        let mut new_period: HashMap<String, Period> = HashMap::new();
        let mut rows_per: BTreeMap<(Period, u8), u64> = BTreeMap::new();
        staging::read_frames(
            &path,
            |_| false,
            |head, _| {
                *rows_per.entry((head.period, head.bucket)).or_default() += 1;
                new_period.insert(head.id, head.period);
                Ok(())
            },
        )
        .map_err(read_err)?;

        // 2. Where those ids are stored now (the index is updated last, so after a crash it
        //    still says where the previous versions were).
        let mut index: BTreeMap<u8, BTreeMap<String, Period>> = BTreeMap::new();
        for id in new_period.keys() {
            let b = bucket_of(id, ID_BUCKETS);
            if let std::collections::btree_map::Entry::Vacant(e) = index.entry(b) {
                e.insert(match self.ids.get([b])? {
                    Some(bytes) => decode("ids", &[b], &bytes)?,
                    None => BTreeMap::new(),
                });
            }
        }
        let mut removals: BTreeMap<(Period, u8), BTreeSet<String>> = BTreeMap::new();
        let mut moved: BTreeSet<String> = BTreeSet::new();
        for (id, period) in &new_period {
            let old = index
                .get(&bucket_of(id, ID_BUCKETS))
                .and_then(|m| m.get(id))
                .copied();
            if let Some(old) = old.filter(|old| old != period) {
                removals
                    .entry((old, bucket_of(id, SEGMENT_BUCKETS)))
                    .or_default()
                    .insert(id.clone());
                moved.insert(id.clone());
            }
        }

        // 3. Rewrite the touched segments, a chunk of (period, bucket)s at a time.
        let mut summary = ImportSummary::default();
        let mut targets: BTreeSet<(Period, u8)> = rows_per.keys().copied().collect();
        targets.extend(removals.keys().copied());
        let targets: Vec<(Period, u8)> = targets.into_iter().collect();
        let mut chunk_start = 0;
        while chunk_start < targets.len() {
            let mut chunk_end = chunk_start;
            let mut rows = 0;
            while chunk_end < targets.len()
                && (chunk_end == chunk_start
                    || rows + rows_per.get(&targets[chunk_end]).copied().unwrap_or(0)
                        <= APPLY_CHUNK_ROWS)
            {
                rows += rows_per.get(&targets[chunk_end]).copied().unwrap_or(0);
                chunk_end += 1;
            }
            let chunk: BTreeSet<(Period, u8)> =
                targets[chunk_start..chunk_end].iter().copied().collect();
            let mut staged: BTreeMap<(Period, u8), Vec<Row>> = BTreeMap::new();
            staging::read_frames(
                &path,
                |h: &staging::FrameHead| chunk.contains(&(h.period, h.bucket)),
                |h, row| {
                    if let Some(row) = row {
                        staged.entry((h.period, h.bucket)).or_default().push(row);
                    }
                    Ok(())
                },
            )
            .map_err(read_err)?;
            for &(period, bucket) in &chunk {
                let incoming = import::group(
                    staged.remove(&(period, bucket)).unwrap_or_default(),
                    pending.batch,
                );
                let gone = removals.remove(&(period, bucket)).unwrap_or_default();
                self.rewrite_segment(period, bucket, incoming, &gone, &moved, &mut summary)?;
            }
            chunk_start = chunk_end;
        }

        // 4. Update the index, record the import, clear the marker.
        for (id, period) in &new_period {
            if let Some(m) = index.get_mut(&bucket_of(id, ID_BUCKETS)) {
                m.insert(id.clone(), *period);
            }
        }
        let mut batch = sled::Batch::default();
        for (b, m) in &index {
            batch.insert(&[*b], encode(m));
        }
        self.ids.apply_batch(batch)?;
        summary.rows = rows_per.values().sum();
        let record = ImportRecord {
            summary: summary.clone(),
            ..pending.record.clone()
        };
        self.imports
            .insert(pending.batch.to_be_bytes(), encode(&record))?;
        self.meta.remove("pending_import")?;
        self.db.flush()?;
        let _ = std::fs::remove_file(&path);
        Ok(summary)
    }

    fn load_segment(&self, period: Period, bucket: u8) -> Result<Vec<Activity>, StoreError> {
        let key = segment_key(period, bucket);
        match self.segments.get(&key)? {
            Some(bytes) => decode("segments", &key, &bytes),
            None => Ok(Vec::new()),
        }
    }

    fn rewrite_segment(
        &self,
        period: Period,
        bucket: u8,
        incoming: Vec<Activity>,
        gone: &BTreeSet<String>,
        moved: &BTreeSet<String>,
        summary: &mut ImportSummary,
    ) -> Result<(), StoreError> {
        let mut stored: BTreeMap<String, Activity> = self
            .load_segment(period, bucket)?
            .into_iter()
            .map(|a| (a.id.clone(), a))
            .collect();
        for id in gone {
            stored.remove(id);
        }
        for activity in incoming {
            match stored.get(&activity.id) {
                Some(old) if old.same_content(&activity) => summary.unchanged += 1,
                Some(_) => {
                    summary.replaced += 1;
                    stored.insert(activity.id.clone(), activity);
                }
                None => {
                    // Stored before in another month (a corrected date): a replacement.
                    if moved.contains(&activity.id) {
                        summary.replaced += 1;
                    } else {
                        summary.added += 1;
                    }
                    stored.insert(activity.id.clone(), activity);
                }
            }
        }
        let key = segment_key(period, bucket);
        if stored.is_empty() {
            self.segments.remove(&key)?;
            self.period_stats.remove(&key)?;
        } else {
            let rows: u64 = stored.values().map(|a| a.participants.len() as u64).sum();
            let list: Vec<&Activity> = stored.values().collect();
            self.segments.insert(&key, encode(&list))?;
            self.period_stats
                .insert(&key, encode(&(stored.len() as u64, rows)))?;
        }
        Ok(())
    }

    /// Every activity of a period, in id order.
    pub fn activities_in(&self, period: Period) -> Result<Vec<Activity>, StoreError> {
        let mut out = Vec::new();
        for bucket in 0..SEGMENT_BUCKETS {
            out.extend(self.load_segment(period, bucket)?);
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Counts of what is stored.
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let mut stats = StoreStats {
            imports: self.imports.len() as u64,
            ..Default::default()
        };
        for entry in self.period_stats.iter() {
            let (key, bytes) = entry?;
            let (activities, rows): (u64, u64) = decode("period_stats", &key, &bytes)?;
            let period: Period = std::str::from_utf8(key.get(..7).unwrap_or_default())
                .ok()
                .and_then(|k| k.parse().ok())
                .ok_or_else(|| StoreError::Corrupt {
                    tree: "period_stats",
                    key: String::from_utf8_lossy(&key).into_owned(),
                    reason: "not a period".into(),
                })?;
            stats.activities += activities;
            stats.rows += rows;
            let cell = stats.periods.entry(period).or_default();
            cell.0 += activities;
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

    /// A named tree of the same database, for the role-specific state (hub log, aggregates)
    /// that other modules own.
    pub fn tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree(name)?)
    }

    /// Waits until everything written so far is on disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::validate;

    const FILE: &str = "activite_id,date,type,duree,beneficiaire_id\n\
                        a,2026-10-01,individuel,30,p1\n\
                        w,2026-10-02,collectif,60,p1\n\
                        w,2026-10-02,collectif,60,p2\n\
                        b,2026-11-03,individuel,20,\n";

    fn record() -> ImportRecord {
        ImportRecord {
            file: "t.csv".into(),
            sha256: String::new(),
            at: String::new(),
            summary: ImportSummary::default(),
        }
    }

    fn stage(store: &Store, text: &str) -> ImportStaging {
        let mut staging = store.begin_import().expect("begin");
        validate(text.as_bytes(), &mut |row| staging.push(&row), &mut ()).expect("valid");
        staging
    }

    fn period(p: &str) -> Period {
        p.parse().expect("period")
    }

    #[test]
    fn a_committed_import_interrupted_before_apply_is_finished_on_open() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| staging_error(Path::new("tmp"), e))?;
        let path = dir.path().join("store");
        {
            let store = Store::open(&path)?;
            let mut staging = stage(&store, FILE);
            // What commit_import does up to the crash: staging on disk, marker recorded.
            let writer = staging.writer.take().expect("writer");
            let file = writer.finish().map_err(|e| staging_error(&path, e))?;
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let pending = PendingImport {
                batch: staging.batch,
                staging: name,
                record: record(),
            };
            store.meta.insert("pending_import", encode(&pending))?;
            store.db.flush()?;
            assert!(
                store.activities_in(period("2026-10"))?.is_empty(),
                "not applied yet"
            );
        }
        let store = Store::open(&path)?;
        assert_eq!(store.activities_in(period("2026-10"))?.len(), 2);
        assert_eq!(store.activities_in(period("2026-11"))?.len(), 1);
        assert_eq!(store.stats()?.rows, 4);
        assert_eq!(store.imports()?.len(), 1);
        assert!(store.meta.get("pending_import")?.is_none());
        // Applying again changes nothing (idempotent roll forward).
        let again = store.commit_import(stage(&store, FILE), record())?;
        assert_eq!((again.added, again.replaced, again.unchanged), (0, 0, 3));
        Ok(())
    }

    #[test]
    fn an_abandoned_import_leaves_the_store_and_the_folder_as_they_were() -> Result<(), StoreError>
    {
        let dir = tempfile::tempdir().map_err(|e| staging_error(Path::new("tmp"), e))?;
        let path = dir.path().join("store");
        let store = Store::open(&path)?;
        store.commit_import(stage(&store, FILE), record())?;
        let before = store.stats()?;
        let staging = stage(
            &store,
            "activite_id,date,type,duree\nz,2026-10-09,individuel,5\n",
        );
        drop(staging);
        assert_eq!(store.stats()?, before);
        let leftovers = std::fs::read_dir(&path)
            .map_err(|e| staging_error(&path, e))?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("staging-"))
            .count();
        assert_eq!(leftovers, 0);
        Ok(())
    }

    #[test]
    fn moving_an_activity_to_another_month_removes_it_from_the_first() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| staging_error(Path::new("tmp"), e))?;
        let store = Store::open(&dir.path().join("store"))?;
        store.commit_import(stage(&store, FILE), record())?;
        let summary = store.commit_import(
            stage(
                &store,
                "activite_id,date,type,duree\na,2026-12-01,individuel,30\n",
            ),
            record(),
        )?;
        assert_eq!((summary.added, summary.replaced), (0, 1));
        assert!(
            store
                .activities_in(period("2026-10"))?
                .iter()
                .all(|a| a.id != "a")
        );
        assert_eq!(store.activities_in(period("2026-12"))?.len(), 1);
        assert_eq!(store.stats()?.activities, 3);
        Ok(())
    }
}
