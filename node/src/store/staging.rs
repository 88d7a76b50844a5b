//! The staging files of an import, so that a large import never sits in memory and survives a
//! crash between validation and storage.
//!
//! Two kinds, with the same layout. A **rows** file holds every validated row (a frame, see
//! [`super::codec`]), written as the file is read; a **records** file holds the import's
//! activities as store records, written once the rows of each activity were checked together,
//! each partition's records sorted by (period, id hash, id) so that applying them is a merge.
//! Only a records file is ever committed and applied (older versions committed rows files:
//! those are still applied, see `Store::recover`).
//!
//! Entries (frames or records) are sorted into [`PARTITIONS`] partitions by the hash of their
//! activity id, the same partitions as the store's segments, so that each partition can be read
//! alone: the file is a sequence of blocks, each holding entries of one partition (in order),
//! then a table of the blocks and a trailer `[table offset: u64][blocks: u64][rows: u64]
//! [magic]`, the magic naming the kind and `rows` counting the imported rows the file holds. A file without its trailer was cut short and is never
//! applied (it is only ever applied after it was synced and committed).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Partitions of a staging file; also the store's segment buckets.
pub const PARTITIONS: u8 = 16;
/// A partition's rows are written out in blocks of about this size.
const BLOCK_BYTES: usize = 256 * 1024;
const ROWS_MAGIC: &[u8; 8] = b"MLGSTG01";
const RECORDS_MAGIC: &[u8; 8] = b"MLGREC01";
const TRAILER_LEN: u64 = 32;
const ENTRY_LEN: usize = 13;

/// The partition of an id's hash.
pub fn partition_of(hash: u64) -> u8 {
    // The remainder is below PARTITIONS, a u8.
    (hash % u64::from(PARTITIONS)) as u8
}

/// What a staging file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Frames, each partition's in the order of the imported file.
    Rows,
    /// Records, each partition's sorted by (period, id hash, id).
    Records,
}

#[derive(Debug, Clone, Copy)]
struct Block {
    partition: u8,
    offset: u64,
    len: u32,
}

/// Writes a staging file.
#[derive(Debug)]
pub struct StagingWriter {
    path: PathBuf,
    file: File,
    buffers: Vec<Vec<u8>>,
    blocks: Vec<Block>,
    offset: u64,
    frames: u64,
}

/// A new staging file, read-write; an existing one is not overwritten.
fn create_new(path: &Path) -> std::io::Result<File> {
    File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
}

impl StagingWriter {
    /// Creates the file (refusing to overwrite one).
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let file = create_new(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            buffers: (0..PARTITIONS).map(|_| Vec::new()).collect(),
            blocks: Vec::new(),
            offset: 0,
            frames: 0,
        })
    }

    /// Appends one frame (as [`super::codec::FrameWriter`] wrote it).
    pub fn push(&mut self, frame: &[u8]) -> std::io::Result<()> {
        let hash = frame
            .get(4..12)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
            .ok_or_else(|| std::io::Error::other("frame too short"))?;
        let p = partition_of(hash);
        let buffer = &mut self.buffers[usize::from(p)];
        if buffer.capacity() == 0 {
            buffer.reserve_exact(BLOCK_BYTES + 1024);
        }
        buffer.extend_from_slice(frame);
        self.frames += 1;
        if buffer.len() >= BLOCK_BYTES {
            self.write_block(p)?;
        }
        Ok(())
    }

    fn write_block(&mut self, p: u8) -> std::io::Result<()> {
        let buffer = &mut self.buffers[usize::from(p)];
        if buffer.is_empty() {
            return Ok(());
        }
        let len = u32::try_from(buffer.len()).map_err(std::io::Error::other)?;
        self.file.write_all(buffer)?;
        self.blocks.push(Block {
            partition: p,
            offset: self.offset,
            len,
        });
        self.offset += u64::from(len);
        buffer.clear();
        Ok(())
    }

    /// Writes what is left, the table and the trailer (not synced: a rows file is only read
    /// back by this process, to check the rows and write the records file).
    pub fn finish(mut self) -> std::io::Result<StagingFile> {
        for p in 0..PARTITIONS {
            self.write_block(p)?;
        }
        self.buffers = Vec::new();
        self.file
            .write_all(&table(&self.blocks, self.offset, self.frames, ROWS_MAGIC))?;
        Ok(StagingFile {
            path: self.path,
            file: self.file,
            kind: Kind::Rows,
            blocks: self.blocks,
            rows: self.frames,
        })
    }
}

/// The block table and the trailer.
fn table(blocks: &[Block], offset: u64, entries: u64, magic: &[u8; 8]) -> Vec<u8> {
    let mut table = Vec::with_capacity(blocks.len() * ENTRY_LEN + TRAILER_LEN as usize);
    for b in blocks {
        table.push(b.partition);
        table.extend_from_slice(&b.offset.to_le_bytes());
        table.extend_from_slice(&b.len.to_le_bytes());
    }
    table.extend_from_slice(&offset.to_le_bytes());
    table.extend_from_slice(&(blocks.len() as u64).to_le_bytes());
    table.extend_from_slice(&entries.to_le_bytes());
    table.extend_from_slice(magic);
    table
}

/// Writes a records file, a whole partition at a time, from several threads at once.
#[derive(Debug)]
pub struct RecordsWriter {
    path: PathBuf,
    file: File,
    state: std::sync::Mutex<RecordsState>,
}

#[derive(Debug, Default)]
struct RecordsState {
    blocks: Vec<Block>,
    offset: u64,
    rows: u64,
    written: [bool; PARTITIONS as usize],
}

impl RecordsWriter {
    /// Creates the file (refusing to overwrite one).
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let file = create_new(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            state: std::sync::Mutex::new(RecordsState::default()),
        })
    }

    /// Writes every record of partition `p` (in `pieces` taken in order, sorted by (period,
    /// id hash, id), holding `rows` rows); each partition is written once.
    pub fn write_partition(&self, p: u8, pieces: &[&[u8]], rows: u64) -> std::io::Result<()> {
        let mut placed = Vec::new();
        {
            let mut state = self
                .state
                .lock()
                .map_err(|_| std::io::Error::other("a staging thread failed"))?;
            let slot = state
                .written
                .get_mut(usize::from(p))
                .ok_or_else(|| std::io::Error::other("partition out of range"))?;
            if std::mem::replace(slot, true) {
                return Err(std::io::Error::other("partition written twice"));
            }
            // Blocks of at most BLOCK_BYTES bytes (a block's length is a u32); records may be
            // cut between blocks, as the partition is read back whole.
            for piece in pieces {
                for part in piece.chunks(BLOCK_BYTES * 64) {
                    let len = u32::try_from(part.len()).map_err(std::io::Error::other)?;
                    let block = Block {
                        partition: p,
                        offset: state.offset,
                        len,
                    };
                    state.offset += u64::from(len);
                    state.blocks.push(block);
                    placed.push((block.offset, part));
                }
            }
            state.rows += rows;
        }
        // The space is reserved: write it without holding the lock.
        for (offset, part) in placed {
            self.file.write_all_at(part, offset)?;
        }
        Ok(())
    }

    /// Writes what was written so far to disk (not the table: see [`RecordsWriter::finish`]).
    pub fn sync_data(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    /// Writes the table and the trailer (not synced: see [`StagingFile::sync_all`]).
    pub fn finish(self) -> std::io::Result<StagingFile> {
        let state = self
            .state
            .into_inner()
            .map_err(|_| std::io::Error::other("a staging thread failed"))?;
        self.file.write_all_at(
            &table(&state.blocks, state.offset, state.rows, RECORDS_MAGIC),
            state.offset,
        )?;
        Ok(StagingFile {
            path: self.path,
            file: self.file,
            kind: Kind::Records,
            blocks: state.blocks,
            rows: state.rows,
        })
    }
}

/// A complete staging file, read a partition at a time.
#[derive(Debug)]
pub struct StagingFile {
    path: PathBuf,
    file: File,
    kind: Kind,
    blocks: Vec<Block>,
    rows: u64,
}

impl StagingFile {
    /// Opens a staging file, checking that it is complete.
    pub fn open(path: &Path) -> Result<Self, String> {
        let file = File::open(path).map_err(|e| e.to_string())?;
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        if len < TRAILER_LEN {
            return Err("truncated staging file (no trailer)".into());
        }
        let mut trailer = [0u8; TRAILER_LEN as usize];
        file.read_exact_at(&mut trailer, len - TRAILER_LEN)
            .map_err(|e| e.to_string())?;
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&trailer[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        let kind = match &trailer[24..] {
            m if m == ROWS_MAGIC => Kind::Rows,
            m if m == RECORDS_MAGIC => Kind::Records,
            _ => return Err("truncated staging file (no trailer)".into()),
        };
        let (table_offset, count, rows) = (word(0), word(1), word(2));
        let table_len = count
            .checked_mul(ENTRY_LEN as u64)
            .filter(|t| table_offset.checked_add(*t) == Some(len - TRAILER_LEN))
            .ok_or("damaged staging file (table size)")?;
        let mut table = vec![0u8; usize::try_from(table_len).map_err(|e| e.to_string())?];
        file.read_exact_at(&mut table, table_offset)
            .map_err(|e| e.to_string())?;
        let mut blocks = Vec::with_capacity(table.len() / ENTRY_LEN);
        for entry in table.chunks_exact(ENTRY_LEN) {
            let mut offset = [0u8; 8];
            offset.copy_from_slice(&entry[1..9]);
            let mut block_len = [0u8; 4];
            block_len.copy_from_slice(&entry[9..13]);
            let block = Block {
                partition: entry[0],
                offset: u64::from_le_bytes(offset),
                len: u32::from_le_bytes(block_len),
            };
            if block.partition >= PARTITIONS
                || block
                    .offset
                    .checked_add(u64::from(block.len))
                    .is_none_or(|end| end > table_offset)
            {
                return Err("damaged staging file (block table)".into());
            }
            blocks.push(block);
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            kind,
            blocks,
            rows,
        })
    }

    /// Reads every entry of partition `p`, in order, into `out` (replacing its content).
    pub fn read_partition(&self, p: u8, out: &mut Vec<u8>) -> Result<(), String> {
        let total: usize = self
            .blocks
            .iter()
            .filter(|b| b.partition == p)
            .map(|b| b.len as usize)
            .sum();
        // Every byte is read over: only the part beyond the buffer's previous length is zeroed.
        out.truncate(total);
        out.resize(total, 0);
        let mut start = 0;
        for b in self.blocks.iter().filter(|b| b.partition == p) {
            let end = start + b.len as usize;
            self.file
                .read_exact_at(&mut out[start..end], b.offset)
                .map_err(|e| format!("{}: {e}", self.path.display()))?;
            start = end;
        }
        Ok(())
    }

    /// Where partition `p`'s entries start in the file, when they are all in one run of
    /// consecutive blocks (as a records file writes them); `None` otherwise or when it has none.
    pub fn partition_start(&self, p: u8) -> Option<u64> {
        let mut blocks = self.blocks.iter().filter(|b| b.partition == p);
        let first = blocks.next()?;
        let mut end = first.offset + u64::from(first.len);
        for b in blocks {
            if b.offset != end {
                return None;
            }
            end += u64::from(b.len);
        }
        Some(first.offset)
    }

    /// Imported rows the file holds.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Waits until the file is on disk.
    pub fn sync_all(&self) -> std::io::Result<()> {
        self.file.sync_all()
    }

    /// What the file holds.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(hash: u64, payload: u8, size: usize) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&(size as u32 + 8).to_le_bytes());
        f.extend_from_slice(&hash.to_le_bytes());
        f.extend(std::iter::repeat_n(payload, size));
        f
    }

    #[test]
    fn partitions_come_back_in_file_order_and_cut_files_are_refused()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("staging-1.rows");
        let mut w = StagingWriter::create(&path)?;
        let mut expected = vec![Vec::new(); usize::from(PARTITIONS)];
        for i in 0..5000u64 {
            let f = frame(i * 7, (i % 251) as u8, 100 + (i % 300) as usize);
            expected[usize::from(partition_of(i * 7))].extend_from_slice(&f);
            w.push(&f)?;
        }
        let file = w.finish()?;
        assert_eq!(file.rows(), 5000);
        let reopened = StagingFile::open(&path)?;
        let mut buf = Vec::new();
        for p in 0..PARTITIONS {
            reopened.read_partition(p, &mut buf)?;
            assert_eq!(buf, expected[usize::from(p)], "partition {p}");
        }
        let len = std::fs::metadata(&path)?.len();
        let cut = File::options().write(true).open(&path)?;
        cut.set_len(len - 1)?;
        assert!(StagingFile::open(&path).is_err());
        Ok(())
    }
}
