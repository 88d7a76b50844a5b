//! Where a hub keeps its contributions: their wire bytes in an append-only file beside the
//! store, the batches' records in sled (small ones: see `RECORD_LEAVES`), and the indexes in
//! memory.
//!
//! Writing a batch is two steps, in this order:
//! 1. the batch's wire bytes are written at the file's committed end and synced (`fdatasync`);
//! 2. the batch's sled records (`B`: first leaf index → up to 64 leaves: id, place in the file,
//!    signer ‖ period) go into the same atomic sled batch as the batch's signed checkpoint,
//!    and the store is flushed.
//!
//! A batch is in the log once its records are in sled. A crash between the two steps leaves bytes
//! after the committed end that no record names: they are never read, and the next batch
//! overwrites them. At open the records are read back (a few dozen bytes per leaf) to rebuild
//! the Merkle log and the indexes (id → leaf, signer ‖ period → latest id), so ingest reads
//! nothing from disk and writes each contribution once, sequentially.
//!
//! A large batch (a hub catching up, a burst at the deadline) is written with direct I/O
//! (`O_DIRECT` on Linux, where the file system supports it) from a reused, aligned buffer, at a
//! 4 KiB boundary: it skips the copy into the page cache, which costs more than the batch's
//! decoding on a small virtual machine. Small batches, the usual case, are written through the
//! page cache, so that a release a day does not take 4 KiB of disk.
//!
//! Stores written before this file existed keep their leaves in the sled tables `L`, `W` (or
//! `R`/`A`), `S` and `I`: those are read at open and stay where they are; new batches go to the
//! file.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use maillage_protocol::ReleaseId;

use super::{HubError, Trees, release_id_from, u64_from};

/// The contribution file's name inside a node directory.
pub const CONTRIBUTIONS_FILE: &str = "contributions.bin";

/// The version byte that starts a batch record.
const RECORD_VERSION: u8 = 1;

/// Leaves per sled record: a batch's leaves are recorded in parts of at most this many (~5 KiB
/// each), so that a sled leaf node (up to 16 entries) stays far below the 128 KiB above which
/// sled 0.34 writes a node to a blob file of its own — which it never fsyncs (spacejam/sled#1077),
/// so that a power loss could lose a record `flush` had reported durable.
const RECORD_LEAVES: usize = 64;

/// Batches of at least this many bytes are written with direct I/O.
const DIRECT_MIN: usize = 256 * 1024;

/// Offset, length and address alignment for direct I/O (the largest logical block size).
const ALIGN: usize = 4096;

fn align_up(n: u64) -> u64 {
    n.div_ceil(ALIGN as u64) * ALIGN as u64
}

/// The contribution file opened for direct I/O, if the system and file system allow it.
fn open_direct(path: &Path) -> Option<File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        None
    }
}

/// Where a leaf's wire bytes are.
#[derive(Debug, Clone, Copy)]
pub(super) enum Location {
    /// In the contribution file.
    File {
        /// Where its bytes start.
        offset: u64,
        /// How many there are.
        len: u32,
    },
    /// In the sled tables of stores written before the file (`W`, or `R`/`A` by id).
    Sled,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Leaf {
    id: ReleaseId,
    pub(super) location: Location,
}

/// A contribution a batch appends.
#[derive(Debug)]
pub struct NewLeaf<'b> {
    /// Its id (the leaf is `contribution_leaf_hash(id)`).
    pub id: ReleaseId,
    /// signer ‖ `YYYY-MM`
    pub key: &'b [u8],
    /// Its wire bytes.
    pub bytes: &'b [u8],
}

/// A batch written to the file and synced, whose record is not yet in sled.
#[derive(Debug)]
pub struct Staged {
    first: u64,
    size: u64,
    leaves: Vec<(ReleaseId, Vec<u8>, u64, u32)>,
    end: u64,
    /// The sled records to write with the batch's checkpoint: (key in the `B` table, record),
    /// one per [`RECORD_LEAVES`] leaves.
    pub records: Vec<([u8; 8], Vec<u8>)>,
}

/// The contributions of a hub's log and their indexes.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    file: Mutex<File>,
    /// The same file opened for direct I/O (`None` where unsupported, or after a direct write
    /// failed: the page cache is used from then on).
    pub(super) direct: Option<File>,
    /// The buffer a batch is assembled in, kept between batches (its pages stay mapped).
    scratch: Vec<u8>,
    /// The end of the last committed batch in the file.
    end: u64,
    pub(super) leaves: Vec<Leaf>,
    /// id → (leaf index, size of the checkpoint its receipt names)
    by_id: HashMap<ReleaseId, (u64, u64)>,
    /// signer ‖ `YYYY-MM` → the id of its latest contribution
    heads: HashMap<Vec<u8>, ReleaseId>,
}

fn corrupt(what: impl std::fmt::Display) -> HubError {
    HubError::Corrupt(what.to_string())
}

/// Reads the fields of a batch record, in order.
struct Fields<'r> {
    bytes: &'r [u8],
    at: usize,
    first: u64,
}

impl<'r> Fields<'r> {
    fn take(&mut self, n: usize) -> Result<&'r [u8], HubError> {
        let field = self
            .at
            .checked_add(n)
            .and_then(|end| self.bytes.get(self.at..end))
            .ok_or_else(|| {
                corrupt(format!(
                    "the batch record at leaf {} ends at byte {} of {}",
                    self.first,
                    self.at,
                    self.bytes.len()
                ))
            })?;
        self.at += n;
        Ok(field)
    }

    fn u64(&mut self) -> Result<u64, HubError> {
        let bytes = self.take(8)?;
        u64_from(bytes).ok_or_else(|| corrupt("a short integer"))
    }

    fn u32(&mut self) -> Result<u32, HubError> {
        let bytes = self.take(4)?;
        <[u8; 4]>::try_from(bytes)
            .map(u32::from_be_bytes)
            .map_err(|_| corrupt("a short integer"))
    }
}

impl Ledger {
    /// Opens the contribution file of the node in `dir` (created empty if absent) and reads the
    /// log back from the store: the leaves of older stores first, then every batch record.
    pub fn open(dir: &Path, trees: &Trees) -> Result<Self, HubError> {
        let path = dir.join(CONTRIBUTIONS_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| HubError::File {
                path: path.display().to_string(),
                source,
            })?;
        let file_len = file
            .metadata()
            .map_err(|source| HubError::File {
                path: path.display().to_string(),
                source,
            })?
            .len();
        let mut ledger = Self {
            direct: open_direct(&path),
            scratch: Vec::new(),
            path,
            file: Mutex::new(file),
            end: 0,
            leaves: Vec::new(),
            by_id: HashMap::new(),
            heads: HashMap::new(),
        };
        ledger.read_legacy(trees)?;
        for entry in trees.batches.iter() {
            let (key, record) = entry?;
            let first = u64_from(&key).ok_or_else(|| corrupt("a batch record key"))?;
            ledger.read_record(first, &record)?;
        }
        if ledger.end > file_len {
            return Err(corrupt(format!(
                "{} holds {file_len} bytes but the log's records name {} (the file was \
                 truncated or replaced: restore it from a backup of this node)",
                ledger.path.display(),
                ledger.end
            )));
        }
        Ok(ledger)
    }

    /// The leaves of a store written before the contribution file: `L`, `I` and `S`.
    fn read_legacy(&mut self, trees: &Trees) -> Result<(), HubError> {
        for (expected, entry) in trees.log.iter().enumerate() {
            let (key, id) = entry?;
            let index = u64_from(&key).unwrap_or(u64::MAX);
            if index != expected as u64 {
                return Err(corrupt(format!(
                    "log leaf {index} where {expected} was expected"
                )));
            }
            self.leaves.push(Leaf {
                id: release_id_from(&id)?,
                location: Location::Sled,
            });
        }
        for entry in trees.index.iter() {
            let (id, value) = entry?;
            let id = release_id_from(&id)?;
            match (
                value.get(..8).and_then(u64_from),
                value.get(8..).and_then(u64_from),
            ) {
                (Some(index), Some(size)) => self.by_id.insert(id, (index, size)),
                _ => return Err(corrupt(format!("index entry of {id}"))),
            };
        }
        for entry in trees.by_signer.iter() {
            let (key, id) = entry?;
            self.heads.insert(key, release_id_from(&id)?);
        }
        Ok(())
    }

    fn read_record(&mut self, first: u64, record: &[u8]) -> Result<(), HubError> {
        if first != self.leaves.len() as u64 {
            return Err(corrupt(format!(
                "a batch record starts at leaf {first}, the log has {} leaves",
                self.leaves.len()
            )));
        }
        let mut f = Fields {
            bytes: record,
            at: 0,
            first,
        };
        let version = f.take(1)?[0];
        if version != RECORD_VERSION {
            return Err(corrupt(format!(
                "the batch record at leaf {first} has version {version}; this maillage reads \
                 version {RECORD_VERSION}"
            )));
        }
        let size = f.u64()?;
        let count = f.u32()?;
        for n in 0..u64::from(count) {
            let id = release_id_from(f.take(32)?)?;
            let offset = f.u64()?;
            let len = f.u32()?;
            let key_len = f.take(1)?[0];
            let key = f.take(usize::from(key_len))?.to_vec();
            let index = first + n;
            if index >= size {
                return Err(corrupt(format!(
                    "leaf {index} is named in a checkpoint of size {size}"
                )));
            }
            self.end = self.end.max(offset.saturating_add(u64::from(len)));
            self.leaves.push(Leaf {
                id,
                location: Location::File { offset, len },
            });
            self.by_id.insert(id, (index, size));
            self.heads.insert(key, id);
        }
        if f.at != record.len() {
            return Err(corrupt(format!(
                "the batch record at leaf {first} has {} bytes after its {count} leaves",
                record.len() - f.at
            )));
        }
        Ok(())
    }

    /// How many leaves the log holds.
    pub fn len(&self) -> u64 {
        self.leaves.len() as u64
    }

    /// The ids of the leaves, in order.
    pub fn ids(&self) -> impl Iterator<Item = ReleaseId> + '_ {
        self.leaves.iter().map(|l| l.id)
    }

    /// The leaf index of a contribution and the size of the checkpoint its receipt names.
    pub fn entry(&self, id: &ReleaseId) -> Option<(u64, u64)> {
        self.by_id.get(id).copied()
    }

    /// The id of the latest contribution of a signer and period (`signer ‖ YYYY-MM`).
    pub fn head(&self, key: &[u8]) -> Option<ReleaseId> {
        self.heads.get(key).copied()
    }

    /// The id at a leaf index and its wire bytes.
    pub fn read(&self, index: u64, trees: &Trees) -> Result<(ReleaseId, Vec<u8>), HubError> {
        let leaf = usize::try_from(index)
            .ok()
            .and_then(|i| self.leaves.get(i))
            .ok_or_else(|| corrupt(format!("no leaf {index}")))?;
        let id = leaf.id;
        match leaf.location {
            Location::File { offset, len } => {
                let mut bytes = vec![0; len as usize];
                let mut file = self
                    .file
                    .lock()
                    .map_err(|_| corrupt("the contribution file's lock is poisoned"))?;
                file.seek(SeekFrom::Start(offset))
                    .and_then(|_| file.read_exact(&mut bytes))
                    .map_err(|e| {
                        corrupt(format!(
                            "leaf {index} ({id}): {len} bytes at offset {offset} of {}: {e}",
                            self.path.display()
                        ))
                    })?;
                Ok((id, bytes))
            }
            Location::Sled => {
                let bytes = match trees.wires.get(index.to_be_bytes())? {
                    Some(bytes) => Some(bytes),
                    None => trees.legacy_contents.get(id.as_bytes())?,
                };
                let bytes = bytes
                    .ok_or_else(|| corrupt(format!("leaf {index}: contribution {id} missing")))?;
                Ok((id, bytes.to_vec()))
            }
        }
    }

    fn file_error(&self, source: std::io::Error) -> HubError {
        HubError::File {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Step 1 of a batch: writes the new leaves' bytes after the committed end and syncs them.
    /// `first` is the first new leaf's index, `size` the size of the checkpoint that will cover
    /// them. Nothing the log holds changes until [`Ledger::commit`].
    pub fn stage(
        &mut self,
        first: u64,
        size: u64,
        new: &[NewLeaf<'_>],
    ) -> Result<Staged, HubError> {
        let total: usize = new.iter().map(|l| l.bytes.len()).sum();
        let direct = self.direct.is_some() && total >= DIRECT_MIN;
        let start = if direct { align_up(self.end) } else { self.end };
        // The bytes go at `pad` in the scratch buffer, so that they start at an aligned address.
        let padded = total.div_ceil(ALIGN) * ALIGN;
        self.scratch.clear();
        self.scratch.resize(padded + ALIGN, 0);
        let pad = self.scratch.as_ptr().align_offset(ALIGN).min(ALIGN);
        let mut records = Vec::with_capacity(new.len().div_ceil(RECORD_LEAVES));
        let mut record = Vec::new();
        let mut leaves = Vec::with_capacity(new.len());
        let mut at = 0usize;
        for (n, leaf) in new.iter().enumerate() {
            if n % RECORD_LEAVES == 0 {
                if !record.is_empty() {
                    records.push(std::mem::take(&mut record));
                }
                // In range: `RECORD_LEAVES` fits a u32.
                let count = (new.len() - n).min(RECORD_LEAVES) as u32;
                record.reserve(13 + count as usize * (32 + 8 + 4 + 1 + 40));
                record.push(RECORD_VERSION);
                record.extend_from_slice(&size.to_be_bytes());
                record.extend_from_slice(&count.to_be_bytes());
            }
            let offset = start + at as u64;
            let len = u32::try_from(leaf.bytes.len())
                .map_err(|_| corrupt(format!("a contribution of {} bytes", leaf.bytes.len())))?;
            let key_len = u8::try_from(leaf.key.len())
                .map_err(|_| corrupt(format!("a key of {} bytes", leaf.key.len())))?;
            // In range: the buffer holds `pad + padded >= pad + total` bytes.
            self.scratch[pad + at..pad + at + leaf.bytes.len()].copy_from_slice(leaf.bytes);
            at += leaf.bytes.len();
            record.extend_from_slice(leaf.id.as_bytes());
            record.extend_from_slice(&offset.to_be_bytes());
            record.extend_from_slice(&len.to_be_bytes());
            record.push(key_len);
            record.extend_from_slice(leaf.key);
            leaves.push((leaf.id, leaf.key.to_vec(), offset, len));
        }
        let written_directly = direct
            && match self.write_direct(start, pad, padded) {
                Ok(()) => true,
                // EINVAL: the file system does not take direct I/O (or not at this alignment).
                Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                    tracing::warn!(file = %self.path.display(), error = %e, "direct writes refused; writing through the page cache from now on");
                    self.direct = None;
                    false
                }
                Err(e) => {
                    tracing::warn!(file = %self.path.display(), error = %e, "direct write failed; writing the batch through the page cache");
                    false
                }
            };
        if !written_directly {
            let bytes = &self.scratch[pad..pad + total];
            let mut file = self
                .file
                .lock()
                .map_err(|_| corrupt("the contribution file's lock is poisoned"))?;
            file.seek(SeekFrom::Start(start))
                .and_then(|_| file.write_all(bytes))
                .and_then(|()| file.sync_data())
                .map_err(|source| self.file_error(source))?;
        }
        if self.scratch.capacity() > 64 << 20 {
            self.scratch = Vec::new();
        }
        records.push(record);
        let records = records
            .into_iter()
            .enumerate()
            .map(|(part, record)| {
                let first_leaf = first + (part * RECORD_LEAVES) as u64;
                (first_leaf.to_be_bytes(), record)
            })
            .collect();
        Ok(Staged {
            first,
            size,
            leaves,
            end: start + total as u64,
            records,
        })
    }

    /// Writes `scratch[pad..pad + padded]` at `start` with direct I/O and syncs it (an
    /// `InvalidInput` error without a direct handle; on any error the caller writes the same
    /// bytes through the page cache).
    fn write_direct(&mut self, start: u64, pad: usize, padded: usize) -> std::io::Result<()> {
        let (Some(direct), Some(bytes)) =
            (self.direct.as_mut(), self.scratch.get(pad..pad + padded))
        else {
            return Err(std::io::ErrorKind::InvalidInput.into());
        };
        direct.seek(SeekFrom::Start(start))?;
        direct.write_all(bytes)?;
        direct.sync_data()
    }

    /// Step 2 of a batch, once its record is durably in sled: the leaves enter the indexes.
    pub fn commit(&mut self, staged: Staged) {
        debug_assert_eq!(staged.first, self.len());
        for (id, key, offset, len) in staged.leaves {
            let index = self.leaves.len() as u64;
            self.leaves.push(Leaf {
                id,
                location: Location::File { offset, len },
            });
            self.by_id.insert(id, (index, staged.size));
            self.heads.insert(key, id);
        }
        self.end = staged.end;
    }
}
