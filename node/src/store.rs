//! The node's embedded store (sled, and its own synced files for the bulk): activity records,
//! imports, releases and the budget ledger.
//!
//! Trees:
//! - `data`: the activity records, in compact binary records (see [`codec`]):
//!   - `S` + `YYYY-MM` + bucket (u8) → where that period's activities whose id hashes to the
//!     bucket are (a reference into a segment file: the records sorted by (hash, id)), and
//!     how many activities and rows they are. A month is one prefix scan and 16 file reads.
//!   - `I` + index bucket (u8) → where the bucket's sorted (id hash, period) pairs are: every
//!     period where an activity with that id hash is stored (a superset: a hash collision only
//!     costs a look), so that an activity whose date moved to another month is removed from
//!     the old one.
//!   - `p` → how far the import being applied has gone (see below).
//! - `imports`: batch id (big-endian u64) → [`ImportRecord`] (postcard)
//! - `releases`: `YYYY-MM` → the signed release of that period, in its wire bytes
//! - `ledger`: `YYYY-MM` → [`LedgerEntry`], the budget that release spent (postcard)
//! - `meta`: `schema` → the format version; `pending_import` → the import being applied
//!
//! The records and index entries themselves are in files of the `segments/` folder (see
//! `store/segments.rs`), synced before any sled record names them: sled 0.34 never fsyncs the files
//! it puts large values in, so every sled value here is small.
//!
//! Ids hash ([`stable_hash`]) into 16 buckets (partitions) and 256 index buckets, the index
//! bucket refining the partition: everything about the activities of one partition (their
//! segments in every period and their index entries) changes together, in one atomic sled batch.
//!
//! An import is all or nothing without holding the file in memory: the rows are validated and
//! written to a staging file, partitioned, as the file is read; the rows of each activity are
//! then checked together, a partition at a time, and written as records to the import's
//! records file (`segments/N.recs`). Only a file that passed every check is committed, by
//! recording it as `pending_import` (one durable write). Applying it is done a partition at a
//! time, each in one atomic batch that also records the progress (`p`); if the process dies in
//! between, opening the store finishes the job from there (roll forward), and a staging file
//! never committed is deleted. Segments that did not exist are named where they are in the
//! records file; merged ones are written to `segments/N.seg`; files no record names any more
//! are deleted. A release and its budget spend are written in one transaction, and never
//! overwritten: a period is released once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use maillage_privacy::Activity;
use maillage_privacy::exact::{Indicators, Tally};
use maillage_protocol::{Indicator, Period};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

pub mod codec;
mod segments;
mod staging;

pub use codec::stable_hash;
use codec::{Bad, FrameRef, PeriodRecords, RecordRef};
use segments::{Appender, BlobRef, FileId, FileKind, SegmentFiles};
use staging::{Kind, PARTITIONS, RecordsWriter, StagingFile, StagingWriter};

/// 5: segments and index buckets in files named by sled records (4: in sled, in chunks).
const SCHEMA_VERSION: u64 = 5;
/// sled's page cache.
const SLED_CACHE_BYTES: u64 = 32 * 1024 * 1024;
/// A segment file is compacted once it holds at least this many unused bytes (and more unused
/// than used ones).
const COMPACT_MIN_DEAD: u64 = 1 << 20;
/// The key of the import progress record in `data`.
const PROGRESS_KEY: &[u8] = b"p";

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
    /// A segment file (stored activities) is missing or damaged.
    #[error(
        "segment file {path} cannot be read: {reason}; the store is damaged: restore the node's folder from a backup"
    )]
    Segment {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A file of the store could not be written.
    #[error(
        "cannot write {path}: {reason} (check the free disk space and the folder's permissions)"
    )]
    Write {
        /// The file or folder.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// Another process has the store open.
    #[error("the store is in use by another process")]
    Locked,
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
    data: sled::Tree,
    imports: sled::Tree,
    releases: sled::Tree,
    ledger: sled::Tree,
    meta: sled::Tree,
    files: SegmentFiles,
    /// Batches of the imports begun and not yet finished: their files are not garbage.
    imports_in_progress: Arc<Mutex<BTreeSet<u64>>>,
    /// Held while an import is applied: one at a time.
    applying: Arc<Mutex<()>>,
    /// This process's exclusive lock on the store folder (see [`lock_store`]).
    _lock: Arc<std::fs::File>,
}

/// Marks an import's batch as in progress while it lives.
#[derive(Debug)]
struct InProgress {
    batch: u64,
    set: Arc<Mutex<BTreeSet<u64>>>,
}

impl Drop for InProgress {
    fn drop(&mut self) {
        lock(&self.set).remove(&self.batch);
    }
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

fn corrupt(key: &[u8]) -> impl FnOnce(Bad) -> StoreError + '_ {
    move |bad| StoreError::Corrupt {
        tree: "data",
        key: String::from_utf8_lossy(key).into_owned(),
        reason: bad.to_string(),
    }
}

/// `S` + period: the prefix of a month's segments.
fn month_prefix(period: Period) -> Vec<u8> {
    let mut key = Vec::with_capacity(11);
    key.push(b'S');
    key.extend_from_slice(period.to_string().as_bytes());
    key
}

/// `S` + period + bucket: a segment.
fn segment_key(period: Period, bucket: u8) -> Vec<u8> {
    let mut key = month_prefix(period);
    key.push(bucket);
    key
}

fn index_key(bucket: u8) -> [u8; 2] {
    [b'I', bucket]
}

/// The index bucket of an id hash; its low four bits are the hash's partition.
fn index_bucket(hash: u64) -> u8 {
    (hash & 0xff) as u8
}

/// A stored segment: where its records are, and how many activities and rows they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    blob: BlobRef,
    activities: u64,
    rows: u64,
}

impl Segment {
    fn to_bytes(self) -> Vec<u8> {
        let mut b = Vec::with_capacity(segments::BLOB_REF_LEN + 16);
        self.blob.write(&mut b);
        b.extend_from_slice(&self.activities.to_le_bytes());
        b.extend_from_slice(&self.rows.to_le_bytes());
        b
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, Bad> {
        let mut c = codec::Cursor::new(bytes);
        let segment = Self {
            blob: BlobRef::read(&mut c)?,
            activities: c.u64()?,
            rows: c.u64()?,
        };
        if !c.is_empty() {
            return Err(Bad("trailing bytes"));
        }
        Ok(segment)
    }
}

/// The [`BlobRef`] of an index bucket record.
fn index_ref_from_bytes(bytes: &[u8]) -> Result<BlobRef, Bad> {
    let mut c = codec::Cursor::new(bytes);
    let blob = BlobRef::read(&mut c)?;
    if !c.is_empty() {
        return Err(Bad("trailing bytes"));
    }
    Ok(blob)
}

fn blob_to_bytes(blob: &BlobRef) -> Vec<u8> {
    let mut b = Vec::with_capacity(segments::BLOB_REF_LEN);
    blob.write(&mut b);
    b
}

fn index_from_bytes(bytes: &[u8]) -> Result<Vec<(u64, u16)>, Bad> {
    if !bytes.len().is_multiple_of(10) {
        return Err(Bad("index length"));
    }
    let mut c = codec::Cursor::new(bytes);
    let mut out = Vec::with_capacity(bytes.len() / 10);
    while !c.is_empty() {
        out.push((c.u64()?, c.u16()?));
    }
    Ok(out)
}

fn index_to_bytes(entries: &[(u64, u16)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 10);
    for (hash, period) in entries {
        out.extend_from_slice(&hash.to_le_bytes());
        out.extend_from_slice(&period.to_le_bytes());
    }
    out
}

fn progress_to_bytes(batch: u64, next: u8, s: &ImportSummary) -> Vec<u8> {
    let mut out = Vec::with_capacity(33);
    out.extend_from_slice(&batch.to_le_bytes());
    out.push(next);
    for v in [s.added, s.replaced, s.unchanged] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

fn progress_from_bytes(bytes: &[u8]) -> Result<(u64, u8, ImportSummary), Bad> {
    let mut c = codec::Cursor::new(bytes);
    Ok((
        c.u64()?,
        c.u8()?,
        ImportSummary {
            added: c.u64()?,
            replaced: c.u64()?,
            unchanged: c.u64()?,
            rows: 0,
        },
    ))
}

/// A lock whose holder panicked still guards a consistent value here (sets of batch numbers,
/// the unit of the apply lock): it is used as it is.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn segment_error(e: segments::ReadError) -> StoreError {
    StoreError::Segment {
        path: e.path.display().to_string(),
        reason: e.reason,
    }
}

fn staging_error(path: &Path, reason: impl ToString) -> StoreError {
    StoreError::Staging {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// An import in progress: the rows file being written, then checked into the records file.
/// Drop it (or call [`ImportStaging::abandon`]) to leave the store as it was.
#[derive(Debug)]
pub struct ImportStaging {
    batch: u64,
    /// The rows file, written as the imported file is read.
    path: PathBuf,
    /// The records file, written when the rows are checked.
    records_path: PathBuf,
    writer: Option<StagingWriter>,
    /// The records file, once every partition was checked.
    file: Option<StagingFile>,
    /// Whether the records file belongs to a committed import (then it must stay).
    committed: bool,
    _in_progress: InProgress,
}

impl ImportStaging {
    /// The import's batch number (orders rows "in import order").
    pub fn batch(&self) -> u64 {
        self.batch
    }

    /// Appends a validated row (a frame, as [`codec::FrameWriter`] wrote it).
    pub fn push(&mut self, frame: &[u8]) -> std::io::Result<()> {
        match &mut self.writer {
            Some(w) => w.push(frame),
            None => Err(std::io::Error::other("staging already finished")),
        }
    }

    /// Finishes the rows file and hands the rows of each activity, in file order, to `check`, a
    /// partition at a time, on two threads: each has its own `E` (say, the errors it found), and
    /// both are returned with how many activities the file holds. Meanwhile the records the
    /// import will store are written to the records file, ready to be merged into the store
    /// (the rows file is deleted once read).
    pub fn check<E: Default + Send>(
        &mut self,
        check: &(dyn Fn(&[FrameRef<'_>], &mut E) + Sync),
    ) -> Result<(u64, Vec<E>), StoreError> {
        let t0 = std::time::Instant::now();
        let Some(writer) = self.writer.take() else {
            return Err(staging_error(&self.path, "already checked"));
        };
        let rows = writer.finish().map_err(|e| staging_error(&self.path, e))?;
        let records =
            RecordsWriter::create(&self.records_path).map_err(|e| staging_error(&self.path, e))?;
        let batch = self.batch;
        let next = std::sync::atomic::AtomicU8::new(0);
        let worker = || -> Result<(u64, E), StoreError> {
            let mut bytes = Vec::new();
            let mut built = PeriodRecords::default();
            let mut found = E::default();
            let mut activities = 0u64;
            loop {
                let p = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if p >= PARTITIONS {
                    return Ok((activities, found));
                }
                rows.read_partition(p, &mut bytes)
                    .map_err(|e| staging_error(&self.path, e))?;
                let mut frames = codec::frames(&bytes).map_err(|e| staging_error(&self.path, e))?;
                built.clear();
                codec::for_each_activity(&mut frames, |rows| {
                    activities += 1;
                    check(rows, &mut found);
                    built.push(rows, batch)
                })
                .map_err(|e| staging_error(&self.path, e))?;
                records
                    .write_partition(p, &built.pieces(), built.rows())
                    .map_err(|e| staging_error(&self.records_path, e))?;
            }
        };
        let checked = std::sync::atomic::AtomicBool::new(false);
        let (a, b) = std::thread::scope(|scope| {
            // Writes the records to disk as they come, so that the sync at commit has little
            // left to do (it is what makes them durable; failures here are only retried there).
            scope.spawn(|| {
                while !checked.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = records.sync_data();
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            });
            let other = scope.spawn(worker);
            let mine = worker();
            let theirs = other
                .join()
                .unwrap_or_else(|_| Err(staging_error(&self.path, "a checking thread failed")));
            checked.store(true, std::sync::atomic::Ordering::Relaxed);
            (mine, theirs)
        });
        let (a, b) = (a?, b?);
        drop(rows);
        let _ = std::fs::remove_file(&self.path);
        let file = records
            .finish()
            .map_err(|e| staging_error(&self.records_path, e))?;
        self.file = Some(file);
        tracing::debug!(elapsed = ?t0.elapsed(), "import: activities checked, records staged");
        Ok((a.0 + b.0, vec![a.1, b.1]))
    }

    /// Deletes the staging files: nothing of this import reaches the store.
    pub fn abandon(self) {}
}

impl Drop for ImportStaging {
    fn drop(&mut self) {
        if !self.committed {
            self.writer = None;
            self.file = None;
            let _ = std::fs::remove_file(&self.path);
            let _ = std::fs::remove_file(&self.records_path);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Pending,
    Added,
    Replaced,
    Unchanged,
}

impl Store {
    /// Opens (or creates) the store at `path`, finishing any import a crash interrupted.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let lock = lock_store(path)?;
        // Only with the lock held: another process's snapshot in progress is not ours to delete.
        remove_partial_snapshots(path);
        // A small page cache: nodes run on 512 MB servers, and sled's default is 1 GB.
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::LowSpace)
            .cache_capacity(SLED_CACHE_BYTES)
            .open()?;
        let files = SegmentFiles::open(path).map_err(write_error(&path.join(segments::FOLDER)))?;
        let store = Self {
            dir: path.to_path_buf(),
            data: db.open_tree("data")?,
            imports: db.open_tree("imports")?,
            releases: db.open_tree("releases")?,
            ledger: db.open_tree("ledger")?,
            meta: db.open_tree("meta")?,
            db,
            files,
            imports_in_progress: Arc::default(),
            applying: Arc::default(),
            _lock: Arc::new(lock),
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
                if found == 4 {
                    store.migrate_from_4()?;
                } else if found != SCHEMA_VERSION {
                    return Err(StoreError::Version { found });
                }
            }
        }
        store.recover()?;
        Ok(store)
    }

    /// Moves the segments and index buckets of a version-4 store (in sled, segments cut into
    /// chunks) into a segment file, in one atomic batch; run again if interrupted, it finds
    /// nothing left to move and only records the version.
    fn migrate_from_4(&self) -> Result<(), StoreError> {
        let batch_id = self.db.generate_id()?;
        let appender = Appender::new(&self.files, batch_id);
        let append = |bytes: &[u8]| {
            appender
                .append(bytes)
                .map_err(write_error(&self.files.path(FileId {
                    batch: batch_id,
                    kind: FileKind::Segments,
                })))
        };
        let mut batch = sled::Batch::default();
        let mut moved = 0u64;
        // `c` + period + bucket → (activities: u64, rows: u64, chunks: u16), the segment's
        // chunks under `s` + period + bucket + chunk (u16, big-endian).
        for entry in self.data.scan_prefix(b"c") {
            let (key, stats) = entry?;
            let mut c = codec::Cursor::new(&stats);
            let activities = c.u64().map_err(corrupt(&key))?;
            let rows = c.u64().map_err(corrupt(&key))?;
            let mut prefix = key.to_vec();
            prefix[0] = b's';
            let mut bytes = Vec::new();
            for chunk in self.data.scan_prefix(&prefix) {
                let (chunk_key, chunk) = chunk?;
                bytes.extend_from_slice(&chunk);
                batch.remove(chunk_key);
            }
            codec::records(&bytes).map_err(corrupt(&prefix))?;
            let blob = append(&bytes)?;
            let mut new_key = key.to_vec();
            new_key[0] = b'S';
            batch.insert(
                new_key,
                Segment {
                    blob,
                    activities,
                    rows,
                }
                .to_bytes(),
            );
            batch.remove(key);
            moved += 1;
        }
        for entry in self.data.scan_prefix(b"i") {
            let (key, entries) = entry?;
            let [b'i', bucket] = key.as_ref() else {
                continue;
            };
            index_from_bytes(&entries).map_err(corrupt(&key))?;
            let blob = append(&entries)?;
            batch.insert(index_key(*bucket).to_vec(), blob_to_bytes(&blob));
            batch.remove(key);
        }
        appender.sync().map_err(write_error(self.files.dir()))?;
        self.data.apply_batch(batch)?;
        self.meta.insert("schema", &SCHEMA_VERSION.to_be_bytes())?;
        self.db.flush()?;
        tracing::info!(
            segments = moved,
            "store moved to format version {SCHEMA_VERSION}"
        );
        Ok(())
    }

    /// Rolls a committed import forward and deletes staging files never committed and segment
    /// files no record names.
    fn recover(&self) -> Result<(), StoreError> {
        let pending: Option<PendingImport> = match self.meta.get("pending_import")? {
            Some(bytes) => Some(decode("meta", b"pending_import", &bytes)?),
            None => None,
        };
        if let Some(pending) = &pending {
            tracing::warn!(batch = pending.batch, file = %pending.record.file, "finishing an import interrupted by a crash");
            let path = self.dir.join(&pending.staging);
            let file = StagingFile::open(&path).map_err(|e| staging_error(&path, e))?;
            let _applying = lock(&self.applying);
            self.apply(pending, &file, None)?;
        }
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("staging-")
                    && (name.ends_with(".rows") || name.ends_with(".recs"))
                {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        self.collect_garbage();
        Ok(())
    }

    /// Every record that names bytes of a segment file: its key, the segment (for `S` records;
    /// `None` for index buckets) and where the bytes are.
    fn references(&self) -> Result<Vec<(sled::IVec, Option<Segment>, BlobRef)>, StoreError> {
        let mut refs = Vec::new();
        for entry in self.data.scan_prefix(b"S") {
            let (key, value) = entry?;
            let segment = Segment::from_bytes(&value).map_err(corrupt(&key))?;
            refs.push((key, Some(segment), segment.blob));
        }
        for entry in self.data.scan_prefix(b"I") {
            let (key, value) = entry?;
            let blob = index_ref_from_bytes(&value).map_err(corrupt(&key))?;
            refs.push((key, None, blob));
        }
        Ok(refs)
    }

    /// Deletes the segment files that no record names, except those of imports in progress.
    /// A failure only leaves files behind (the next run deletes them): it is logged.
    fn collect_garbage(&self) {
        let mut keep: BTreeSet<FileId> = match self.references() {
            Ok(refs) => refs.into_iter().map(|(_, _, blob)| blob.file).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "unused segment files not deleted");
                return;
            }
        };
        for &batch in lock(&self.imports_in_progress).iter() {
            for kind in [FileKind::Records, FileKind::Segments] {
                keep.insert(FileId { batch, kind });
            }
        }
        let removed = self.files.remove_unreferenced(&keep);
        tracing::debug!(removed, "segment files no longer used deleted");
    }

    /// Starts an import: a new batch number and an empty rows file.
    pub fn begin_import(&self) -> Result<ImportStaging, StoreError> {
        let batch = self.db.generate_id()?;
        let path = self.dir.join(format!("staging-{batch}.rows"));
        let records_path = self.files.path(FileId {
            batch,
            kind: FileKind::Records,
        });
        lock(&self.imports_in_progress).insert(batch);
        let in_progress = InProgress {
            batch,
            set: Arc::clone(&self.imports_in_progress),
        };
        let writer = StagingWriter::create(&path).map_err(|e| staging_error(&path, e))?;
        Ok(ImportStaging {
            batch,
            path,
            records_path,
            writer: Some(writer),
            file: None,
            committed: false,
            _in_progress: in_progress,
        })
    }

    /// Commits a fully validated import (staged and checked, see [`ImportStaging::check`]) and
    /// applies it; durable when it returns. Each activity replaces any stored activity with the
    /// same id, unless it holds the same facts (then it is left untouched, so importing a file
    /// twice changes nothing).
    pub fn commit_import(
        &self,
        mut staging: ImportStaging,
        record: ImportRecord,
    ) -> Result<ImportSummary, StoreError> {
        let t0 = std::time::Instant::now();
        let Some(file) = staging.file.take() else {
            return Err(staging_error(
                &staging.records_path,
                "not checked, or already committed",
            ));
        };
        // From here the file may belong to the pending import: if applying fails, the next open
        // finishes it, so the file must stay (if the commit did not happen, the next open
        // deletes it).
        staging.committed = true;
        let name = staging
            .records_path
            .strip_prefix(&self.dir)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let pending = PendingImport {
            batch: staging.batch,
            staging: name,
            record,
        };
        // Done by `apply` while its first partitions are being prepared (nothing is written to
        // sled before): the records file and its name in the folder must be on disk before the
        // commit names it.
        let commit = || -> Result<(), StoreError> {
            file.sync_all()
                .map_err(|e| staging_error(&staging.records_path, e))?;
            segments::sync_dir(self.files.dir()).map_err(write_error(self.files.dir()))?;
            self.meta.insert("pending_import", encode(&pending))?;
            self.db.flush()?;
            tracing::debug!(elapsed = ?t0.elapsed(), "import: records synced, committed");
            Ok(())
        };
        let _applying = lock(&self.applying);
        let summary = self.apply(&pending, &file, Some(&commit))?;
        tracing::debug!(elapsed = ?t0.elapsed(), "import: applied");
        drop(file);
        drop(staging);
        // The import is done and durable: tidying up can only fail to save space.
        if let Err(e) = self.compact(pending.batch) {
            tracing::warn!(error = %e, "segment files not compacted");
        }
        self.collect_garbage();
        Ok(summary)
    }

    /// Copies what is still used of the segment files that are mostly unused (more than half
    /// of their bytes, and at least [`COMPACT_MIN_DEAD`]) to batch `batch`'s segment file, in
    /// one atomic batch, so that [`Store::collect_garbage`] can delete them: the store never
    /// takes much more than twice the room of what it holds. Interrupted, it leaves either the
    /// old references or the new ones (and some unused bytes).
    fn compact(&self, batch: u64) -> Result<(), StoreError> {
        let refs = self.references()?;
        let mut live: BTreeMap<FileId, u64> = BTreeMap::new();
        for (_, _, blob) in &refs {
            *live.entry(blob.file).or_default() += blob.len;
        }
        let current = FileId {
            batch,
            kind: FileKind::Segments,
        };
        let victims: BTreeSet<FileId> = self
            .files
            .list()
            .into_iter()
            .filter(|(file, _, size)| {
                let used = live.get(file).copied().unwrap_or(0);
                *file != current
                    && used > 0
                    && size.saturating_sub(used) >= COMPACT_MIN_DEAD.max(used)
            })
            .map(|(file, _, _)| file)
            .collect();
        if victims.is_empty() {
            return Ok(());
        }
        let appender = Appender::new(&self.files, batch);
        let mut out = sled::Batch::default();
        let mut bytes = Vec::new();
        let mut copied = 0u64;
        for (key, segment, blob) in refs {
            if !victims.contains(&blob.file) {
                continue;
            }
            self.read_blob(&blob, &mut bytes)?;
            let moved = appender
                .append(&bytes)
                .map_err(write_error(&self.files.path(current)))?;
            copied += moved.len;
            out.insert(
                key,
                match segment {
                    Some(segment) => Segment {
                        blob: moved,
                        ..segment
                    }
                    .to_bytes(),
                    None => blob_to_bytes(&moved),
                },
            );
        }
        appender
            .sync()
            .map_err(write_error(&self.files.path(current)))?;
        self.data.apply_batch(out)?;
        self.db.flush()?;
        tracing::debug!(files = victims.len(), copied, "segment files compacted");
        Ok(())
    }

    /// Applies a committed import, a partition at a time, each in one atomic batch that records
    /// how far it has gone; after a crash it resumes where it stopped. `commit`, when given, is
    /// done before anything is written to sled (while the first partitions are being
    /// prepared): it commits the import.
    fn apply(
        &self,
        pending: &PendingImport,
        file: &StagingFile,
        commit: Option<&dyn Fn() -> Result<(), StoreError>>,
    ) -> Result<ImportSummary, StoreError> {
        let (mut next, mut summary) = match self.data.get(PROGRESS_KEY)? {
            Some(bytes) => {
                let (batch, next, summary) =
                    progress_from_bytes(&bytes).map_err(corrupt(PROGRESS_KEY))?;
                if batch == pending.batch {
                    (next, summary)
                } else {
                    (0, ImportSummary::default())
                }
            }
            None => (0, ImportSummary::default()),
        };
        let ta = std::time::Instant::now();
        // A segment that did not exist is named where it is in the records file, when that is
        // this import's own (not a rows file, nor a records file an older version committed
        // outside the segments folder): no copy.
        let own = FileId {
            batch: pending.batch,
            kind: FileKind::Records,
        };
        let in_place = file.kind() == Kind::Records && file.path() == self.files.path(own);
        let appender = Appender::new(&self.files, pending.batch);
        // Two threads prepare the partitions (reading the staged records and the stored
        // segments they touch, writing merged segments and index buckets to the segment file),
        // one taking every other partition; partitions touch disjoint keys, so preparing one
        // does not depend on applying another. Their sled batches are small (references), so
        // all are kept until every partition is prepared; then the segment file is synced and
        // the batches applied in order.
        std::thread::scope(|scope| -> Result<(), StoreError> {
            type Prepared = Result<(sled::Batch, ImportSummary), StoreError>;
            let first = next;
            let mut ready = Vec::new();
            for lane in 0..2u8 {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Prepared>(usize::from(PARTITIONS));
                ready.push(rx);
                let appender = &appender;
                scope.spawn(move || {
                    let mut bytes = Vec::new();
                    let mut built = Vec::new();
                    let started = std::time::Instant::now();
                    for p in (first + lane..PARTITIONS).step_by(2) {
                        let place = if in_place {
                            file.partition_start(p).map(|start| (own, start))
                        } else {
                            None
                        };
                        let prepared = partition_records(file, p, pending.batch, &mut bytes, &mut built)
                            .and_then(|records| {
                                let mut delta = ImportSummary::default();
                                let mut batch = sled::Batch::default();
                                self.apply_partition(p, records, place, appender, &mut delta, &mut batch)
                                    .map_err(|e| match e {
                                        ApplyError::Staging(bad) => staging_error(file.path(), bad),
                                        ApplyError::Store(e) => e,
                                    })?;
                                Ok((batch, delta))
                            });
                        let failed = prepared.is_err();
                        if tx.send(prepared).is_err() || failed {
                            return;
                        }
                    }
                    tracing::debug!(lane, elapsed = ?started.elapsed(), "import: partitions prepared");
                });
            }
            if let Some(commit) = commit {
                commit()?;
            }
            let mut prepared = Vec::with_capacity(usize::from(PARTITIONS - first));
            for p in first..PARTITIONS {
                prepared.push(
                    ready[usize::from((p - first) % 2)]
                        .recv()
                        .map_err(|_| staging_error(file.path(), "a preparing thread stopped"))??,
                );
            }
            let t = std::time::Instant::now();
            appender
                .sync()
                .map_err(write_error(&self.files.path(FileId {
                    batch: pending.batch,
                    kind: FileKind::Segments,
                })))?;
            let synced = t.elapsed();
            for (mut batch, delta) in prepared {
                summary.added += delta.added;
                summary.replaced += delta.replaced;
                summary.unchanged += delta.unchanged;
                next += 1;
                batch.insert(
                    PROGRESS_KEY,
                    progress_to_bytes(pending.batch, next, &summary),
                );
                self.data.apply_batch(batch)?;
            }
            tracing::debug!(?synced, applied = ?t.elapsed(), "import: segment file synced, partitions recorded");
            Ok(())
        })?;
        tracing::debug!(elapsed = ?ta.elapsed(), "import: partitions merged");
        summary.rows = file.rows();
        let record = ImportRecord {
            summary: summary.clone(),
            ..pending.record.clone()
        };
        self.imports
            .insert(pending.batch.to_be_bytes(), encode(&record))?;
        self.meta.remove("pending_import")?;
        self.db.flush()?;
        Ok(summary)
    }

    /// Reads a segment file's bytes (see [`SegmentFiles::read`]).
    fn read_blob(&self, blob: &BlobRef, out: &mut Vec<u8>) -> Result<(), StoreError> {
        self.files.read(blob, out).map_err(segment_error)
    }

    /// The stored segment of a period and partition, if any.
    fn segment(&self, period: Period, p: u8) -> Result<Option<Segment>, StoreError> {
        let key = segment_key(period, p);
        match self.data.get(&key)? {
            Some(bytes) => Ok(Some(Segment::from_bytes(&bytes).map_err(corrupt(&key))?)),
            None => Ok(None),
        }
    }

    /// Merges the staged records of partition `p` (sorted by (period, id hash, id)) into the
    /// stored segments and index, writing new segments and index buckets to the segment file
    /// through `appender` (or naming them in place, at `place`: the file and offset where
    /// `staged` starts) and the records naming them into `out`.
    fn apply_partition(
        &self,
        p: u8,
        staged: &[u8],
        place: Option<(FileId, u64)>,
        appender: &Appender,
        summary: &mut ImportSummary,
        out: &mut sled::Batch,
    ) -> Result<(), ApplyError> {
        let incoming = codec::records(staged)?;
        if incoming.is_empty() {
            return Ok(());
        }
        let append = |bytes: &[u8]| -> Result<BlobRef, ApplyError> {
            appender.append(bytes).map_err(|e| {
                ApplyError::Store(StoreError::Write {
                    path: self.files.dir().display().to_string(),
                    reason: e.to_string(),
                })
            })
        };
        // Each activity's period: the records come in (period, hash, id) order, so each period's
        // are a run. The order is checked, as the merge below relies on it.
        let mut periods: Vec<u16> = Vec::with_capacity(incoming.len());
        let mut runs: Vec<(u16, std::ops::Range<usize>)> = Vec::new();
        for (i, r) in incoming.iter().enumerate() {
            let period = r.period_code()?;
            if staging::partition_of(r.hash) != p {
                return Err(Bad("a staged record in the wrong partition").into());
            }
            if let (Some(&before), Some(prev)) = (periods.last(), i.checked_sub(1))
                && (before, incoming[prev].key()) >= (period, r.key())
            {
                return Err(Bad("staged records out of order").into());
            }
            match runs.last_mut() {
                Some((code, range)) if *code == period => range.end = i + 1,
                _ => runs.push((period, i..i + 1)),
            }
            periods.push(period);
        }

        // The index buckets of this partition.
        let mut index: BTreeMap<u8, Vec<(u64, u16)>> = BTreeMap::new();
        let mut bytes = Vec::new();
        for ib in (u16::from(p)..256).step_by(usize::from(PARTITIONS)) {
            let ib = ib as u8;
            let key = index_key(ib);
            let entries = match self.data.get(key)? {
                Some(value) => {
                    let blob = index_ref_from_bytes(&value).map_err(corrupt(&key))?;
                    self.read_blob(&blob, &mut bytes)?;
                    index_from_bytes(&bytes).map_err(corrupt(&key))?
                }
                None => Vec::new(),
            };
            index.insert(ib, entries);
        }

        // Where each activity may be stored now under another period.
        let mut out_of: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
        for (i, a) in incoming.iter().enumerate() {
            let entries = index
                .get(&index_bucket(a.hash))
                .map_or(&[][..], Vec::as_slice);
            let start = entries.partition_point(|e| e.0 < a.hash);
            for &(_, period) in entries[start..].iter().take_while(|e| e.0 == a.hash) {
                if period != periods[i] {
                    out_of.entry(period).or_default().push(i);
                }
            }
        }
        // The merge walks each period's list in (hash, id) order.
        for list in out_of.values_mut() {
            list.sort_by(|&a, &b| incoming[a].key().cmp(&incoming[b].key()));
        }
        let mut touched: Vec<u16> = runs
            .iter()
            .map(|(code, _)| *code)
            .chain(out_of.keys().copied())
            .collect();
        touched.sort_unstable();
        touched.dedup();

        let mut outcome = vec![Outcome::Pending; incoming.len()];
        let mut moved = vec![false; incoming.len()];
        let mut index_add: Vec<(u64, u16)> = Vec::with_capacity(incoming.len());
        let mut index_remove: Vec<(u64, u16)> = Vec::new();
        let mut merged = Vec::new();
        let mut old_bytes = Vec::new();
        for code in touched {
            let period = codec::period_of_code(code).ok_or(Bad("period out of range"))?;
            let key = segment_key(period, p);
            let old_segment = self.segment(period, p)?;
            let ins = runs
                .binary_search_by_key(&code, |(c, _)| *c)
                .map_or(0..0, |k| runs[k].1.clone());
            let rem = out_of.get(&code).map_or(&[][..], Vec::as_slice);

            let mut activities = 0u64;
            let mut rows = 0u64;
            let blob = if old_segment.is_none() && rem.is_empty() {
                // A new segment: the run of staged records as it is.
                let Some(first) = incoming.get(ins.start) else {
                    continue;
                };
                let start = first.end - first.bytes.len();
                for n in ins.clone() {
                    let r = &incoming[n];
                    outcome[n] = Outcome::Added;
                    activities += 1;
                    rows += u64::from(r.persons);
                    index_add.push((r.hash, code));
                }
                let run = staged
                    .get(start..incoming[ins.end - 1].end)
                    .ok_or(Bad("truncated"))?;
                match place {
                    Some((file, base)) => BlobRef::of(file, base + start as u64, run),
                    None => append(run)?,
                }
            } else {
                old_bytes.clear();
                if let Some(old) = &old_segment {
                    self.read_blob(&old.blob, &mut old_bytes)?;
                }
                let old = codec::records(&old_bytes).map_err(corrupt(&key))?;
                let key_of = |i: usize| incoming[i].key();
                merged.clear();
                let mut changed = false;
                let mut removed_hashes = Vec::new();
                let (mut i, mut j, mut k) = (0, ins.start, 0);
                loop {
                    let next_in = (j < ins.end).then_some(j);
                    let take_old = match (old.get(i), next_in) {
                        (None, None) => break,
                        (Some(_), None) => true,
                        (None, Some(_)) => false,
                        (Some(o), Some(n)) => match o.key().cmp(&key_of(n)) {
                            std::cmp::Ordering::Less => true,
                            std::cmp::Ordering::Greater => false,
                            std::cmp::Ordering::Equal => {
                                let n_rec = &incoming[n];
                                let keep: &RecordRef<'_> = if o.content == n_rec.content {
                                    outcome[n] = Outcome::Unchanged;
                                    o
                                } else {
                                    outcome[n] = Outcome::Replaced;
                                    changed = true;
                                    n_rec
                                };
                                merged.extend_from_slice(keep.bytes);
                                activities += 1;
                                rows += u64::from(keep.persons);
                                index_add.push((n_rec.hash, code));
                                i += 1;
                                j += 1;
                                continue;
                            }
                        },
                    };
                    if take_old {
                        let o = &old[i];
                        while k < rem.len() && key_of(rem[k]) < o.key() {
                            k += 1;
                        }
                        if k < rem.len() && key_of(rem[k]) == o.key() {
                            moved[rem[k]] = true;
                            removed_hashes.push(o.hash);
                            changed = true;
                            k += 1;
                        } else {
                            merged.extend_from_slice(o.bytes);
                            activities += 1;
                            rows += u64::from(o.persons);
                        }
                        i += 1;
                    } else {
                        let n_rec = &incoming[j];
                        outcome[j] = Outcome::Added;
                        changed = true;
                        merged.extend_from_slice(n_rec.bytes);
                        activities += 1;
                        rows += u64::from(n_rec.persons);
                        index_add.push((n_rec.hash, code));
                        j += 1;
                    }
                }
                if !removed_hashes.is_empty() {
                    let kept = codec::records(&merged)?;
                    for h in removed_hashes {
                        if !kept.iter().any(|r| r.hash == h) {
                            index_remove.push((h, code));
                        }
                    }
                }
                if !changed {
                    continue;
                }
                if merged.is_empty() {
                    out.remove(key);
                    continue;
                }
                append(&merged)?
            };
            out.insert(
                key,
                Segment {
                    blob,
                    activities,
                    rows,
                }
                .to_bytes(),
            );
        }

        // The index: every (hash, period) where an activity now is; none where none is.
        // Sorted by bucket, then entry: each bucket's changes are a run.
        let by_bucket = |e: &(u64, u16)| (index_bucket(e.0), e.0, e.1);
        index_add.sort_unstable_by_key(by_bucket);
        index_remove.sort_unstable_by_key(by_bucket);
        let run = |entries: &[(u64, u16)], ib: u8| {
            let start = entries.partition_point(|e| index_bucket(e.0) < ib);
            let end = entries.partition_point(|e| index_bucket(e.0) <= ib);
            entries[start..end].to_vec()
        };
        for (ib, entries) in &mut index {
            let adds = run(&index_add, *ib);
            let removes = run(&index_remove, *ib);
            if adds.is_empty() && removes.is_empty() {
                continue;
            }
            let mut updated = Vec::with_capacity(entries.len() + adds.len());
            updated.extend_from_slice(entries);
            updated.extend_from_slice(&adds);
            updated.sort_unstable();
            updated.dedup();
            updated.retain(|e| removes.binary_search(e).is_err());
            if updated != *entries {
                if updated.is_empty() {
                    out.remove(index_key(*ib).to_vec());
                } else {
                    let blob = append(&index_to_bytes(&updated))?;
                    out.insert(index_key(*ib).to_vec(), blob_to_bytes(&blob));
                }
            }
        }

        for (outcome, moved) in outcome.into_iter().zip(moved) {
            match outcome {
                Outcome::Added if moved => summary.replaced += 1,
                Outcome::Added => summary.added += 1,
                Outcome::Replaced => summary.replaced += 1,
                Outcome::Unchanged => summary.unchanged += 1,
                Outcome::Pending => return Err(Bad("an activity was not applied").into()),
            }
        }
        Ok(())
    }

    /// Every activity of a period, in id order.
    pub fn activities_in(&self, period: Period) -> Result<Vec<Activity>, StoreError> {
        let mut out = Vec::new();
        for (key, bytes) in self.month(period)? {
            for record in codec::records(&bytes).map_err(corrupt(&key))? {
                out.push(codec::activity(&record).map_err(corrupt(&key))?);
            }
        }
        out.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// The records of every segment of a period, with their keys. A file that disappears
    /// between reading its reference and opening it was replaced by an import that just
    /// finished: the references are read again.
    fn month(&self, period: Period) -> Result<Vec<(sled::IVec, Vec<u8>)>, StoreError> {
        let mut attempts = 0;
        'again: loop {
            let mut out = Vec::new();
            for entry in self.data.scan_prefix(month_prefix(period)) {
                let (key, value) = entry?;
                let segment = Segment::from_bytes(&value).map_err(corrupt(&key))?;
                let mut bytes = Vec::new();
                match self.files.read(&segment.blob, &mut bytes) {
                    Ok(()) => out.push((key, bytes)),
                    Err(e) if e.missing && attempts < 3 => {
                        attempts += 1;
                        continue 'again;
                    }
                    Err(e) => return Err(segment_error(e)),
                }
            }
            return Ok(out);
        }
    }

    /// The exact indicators of a period, computed straight from the stored records (no
    /// [`Activity`] is built): the same figures as [`maillage_privacy::exact::compute`] over
    /// [`Store::activities_in`].
    pub fn indicators(
        &self,
        period: Period,
        which: &[Indicator],
    ) -> Result<Indicators, StoreError> {
        let month = self.month(period)?;
        let mut tally = Tally::new(period);
        for (key, bytes) in &month {
            codec::tally_records(bytes, &mut tally).map_err(corrupt(key))?;
        }
        Ok(tally.finish(which))
    }

    /// Counts of what is stored.
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let mut stats = StoreStats {
            imports: self.imports.len() as u64,
            ..Default::default()
        };
        for entry in self.data.scan_prefix(b"S") {
            let (key, bytes) = entry?;
            let segment = Segment::from_bytes(&bytes).map_err(corrupt(&key))?;
            let period: Period = std::str::from_utf8(key.get(1..8).unwrap_or_default())
                .ok()
                .and_then(|k| k.parse().ok())
                .ok_or_else(|| corrupt(&key)(Bad("not a period")))?;
            stats.activities += segment.activities;
            stats.rows += segment.rows;
            let cell = stats.periods.entry(period).or_default();
            cell.0 += segment.activities;
            cell.1 += segment.rows;
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

    /// How many blob files sled wrote (files it never syncs: there should be none).
    #[cfg(test)]
    pub(crate) fn blob_files(&self) -> usize {
        std::fs::read_dir(self.dir.join("blobs"))
            .map(|d| d.count())
            .unwrap_or(0)
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

/// The file a process holds an exclusive lock on while it has the store open.
const LOCK_FILE: &str = "maillage.lock";

/// Takes the store folder's lock (creating the folder if needed), or [`StoreError::Locked`] if
/// another process holds it. sled locks its own file too, but only inside its open, after it has
/// read (and written) its snapshot files: ours is held before anything in the folder is touched.
fn lock_store(path: &Path) -> Result<std::fs::File, StoreError> {
    std::fs::create_dir_all(path).map_err(write_error(path))?;
    let lock_path = path.join(LOCK_FILE);
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(write_error(&lock_path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked),
        Err(std::fs::TryLockError::Error(e)) => Err(write_error(&lock_path)(e)),
    }
}

/// Deletes the snapshot files sled did not finish writing. sled 0.34 writes a snapshot of its
/// recovery state at every open, to `snap.<lsn>.generating`, renamed to `snap.<lsn>` once
/// complete and synced; but when it looks for the latest snapshot it also takes the
/// `.generating` ones (`Config::get_snapshot_files`), so a process killed while writing one
/// (say, `maillage release` killed as it starts) leaves a store that no longer opens
/// ("Read corrupted data at file offset None"; spacejam/sled#1527). A partial snapshot holds
/// nothing the log does not: sled recovers from the last complete snapshot and the log.
fn remove_partial_snapshots(path: &Path) {
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("snap.") && name.ends_with(".generating") {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => {
                        tracing::warn!(file = %name, "an unfinished sled snapshot (a process was killed while writing it) was deleted")
                    }
                    Err(e) => {
                        tracing::warn!(file = %name, error = %e, "an unfinished sled snapshot could not be deleted")
                    }
                }
            }
        }
    }
}

/// The largest part of a value stored with [`insert_parts`].
pub const PART_BYTES: usize = 4096;

/// Stores `value` under `key` in parts of at most [`PART_BYTES`] (keys `key` ‖ part number as
/// u32 big-endian), replacing what was stored there, in one atomic batch. sled 0.34 writes a
/// node larger than 128 KiB to a blob file it never syncs (spacejam/sled#1077), so a value
/// that may be large (a hub's signed aggregate lists every member) must not be one sled value.
/// Keys sharing `key` as a prefix must all be of this form.
pub fn insert_parts(tree: &sled::Tree, key: &[u8], value: &[u8]) -> Result<(), sled::Error> {
    let mut batch = sled::Batch::default();
    for old in tree.scan_prefix(key).keys() {
        batch.remove(old?);
    }
    for (part_key, part) in parts(key, value) {
        batch.insert(part_key, part);
    }
    tree.apply_batch(batch)
}

/// The parts [`insert_parts`] stores `value` in: (`key` ‖ part number as u32 big-endian, at
/// most [`PART_BYTES`] bytes); an empty value is one empty part.
pub fn parts<'a>(key: &'a [u8], value: &'a [u8]) -> impl Iterator<Item = (Vec<u8>, &'a [u8])> {
    let pieces = value
        .chunks(PART_BYTES)
        .chain(value.is_empty().then_some(value));
    (0u32..).zip(pieces).map(move |(n, piece)| {
        let mut part_key = key.to_vec();
        part_key.extend_from_slice(&n.to_be_bytes());
        (part_key, piece)
    })
}

/// The value [`insert_parts`] stored under `key`, or one stored whole under exactly `key`
/// (as versions before stored them); `None` if there is none.
pub fn get_parts(tree: &sled::Tree, key: &[u8]) -> Result<Option<Vec<u8>>, sled::Error> {
    let mut value: Option<Vec<u8>> = None;
    for entry in tree.scan_prefix(key) {
        let (k, part) = entry?;
        if k.len() == key.len() || k.len() == key.len() + 4 {
            value.get_or_insert_with(Vec::new).extend_from_slice(&part);
        }
    }
    Ok(value)
}

/// The records of partition `p` of a committed staging file, sorted by (period, id hash, id): as
/// they are in a records file; built from the rows in a rows file (which versions before the
/// records file committed), into `built`.
fn partition_records<'a>(
    file: &StagingFile,
    p: u8,
    batch: u64,
    bytes: &'a mut Vec<u8>,
    built: &'a mut Vec<u8>,
) -> Result<&'a [u8], StoreError> {
    file.read_partition(p, bytes)
        .map_err(|e| staging_error(file.path(), e))?;
    match file.kind() {
        Kind::Records => Ok(bytes),
        Kind::Rows => {
            let mut frames = codec::frames(bytes).map_err(|e| staging_error(file.path(), e))?;
            let mut records = PeriodRecords::default();
            codec::for_each_activity(&mut frames, |rows| records.push(rows, batch))
                .map_err(|e| staging_error(file.path(), e))?;
            built.clear();
            for piece in records.pieces() {
                built.extend_from_slice(piece);
            }
            Ok(built)
        }
    }
}

/// Why applying a partition failed: its staged rows, or the store.
#[derive(Debug)]
enum ApplyError {
    Staging(Bad),
    Store(StoreError),
}

impl From<Bad> for ApplyError {
    fn from(bad: Bad) -> Self {
        Self::Staging(bad)
    }
}

impl From<StoreError> for ApplyError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<sled::Error> for ApplyError {
    fn from(e: sled::Error) -> Self {
        Self::Store(StoreError::Sled(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{check_activity, read_rows};

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
        let reading =
            read_rows(text.as_bytes(), &mut |frame| staging.push(frame), &mut ()).expect("read");
        let mut errors = reading.errors;
        let (_, found) = staging.check(&check_activity).expect("check");
        for e in found {
            errors.merge(e);
        }
        errors.finish().expect("valid");
        staging
    }

    fn period(p: &str) -> Period {
        p.parse().expect("period")
    }

    /// Opens a store that was just dropped: sled's background flusher may hold its lock a
    /// moment longer.
    fn reopen(path: &Path) -> Result<Store, StoreError> {
        let mut attempts = 0;
        loop {
            match Store::open(path) {
                Err(StoreError::Sled(sled::Error::Io(_)) | StoreError::Locked) if attempts < 40 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    /// The names of the files in a store's segments folder.
    fn segment_files(store: &Path) -> Result<BTreeSet<String>, StoreError> {
        Ok(std::fs::read_dir(store.join(segments::FOLDER))
            .map_err(tmp_err)?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect())
    }

    fn tmp_err(e: std::io::Error) -> StoreError {
        staging_error(Path::new("tmp"), e)
    }

    /// Does what `commit_import` does up to a crash: staging on disk, marker recorded, and the
    /// first `partitions` partitions applied. With `kind` [`Kind::Rows`], the committed file is
    /// a rows file, as versions before the records file committed.
    fn commit_then_crash(
        store: &Store,
        text: &str,
        partitions: u8,
        kind: Kind,
    ) -> Result<(), StoreError> {
        let (batch_id, path, file) = match kind {
            Kind::Records => {
                let mut staging = stage(store, text);
                staging.committed = true;
                let file = staging.file.take().expect("file");
                (staging.batch, staging.records_path.clone(), file)
            }
            Kind::Rows => {
                let mut staging = store.begin_import()?;
                read_rows(text.as_bytes(), &mut |frame| staging.push(frame), &mut ())
                    .expect("read");
                staging.committed = true;
                let file = staging
                    .writer
                    .take()
                    .expect("writer")
                    .finish()
                    .map_err(tmp_err)?;
                (staging.batch, staging.path.clone(), file)
            }
        };
        assert_eq!(file.kind(), kind);
        file.sync_all().map_err(tmp_err)?;
        let pending = PendingImport {
            batch: batch_id,
            staging: path
                .strip_prefix(&store.dir)
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            record: record(),
        };
        store.meta.insert("pending_import", encode(&pending))?;
        store.db.flush()?;
        let mut summary = ImportSummary::default();
        let (mut bytes, mut built) = (Vec::new(), Vec::new());
        let appender = Appender::new(&store.files, batch_id);
        let own = FileId {
            batch: batch_id,
            kind: FileKind::Records,
        };
        for p in 0..partitions {
            let records = partition_records(&file, p, batch_id, &mut bytes, &mut built)?;
            let mut batch = sled::Batch::default();
            let place = (kind == Kind::Records)
                .then(|| file.partition_start(p).map(|start| (own, start)))
                .flatten();
            store
                .apply_partition(p, records, place, &appender, &mut summary, &mut batch)
                .map_err(|e| match e {
                    ApplyError::Staging(b) => staging_error(file.path(), b),
                    ApplyError::Store(e) => e,
                })?;
            batch.insert(
                PROGRESS_KEY,
                progress_to_bytes(pending.batch, p + 1, &summary),
            );
            appender.sync().map_err(tmp_err)?;
            store.data.apply_batch(batch)?;
        }
        store.db.flush()?;
        Ok(())
    }

    #[test]
    fn a_committed_import_interrupted_before_apply_is_finished_on_open() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(tmp_err)?;
        let path = dir.path().join("store");
        {
            let store = Store::open(&path)?;
            commit_then_crash(&store, FILE, 0, Kind::Records)?;
            assert!(
                store.activities_in(period("2026-10"))?.is_empty(),
                "not applied yet"
            );
        }
        let store = reopen(&path)?;
        assert_eq!(store.activities_in(period("2026-10"))?.len(), 2);
        assert_eq!(store.activities_in(period("2026-11"))?.len(), 1);
        assert_eq!(store.stats()?.rows, 4);
        let imports = store.imports()?;
        assert_eq!(imports.len(), 1);
        assert_eq!(
            (imports[0].summary.added, imports[0].summary.rows),
            (3, 4),
            "the roll forward records what the import did"
        );
        assert!(store.meta.get("pending_import")?.is_none());
        // Applying again changes nothing (idempotent roll forward).
        let again = store.commit_import(stage(&store, FILE), record())?;
        assert_eq!((again.added, again.replaced, again.unchanged), (0, 0, 3));
        Ok(())
    }

    /// Many activities (so that every partition holds some), some moved to another month.
    fn big_file(month: u8, ids: std::ops::Range<u32>) -> String {
        let mut text = String::from("activite_id,date,type,duree,beneficiaire_id\n");
        for i in ids {
            let day = i % 28 + 1;
            text.push_str(&format!(
                "a{i},2026-{month:02}-{day:02},collectif,30,p{i}\na{i},2026-{month:02}-{day:02},collectif,30,\n"
            ));
        }
        text
    }

    #[test]
    fn an_import_interrupted_midway_through_applying_is_finished_exactly_on_open()
    -> Result<(), StoreError> {
        let first = big_file(9, 0..400);
        // Half the activities move from September to October, and new ones come.
        let second = big_file(10, 200..700);
        let reference = tempfile::tempdir().map_err(tmp_err)?;
        let expected = {
            let store = Store::open(&reference.path().join("store"))?;
            store.commit_import(stage(&store, &first), record())?;
            let summary = store.commit_import(stage(&store, &second), record())?;
            assert_eq!(
                (summary.added, summary.replaced, summary.unchanged),
                (300, 200, 0)
            );
            (
                store.activities_in(period("2026-09"))?,
                store.activities_in(period("2026-10"))?,
                store.stats()?,
                summary,
            )
        };
        for (partitions, kind) in [
            (0, Kind::Records),
            (1, Kind::Records),
            (7, Kind::Records),
            (15, Kind::Records),
            (16, Kind::Records),
            (0, Kind::Rows),
            (9, Kind::Rows),
        ] {
            let dir = tempfile::tempdir().map_err(tmp_err)?;
            let path = dir.path().join("store");
            {
                let store = Store::open(&path)?;
                store.commit_import(stage(&store, &first), record())?;
                commit_then_crash(&store, &second, partitions, kind)?;
            }
            let store = reopen(&path)?;
            let strip = |mut v: Vec<Activity>| {
                v.iter_mut().for_each(|a| a.batch = 0);
                v
            };
            assert_eq!(
                strip(store.activities_in(period("2026-09"))?),
                strip(expected.0.clone())
            );
            assert_eq!(
                strip(store.activities_in(period("2026-10"))?),
                strip(expected.1.clone())
            );
            let mut stats = store.stats()?;
            stats.imports = expected.2.imports;
            assert_eq!(stats, expected.2);
            let imports = store.imports()?;
            assert_eq!(imports.last().map(|r| &r.summary), Some(&expected.3));
        }
        Ok(())
    }

    #[test]
    fn an_abandoned_import_leaves_the_store_and_the_folder_as_they_were() -> Result<(), StoreError>
    {
        let dir = tempfile::tempdir().map_err(tmp_err)?;
        let path = dir.path().join("store");
        let store = Store::open(&path)?;
        store.commit_import(stage(&store, FILE), record())?;
        let before = store.stats()?;
        let staging = stage(
            &store,
            "activite_id,date,type,duree\nz,2026-10-09,individuel,5\n",
        );
        let files = segment_files(&path)?;
        drop(staging);
        assert_eq!(store.stats()?, before);
        assert_eq!(
            segment_files(&path)?.len(),
            files.len() - 1,
            "the records file is deleted"
        );
        let leftovers = std::fs::read_dir(&path)
            .map_err(tmp_err)?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("staging-"))
            .count();
        assert_eq!(leftovers, 0);
        Ok(())
    }

    /// A crash before the commit leaves a rows file, a records file or both: opening the store
    /// deletes them and leaves the store as it was.
    #[test]
    fn staging_files_of_an_import_never_committed_are_deleted_on_open() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(tmp_err)?;
        let path = dir.path().join("store");
        let (before, kept) = {
            let store = Store::open(&path)?;
            store.commit_import(stage(&store, FILE), record())?;
            let kept = segment_files(&path)?;
            // Checked (both files written, the rows file deleted), then a rows file of another
            // import cut short: as a crash would leave them.
            let mut checked = stage(&store, &big_file(10, 0..50));
            checked.committed = true;
            drop(checked);
            let mut staging = store.begin_import()?;
            staging
                .push(b"\x10\x00\x00\x00\x01\x02\x03\x04\x05\x06\x07\x08partial!")
                .map_err(tmp_err)?;
            staging.committed = true;
            drop(staging);
            store.flush()?;
            (store.stats()?, kept)
        };
        let staging_files = || -> Result<usize, StoreError> {
            let staged = std::fs::read_dir(&path)
                .map_err(tmp_err)?
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("staging-"))
                .count();
            Ok(staged + segment_files(&path)?.difference(&kept).count())
        };
        assert!(staging_files()? >= 2);
        let store = reopen(&path)?;
        assert_eq!(staging_files()?, 0);
        assert_eq!(segment_files(&path)?, kept);
        assert_eq!(store.stats()?, before);
        Ok(())
    }

    #[test]
    fn moving_an_activity_to_another_month_removes_it_from_the_first() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(tmp_err)?;
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
        // And back: the index no longer points at December once it is gone from there.
        let back = store.commit_import(
            stage(
                &store,
                "activite_id,date,type,duree\na,2026-10-01,individuel,30\n",
            ),
            record(),
        )?;
        assert_eq!((back.added, back.replaced), (0, 1));
        assert!(store.activities_in(period("2026-12"))?.is_empty());
        assert_eq!(store.stats()?.activities, 3);
        Ok(())
    }

    #[test]
    fn an_unchanged_reimport_writes_nothing_and_keeps_the_first_batch() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(tmp_err)?;
        let store = Store::open(&dir.path().join("store"))?;
        let text = big_file(10, 0..300);
        store.commit_import(stage(&store, &text), record())?;
        let before = store.activities_in(period("2026-10"))?;
        let again = store.commit_import(stage(&store, &text), record())?;
        assert_eq!((again.added, again.replaced, again.unchanged), (0, 0, 300));
        assert_eq!(store.activities_in(period("2026-10"))?, before);
        Ok(())
    }

    /// Every sled value stays small, so that sled never writes a blob file (which it never
    /// syncs): the bulk is in the segment files, which hold exactly what the records name.
    #[test]
    fn segments_are_in_synced_files_and_sled_values_stay_small() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(tmp_err)?;
        let path = dir.path().join("store");
        let store = Store::open(&path)?;
        store.commit_import(stage(&store, &big_file(10, 0..36_000)), record())?;
        // Half the activities change (merged segments, a new index), and November comes.
        store.commit_import(
            stage(
                &store,
                &big_file(10, 0..18_000).replace("collectif,30", "collectif,45"),
            ),
            record(),
        )?;
        store.commit_import(stage(&store, &big_file(11, 50_000..51_000)), record())?;
        store.flush()?;
        for tree in store.db.tree_names() {
            for entry in store.db.open_tree(&tree)?.iter() {
                let (key, value) = entry?;
                assert!(value.len() <= 256, "{key:?}: {} bytes", value.len());
            }
        }
        assert_eq!(store.blob_files(), 0, "sled wrote blob files");
        // Only files a record names are left: the first import's records were all replaced
        // or merged, so its file is gone.
        let named: BTreeSet<String> = store
            .references()?
            .into_iter()
            .map(|(_, _, blob)| blob.file.name())
            .collect();
        assert_eq!(segment_files(&path)?, named);
        let month = store.activities_in(period("2026-10"))?;
        assert_eq!(month.len(), 36_000);
        assert!(month.windows(2).all(|w| w[0].id < w[1].id));
        assert_eq!(
            month.iter().filter(|a| a.duration_min == 45).count(),
            18_000
        );
        assert_eq!(store.stats()?.rows, 74_000);
        drop(store);
        let store = reopen(&path)?;
        assert_eq!(store.activities_in(period("2026-10"))?, month);
        Ok(())
    }

    /// A store is opened by one process at a time; the second is told so, and touches nothing.
    #[test]
    fn a_store_open_elsewhere_is_refused_before_anything_is_touched() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(tmp_err)?;
        let path = dir.path().join("store");
        let store = Store::open(&path)?;
        // Another process's snapshot in progress (here: a file of that name).
        let partial = path.join("snap.FFFFFFFFFFFFFFFF.generating");
        std::fs::write(&partial, b"being written").map_err(tmp_err)?;
        // flock locks conflict between two opens of the file, even in one process.
        assert!(matches!(Store::open(&path), Err(StoreError::Locked)));
        assert!(
            partial.exists(),
            "the other process's snapshot is left alone"
        );
        std::fs::remove_file(&partial).map_err(tmp_err)?;
        drop(store);
        reopen(&path)?;
        Ok(())
    }

    /// A process killed while sled writes its snapshot leaves a partial `snap.*.generating`
    /// file, which sled 0.34 would take as the latest snapshot and refuse to open with: the store
    /// opens, with everything it held.
    #[test]
    fn a_snapshot_cut_short_by_a_kill_does_not_stop_the_store_from_opening()
    -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(tmp_err)?;
        let path = dir.path().join("store");
        let expected = {
            let store = Store::open(&path)?;
            store.commit_import(stage(&store, FILE), record())?;
            store.activities_in(period("2026-10"))?
        };
        for partial in [
            "snap.FFFFFFFFFFFFFFFF.generating",
            "snap.0000000000000000.generating",
        ] {
            std::fs::write(path.join(partial), b"cut short").map_err(tmp_err)?;
        }
        // What sled 0.34 does with it, opened directly.
        let raw = sled::Config::new().path(&path).open();
        assert!(
            matches!(raw, Err(sled::Error::Corruption { .. })),
            "sled itself refuses the store: {raw:?}"
        );
        drop(raw);
        let store = reopen(&path)?;
        assert_eq!(store.activities_in(period("2026-10"))?, expected);
        Ok(())
    }

    /// Large values are stored in small parts (no sled blob file) and read back whole; a value
    /// stored whole by an older version is still read.
    #[test]
    fn large_values_are_stored_in_small_parts() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(tmp_err)?;
        let path = dir.path().join("store");
        let store = Store::open(&path)?;
        let tree = store.tree("parts")?;
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for n in 0..8u8 {
            insert_parts(&tree, &[b'k', n], &big[usize::from(n)..])?;
        }
        insert_parts(&tree, b"k\x03", b"replaced")?;
        insert_parts(&tree, b"k\x04", b"")?;
        tree.insert(b"old", &big[..1000])?;
        store.flush()?;
        for entry in tree.iter() {
            let (_, v) = entry?;
            assert!(v.len() <= PART_BYTES);
        }
        assert_eq!(store.blob_files(), 0, "sled wrote blob files");
        assert_eq!(get_parts(&tree, b"k\x05")?, Some(big[5..].to_vec()));
        assert_eq!(get_parts(&tree, b"k\x03")?, Some(b"replaced".to_vec()));
        assert_eq!(get_parts(&tree, b"old")?, Some(big[..1000].to_vec()));
        assert_eq!(get_parts(&tree, b"k\x04")?, Some(Vec::new()));
        assert_eq!(get_parts(&tree, b"k\x09")?, None);
        Ok(())
    }

    /// A damaged or missing segment file is an error naming it, never a panic nor wrong
    /// figures.
    /// A file that is mostly unused (an import of two months, one of which was then
    /// replaced) is compacted: what is still used is copied, the file deleted.
    #[test]
    fn mostly_unused_segment_files_are_compacted() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(tmp_err)?;
        let path = dir.path().join("store");
        let store = Store::open(&path)?;
        let october = big_file(10, 10_000..30_000);
        let both = big_file(9, 0..10_000) + &october[44..];
        store.commit_import(stage(&store, &both), record())?;
        let first = segment_files(&path)?;
        let september = store.activities_in(period("2026-09"))?;
        store.commit_import(
            stage(&store, &october.replace("collectif,30", "collectif,50")),
            record(),
        )?;
        let after = segment_files(&path)?;
        // The first import's records file held both months, October's now unused; its index
        // buckets (in its segment file) did not change.
        let records: Vec<&String> = first.iter().filter(|f| f.ends_with(".recs")).collect();
        assert_eq!(records.len(), 1);
        assert!(
            !after.contains(records[0]),
            "the first import's records file was compacted away: {first:?} {after:?}"
        );
        assert_eq!(store.activities_in(period("2026-09"))?, september);
        assert!(
            store
                .activities_in(period("2026-10"))?
                .iter()
                .all(|a| a.duration_min == 50)
        );
        // The folder holds about what is used: the records of both months and the index.
        let used: u64 = store
            .data
            .scan_prefix(b"S")
            .chain(store.data.scan_prefix(b"I"))
            .map(|e| {
                let (_, v) = e?;
                Ok(BlobRef::read(&mut codec::Cursor::new(&v)).map_or(0, |b| b.len))
            })
            .sum::<Result<u64, StoreError>>()?;
        let on_disk: u64 = store.files.list().iter().map(|(_, _, size)| size).sum();
        assert!(
            on_disk <= used + used / 2 + COMPACT_MIN_DEAD,
            "{on_disk} bytes on disk for {used} used"
        );
        drop(store);
        let store = reopen(&path)?;
        assert_eq!(store.activities_in(period("2026-09"))?, september);
        Ok(())
    }

    #[test]
    fn a_damaged_segment_file_is_reported_with_its_path() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(tmp_err)?;
        let path = dir.path().join("store");
        let store = Store::open(&path)?;
        store.commit_import(stage(&store, FILE), record())?;
        let file = path.join(segments::FOLDER).join(
            segment_files(&path)?
                .into_iter()
                .next()
                .ok_or_else(|| tmp_err(std::io::Error::other("no file")))?,
        );
        let mut bytes = std::fs::read(&file).map_err(tmp_err)?;
        for b in bytes.iter_mut().take(40) {
            *b ^= 0x55;
        }
        std::fs::write(&file, &bytes).map_err(tmp_err)?;
        let err = store.indicators(period("2026-10"), Indicator::COMMON_CORE);
        match err {
            Err(StoreError::Segment { path: p, reason }) => {
                assert_eq!(p, file.display().to_string());
                assert!(reason.contains("checksum"), "{reason}");
            }
            other => panic!("unexpected: {other:?}"),
        }
        std::fs::remove_file(&file).map_err(tmp_err)?;
        assert!(matches!(
            store.activities_in(period("2026-10")),
            Err(StoreError::Segment { .. })
        ));
        Ok(())
    }

    /// A store of format version 4 (segments in sled, in chunks; the index in sled) is moved to
    /// segment files when opened, and reads back the same.
    #[test]
    fn a_version_4_store_is_moved_to_segment_files() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(tmp_err)?;
        let (new_path, old_path) = (dir.path().join("new"), dir.path().join("old"));
        let text = big_file(9, 0..3000) + &big_file(10, 3000..5000)[44..];
        let store = Store::open(&new_path)?;
        store.commit_import(stage(&store, &text), record())?;
        let expected = (
            store.activities_in(period("2026-09"))?,
            store.activities_in(period("2026-10"))?,
            store.stats()?,
            store.indicators(period("2026-10"), Indicator::COMMON_CORE)?,
        );
        // The same content, as version 4 kept it.
        {
            let db = sled::open(&old_path)?;
            let data = db.open_tree("data")?;
            let mut bytes = Vec::new();
            for entry in store.data.scan_prefix(b"S") {
                let (key, value) = entry?;
                let segment = Segment::from_bytes(&value).map_err(corrupt(&key))?;
                store.read_blob(&segment.blob, &mut bytes)?;
                let records = codec::records(&bytes).map_err(corrupt(&key))?;
                let mut chunk = 0u16;
                for part in records.chunks(100) {
                    let start = part[0].end - part[0].bytes.len();
                    let mut chunk_key = key.to_vec();
                    chunk_key[0] = b's';
                    chunk_key.extend_from_slice(&chunk.to_be_bytes());
                    data.insert(chunk_key, &bytes[start..part[part.len() - 1].end])?;
                    chunk += 1;
                }
                let mut stats_key = key.to_vec();
                stats_key[0] = b'c';
                let mut stats = Vec::new();
                stats.extend_from_slice(&segment.activities.to_le_bytes());
                stats.extend_from_slice(&segment.rows.to_le_bytes());
                stats.extend_from_slice(&chunk.to_le_bytes());
                data.insert(stats_key, stats)?;
            }
            for entry in store.data.scan_prefix(b"I") {
                let (key, value) = entry?;
                let blob = index_ref_from_bytes(&value).map_err(corrupt(&key))?;
                store.read_blob(&blob, &mut bytes)?;
                data.insert([b'i', key[1]], bytes.clone())?;
            }
            let imports = db.open_tree("imports")?;
            for entry in store.imports.iter() {
                let (key, value) = entry?;
                imports.insert(key, value)?;
            }
            db.open_tree("meta")?
                .insert("schema", &4u64.to_be_bytes())?;
            db.flush()?;
        }
        let migrated = reopen(&old_path)?;
        assert_eq!(
            (
                migrated.activities_in(period("2026-09"))?,
                migrated.activities_in(period("2026-10"))?,
                migrated.stats()?,
                migrated.indicators(period("2026-10"), Indicator::COMMON_CORE)?,
            ),
            expected
        );
        assert_eq!(migrated.data.scan_prefix(b"s").count(), 0);
        assert_eq!(migrated.data.scan_prefix(b"c").count(), 0);
        assert_eq!(migrated.data.scan_prefix(b"i").count(), 0);
        // And it takes imports as any store does: the index came along (a moved activity is
        // removed from its old month).
        let moved = migrated.commit_import(
            stage(
                &migrated,
                "activite_id,date,type,duree\na1,2026-10-05,individuel,30\n",
            ),
            record(),
        )?;
        assert_eq!((moved.added, moved.replaced), (0, 1));
        assert!(
            migrated
                .activities_in(period("2026-09"))?
                .iter()
                .all(|a| a.id != "a1")
        );
        Ok(())
    }

    /// One activity of a generated import: id, month (September to November 2026), duration,
    /// participants (a workshop when more than one).
    type Generated = (u8, u8, u16, u8);

    fn generated_file(activities: &[Generated]) -> String {
        let mut text = String::from("activite_id,date,type,duree,beneficiaire_id\n");
        for &(id, month, duree, people) in activities {
            let kind = if people > 1 {
                "collectif"
            } else {
                "individuel"
            };
            for p in 0..people {
                text.push_str(&format!(
                    "a{id},2026-{:02}-{:02},{kind},{duree},p{id}-{p}\n",
                    9 + month,
                    1 + u16::from(id) % 28
                ));
            }
        }
        text
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

        /// Any sequence of imports (activities added, replaced, moved to another month, left
        /// unchanged) leaves in the store exactly the last version of every activity, in its
        /// month only; the same after a reopen; and the segments folder holds exactly the files
        /// the records name.
        #[test]
        fn the_store_holds_the_last_version_of_every_activity(
            imports in proptest::collection::vec(
                proptest::collection::btree_map(0u8..60, (0u8..3, 1u16..200, 1u8..4), 1..40),
                1..6,
            )
        ) {
            let dir = tempfile::tempdir().map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            let path = dir.path().join("store");
            let fail = |e: StoreError| proptest::test_runner::TestCaseError::fail(e.to_string());
            let mut model: BTreeMap<u8, (u8, u16, u8)> = BTreeMap::new();
            let check = |store: &Store, model: &BTreeMap<u8, (u8, u16, u8)>| -> Result<(), proptest::test_runner::TestCaseError> {
                for month in 0..3u8 {
                    let stored: Vec<(String, u32, usize)> = store
                        .activities_in(period(&format!("2026-{:02}", 9 + month)))
                        .map_err(fail)?
                        .into_iter()
                        .map(|a| (a.id, a.duration_min, a.participants.len()))
                        .collect();
                    let mut expected: Vec<(String, u32, usize)> = model
                        .iter()
                        .filter(|(_, (m, _, _))| *m == month)
                        .map(|(id, (_, duree, people))| (format!("a{id}"), u32::from(*duree), usize::from(*people)))
                        .collect();
                    expected.sort();
                    proptest::prop_assert_eq!(stored, expected, "month {}", month);
                }
                let stats = store.stats().map_err(fail)?;
                proptest::prop_assert_eq!(stats.activities, model.len() as u64);
                let named: BTreeSet<String> = store.references().map_err(fail)?.into_iter().map(|(_, _, blob)| blob.file.name()).collect();
                proptest::prop_assert_eq!(segment_files(&path).map_err(fail)?, named);
                Ok(())
            };
            {
                let store = Store::open(&path).map_err(fail)?;
                for import in &imports {
                    let activities: Vec<Generated> =
                        import.iter().map(|(&id, &(m, d, p))| (id, m, d, p)).collect();
                    store
                        .commit_import(stage(&store, &generated_file(&activities)), record())
                        .map_err(fail)?;
                    for &(id, m, d, p) in &activities {
                        model.insert(id, (m, d, p));
                    }
                    check(&store, &model)?;
                }
            }
            let store = reopen(&path).map_err(fail)?;
            check(&store, &model)?;
        }
    }
}
