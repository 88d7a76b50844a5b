//! The staging file of an import: every validated row, written as the file is read, so that a
//! large import never sits in memory and survives a crash between validation and storage.
//!
//! Format: a sequence of frames `[period: 7 ASCII bytes "YYYY-MM"][bucket: u8][id length: u16
//! LE][activite_id][len: u32 LE][postcard row]`, then a trailer `[b"END!"][frames: u64 LE]`. A file
//! without its trailer was cut short and is never applied. The id and period stand outside the
//! encoded body so that a pass that only needs them (or only some buckets) skips the body unread.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use maillage_protocol::Period;

use crate::import::Row;

const TRAILER: &[u8; 4] = b"END!";

/// Where activities of an id are stored within a period, and where the id's index entry is:
/// FNV-1a, a hash that never changes across builds (it decides where data lives on disk).
pub fn stable_hash(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Writes a staging file.
#[derive(Debug)]
pub struct StagingWriter {
    path: PathBuf,
    out: BufWriter<File>,
    frames: u64,
}

impl StagingWriter {
    /// Creates the file (refusing to overwrite one).
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let file = File::options().write(true).create_new(true).open(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 20, file),
            frames: 0,
        })
    }

    /// Appends one row.
    pub fn push(&mut self, row: &Row, buckets: u8) -> std::io::Result<()> {
        let body = postcard::to_allocvec(row).map_err(std::io::Error::other)?;
        let period = Period::of_date(row.date).to_string();
        let bucket = (stable_hash(&row.activite_id) % u64::from(buckets)) as u8;
        let len = u32::try_from(body.len()).map_err(std::io::Error::other)?;
        let id_len = u16::try_from(row.activite_id.len())
            .map_err(|_| std::io::Error::other("activite_id longer than 65,535 bytes"))?;
        self.out.write_all(period.as_bytes())?;
        self.out.write_all(&[bucket])?;
        self.out.write_all(&id_len.to_le_bytes())?;
        self.out.write_all(row.activite_id.as_bytes())?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&body)?;
        self.frames += 1;
        Ok(())
    }

    /// Writes the trailer and waits until the file is on disk.
    pub fn finish(mut self) -> std::io::Result<PathBuf> {
        self.out.write_all(TRAILER)?;
        self.out.write_all(&self.frames.to_le_bytes())?;
        self.out.flush()?;
        self.out.get_ref().sync_all()?;
        Ok(self.path)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// One frame's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameHead {
    /// The row's period.
    pub period: Period,
    /// The row's bucket.
    pub bucket: u8,
    /// The row's activity id.
    pub id: String,
}

/// Reads a staging file's frames, decoding the body only of those `want` accepts (the others
/// are skipped without being read into memory).
pub fn read_frames(
    path: &Path,
    mut want: impl FnMut(&FrameHead) -> bool,
    mut each: impl FnMut(FrameHead, Option<Row>) -> Result<(), String>,
) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut input = BufReader::with_capacity(1 << 20, file);
    let mut frames = 0u64;
    let mut body = Vec::new();
    loop {
        let mut head = [0u8; 10];
        input
            .read_exact(&mut head[..4])
            .map_err(|e| format!("truncated staging file: {e}"))?;
        if &head[..4] == TRAILER {
            let mut count = [0u8; 8];
            input
                .read_exact(&mut count)
                .map_err(|e| format!("truncated trailer: {e}"))?;
            if u64::from_le_bytes(count) != frames {
                return Err(format!(
                    "trailer counts {} frames, file has {frames}",
                    u64::from_le_bytes(count)
                ));
            }
            return Ok(());
        }
        input
            .read_exact(&mut head[4..])
            .map_err(|e| format!("truncated frame: {e}"))?;
        let period: Period = std::str::from_utf8(&head[..7])
            .ok()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("frame {frames}: bad period"))?;
        let bucket = head[7];
        let id_len = u16::from_le_bytes([head[8], head[9]]) as usize;
        let mut id = vec![0u8; id_len];
        input
            .read_exact(&mut id)
            .map_err(|e| format!("truncated frame {frames}: {e}"))?;
        let id = String::from_utf8(id).map_err(|_| format!("frame {frames}: id is not UTF-8"))?;
        let mut len = [0u8; 4];
        input
            .read_exact(&mut len)
            .map_err(|e| format!("truncated frame {frames}: {e}"))?;
        let len = u32::from_le_bytes(len) as usize;
        let frame = FrameHead { period, bucket, id };
        let row = if want(&frame) {
            body.resize(len, 0);
            input
                .read_exact(&mut body)
                .map_err(|e| format!("truncated frame {frames}: {e}"))?;
            Some(postcard::from_bytes(&body).map_err(|e| format!("frame {frames}: {e}"))?)
        } else {
            let skip = i64::try_from(len).map_err(|_| format!("frame {frames}: length"))?;
            input
                .seek_relative(skip)
                .map_err(|e| format!("truncated frame {frames}: {e}"))?;
            None
        };
        each(frame, row)?;
        frames += 1;
    }
}
