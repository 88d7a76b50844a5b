//! The files that hold a structure's stored activities (segments) and its id index, named by
//! small sled records.
//!
//! sled 0.34 writes any node larger than a quarter of its 512 KiB segment to a blob file of its
//! own and never fsyncs it (`pagecache/blob_io.rs::write_blob`; spacejam/sled#1077): large
//! values in sled would not survive a power cut even after `flush`. So the bulk lives here, in
//! files that are synced before the sled record naming them is written, and sled only holds
//! [`BlobRef`]s (a few dozen bytes each).
//!
//! Files live in the store's `segments/` folder, two per import batch at most:
//! - `N.recs`: the import's staged records file (see [`super::staging`]), kept once committed;
//!   an import into an empty segment names its bytes where they are (no copy).
//! - `N.seg`: what applying import `N` wrote: merged segments and index buckets, appended.
//!
//! A file no record names any more is deleted (see [`SegmentFiles::remove_unreferenced`]).

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The folder of the segment files, inside the store's folder.
pub const FOLDER: &str = "segments";

/// Which file of an import batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileKind {
    /// `N.recs`, the import's committed records file.
    Records,
    /// `N.seg`, what applying the import wrote.
    Segments,
}

/// A segment file: its import batch and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId {
    /// The import batch that wrote it.
    pub batch: u64,
    /// Which of that batch's files.
    pub kind: FileKind,
}

impl FileId {
    /// The file's name in the segments folder.
    pub fn name(self) -> String {
        match self.kind {
            FileKind::Records => format!("{}.recs", self.batch),
            FileKind::Segments => format!("{}.seg", self.batch),
        }
    }

    /// The file of a name, if it is one of ours.
    pub fn parse(name: &str) -> Option<Self> {
        let (batch, kind) = if let Some(b) = name.strip_suffix(".recs") {
            (b, FileKind::Records)
        } else {
            (name.strip_suffix(".seg")?, FileKind::Segments)
        };
        Some(Self {
            batch: batch.parse().ok()?,
            kind,
        })
    }
}

/// Where some bytes are: a range of a segment file and its CRC-32, so that a damaged or cut
/// file is reported rather than read as garbage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobRef {
    /// The file.
    pub file: FileId,
    /// The first byte.
    pub offset: u64,
    /// How many bytes.
    pub len: u64,
    /// CRC-32 (IEEE) of the bytes.
    pub crc: u32,
}

/// Bytes of an encoded [`BlobRef`].
pub const BLOB_REF_LEN: usize = 29;

impl BlobRef {
    /// A reference to `bytes`, stored at `offset` of `file`.
    pub fn of(file: FileId, offset: u64, bytes: &[u8]) -> Self {
        Self {
            file,
            offset,
            len: bytes.len() as u64,
            crc: crc32fast::hash(bytes),
        }
    }

    /// `[batch: u64][kind: u8][offset: u64][len: u64][crc: u32]`, little-endian.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.file.batch.to_le_bytes());
        out.push(match self.file.kind {
            FileKind::Records => 0,
            FileKind::Segments => 1,
        });
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(&self.crc.to_le_bytes());
    }

    /// Reads what [`BlobRef::write`] wrote.
    pub fn read(c: &mut super::codec::Cursor<'_>) -> Result<Self, super::codec::Bad> {
        let batch = c.u64()?;
        let kind = match c.u8()? {
            0 => FileKind::Records,
            1 => FileKind::Segments,
            _ => return Err(super::codec::Bad("unknown segment file kind")),
        };
        Ok(Self {
            file: FileId { batch, kind },
            offset: c.u64()?,
            len: c.u64()?,
            crc: c.u32()?,
        })
    }
}

/// The segments folder.
#[derive(Debug, Clone)]
pub struct SegmentFiles {
    dir: PathBuf,
}

impl SegmentFiles {
    /// The folder inside the store's folder `store`, created (and made durable) if missing.
    pub fn open(store: &Path) -> std::io::Result<Self> {
        let dir = store.join(FOLDER);
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir)?;
            sync_dir(store)?;
        }
        Ok(Self { dir })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of a file.
    pub fn path(&self, file: FileId) -> PathBuf {
        self.dir.join(file.name())
    }

    /// Reads the bytes a reference names into `out` (replacing its content), checking their
    /// CRC. The error says which file and what is wrong with it.
    pub fn read(&self, blob: &BlobRef, out: &mut Vec<u8>) -> Result<(), ReadError> {
        let path = self.path(blob.file);
        let file = File::open(&path).map_err(|e| ReadError {
            path: path.clone(),
            reason: e.to_string(),
            missing: e.kind() == std::io::ErrorKind::NotFound,
        })?;
        let len = usize::try_from(blob.len).map_err(|_| ReadError {
            path: path.clone(),
            reason: "a stored range larger than memory".into(),
            missing: false,
        })?;
        out.clear();
        out.resize(len, 0);
        file.read_exact_at(out, blob.offset)
            .map_err(|e| ReadError {
                reason: if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    format!(
                        "the file is shorter than the store says ({} bytes wanted at offset {})",
                        blob.len, blob.offset
                    )
                } else {
                    e.to_string()
                },
                path: path.clone(),
                missing: false,
            })?;
        if crc32fast::hash(out) != blob.crc {
            return Err(ReadError {
                path,
                reason: format!(
                    "the {} bytes at offset {} do not match their checksum",
                    blob.len, blob.offset
                ),
                missing: false,
            });
        }
        Ok(())
    }

    /// Every file of ours in the folder (other names are left alone): its id, path and size.
    pub fn list(&self) -> Vec<(FileId, PathBuf, u64)> {
        let mut out = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                if let (Some(file), Ok(meta)) = (
                    FileId::parse(&entry.file_name().to_string_lossy()),
                    entry.metadata(),
                ) {
                    out.push((file, entry.path(), meta.len()));
                }
            }
        }
        out
    }

    /// Deletes every file of ours that is not in `keep`; how many were deleted.
    pub fn remove_unreferenced(&self, keep: &BTreeSet<FileId>) -> usize {
        self.list()
            .into_iter()
            .filter(|(file, path, _)| !keep.contains(file) && std::fs::remove_file(path).is_ok())
            .count()
    }
}

/// A segment file could not be read.
#[derive(Debug)]
pub struct ReadError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
    /// Whether the file does not exist (a concurrent import may have just replaced it).
    pub missing: bool,
}

/// Waits until a folder's entries are on disk.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Appends to one batch's `N.seg` from several threads; created on the first append. Nothing
/// appended may be named by a sled record before [`Appender::sync`] returned.
#[derive(Debug)]
pub struct Appender {
    file: FileId,
    path: PathBuf,
    dir: PathBuf,
    state: Mutex<AppendState>,
}

#[derive(Debug, Default)]
struct AppendState {
    file: Option<Arc<File>>,
    end: u64,
    created: bool,
    unsynced: bool,
}

impl Appender {
    /// The appender of batch `batch`'s segment file (which may exist: a resumed apply appends
    /// after what the interrupted one wrote).
    pub fn new(files: &SegmentFiles, batch: u64) -> Self {
        let file = FileId {
            batch,
            kind: FileKind::Segments,
        };
        Self {
            file,
            path: files.path(file),
            dir: files.dir.clone(),
            state: Mutex::new(AppendState::default()),
        }
    }

    /// Appends `bytes`; where they are.
    pub fn append(&self, bytes: &[u8]) -> std::io::Result<BlobRef> {
        let (file, offset) = {
            let mut state = self
                .state
                .lock()
                .map_err(|_| std::io::Error::other("a segment-writing thread failed"))?;
            if state.file.is_none() {
                let file = File::options()
                    .create(true)
                    .truncate(false)
                    .read(true)
                    .write(true)
                    .open(&self.path)?;
                state.end = file.metadata()?.len();
                state.file = Some(Arc::new(file));
                state.created = true;
            }
            let offset = state.end;
            state.end += bytes.len() as u64;
            state.unsynced = true;
            let file = state
                .file
                .clone()
                .ok_or_else(|| std::io::Error::other("segment file not open"))?;
            (file, offset)
        };
        // The range is reserved: written without holding the lock.
        file.write_all_at(bytes, offset)?;
        Ok(BlobRef::of(self.file, offset, bytes))
    }

    /// Waits until everything appended (and the file's name) is on disk.
    pub fn sync(&self) -> std::io::Result<()> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| std::io::Error::other("a segment-writing thread failed"))?;
        if state.unsynced
            && let Some(file) = &state.file
        {
            file.sync_data()?;
            if std::mem::take(&mut state.created) {
                sync_dir(&self.dir)?;
            }
            state.unsynced = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_references_read_back() {
        for file in [
            FileId {
                batch: 7,
                kind: FileKind::Records,
            },
            FileId {
                batch: u64::MAX,
                kind: FileKind::Segments,
            },
        ] {
            assert_eq!(FileId::parse(&file.name()), Some(file));
            let blob = BlobRef::of(file, 12, b"hello");
            let mut bytes = Vec::new();
            blob.write(&mut bytes);
            assert_eq!(bytes.len(), BLOB_REF_LEN);
            let mut c = crate::store::codec::Cursor::new(&bytes);
            assert_eq!(BlobRef::read(&mut c), Ok(blob));
        }
        for other in ["x.seg", "1.rows", "1.seg.tmp", "staging-1.recs"] {
            assert_eq!(FileId::parse(other), None, "{other}");
        }
    }

    #[test]
    fn appended_bytes_read_back_and_damage_is_reported() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let files = SegmentFiles::open(dir.path())?;
        let appender = Appender::new(&files, 3);
        let a = appender.append(b"first")?;
        let b = appender.append(&[9u8; 5000])?;
        appender.sync()?;
        let mut out = Vec::new();
        files.read(&a, &mut out).map_err(|e| e.reason)?;
        assert_eq!(out, b"first");
        files.read(&b, &mut out).map_err(|e| e.reason)?;
        assert_eq!(out, vec![9u8; 5000]);
        // A second appender of the same batch (a resumed apply) appends after.
        let again = Appender::new(&files, 3).append(b"more")?;
        assert_eq!(again.offset, 5005);
        // A flipped byte and a cut file are errors naming the file.
        let path = files.path(a.file);
        let mut bytes = std::fs::read(&path)?;
        bytes[1] ^= 1;
        std::fs::write(&path, &bytes)?;
        let err = files.read(&a, &mut out).err().ok_or("damage unnoticed")?;
        assert!(err.reason.contains("checksum"), "{}", err.reason);
        assert_eq!(err.path, path);
        File::options().write(true).open(&path)?.set_len(100)?;
        let err = files.read(&b, &mut out).err().ok_or("cut unnoticed")?;
        assert!(err.reason.contains("shorter"), "{}", err.reason);
        // Only unreferenced files of ours are deleted.
        std::fs::write(files.dir().join("notes.txt"), b"keep")?;
        let keep: BTreeSet<FileId> = BTreeSet::new();
        assert_eq!(files.remove_unreferenced(&keep), 1);
        assert!(files.dir().join("notes.txt").exists());
        let err = files.read(&a, &mut out).err().ok_or("missing unnoticed")?;
        assert!(err.missing);
        Ok(())
    }
}
