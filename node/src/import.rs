//! Reading activity-report files (CSV in the national activity-report model's vocabulary).
//!
//! The rules are DATA.md's "Import rules": all or nothing, every invalid row reported with its
//! line, column, value and what is accepted; spreadsheet exports accepted as they come (BOM,
//! CRLF, quoted and padded cells, any column order, unknown columns ignored with a warning).
//! Reading is pure: it turns bytes into validated rows in a compact binary form (frames, see
//! [`crate::store::codec`]) or every error; the store stages the frames and checks the rows of
//! each activity together ([`check_activity`]) before anything is committed.

use std::fmt;
use std::io::Read;

use maillage_privacy::Activity;
use maillage_protocol::Cog;
use maillage_protocol::vocab::{
    ActivityType, Autonomie, Genre, Materiel, NiveauAtelier, OuiNon, PlaceType, StatutSocial,
    Thematique, TrancheAge, Vocabulary,
};
use time::{Date, Month};

use crate::store::codec::{self, Facts, FrameRef, FrameWriter, commune_text, stable_hash};

/// The columns of the activity-report model, in the model's order.
pub const COLUMNS: &[&str] = &[
    "activite_id",
    "date",
    "type",
    "duree",
    "type_lieu",
    "lieu_code_insee",
    "thematiques",
    "materiel",
    "autonomie",
    "oriente_vers_structure",
    "niveau_atelier",
    "beneficiaire_id",
    "premier_accompagnement",
    "genre",
    "tranche_age",
    "statut_social",
    "commune_code_insee",
];

/// The columns every file must have.
pub const REQUIRED_COLUMNS: &[&str] = &["activite_id", "date", "type", "duree"];

/// The legacy activity type read as `individuel` with the administrative-procedures theme.
const LEGACY_DEMARCHE: &str = "demarche_administrative";

/// One problem with one cell (or row) of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// The line of the file (the header is line 1).
    pub line: u64,
    /// The column, when the problem is one cell's.
    pub column: Option<String>,
    /// The offending value, as read.
    pub value: Option<String>,
    /// What is wrong and what would be accepted.
    pub message: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(column) = &self.column {
            write!(f, ", column {column}")?;
        }
        if let Some(value) = &self.value {
            write!(f, ", value {value:?}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Why a file was rejected. Nothing of a rejected file is imported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The file could not be read.
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    /// The file has no header row.
    #[error(
        "the file is empty: expected a header row naming the columns (at least {})",
        REQUIRED_COLUMNS.join(", ")
    )]
    Empty,
    /// The header row is unusable.
    #[error("line 1 (header): {0}")]
    Header(String),
    /// Some rows are invalid; every one is listed (up to [`MAX_LISTED_ERRORS`]).
    #[error("{} invalid row(s); nothing was imported:\n{}{}", .errors.len() as u64 + .unlisted, list(.errors), unlisted_note(*.unlisted))]
    Rows {
        /// The errors, by line.
        errors: Vec<RowError>,
        /// How many more errors there were beyond those listed.
        unlisted: u64,
    },
    /// Writing what was read failed (disk full…); nothing was imported.
    #[error("cannot stage the import: {0}")]
    Stage(String),
}

fn unlisted_note(unlisted: u64) -> String {
    if unlisted == 0 {
        String::new()
    } else {
        format!(
            "\n  … and {unlisted} more invalid row(s) not listed (at most {MAX_LISTED_ERRORS} are)"
        )
    }
}

fn list(errors: &[RowError]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A file that passed every check, read whole into memory (tests, benchmarks, small files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedFile {
    /// The activities, in the order of their first row in the file.
    pub activities: Vec<Activity>,
    /// How many data rows were read (empty rows excluded).
    pub rows: u64,
    /// Things worth saying that did not reject the file (unknown columns, empty rows).
    pub warnings: Vec<String>,
}

/// Reports how far reading has gone, in bytes, for a progress bar.
pub trait Progress {
    /// Called now and then with the number of bytes read so far.
    fn advance(&mut self, bytes: u64);
}

impl Progress for () {
    fn advance(&mut self, _bytes: u64) {}
}

/// At most this many errors are listed; the rest are counted. A file with more invalid rows
/// than this is systematically wrong, and listing them all could exhaust a small server.
pub const MAX_LISTED_ERRORS: usize = 10_000;

/// At most this many warnings are kept; the rest are counted in a last warning.
const MAX_WARNINGS: usize = 100;

/// What a successful validation learnt about the file, without keeping its rows.
#[derive(Debug, Clone, Default)]
pub struct Validated {
    /// Data rows read (empty rows excluded).
    pub rows: u64,
    /// Distinct activities.
    pub activities: u64,
    /// Warnings about the file.
    pub warnings: Vec<String>,
}

/// Collects errors, listing those of the first [`MAX_LISTED_ERRORS`] lines and counting the
/// rest. Errors may come in any order (cells as the file is read, then activities as their
/// rows are checked together); the listed ones are always those of the earliest lines.
#[derive(Debug, Default)]
pub struct Errors {
    listed: Vec<RowError>,
    unlisted: u64,
}

impl Errors {
    /// Records one error.
    pub fn push(&mut self, error: RowError) {
        self.listed.push(error);
        if self.listed.len() >= 2 * MAX_LISTED_ERRORS {
            self.trim();
        }
    }

    fn trim(&mut self) {
        // Stable: the errors of one line keep their column order.
        self.listed.sort_by_key(|e| e.line);
        if self.listed.len() > MAX_LISTED_ERRORS {
            self.unlisted += (self.listed.len() - MAX_LISTED_ERRORS) as u64;
            self.listed.truncate(MAX_LISTED_ERRORS);
        }
    }

    /// Records every error of `other` (found apart, say on another thread).
    pub fn merge(&mut self, other: Errors) {
        self.unlisted += other.unlisted;
        for e in other.listed {
            self.push(e);
        }
    }

    /// Whether no error was recorded.
    pub fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }

    /// `Ok` when there was no error, else the rejection listing them by line.
    pub fn finish(mut self) -> Result<(), ImportError> {
        if self.is_empty() {
            return Ok(());
        }
        self.trim();
        Err(ImportError::Rows {
            errors: self.listed,
            unlisted: self.unlisted,
        })
    }
}

/// What reading a file learnt before the rows of each activity are checked together.
#[derive(Debug, Default)]
pub struct Reading {
    /// Data rows read (empty rows excluded), valid or not.
    pub rows: u64,
    /// Warnings about the file.
    pub warnings: Vec<String>,
    /// The errors of single rows.
    pub errors: Errors,
}

/// Records handed from the parsing thread to the checking one at a time (fewer when they are
/// large: a batch holds about [`BATCH_BYTES`]).
const BATCH_RECORDS: usize = 512;
const BATCH_BYTES: usize = 128 * 1024;
/// Batches in flight between the two threads (bounds the memory of the pipeline).
const BATCHES: usize = 6;

/// Records handed from the parsing thread to the checking one: their cells end to end in one
/// buffer, written and read in order (rather than one buffer per record, which the two threads
/// would pass back and forth).
#[derive(Debug, Default)]
struct Batch {
    /// Every cell of every record, end to end.
    bytes: Vec<u8>,
    /// Where each cell ends in `bytes`.
    ends: Vec<usize>,
    /// Per record: its line and byte offset in the file, and where its cells end in `ends`.
    records: Vec<(u64, u64, usize)>,
}

impl Batch {
    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
        self.records.clear();
    }

    fn push(&mut self, record: &csv::ByteRecord) {
        let (line, byte) = record.position().map_or((0, 0), |p| (p.line(), p.byte()));
        let base = self.bytes.len();
        self.bytes.extend_from_slice(record.as_slice());
        let mut end = base;
        for field in record {
            end += field.len();
            self.ends.push(end);
        }
        self.records.push((line, byte, self.ends.len()));
    }

    /// Each record: its line, byte offset and cells.
    fn records(&self) -> impl Iterator<Item = (u64, u64, RecordCells<'_>)> {
        let mut first_end = 0;
        self.records.iter().map(move |&(line, byte, last_end)| {
            let start = if first_end == 0 {
                0
            } else {
                self.ends[first_end - 1]
            };
            let cells = RecordCells {
                bytes: &self.bytes,
                start,
                ends: &self.ends[first_end..last_end],
            };
            first_end = last_end;
            (line, byte, cells)
        })
    }
}

/// The cells of one record of a [`Batch`].
#[derive(Debug, Clone, Copy)]
struct RecordCells<'a> {
    bytes: &'a [u8],
    start: usize,
    ends: &'a [usize],
}

impl<'a> RecordCells<'a> {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn iter(self) -> impl Iterator<Item = &'a [u8]> {
        let mut start = self.start;
        self.ends.iter().map(move |&end| {
            let cell = self.bytes.get(start..end).unwrap_or_default();
            start = end;
            cell
        })
    }

    /// All the cells' bytes, end to end.
    fn as_slice(&self) -> &'a [u8] {
        let end = self.ends.last().copied().unwrap_or(self.start);
        self.bytes.get(self.start..end).unwrap_or_default()
    }
}

/// Reads a whole activity-report file as a stream, checking every cell, and hands each valid
/// row to `sink` as a frame (see [`crate::store::codec`]), in file order. Rows with invalid
/// cells are recorded in [`Reading::errors`] and not handed on; the file is read to its end so
/// that every error is listed. Whether the rows of each activity agree is checked afterwards,
/// on the grouped frames, by [`check_activity`]. Only a problem with the file as a whole (no
/// header, a bad header, unreadable bytes) is an `Err`.
///
/// Two threads share the work: one reads and splits the CSV (and whatever `reader` does, such
/// as hashing), the calling one checks the cells and calls `sink`; they exchange batches of
/// records through a small fixed set of buffers, so memory stays bounded.
pub fn read_rows(
    reader: impl Read + Send,
    sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    progress: &mut dyn Progress,
) -> Result<Reading, ImportError> {
    // The csv crate reports line numbers one short after CRLF line ends; with LF only they are
    // exact, and error messages must name the right line.
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::None)
        .buffer_capacity(1 << 16)
        .from_reader(CrlfToLf::new(reader));
    let mut header = csv::ByteRecord::new();
    if !csv.read_byte_record(&mut header).map_err(csv_error)? {
        return Err(ImportError::Empty);
    }
    let columns = Columns::from_header(&header)?;
    let mut checker = RowChecker::new(&columns);
    std::thread::scope(|scope| {
        // Filled batches one way, emptied ones back.
        let (full_tx, full_rx) =
            std::sync::mpsc::sync_channel::<Result<Batch, csv::Error>>(BATCHES + 1);
        let (empty_tx, empty_rx) = std::sync::mpsc::sync_channel::<Batch>(BATCHES);
        for _ in 0..BATCHES {
            let _ = empty_tx.send(Batch::default());
        }
        scope.spawn(move || {
            let mut record = csv::ByteRecord::new();
            // Ends when the file does, on an error, or when the checker stops taking batches.
            while let Ok(mut batch) = empty_rx.recv() {
                batch.clear();
                let mut done = false;
                while batch.records.len() < BATCH_RECORDS && batch.bytes.len() < BATCH_BYTES {
                    match csv.read_byte_record(&mut record) {
                        Ok(true) => batch.push(&record),
                        Ok(false) => {
                            done = true;
                            break;
                        }
                        Err(e) => {
                            let _ = full_tx.send(Err(e));
                            return;
                        }
                    }
                }
                if full_tx.send(Ok(batch)).is_err() || done {
                    return;
                }
            }
        });
        // Dropping the receiver (returning early on an error) stops the reading thread.
        for message in full_rx {
            let batch = message.map_err(csv_error)?;
            for (line, byte, record) in batch.records() {
                checker.record(line, byte, record, sink, progress)?;
            }
            let _ = empty_tx.send(batch);
        }
        Ok::<(), ImportError>(())
    })?;
    Ok(checker.finish())
}

/// Checks the records of a file one at a time (what [`read_rows`] does on its calling thread).
struct RowChecker {
    count: usize,
    file_to_model: Vec<Option<usize>>,
    vocabs: Vocabs,
    communes: CommuneCache,
    dates: DateCache,
    frame: FrameWriter,
    row_errors: Vec<RowError>,
    reading: Reading,
    dropped_warnings: u64,
}

impl RowChecker {
    fn new(columns: &Columns) -> Self {
        let mut reading = Reading::default();
        if !columns.unknown.is_empty() {
            reading.warnings.push(format!(
                "unknown column(s) ignored: {} (the model's columns are: {})",
                columns.unknown.join(", "),
                COLUMNS.join(", ")
            ));
        }
        let mut file_to_model = vec![None; columns.count];
        for (model, file) in columns.index.iter().enumerate() {
            if let Some(file) = file {
                file_to_model[*file] = Some(model);
            }
        }
        Self {
            count: columns.count,
            file_to_model,
            vocabs: Vocabs::new(),
            communes: CommuneCache::new(),
            dates: DateCache::default(),
            frame: FrameWriter::default(),
            row_errors: Vec::new(),
            reading,
            dropped_warnings: 0,
        }
    }

    fn record(
        &mut self,
        line: u64,
        byte: u64,
        record: RecordCells<'_>,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
        progress: &mut dyn Progress,
    ) -> Result<(), ImportError> {
        if line.is_multiple_of(1024) {
            progress.advance(byte);
        }
        let mut cells: [&[u8]; COLUMNS.len()] = [&[]; COLUMNS.len()];
        let mut all_empty = true;
        for (i, field) in record.iter().enumerate() {
            let field = trim_bytes(field);
            all_empty &= field.is_empty();
            if let Some(Some(model)) = self.file_to_model.get(i) {
                cells[*model] = field;
            }
        }
        let reading = &mut self.reading;
        if all_empty {
            if reading.warnings.len() < MAX_WARNINGS {
                reading
                    .warnings
                    .push(format!("line {line} is empty and was skipped"));
            } else {
                self.dropped_warnings += 1;
            }
            return Ok(());
        }
        reading.rows += 1;
        if record.len() != self.count {
            reading.errors.push(RowError {
                line,
                column: None,
                value: None,
                message: format!(
                    "the row has {} cell(s) but the header has {} column(s); check the separator (a comma) and the quoting of cells that contain commas",
                    record.len(),
                    self.count
                ),
            });
            return Ok(());
        }
        let mut cells = Cells {
            cells,
            // Every cell of an ASCII row is valid UTF-8: no cell needs checking on its own.
            ascii: record.as_slice().is_ascii(),
            line,
            dates: &mut self.dates,
            errors: &mut self.row_errors,
            vocabs: &self.vocabs,
            communes: &mut self.communes,
        };
        let valid = cells.row(&mut self.frame);
        if !self.row_errors.is_empty() {
            for e in self.row_errors.drain(..) {
                reading.errors.push(e);
            }
            return Ok(());
        }
        if valid {
            let bytes = self
                .frame
                .end()
                .map_err(|e| ImportError::Stage(e.to_string()))?;
            sink(bytes).map_err(|e| ImportError::Stage(e.to_string()))?;
        }
        Ok(())
    }

    fn finish(mut self) -> Reading {
        if self.dropped_warnings > 0 {
            self.reading.warnings.push(format!(
                "{} more empty line(s) were skipped",
                self.dropped_warnings
            ));
        }
        self.reading
    }
}

fn vocab_text<V: Vocabulary>(code: u8) -> &'static str {
    usize::from(code)
        .checked_sub(1)
        .and_then(|i| V::ALL.get(i))
        .map_or("", |v| v.code())
}

/// Checks that the rows of one activity (sorted by line) agree, as DATA.md requires, recording
/// an error for every row that disagrees with the activity's first row.
pub fn check_activity(rows: &[FrameRef<'_>], errors: &mut Errors) {
    let Some((head, rest)) = rows.split_first() else {
        return;
    };
    // Only an error shows the id: not decoded otherwise.
    let shown_id = || String::from_utf8_lossy(head.id).into_owned();
    let first_line = head.line;
    let date_text = |f: &Facts| f.date().map(|d| d.to_string()).unwrap_or_default();
    let commune = |f: &Facts| commune_text(&f.place_commune).unwrap_or("").to_owned();
    let individuel = codec::code(ActivityType::Individuel);
    for row in rest {
        let (ours, first) = (&row.facts, &head.facts);
        let mut disagree = |column: &str, ours: String, first: String| {
            if ours != first {
                errors.push(RowError {
                    line: row.line,
                    column: Some(column.to_owned()),
                    value: Some(ours),
                    message: format!(
                        "the rows of activity {:?} must agree on {column}; line {first_line} has {first:?}",
                        shown_id()
                    ),
                });
            }
        };
        if ours.day != first.day {
            disagree("date", date_text(ours), date_text(first));
        }
        if ours.kind != first.kind {
            disagree(
                "type",
                vocab_text::<ActivityType>(ours.kind).into(),
                vocab_text::<ActivityType>(first.kind).into(),
            );
        }
        if ours.duree != first.duree {
            disagree("duree", ours.duree.to_string(), first.duree.to_string());
        }
        if ours.place_type != first.place_type {
            disagree(
                "type_lieu",
                vocab_text::<PlaceType>(ours.place_type).into(),
                vocab_text::<PlaceType>(first.place_type).into(),
            );
        }
        if ours.place_commune != first.place_commune {
            disagree("lieu_code_insee", commune(ours), commune(first));
        }
        if ours.level != first.level {
            disagree(
                "niveau_atelier",
                vocab_text::<NiveauAtelier>(ours.level).into(),
                vocab_text::<NiveauAtelier>(first.level).into(),
            );
        }
        if first.kind == individuel && ours.kind == individuel {
            errors.push(RowError {
                line: row.line,
                column: Some("activite_id".into()),
                value: Some(shown_id()),
                message: format!(
                    "an individuel activity has exactly one row; line {first_line} already has this activite_id (use type collectif for a workshop, or a distinct activite_id)"
                ),
            });
        }
    }
}

/// Reads and validates a whole file into memory, grouping rows into activities. `batch` is
/// recorded in every activity (it orders rows "in import order" across imports).
pub fn parse(
    bytes: &[u8],
    batch: u64,
    progress: &mut dyn Progress,
) -> Result<ParsedFile, ImportError> {
    let mut staged = Vec::new();
    let reading = read_rows(
        bytes,
        &mut |frame| {
            staged.extend_from_slice(frame);
            Ok(())
        },
        progress,
    )?;
    let mut errors = reading.errors;
    let internal = |e: codec::Bad| ImportError::Stage(e.to_string());
    let mut frames = codec::frames(&staged).map_err(internal)?;
    let mut activities = Vec::new();
    let mut record = Vec::new();
    codec::for_each_activity(&mut frames, |rows| {
        check_activity(rows, &mut errors);
        if errors.is_empty() {
            record.clear();
            codec::write_record(rows, batch, &mut record)?;
            let records = codec::records(&record)?;
            let first = records.first().ok_or(codec::Bad("no record"))?;
            activities.push((rows[0].line, codec::activity(first)?));
        }
        Ok(())
    })
    .map_err(internal)?;
    errors.finish()?;
    activities.sort_by_key(|(line, _)| *line);
    Ok(ParsedFile {
        activities: activities.into_iter().map(|(_, a)| a).collect(),
        rows: reading.rows,
        warnings: reading.warnings,
    })
}

/// Turns CRLF line ends into LF as bytes stream through (a lone CR is kept), in place in the
/// reader's buffer.
struct CrlfToLf<R> {
    inner: R,
    /// A CR ended the last chunk: whether a LF follows is not known yet.
    pending_cr: bool,
    /// A byte read ahead, to give before reading on.
    carry: Option<u8>,
}

impl<R: Read> CrlfToLf<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            pending_cr: false,
            carry: None,
        }
    }
}

/// The position of the first CR, eight bytes at a time.
fn find_cr(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let v = u64::from_le_bytes(word) ^ (ONES * u64::from(b'\r'));
        if v.wrapping_sub(ONES) & !v & HIGHS != 0 {
            return chunk.iter().position(|&b| b == b'\r').map(|i| offset + i);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'\r')
        .map(|i| offset + i)
}

impl<R: Read> Read for CrlfToLf<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            let total = if self.pending_cr {
                // The CR held back from the last chunk goes first; whether a LF follows is
                // decided with the rest of this chunk below.
                self.pending_cr = false;
                out[0] = b'\r';
                if out.len() == 1 {
                    // No room to look ahead in `out`: look at one byte.
                    let mut next = [0u8; 1];
                    return match self.inner.read(&mut next)? {
                        0 => Ok(1),
                        _ if next[0] == b'\n' => {
                            out[0] = b'\n';
                            Ok(1)
                        }
                        _ if next[0] == b'\r' => {
                            self.pending_cr = true;
                            Ok(1)
                        }
                        _ => {
                            self.carry = Some(next[0]);
                            Ok(1)
                        }
                    };
                }
                let n = self.inner.read(&mut out[1..])?;
                if n == 0 {
                    return Ok(1);
                }
                n + 1
            } else if let Some(byte) = self.carry.take() {
                out[0] = byte;
                if byte == b'\r' {
                    self.pending_cr = true;
                    continue;
                }
                return Ok(1);
            } else {
                let n = self.inner.read(out)?;
                if n == 0 {
                    return Ok(0);
                }
                n
            };
            let chunk = &mut out[..total];
            // Drop each CR that a LF follows, compacting in place.
            let Some(first) = find_cr(chunk) else {
                return Ok(total);
            };
            let mut write = first;
            let mut read = first;
            while read < total {
                match find_cr(&chunk[read..]) {
                    None => {
                        chunk.copy_within(read..total, write);
                        write += total - read;
                        break;
                    }
                    Some(i) => {
                        let cr = read + i;
                        chunk.copy_within(read..cr, write);
                        write += cr - read;
                        match chunk.get(cr + 1) {
                            Some(b'\n') => {}
                            Some(_) => {
                                chunk[write] = b'\r';
                                write += 1;
                            }
                            None => self.pending_cr = true,
                        }
                        read = cr + 1;
                    }
                }
            }
            if write > 0 {
                return Ok(write);
            }
            // The chunk was a lone CR, held back: read on.
        }
    }
}

fn csv_error(err: csv::Error) -> ImportError {
    match err.into_kind() {
        csv::ErrorKind::Io(io) => ImportError::Io(io),
        other => ImportError::Header(format!("unreadable CSV: {other:?}")),
    }
}

fn trim_bytes(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

// Positions of the model's columns in COLUMNS.
const ACTIVITE_ID: usize = 0;
const DATE: usize = 1;
const TYPE: usize = 2;
const DUREE: usize = 3;
const TYPE_LIEU: usize = 4;
const LIEU_CODE_INSEE: usize = 5;
const THEMATIQUES: usize = 6;
const MATERIEL: usize = 7;
const AUTONOMIE: usize = 8;
const ORIENTE: usize = 9;
const NIVEAU_ATELIER: usize = 10;
const BENEFICIAIRE_ID: usize = 11;
const PREMIER: usize = 12;
const GENRE: usize = 13;
const TRANCHE_AGE: usize = 14;
const STATUT_SOCIAL: usize = 15;
const COMMUNE_CODE_INSEE: usize = 16;

/// Where each known column is in the file.
struct Columns {
    count: usize,
    /// For each of [`COLUMNS`], its position in the file.
    index: [Option<usize>; COLUMNS.len()],
    unknown: Vec<String>,
}

impl Columns {
    fn from_header(header: &csv::ByteRecord) -> Result<Self, ImportError> {
        let mut index = [None; COLUMNS.len()];
        let mut unknown = Vec::new();
        for (i, raw) in header.iter().enumerate() {
            let raw = if i == 0 {
                raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw)
            } else {
                raw
            };
            let name = std::str::from_utf8(raw)
                .map_err(|_| ImportError::Header(format!("column {} is not valid UTF-8", i + 1)))?;
            let name = name.trim();
            match COLUMNS.iter().position(|c| *c == name) {
                Some(known) => {
                    if index[known].replace(i).is_some() {
                        return Err(ImportError::Header(format!(
                            "column {:?} appears twice; keep one",
                            COLUMNS[known]
                        )));
                    }
                }
                None if name.is_empty() => {}
                None => unknown.push(name.to_owned()),
            }
        }
        let missing: Vec<&str> = REQUIRED_COLUMNS
            .iter()
            .copied()
            .filter(|c| {
                COLUMNS
                    .iter()
                    .position(|k| k == c)
                    .is_none_or(|k| index[k].is_none())
            })
            .collect();
        if !missing.is_empty() {
            return Err(ImportError::Header(format!(
                "missing required column(s) {}; the header must name at least {} (found: {})",
                missing.join(", "),
                REQUIRED_COLUMNS.join(", "),
                header
                    .iter()
                    .map(|c| String::from_utf8_lossy(c).trim().to_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(Self {
            count: header.len(),
            index,
            unknown,
        })
    }
}

/// Finds the code (position + 1) of a vocabulary's value from its bytes, without allocating:
/// a small open-addressing table built once per file. Values are compared through their
/// first and last eight bytes as two words (the whole value up to 16 bytes), so that a lookup
/// rarely calls `memcmp`.
struct VocabTable {
    slots: [u8; 128],
    codes: Vec<(&'static [u8], (u64, u64))>,
}

impl VocabTable {
    fn new<V: Vocabulary>() -> Self {
        let mut table = Self {
            slots: [0; 128],
            codes: V::ALL
                .iter()
                .map(|v| (v.code().as_bytes(), words(v.code().as_bytes())))
                .collect(),
        };
        for (i, (code, _)) in table.codes.iter().enumerate() {
            let mut h = Self::hash(code.len(), words(code));
            while table.slots[h] != 0 {
                h = (h + 1) & 127;
            }
            // Vocabularies hold a few dozen values at most.
            table.slots[h] = u8::try_from(i + 1).unwrap_or(u8::MAX);
        }
        table
    }

    fn hash(len: usize, (first, last): (u64, u64)) -> usize {
        let mixed = (first ^ last.rotate_left(29) ^ len as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (mixed >> 57) as usize
    }

    fn get(&self, text: &[u8]) -> Option<u8> {
        let key = words(text);
        let mut h = Self::hash(text.len(), key);
        loop {
            let slot = self.slots[h];
            if slot == 0 {
                return None;
            }
            let (code, code_key) = self.codes[usize::from(slot) - 1];
            if code.len() == text.len()
                && code_key == key
                && (text.len() <= 16 || code[8..code.len() - 8] == text[8..text.len() - 8])
            {
                return Some(slot);
            }
            h = (h + 1) & 127;
        }
    }
}

/// The first and the last eight bytes of `text` as little-endian words (the bytes of a shorter
/// text, zero-padded, twice): equal texts of equal length up to 16 bytes have equal words.
fn words(text: &[u8]) -> (u64, u64) {
    match (text.first_chunk::<8>(), text.last_chunk::<8>()) {
        (Some(first), Some(last)) => (u64::from_le_bytes(*first), u64::from_le_bytes(*last)),
        _ => {
            let word = text
                .iter()
                .rev()
                .fold(0u64, |w, &b| (w << 8) | u64::from(b));
            (word, word)
        }
    }
}

/// The vocabularies of the model's columns.
struct Vocabs {
    activity_type: VocabTable,
    place_type: VocabTable,
    thematique: VocabTable,
    materiel: VocabTable,
    autonomie: VocabTable,
    oui_non: VocabTable,
    niveau: VocabTable,
    genre: VocabTable,
    tranche_age: VocabTable,
    statut_social: VocabTable,
}

impl Vocabs {
    fn new() -> Self {
        Self {
            activity_type: VocabTable::new::<ActivityType>(),
            place_type: VocabTable::new::<PlaceType>(),
            thematique: VocabTable::new::<Thematique>(),
            materiel: VocabTable::new::<Materiel>(),
            autonomie: VocabTable::new::<Autonomie>(),
            oui_non: VocabTable::new::<OuiNon>(),
            niveau: VocabTable::new::<NiveauAtelier>(),
            genre: VocabTable::new::<Genre>(),
            tranche_age: VocabTable::new::<TrancheAge>(),
            statut_social: VocabTable::new::<StatutSocial>(),
        }
    }
}

/// Commune codes already found in the COG, so that the codes a file repeats on every row are
/// looked up once (direct-mapped: a miss only costs a lookup).
struct CommuneCache {
    slots: [[u8; 5]; 256],
}

impl CommuneCache {
    fn new() -> Self {
        Self {
            slots: [[0; 5]; 256],
        }
    }

    fn slot(code: &[u8; 5]) -> usize {
        let h = code
            .iter()
            .fold(0u32, |h, &b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        (h & 255) as usize
    }
}

/// Up to 32 distinct codes of a multi-valued cell, in file order.
#[derive(Default)]
struct CodeList {
    codes: [u8; 32],
    len: usize,
}

impl CodeList {
    fn add(&mut self, code: u8) {
        if !self.codes[..self.len].contains(&code) && self.len < self.codes.len() {
            self.codes[self.len] = code;
            self.len += 1;
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        // At most 32 codes.
        out.push(self.len as u8);
        out.extend_from_slice(&self.codes[..self.len]);
    }
}

/// The last valid date cell read and its Julian day (rows often share their date).
#[derive(Default)]
struct DateCache(Option<([u8; 10], i32)>);

/// Reads the cells of one row, recording every error instead of stopping at the first.
struct Cells<'a, 'r> {
    /// The trimmed cell of each of [`COLUMNS`] (empty when the column is absent).
    cells: [&'r [u8]; COLUMNS.len()],
    /// Whether the whole row is ASCII (then every cell is valid UTF-8).
    ascii: bool,
    line: u64,
    dates: &'a mut DateCache,
    errors: &'a mut Vec<RowError>,
    vocabs: &'a Vocabs,
    communes: &'a mut CommuneCache,
}

impl<'r> Cells<'_, 'r> {
    fn error(&mut self, column: usize, value: &str, message: String) {
        self.errors.push(RowError {
            line: self.line,
            column: Some(COLUMNS[column].to_owned()),
            value: Some(value.to_owned()),
            message,
        });
    }

    fn utf8_error(&mut self, column: usize, raw: &[u8]) {
        let shown = String::from_utf8_lossy(raw).into_owned();
        self.error(
            column,
            &shown,
            "invalid UTF-8: save the file as UTF-8".into(),
        );
    }

    /// The bytes of a column; `None` when the column is absent or the cell empty.
    fn bytes(&self, column: usize) -> Option<&'r [u8]> {
        Some(self.cells[column]).filter(|b| !b.is_empty())
    }

    /// The text of a column, as bytes that are valid UTF-8; `None` when the column is absent,
    /// the cell empty or not UTF-8 (then an error is recorded).
    fn text(&mut self, column: usize) -> Option<&'r [u8]> {
        let raw = self.bytes(column)?;
        if self.ascii || std::str::from_utf8(raw).is_ok() {
            Some(raw)
        } else {
            self.utf8_error(column, raw);
            None
        }
    }

    /// Records that a required cell is empty; `None` then.
    fn required(&mut self, column: usize) -> Option<&'r [u8]> {
        let raw = self.bytes(column);
        if raw.is_none() {
            self.error(
                column,
                "",
                "this column is required and the cell is empty".into(),
            );
        }
        raw
    }

    /// Records a cell that is not what was expected: an encoding error if it is not UTF-8.
    fn invalid(&mut self, column: usize, raw: &[u8], message: impl FnOnce() -> String) {
        match std::str::from_utf8(raw) {
            Ok(text) => self.error(column, text, message()),
            Err(_) => self.utf8_error(column, raw),
        }
    }

    /// An identifier (of an activity or a person, valid UTF-8), stored with a 16-bit length.
    fn identifier(&mut self, text: Option<&'r [u8]>, column: usize) -> Option<&'r [u8]> {
        let text = text?;
        if text.len() > usize::from(u16::MAX) {
            let shown: String = String::from_utf8_lossy(text).chars().take(40).collect();
            self.error(
                column,
                &format!("{shown}…"),
                "an identifier of at most 65,535 bytes is expected".into(),
            );
            return None;
        }
        Some(text)
    }

    /// The code of a single-valued vocabulary cell, 0 when empty.
    fn one_of<V: Vocabulary>(&mut self, column: usize, table: &VocabTable) -> u8 {
        let Some(raw) = self.bytes(column) else {
            return 0;
        };
        match table.get(raw) {
            Some(code) => code,
            None => {
                self.invalid(column, raw, || {
                    format!("expected one of {}", V::codes().join(", "))
                });
                0
            }
        }
    }

    fn many_of<V: Vocabulary>(&mut self, column: usize, table: &VocabTable) -> CodeList {
        let mut list = CodeList::default();
        let Some(raw) = self.bytes(column) else {
            return list;
        };
        for part in raw.split(|&b| b == b'|').map(trim_bytes) {
            if part.is_empty() {
                continue;
            }
            if let Some(code) = table.get(part) {
                list.add(code);
                continue;
            }
            let Ok(text) = std::str::from_utf8(part) else {
                self.utf8_error(column, raw);
                return CodeList::default();
            };
            // Other white space than ASCII's around a value.
            let text = text.trim();
            match table.get(text.as_bytes()) {
                Some(code) => list.add(code),
                None if text.is_empty() => {}
                None => self.error(
                    column,
                    text,
                    format!(
                        "expected values separated by | among {}",
                        V::codes().join(", ")
                    ),
                ),
            }
        }
        list
    }

    fn commune(&mut self, column: usize) -> [u8; 5] {
        let Some(raw) = self.bytes(column) else {
            return [0; 5];
        };
        if let Ok(code) = <[u8; 5]>::try_from(raw) {
            let slot = CommuneCache::slot(&code);
            if self.communes.slots[slot] == code {
                return code;
            }
            if let Ok(text) = std::str::from_utf8(raw)
                && Cog::get().commune(text).is_ok()
            {
                self.communes.slots[slot] = code;
                return code;
            }
        }
        match std::str::from_utf8(raw) {
            Ok(text) => {
                if let Err(err) = Cog::get().commune(text) {
                    self.error(column, text, err.to_string());
                }
            }
            Err(_) => self.utf8_error(column, raw),
        }
        [0; 5]
    }

    fn date(&mut self) -> Option<i32> {
        let raw = self.required(DATE)?;
        if let Some((text, day)) = self.dates.0
            && raw == text
        {
            return Some(day);
        }
        match parse_date(raw) {
            Some(date) if (2000..=2999).contains(&date.year()) => {
                let day = date.to_julian_day();
                if let Ok(text) = <[u8; 10]>::try_from(raw) {
                    self.dates.0 = Some((text, day));
                }
                Some(day)
            }
            Some(_) => {
                self.invalid(DATE, raw, || {
                    "expected a date from 2000-01-01 to 2999-12-31".into()
                });
                None
            }
            None => {
                self.invalid(DATE, raw, || {
                    "expected a calendar date written YYYY-MM-DD, e.g. 2026-10-14".into()
                });
                None
            }
        }
    }

    fn duree(&mut self) -> Option<u16> {
        let raw = self.required(DUREE)?;
        let digits = raw.strip_prefix(b"+").unwrap_or(raw);
        let minutes = (!digits.is_empty() && digits.len() <= 4)
            .then(|| {
                digits.iter().try_fold(0u16, |n, &d| {
                    d.is_ascii_digit().then(|| n * 10 + u16::from(d - b'0'))
                })
            })
            .flatten();
        match minutes {
            Some(minutes @ 1..=1440) => Some(minutes),
            _ => {
                self.invalid(DUREE, raw, || {
                    "expected a whole number of minutes from 1 to 1440".into()
                });
                None
            }
        }
    }

    /// Checks every cell; when all are valid, writes the row's frame into `frame` and returns
    /// `true`.
    fn row(&mut self, frame: &mut FrameWriter) -> bool {
        let vocabs = self.vocabs;
        let errors_before = self.errors.len();
        let activite_id = if self.required(ACTIVITE_ID).is_some() {
            self.text(ACTIVITE_ID)
        } else {
            None
        };
        let activite_id = self.identifier(activite_id, ACTIVITE_ID);
        let day = self.date();
        let mut legacy_demarche = false;
        let individuel = codec::code(ActivityType::Individuel);
        let kind = self.required(TYPE).and_then(|raw| {
            if raw == LEGACY_DEMARCHE.as_bytes() {
                legacy_demarche = true;
                return Some(individuel);
            }
            let kind = vocabs.activity_type.get(raw);
            if kind.is_none() {
                self.invalid(TYPE, raw, || {
                    format!(
                        "expected one of {} (or the legacy {LEGACY_DEMARCHE})",
                        ActivityType::codes().join(", ")
                    )
                });
            }
            kind
        });
        let duree = self.duree();
        let place_type = self.one_of::<PlaceType>(TYPE_LIEU, &vocabs.place_type);
        let place_commune = self.commune(LIEU_CODE_INSEE);
        let mut themes = self.many_of::<Thematique>(THEMATIQUES, &vocabs.thematique);
        if legacy_demarche {
            themes.add(codec::code(Thematique::AideAuxDemarchesAdministratives));
        }
        let materiel = self.many_of::<Materiel>(MATERIEL, &vocabs.materiel);
        let autonomie = self.one_of::<Autonomie>(AUTONOMIE, &vocabs.autonomie);
        let oriented = self.one_of::<OuiNon>(ORIENTE, &vocabs.oui_non);
        let level = self.one_of::<NiveauAtelier>(NIVEAU_ATELIER, &vocabs.niveau);
        if level != 0 && kind == Some(individuel) {
            self.error(
                NIVEAU_ATELIER,
                vocab_text::<NiveauAtelier>(level),
                "a workshop level is only accepted for collectif activities; leave it empty".into(),
            );
        }
        let beneficiary = self.text(BENEFICIAIRE_ID);
        let beneficiary = self.identifier(beneficiary, BENEFICIAIRE_ID);
        let first_time = self.one_of::<OuiNon>(PREMIER, &vocabs.oui_non);
        let genre = self.one_of::<Genre>(GENRE, &vocabs.genre);
        let tranche_age = self.one_of::<TrancheAge>(TRANCHE_AGE, &vocabs.tranche_age);
        let statut_social = self.one_of::<StatutSocial>(STATUT_SOCIAL, &vocabs.statut_social);
        let residence = self.commune(COMMUNE_CODE_INSEE);

        if self.errors.len() != errors_before {
            return false;
        }
        let (Some(id), Some(day), Some(kind), Some(duree)) = (activite_id, day, kind, duree) else {
            return false;
        };
        let facts = Facts {
            day,
            kind,
            duree,
            place_type,
            place_commune,
            level,
        };
        if frame.start(stable_hash(id), self.line, id, &facts).is_err() {
            return false;
        }
        let out = &mut frame.buf;
        out.push(yes_no_flag(first_time));
        out.push(yes_no_flag(oriented));
        out.extend_from_slice(&[autonomie, genre, tranche_age, statut_social]);
        out.extend_from_slice(&residence);
        themes.write(out);
        materiel.write(out);
        let beneficiary = beneficiary.unwrap_or(b"");
        // Checked by `identifier`.
        out.extend_from_slice(&(beneficiary.len() as u16).to_le_bytes());
        out.extend_from_slice(beneficiary);
        true
    }
}

/// An `oui`/`non` code (as [`VocabTable::get`] gives it) as a stored flag.
fn yes_no_flag(code: u8) -> u8 {
    let value = usize::from(code)
        .checked_sub(1)
        .and_then(|i| OuiNon::ALL.get(i))
        .map(|v| v.is_yes());
    codec::flag_code(value)
}

/// A date written exactly `YYYY-MM-DD`.
fn parse_date(b: &[u8]) -> Option<Date> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| {
        b[range].iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let year = i32::try_from(number(0..4)?).ok()?;
    let month = Month::try_from(u8::try_from(number(5..7)?).ok()?).ok()?;
    let day = u8::try_from(number(8..10)?).ok()?;
    Date::from_calendar_date(year, month, day).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<ParsedFile, ImportError> {
        parse(text.as_bytes(), 1, &mut ())
    }

    #[test]
    fn line_numbers_are_exact_with_crlf_and_multiline_cells() {
        let text = "activite_id,date,type,duree,beneficiaire_id\r\n\
                    a,2026-10-01,individuel,30,\"x\r\ny\"\r\n\
                    b,2026-10-01,individuel,0,\r\n";
        let errors = row_errors(text);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 4, "{errors:?}");
    }

    fn row_errors(text: &str) -> Vec<RowError> {
        match parse_str(text) {
            Err(ImportError::Rows { errors, .. }) => errors,
            other => panic!("expected row errors, got {other:?}"),
        }
    }

    #[test]
    fn reads_a_minimal_file() -> Result<(), ImportError> {
        let parsed = parse_str("activite_id,date,type,duree\na1,2026-10-01,individuel,45\n")?;
        assert_eq!(parsed.rows, 1);
        assert_eq!(parsed.activities.len(), 1);
        let a = &parsed.activities[0];
        assert_eq!(
            (a.id.as_str(), a.duration_min, a.kind),
            ("a1", 45, ActivityType::Individuel)
        );
        assert_eq!(a.participants[0].line, 2);
        Ok(())
    }

    #[test]
    fn accepts_spreadsheet_exports() -> Result<(), ImportError> {
        let text = "\u{feff}extra, duree ,type,date,activite_id,thematiques\r\n\
                    x,\" 60 \", collectif ,2026-10-02,w1,\"email|sante\"\r\n\
                    y,60,collectif,2026-10-02,w1, bureautique \r\n\
                    ,,,,,\r\n";
        let parsed = parse_str(text)?;
        assert_eq!(parsed.activities.len(), 1);
        let w = &parsed.activities[0];
        assert_eq!(w.participants.len(), 2);
        assert_eq!(
            w.participants[0].themes,
            vec![Thematique::Email, Thematique::Sante]
        );
        assert_eq!(w.participants[1].themes, vec![Thematique::Bureautique]);
        assert!(
            parsed.warnings.iter().any(|w| w.contains("extra")),
            "{:?}",
            parsed.warnings
        );
        assert!(
            parsed.warnings.iter().any(|w| w.contains("line 4")),
            "{:?}",
            parsed.warnings
        );
        Ok(())
    }

    #[test]
    fn reads_the_legacy_type() -> Result<(), ImportError> {
        let parsed = parse_str(
            "activite_id,date,type,duree,thematiques\na,2026-10-01,demarche_administrative,20,logement\n",
        )?;
        let a = &parsed.activities[0];
        assert_eq!(a.kind, ActivityType::Individuel);
        assert_eq!(
            a.participants[0].themes,
            vec![
                Thematique::Logement,
                Thematique::AideAuxDemarchesAdministratives
            ]
        );
        Ok(())
    }

    #[test]
    fn lists_every_invalid_cell_with_line_column_value_and_accepted() {
        let errors = row_errors(
            "activite_id,date,type,duree,genre,lieu_code_insee\n\
             a,2026-02-30,solo,0,homme,99999\n\
             b,2026-10-01,individuel,30,,\n\
             ,2026-10-01,individuel,abc,,69385\n",
        );
        let find = |line: u64, column: &str| {
            errors
                .iter()
                .find(|e| e.line == line && e.column.as_deref() == Some(column))
        };
        assert!(find(2, "date").is_some_and(|e| e.message.contains("YYYY-MM-DD")));
        assert!(find(2, "type").is_some_and(|e| e.message.contains("individuel, collectif")));
        assert!(find(2, "duree").is_some_and(|e| e.message.contains("1 to 1440")));
        assert!(
            find(2, "genre").is_some_and(|e| e.value.as_deref() == Some("homme")
                && e.message.contains("masculin, feminin, non_communique"))
        );
        assert!(find(2, "lieu_code_insee").is_some_and(|e| e.message.contains("not a commune")));
        assert!(find(4, "activite_id").is_some());
        assert!(find(4, "duree").is_some());
        assert!(errors.iter().all(|e| e.line != 3), "{errors:?}");
        assert_eq!(errors.len(), 7, "{errors:?}");
    }

    #[test]
    fn rows_of_one_activity_must_agree() {
        let errors = row_errors(
            "activite_id,date,type,duree,niveau_atelier\n\
             w,2026-10-01,collectif,60,debutant\n\
             w,2026-10-02,collectif,90,debutant\n\
             i,2026-10-01,individuel,30,\n\
             i,2026-10-01,individuel,30,\n",
        );
        assert!(
            errors
                .iter()
                .any(|e| e.line == 3 && e.column.as_deref() == Some("date"))
        );
        assert!(
            errors
                .iter()
                .any(|e| e.line == 3 && e.column.as_deref() == Some("duree"))
        );
        assert!(
            errors
                .iter()
                .any(|e| e.line == 5 && e.message.contains("exactly one row"))
        );
    }

    /// A table finds exactly the codes of its vocabulary, whatever their length (the word
    /// comparison covers up to 16 bytes, longer codes compare their middle too).
    fn vocab_table_finds_exactly<V: Vocabulary>() {
        let table = VocabTable::new::<V>();
        for (i, v) in V::ALL.iter().enumerate() {
            let code = v.code().as_bytes();
            assert_eq!(table.get(code), Some(i as u8 + 1), "{}", v.code());
            // Near misses: one byte changed anywhere, one byte more or less, other case.
            for at in 0..code.len() {
                let mut near = code.to_vec();
                near[at] ^= 0x01;
                assert_ne!(table.get(&near), Some(i as u8 + 1), "{near:?}");
                let mut shorter = code.to_vec();
                shorter.remove(at);
                assert_ne!(table.get(&shorter), Some(i as u8 + 1), "{shorter:?}");
            }
            let mut longer = code.to_vec();
            longer.push(b'_');
            assert_eq!(table.get(&longer), None);
            assert_eq!(table.get(&code.to_ascii_uppercase()), None);
        }
        assert_eq!(table.get(b""), None);
    }

    #[test]
    fn vocab_tables_find_exactly_their_codes() {
        vocab_table_finds_exactly::<ActivityType>();
        vocab_table_finds_exactly::<PlaceType>();
        vocab_table_finds_exactly::<Thematique>();
        vocab_table_finds_exactly::<Materiel>();
        vocab_table_finds_exactly::<Autonomie>();
        vocab_table_finds_exactly::<OuiNon>();
        vocab_table_finds_exactly::<NiveauAtelier>();
        vocab_table_finds_exactly::<Genre>();
        vocab_table_finds_exactly::<TrancheAge>();
        vocab_table_finds_exactly::<StatutSocial>();
    }

    #[test]
    fn non_ascii_rows_are_checked_cell_by_cell() -> Result<(), ImportError> {
        // Valid UTF-8 beyond ASCII is accepted in identifiers, invalid UTF-8 is not, on rows
        // next to ASCII rows (which skip the per-cell check).
        let parsed = parse_str(
            "activite_id,date,type,duree,beneficiaire_id
             é1,2026-10-01,individuel,30,personne-ü
             a2,2026-10-01,individuel,30,p
",
        )?;
        assert_eq!(parsed.activities[0].id, "é1");
        assert_eq!(
            parsed.activities[0].participants[0].beneficiary.as_deref(),
            Some("personne-ü")
        );
        let mut bytes = b"activite_id,date,type,duree,beneficiaire_id
"
        .to_vec();
        bytes.extend_from_slice(
            b"a,2026-10-01,individuel,30,ok\n\xc3\xa9\xff,2026-10-01,individuel,30,x\n",
        );
        match parse(&bytes, 1, &mut ()) {
            Err(ImportError::Rows { errors, .. }) => {
                assert_eq!(errors.len(), 1, "{errors:?}");
                assert_eq!(
                    (errors[0].line, errors[0].column.as_deref()),
                    (3, Some("activite_id"))
                );
            }
            other => panic!("expected an error, got {other:?}"),
        }
        Ok(())
    }

    /// Rows cross the reading batches whole, with their line numbers, however large a cell is
    /// and however many rows there are.
    #[test]
    fn rows_keep_their_lines_across_reading_batches() {
        let mut text = String::from("activite_id,date,type,duree,note\n");
        let big = "x".repeat(3 * BATCH_BYTES);
        for i in 0..(3 * BATCH_RECORDS) {
            let note = if i % 500 == 7 { big.as_str() } else { "n" };
            // Every 301st row has an invalid duration: its error names its line.
            let duree = if i % 301 == 0 { "0" } else { "30" };
            text.push_str(&format!("a{i},2026-10-01,individuel,{duree},\"{note}\"\n"));
        }
        let errors = row_errors(&text);
        let expected: Vec<u64> = (0..(3 * BATCH_RECORDS) as u64)
            .filter(|i| i % 301 == 0)
            .map(|i| i + 2)
            .collect();
        let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, expected);
        assert!(errors.iter().all(|e| e.column.as_deref() == Some("duree")));
    }

    #[test]
    fn workshop_level_only_for_collective() {
        let errors = row_errors(
            "activite_id,date,type,duree,niveau_atelier\na,2026-10-01,individuel,30,avance\n",
        );
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].column.as_deref(), Some("niveau_atelier"));
    }

    #[test]
    fn header_problems_are_named() {
        assert!(matches!(parse_str(""), Err(ImportError::Empty)));
        let missing = parse_str("activite_id,date\n");
        assert!(
            matches!(&missing, Err(ImportError::Header(m)) if m.contains("type") && m.contains("duree")),
            "{missing:?}"
        );
        let twice = parse_str("activite_id,date,type,duree,date\n");
        assert!(matches!(&twice, Err(ImportError::Header(m)) if m.contains("twice")));
        let header_only = parse_str("activite_id,date,type,duree\n");
        assert!(matches!(header_only, Ok(p) if p.activities.is_empty()));
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let mut bytes = b"activite_id,date,type,duree,beneficiaire_id\n".to_vec();
        bytes.extend_from_slice(
            b"a,2026-10-01,individuel,30,ok\nb,2026-10-01,individuel,30,\xff\xfe\n",
        );
        match parse(&bytes, 1, &mut ()) {
            Err(ImportError::Rows { errors, .. }) => {
                assert_eq!(errors.len(), 1);
                assert_eq!(errors[0].line, 3);
                assert!(errors[0].message.contains("UTF-8"));
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn wrong_cell_count_is_an_error() {
        let errors = row_errors("activite_id,date,type,duree\na,2026-10-01,individuel\n");
        assert_eq!(errors[0].line, 2);
        assert!(errors[0].message.contains("3 cell(s)"));
    }

    /// Reads through the filter with reads of `size` bytes at most.
    fn filtered(input: &[u8], size: usize) -> Vec<u8> {
        let mut reader = CrlfToLf::new(input);
        let mut out = Vec::new();
        let mut buf = vec![0u8; size];
        loop {
            let n = reader.read(&mut buf).expect("read");
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    /// Reads of at most `chunk` bytes from the inner reader.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = out.len().min(self.1).min(self.0.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    proptest::proptest! {
        #[test]
        fn crlf_filter_drops_exactly_the_crs_before_lfs(
            input in proptest::collection::vec(proptest::sample::select(vec![b'a', b'\r', b'\n', b',']), 0..200),
            inner in 1usize..9,
            size in 1usize..9,
        ) {
            let expected: Vec<u8> = input
                .iter()
                .enumerate()
                .filter(|(i, b)| !(**b == b'\r' && input.get(i + 1) == Some(&b'\n')))
                .map(|(_, b)| *b)
                .collect();
            proptest::prop_assert_eq!(filtered(&input, 4096), expected.clone());
            let mut reader = CrlfToLf::new(Trickle(&input, inner));
            let mut out = Vec::new();
            let mut buf = vec![0u8; size];
            loop {
                let n = reader.read(&mut buf).expect("read");
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
            proptest::prop_assert_eq!(out, expected);
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let mut input = b"activite_id,date,type,duree,thematiques,genre\n".to_vec();
            input.extend_from_slice(&bytes);
            let _ = parse(&input, 1, &mut ());
        }

        /// A date cell gives the same day or error whatever rows came before it (the last date
        /// read is remembered).
        #[test]
        fn dates_do_not_depend_on_the_rows_before(
            dates in proptest::collection::vec(proptest::sample::select(vec![
                "2026-10-01", "2026-10-31", "2026-02-29", "2028-02-29", "2026-13-01",
                "1999-12-31", "2026-1-01", "2026-10-01 ", "x",
            ]), 1..12),
        ) {
            let mut text = String::from("activite_id,date,type,duree\n");
            for (i, d) in dates.iter().enumerate() {
                text.push_str(&format!("a{i},{d},individuel,30\n"));
            }
            let expected: Vec<Option<Date>> = dates
                .iter()
                .map(|d| parse_date(d.trim().as_bytes()).filter(|d| (2000..=2999).contains(&d.year())))
                .collect();
            match parse_str(&text) {
                Ok(parsed) => {
                    proptest::prop_assert!(expected.iter().all(Option::is_some));
                    for a in &parsed.activities {
                        let i: usize = a.id[1..].parse().expect("index");
                        proptest::prop_assert_eq!(Some(a.date), expected[i]);
                    }
                }
                Err(ImportError::Rows { errors, .. }) => {
                    let bad: Vec<u64> = expected
                        .iter()
                        .enumerate()
                        .filter(|(_, d)| d.is_none())
                        .map(|(i, _)| i as u64 + 2)
                        .collect();
                    let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
                    proptest::prop_assert_eq!(lines, bad);
                }
                Err(other) => proptest::prop_assert!(false, "{other:?}"),
            }
        }

        #[test]
        fn never_panics_on_arbitrary_text(text in "[a-z0-9,|\"\r\n -]{0,300}") {
            let _ = parse(text.as_bytes(), 1, &mut ());
        }
    }
}
