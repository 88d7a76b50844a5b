//! Cutting an activity file into chunks of whole records, so that worker threads can parse
//! and check them in parallel: the file is read a chunk at a time and each chunk cut just after
//! the last line end outside quoted cells, following csv_core's reading of quotes; lines are
//! counted as the file's (a line ends with LF, CRLF or a lone CR).

use std::io::Read;

use super::{ImportError, RowError};

/// Bytes of the file handed to a worker thread at a time, cut at the end of a record.
const CHUNK_BYTES: usize = 1 << 20;
/// Threads that parse and check chunks; the calling thread stages what they find.
const WORKERS: usize = 2;
/// The longest record read. A spreadsheet cell holds at most 32,767 characters: a longer
/// record is a quote that is never closed, which would otherwise make the rest of the file one
/// record held in memory.
const MAX_RECORD_BYTES: usize = 16 << 20;

/// How a file is cut into chunks (fixed, but for tests).
#[derive(Debug, Clone, Copy)]
pub(super) struct Split {
    pub chunk_bytes: usize,
    pub max_record_bytes: usize,
    pub workers: usize,
}

pub(super) const SPLIT: Split = Split {
    chunk_bytes: CHUNK_BYTES,
    max_record_bytes: MAX_RECORD_BYTES,
    workers: WORKERS,
};

/// A chunk handed to a worker: the first `len` bytes of its buffer.
#[derive(Debug)]
pub(super) struct Chunk {
    pub len: usize,
    /// Where it starts in the file, and on which line.
    pub offset: u64,
    pub line: u64,
    /// Whether the file ends with it (its last record may have no line end).
    pub last: bool,
}

/// The file being read, shared by the workers (behind a lock): each takes the next chunk.
pub(super) struct Source<R> {
    reader: R,
    split: Split,
    /// Bytes read and not handed out yet; they start at a record boundary.
    carry: Vec<u8>,
    /// Where `carry` starts in the file, and its line.
    offset: u64,
    line: u64,
    eof: bool,
    /// No more chunks are handed out (the end of the file, or an error).
    pub done: bool,
}

impl<R: Read> Source<R> {
    pub(super) fn new(reader: R, split: Split) -> Self {
        Self {
            reader,
            split,
            carry: Vec::new(),
            offset: 0,
            line: 1,
            eof: false,
            done: false,
        }
    }

    /// Reads into `buf[filled..]` until it is full or the file ends; the new `filled`.
    fn fill(&mut self, buf: &mut [u8], mut filled: usize) -> Result<usize, ImportError> {
        while filled < buf.len() && !self.eof {
            match self.reader.read(&mut buf[filled..]) {
                Ok(0) => self.eof = true,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ImportError::Io(e)),
            }
        }
        Ok(filled)
    }

    /// Reads the header row (skipping empty lines before it); the data rows follow in
    /// `carry`.
    pub(super) fn header(&mut self) -> Result<Vec<Vec<u8>>, ImportError> {
        let mut buf = Vec::new();
        let mut filled = 0;
        // More than a BOM: csv_core skips one at the start of its first input, and would take
        // an input left empty for the end of the file.
        let mut target = self.split.chunk_bytes.max(4);
        let mut core = csv_core::Reader::new();
        let mut out = vec![0; 1024];
        let mut ends = vec![0; 64];
        loop {
            buf.resize(target, 0);
            filled = self.fill(&mut buf, filled)?;
            // From the start each time (a header is read once): csv_core skips a BOM.
            core.reset();
            let input = &buf[..filled];
            let (mut pos, mut nout, mut nend) = (0, 0, 0);
            let mut flushed = false;
            let complete = loop {
                let (res, nin, o, e) =
                    core.read_record(&input[pos..], &mut out[nout..], &mut ends[nend..]);
                (pos, nout, nend) = (pos + nin, nout + o, nend + e);
                match res {
                    csv_core::ReadRecordResult::InputEmpty if self.eof && !flushed => {
                        flushed = true;
                    }
                    csv_core::ReadRecordResult::InputEmpty => break false,
                    csv_core::ReadRecordResult::OutputFull => out.resize(out.len() * 2, 0),
                    csv_core::ReadRecordResult::OutputEndsFull => ends.resize(ends.len() * 2, 0),
                    csv_core::ReadRecordResult::Record => break true,
                    csv_core::ReadRecordResult::End => return Err(ImportError::Empty),
                }
            };
            // The byte after the header is needed too (whether a CR ending it is one of a CRLF).
            if !complete || (pos == filled && !self.eof) {
                if filled >= self.split.max_record_bytes {
                    return Err(ImportError::Header(format!(
                        "the header row is longer than {} MiB: a quote is probably never closed",
                        self.split.max_record_bytes >> 20
                    )));
                }
                target *= 2;
                continue;
            }
            let mut start = 0;
            let cells = ends[..nend]
                .iter()
                .map(|&end| {
                    let cell = out.get(start..end).unwrap_or_default();
                    start = end;
                    // As the rows' cells: CRLF in a quoted cell reads as LF.
                    let mut cell = cell.to_vec();
                    let len = crlf_to_lf(&mut cell);
                    cell.truncate(len);
                    cell
                })
                .collect();
            self.line = 1 + line_breaks(&buf[..pos], buf[..filled].get(pos).copied());
            self.offset = pos as u64;
            self.carry = buf[pos..filled].to_vec();
            return Ok(cells);
        }
    }

    /// Reads the next chunk into `buf`, cut just after the last line end outside quotes
    /// (keeping the rest for the next chunk); `None` at the end of the file.
    pub(super) fn next_chunk(&mut self, buf: &mut Vec<u8>) -> Result<Option<Chunk>, ImportError> {
        if self.done {
            return Ok(None);
        }
        let mut target = self.split.chunk_bytes.max(self.carry.len() + 1);
        if buf.len() < target {
            buf.resize(target, 0);
        }
        let mut filled = self.carry.len();
        buf[..filled].copy_from_slice(&self.carry);
        self.carry.clear();
        let len = loop {
            filled = self.fill(&mut buf[..target], filled)?;
            if self.eof {
                break filled;
            }
            if let Some(end) = last_record_end(&buf[..filled]) {
                break end;
            }
            // No record ends in the chunk: one longer than it starts it.
            if filled >= self.split.max_record_bytes {
                self.done = true;
                let skipped = buf[..filled]
                    .iter()
                    .take_while(|&&b| b == b'\n' || b == b'\r')
                    .count();
                let line =
                    self.line + line_breaks(&buf[..skipped], buf[..filled].get(skipped).copied());
                return Err(ImportError::Rows {
                    errors: vec![RowError {
                        line,
                        column: None,
                        value: None,
                        message: format!(
                            "this row is longer than {} MiB: a quoted cell is probably never closed (a cell that contains a quote must be quoted and its quote doubled: \"a \"\"b\"\" c\")",
                            self.split.max_record_bytes >> 20
                        ),
                    }],
                    unlisted: 0,
                });
            }
            target = (target * 2).min(self.split.max_record_bytes.max(filled + 1));
            if buf.len() < target {
                buf.resize(target, 0);
            }
        };
        self.carry.extend_from_slice(&buf[len..filled]);
        if len == 0 {
            self.done = true;
            return Ok(None);
        }
        let chunk = Chunk {
            len,
            offset: self.offset,
            line: self.line,
            last: self.eof,
        };
        self.done = self.eof;
        self.offset += len as u64;
        self.line += line_breaks(&buf[..len], self.carry.first().copied());
        Ok(Some(chunk))
    }
}

/// How many lines end in `bytes` (at LF, at CR not followed by LF, `next` being the byte after
/// `bytes`).
fn line_breaks(bytes: &[u8], next: Option<u8>) -> u64 {
    let lf = memchr::memchr_iter(b'\n', bytes).count() as u64;
    let lone_cr = memchr::memchr_iter(b'\r', bytes)
        .filter(|&i| bytes.get(i + 1).copied().or(next) != Some(b'\n'))
        .count() as u64;
    lf + lone_cr
}

/// Where the last record of `bytes` that ends with a line end finishes (just after the LF),
/// `bytes` starting at the start of a record; `None` when no record ends with a LF in it.
///
/// It follows csv_core's reading of quotes (with the reader's default settings): a quote
/// opens a quoted cell only at the start of a cell (after a comma, a line end, or at the start
/// of a record); in a quoted cell two quotes stand for one and a single one ends the quoting;
/// any other quote is a character of its cell. Line ends in quoted cells do not end records.
pub(super) fn last_record_end(bytes: &[u8]) -> Option<usize> {
    let mut last = None;
    // The start of the current stretch outside quoted cells, and where to look for a quote.
    let mut outside = 0;
    let mut from = 0;
    loop {
        let Some(quote) = memchr::memchr(b'"', &bytes[from..]).map(|i| from + i) else {
            return memchr::memrchr(b'\n', &bytes[outside..])
                .map(|i| outside + i + 1)
                .or(last);
        };
        let opens = quote == 0 || matches!(bytes[quote - 1], b',' | b'\n' | b'\r');
        if !opens {
            from = quote + 1;
            continue;
        }
        if let Some(i) = memchr::memrchr(b'\n', &bytes[outside..quote]) {
            last = Some(outside + i + 1);
        }
        // The quote that closes the cell.
        let mut at = quote + 1;
        loop {
            let Some(i) = memchr::memchr(b'"', &bytes[at..]) else {
                // Quoted to the end of the chunk.
                return last;
            };
            let close = at + i;
            match bytes.get(close + 1) {
                Some(b'"') => at = close + 2,
                Some(_) => {
                    outside = close + 1;
                    from = close + 1;
                    break;
                }
                // Whether it closes the cell depends on the next byte: no record ends after.
                None => return last,
            }
        }
    }
}

/// Drops each CR that a LF follows, in place; the new length. (csv_core would end a record at
/// the CR and leave the LF for the next; with LF alone a cell's text is as a spreadsheet
/// shows it and lines are counted once.)
pub(super) fn crlf_to_lf(bytes: &mut [u8]) -> usize {
    let Some(first) = memchr::memchr(b'\r', bytes) else {
        return bytes.len();
    };
    let mut write = first;
    let mut read = first;
    while let Some(i) = memchr::memchr(b'\r', &bytes[read..]) {
        let cr = read + i;
        bytes.copy_within(read..cr, write);
        write += cr - read;
        if bytes.get(cr + 1) != Some(&b'\n') {
            bytes[write] = b'\r';
            write += 1;
        }
        read = cr + 1;
    }
    bytes.copy_within(read.., write);
    write + (bytes.len() - read)
}
