//! Reading activity-report files (CSV in the national activity-report model's vocabulary).
//!
//! The rules are DATA.md's "Import rules": all or nothing, every invalid row reported with its
//! line, column, value and what is accepted; spreadsheet exports accepted as they come (BOM,
//! CRLF, quoted and padded cells, any column order, unknown columns ignored with a warning).
//! Reading is pure: it turns bytes into validated rows in a compact binary form (frames, see
//! [`crate::store::codec`]) or every error; the store stages the frames and checks the rows of
//! each activity together ([`check_activity`]) before anything is committed.
//!
//! Here: the reading pipeline (worker threads, the frames handed to the store, the errors and
//! warnings collected in file order) and the checks across an activity's rows; `chunks` cuts
//! the file into chunks of whole records, `cells` checks the cells of one row.

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

mod cells;
mod chunks;

use cells::{Cells, Columns, CommuneCache, DateCache, Vocabs, trim_bytes};
use chunks::{Chunk, SPLIT, Source, Split, crlf_to_lf};

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
    #[error(
        "cannot write the import's staging file beside the store: {0} (check the free disk space in the node's folder); nothing was imported"
    )]
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

/// The cells of one record (as csv_core writes them: end to end, with where each ends).
#[derive(Debug, Clone, Copy)]
struct RecordCells<'a> {
    bytes: &'a [u8],
    ends: &'a [usize],
}

impl<'a> RecordCells<'a> {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn iter(self) -> impl Iterator<Item = &'a [u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let cell = self.bytes.get(start..end).unwrap_or_default();
            start = end;
            cell
        })
    }

    /// All the cells' bytes, end to end.
    fn as_slice(&self) -> &'a [u8] {
        let end = self.ends.last().copied().unwrap_or(0);
        self.bytes.get(..end).unwrap_or_default()
    }
}

/// Reads a whole activity-report file as a stream, checking every cell, and hands each valid
/// row to `sink` as a frame (see [`crate::store::codec`]), in no particular order (each frame
/// holds its line). Rows with invalid cells are recorded in [`Reading::errors`] and not handed
/// on; the file is read to its end so that every error is listed. Whether the rows of each
/// activity agree is checked afterwards, on the grouped frames, by [`check_activity`]. Only a
/// problem with the file as a whole (no header, a bad header, unreadable bytes) is an `Err`.
///
/// The file is read in chunks of about a megabyte, each cut just after a line end that is
/// outside quoted cells (so that it holds whole records); worker threads take the chunks in
/// turn (reading the next one from `reader`, which may hash what it reads), parse and check
/// them, and hand their frames back to the calling thread, which calls `sink`. A few chunks
/// are in flight at a time, so memory stays bounded. Line numbers are those of the file (a
/// line ends with LF, CRLF or a lone CR); a record's line is the one where it starts.
pub fn read_rows(
    reader: impl Read + Send,
    sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    progress: &mut dyn Progress,
) -> Result<Reading, ImportError> {
    read_rows_split(reader, sink, progress, SPLIT)
}

fn read_rows_split<R: Read + Send>(
    reader: R,
    sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    progress: &mut dyn Progress,
    split: Split,
) -> Result<Reading, ImportError> {
    let mut source = Source::new(reader, split);
    let header = source.header()?;
    let header: Vec<&[u8]> = header.iter().map(Vec::as_slice).collect();
    let columns = Columns::from_header(&header)?;
    let mut collected = Collected::new(&columns);
    let shared = std::sync::Mutex::new(Shared {
        source,
        spare: Vec::new(),
        workers: split.workers,
    });
    std::thread::scope(|scope| {
        let (tx, rx) =
            std::sync::mpsc::sync_channel::<Result<ChunkOut, ImportError>>(split.workers);
        for _ in 0..split.workers.max(1) {
            let tx = tx.clone();
            let (shared, columns) = (&shared, &columns);
            scope.spawn(move || work(shared, columns, &tx));
        }
        drop(tx);
        // Returning early drops `rx`: the workers stop at their next chunk.
        for message in &rx {
            let out = match message {
                Ok(out) => out,
                Err(e) => {
                    lock(&shared).source.done = true;
                    return Err(e);
                }
            };
            let mut out = out;
            if let Err(e) = collected.add(&mut out, sink, progress) {
                lock(&shared).source.done = true;
                return Err(e);
            }
            lock(&shared).recycle(out);
        }
        Ok(())
    })?;
    Ok(collected.finish())
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A worker that panicked is reported by the scope; its state is not needed any more.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A worker: takes chunks from the shared source until there are none, parsing and checking
/// them.
fn work<R: Read>(
    shared: &std::sync::Mutex<Shared<R>>,
    columns: &Columns,
    results: &std::sync::mpsc::SyncSender<Result<ChunkOut, ImportError>>,
) {
    let mut worker = Worker::new(columns);
    let mut buf = Vec::new();
    loop {
        let (chunk, out) = {
            let mut shared = lock(shared);
            match shared.source.next_chunk(&mut buf) {
                Ok(Some(chunk)) => (chunk, shared.take_out()),
                Ok(None) => return,
                Err(e) => {
                    shared.source.done = true;
                    let _ = results.send(Err(e));
                    return;
                }
            }
        };
        let result = worker.chunk(&mut buf[..chunk.len], &chunk, out);
        let failed = result.is_err();
        if results.send(result).is_err() || failed {
            return;
        }
    }
}

/// What a worker found in one chunk.
#[derive(Debug, Default)]
struct ChunkOut {
    /// Frames of the valid rows, end to end.
    frames: Vec<u8>,
    /// Data rows read (empty rows excluded), valid or not.
    rows: u64,
    errors: Errors,
    /// The first lines of the chunk that are empty rows, and how many more there are.
    empty: Vec<u64>,
    empty_unlisted: u64,
    /// Where the chunk ends in the file.
    end: u64,
}

/// The file being read and the outputs given back, shared by the workers behind one lock.
struct Shared<R> {
    source: Source<R>,
    /// Outputs given back by the calling thread, to reuse their buffers.
    spare: Vec<ChunkOut>,
    workers: usize,
}

impl<R> Shared<R> {
    /// An output to fill, with the buffers of one given back if there is one.
    fn take_out(&mut self) -> ChunkOut {
        self.spare.pop().unwrap_or_default()
    }

    /// Gives back an output the calling thread is done with.
    fn recycle(&mut self, out: ChunkOut) {
        if self.spare.len() < 2 * self.workers {
            let (mut frames, mut empty) = (out.frames, out.empty);
            frames.clear();
            empty.clear();
            self.spare.push(ChunkOut {
                frames,
                empty,
                ..ChunkOut::default()
            });
        }
    }
}

/// Parses and checks chunks (one per worker thread).
struct Worker {
    core: csv_core::Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
    checker: RowChecker,
}

impl Worker {
    fn new(columns: &Columns) -> Self {
        Self {
            core: csv_core::Reader::new(),
            out: vec![0; 1 << 16],
            ends: vec![0; 64],
            checker: RowChecker::new(columns),
        }
    }

    /// Parses the records of a chunk and checks them into `out`.
    fn chunk(
        &mut self,
        bytes: &mut [u8],
        chunk: &Chunk,
        mut out: ChunkOut,
    ) -> Result<ChunkOut, ImportError> {
        out.end = chunk.offset + bytes.len() as u64;
        let len = crlf_to_lf(bytes);
        let bytes = &bytes[..len];
        // Only lone CRs are left: each ends a line (in or out of a cell).
        let lone_cr = memchr::memchr(b'\r', bytes).is_some();
        self.core.reset();
        // A first read, so that csv_core does not take a BOM at the start of the chunk for the
        // file's (the header's was).
        let _ = self.core.read_record(b"\n", &mut self.out, &mut self.ends);
        let mut pos = 0;
        let mut line = chunk.line;
        loop {
            // Empty lines (csv_core skips them too).
            while let Some(b'\n' | b'\r') = bytes.get(pos) {
                line += 1;
                pos += 1;
            }
            if pos == bytes.len() {
                return Ok(out);
            }
            let start = pos;
            self.core.set_line(0);
            let (mut nout, mut nend) = (0, 0);
            let mut flushed = false;
            loop {
                let (res, nin, o, e) = self.core.read_record(
                    &bytes[pos..],
                    &mut self.out[nout..],
                    &mut self.ends[nend..],
                );
                (pos, nout, nend) = (pos + nin, nout + o, nend + e);
                match res {
                    csv_core::ReadRecordResult::Record => break,
                    csv_core::ReadRecordResult::OutputFull => {
                        self.out.resize(self.out.len() * 2, 0);
                    }
                    csv_core::ReadRecordResult::OutputEndsFull => {
                        self.ends.resize(self.ends.len() * 2, 0);
                    }
                    // The file's last record, without a line end: csv_core ends it when told
                    // that the input has ended.
                    csv_core::ReadRecordResult::InputEmpty if chunk.last && !flushed => {
                        flushed = true;
                    }
                    csv_core::ReadRecordResult::InputEmpty | csv_core::ReadRecordResult::End => {
                        // The chunk was cut inside a record: `last_record_end` and csv_core
                        // disagree (a bug; nothing is imported).
                        return Err(ImportError::Io(std::io::Error::other(format!(
                            "internal error: the record of line {line} could not be read whole; nothing was imported (please report this, with the file if possible)"
                        ))));
                    }
                }
            }
            let cells = RecordCells {
                bytes: &self.out[..nout],
                ends: &self.ends[..nend],
            };
            self.checker.record(line, cells, &mut out)?;
            line += self.core.line();
            if lone_cr {
                line += memchr::memchr_iter(b'\r', &bytes[start..pos]).count() as u64;
            }
        }
    }
}

/// What the calling thread gathers from the workers' chunks.
struct Collected {
    rows: u64,
    errors: Errors,
    warnings: Vec<String>,
    /// Empty rows: the first ones' lines (at most as many as are shown), how many more.
    empty: Vec<u64>,
    empty_unlisted: u64,
    progress: u64,
}

impl Collected {
    fn new(columns: &Columns) -> Self {
        let mut warnings = Vec::new();
        if !columns.unknown.is_empty() {
            warnings.push(format!(
                "unknown column(s) ignored: {} (the model's columns are: {})",
                columns.unknown.join(", "),
                COLUMNS.join(", ")
            ));
        }
        Self {
            rows: 0,
            errors: Errors::default(),
            warnings,
            empty: Vec::new(),
            empty_unlisted: 0,
            progress: 0,
        }
    }

    /// How many empty rows are named in a warning each.
    fn shown_empty(&self) -> usize {
        MAX_WARNINGS.saturating_sub(self.warnings.len())
    }

    fn add(
        &mut self,
        out: &mut ChunkOut,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
        progress: &mut dyn Progress,
    ) -> Result<(), ImportError> {
        let mut frames = out.frames.as_slice();
        while let Some(len) = frames.first_chunk::<4>() {
            let len = 4 + u32::from_le_bytes(*len) as usize;
            let (frame, rest) = frames.split_at(len.min(frames.len()));
            sink(frame).map_err(|e| ImportError::Stage(e.to_string()))?;
            frames = rest;
        }
        self.rows += out.rows;
        self.errors.merge(std::mem::take(&mut out.errors));
        self.empty.extend_from_slice(&out.empty);
        self.empty_unlisted += out.empty_unlisted;
        let shown = self.shown_empty();
        if self.empty.len() > shown {
            self.empty.sort_unstable();
            self.empty_unlisted += (self.empty.len() - shown) as u64;
            self.empty.truncate(shown);
        }
        if out.end > self.progress {
            self.progress = out.end;
            progress.advance(out.end);
        }
        Ok(())
    }

    fn finish(mut self) -> Reading {
        self.empty.sort_unstable();
        for line in &self.empty {
            self.warnings
                .push(format!("line {line} is empty and was skipped"));
        }
        if self.empty_unlisted > 0 {
            self.warnings.push(format!(
                "{} more empty line(s) were skipped",
                self.empty_unlisted
            ));
        }
        Reading {
            rows: self.rows,
            warnings: self.warnings,
            errors: self.errors,
        }
    }
}

/// Checks the records of a file one at a time (each worker has its own).
struct RowChecker {
    count: usize,
    file_to_model: Vec<Option<usize>>,
    vocabs: Vocabs,
    communes: CommuneCache,
    dates: DateCache,
    frame: FrameWriter,
    row_errors: Vec<RowError>,
}

impl RowChecker {
    fn new(columns: &Columns) -> Self {
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
        }
    }

    fn record(
        &mut self,
        line: u64,
        record: RecordCells<'_>,
        out: &mut ChunkOut,
    ) -> Result<(), ImportError> {
        let mut cells: [&[u8]; COLUMNS.len()] = [&[]; COLUMNS.len()];
        let mut all_empty = true;
        for (i, field) in record.iter().enumerate() {
            let field = trim_bytes(field);
            all_empty &= field.is_empty();
            if let Some(Some(model)) = self.file_to_model.get(i) {
                cells[*model] = field;
            }
        }
        if all_empty {
            if out.empty.len() < MAX_WARNINGS {
                out.empty.push(line);
            } else {
                out.empty_unlisted += 1;
            }
            return Ok(());
        }
        out.rows += 1;
        if record.len() != self.count {
            out.errors.push(RowError {
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
                out.errors.push(e);
            }
            return Ok(());
        }
        if valid {
            let bytes = self
                .frame
                .end()
                .map_err(|e| ImportError::Stage(e.to_string()))?;
            out.frames.extend_from_slice(bytes);
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::cells::{VocabTable, parse_date};
    use super::chunks::last_record_end;
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

    /// Rows cross the chunks whole, with their line numbers, however large a cell is and
    /// however many rows there are.
    #[test]
    fn rows_keep_their_lines_across_chunks() {
        let mut text = String::from("activite_id,date,type,duree,note\n");
        let big = "x".repeat(3 * 4096);
        let rows = 1500;
        for i in 0..rows {
            let note = if i % 500 == 7 { big.as_str() } else { "n" };
            // Every 301st row has an invalid duration: its error names its line.
            let duree = if i % 301 == 0 { "0" } else { "30" };
            text.push_str(&format!("a{i},2026-10-01,individuel,{duree},\"{note}\"\n"));
        }
        let split = Split {
            chunk_bytes: 4096,
            max_record_bytes: 1 << 20,
            workers: 2,
        };
        let (_, found) = read_split(text.as_bytes(), split, 4096);
        let errors = found.expect("read").errors;
        let expected: Vec<u64> = (0..rows as u64)
            .filter(|i| i % 301 == 0)
            .map(|i| i + 2)
            .collect();
        let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, expected);
        assert!(errors.iter().all(|e| e.column.as_deref() == Some("duree")));
    }

    /// What [`read_split`] found: rows, warnings, the errors listed and how many more.
    #[derive(Debug)]
    struct Found {
        rows: u64,
        warnings: Vec<String>,
        errors: Vec<RowError>,
        unlisted: u64,
    }

    /// Reads `bytes` (with reads of at most `read` bytes) cut as `split` says: the frames
    /// (sorted), then what was found.
    fn read_split(
        bytes: &[u8],
        split: Split,
        read: usize,
    ) -> (Vec<Vec<u8>>, Result<Found, ImportError>) {
        let mut frames = Vec::new();
        let reading = read_rows_split(
            Trickle(bytes, read),
            &mut |frame| {
                frames.push(frame.to_vec());
                Ok(())
            },
            &mut (),
            split,
        );
        frames.sort();
        let found = reading.and_then(|r| {
            let (errors, unlisted) = match r.errors.finish() {
                Ok(()) => (Vec::new(), 0),
                Err(ImportError::Rows { errors, unlisted }) => (errors, unlisted),
                Err(other) => return Err(other),
            };
            Ok(Found {
                rows: r.rows,
                warnings: r.warnings,
                errors,
                unlisted,
            })
        });
        (frames, found)
    }

    /// The same outcome, compared as text (`ImportError` is not `PartialEq`).
    fn shown(outcome: &(Vec<Vec<u8>>, Result<Found, ImportError>)) -> String {
        format!("{:?}\n{:?}", outcome.0, outcome.1)
    }

    #[test]
    fn empty_lines_and_line_ends_give_the_lines_of_the_file() {
        // Line 2 and 3 are empty, 5 is a CRLF, c and d are lone-CR lines.
        let text = "activite_id,date,type,duree\n\n\na,2026-10-01,individuel,0\n\r\nb,2026-10-01,individuel,0\r\n\r\nc,2026-10-01,individuel,0\rd,2026-10-01,individuel,0\n,,,\n";
        let errors = match parse_str(text) {
            Err(ImportError::Rows { errors, .. }) => errors,
            other => panic!("{other:?}"),
        };
        let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [4, 6, 8, 9]);
        let (_, found) = read_split(text.as_bytes(), SPLIT, 7);
        let lines: Vec<u64> = found.expect("read").errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [4, 6, 8, 9]);
        let ok = "activite_id,date,type,duree\n\n,,,\r\n,,,\n";
        let parsed = parse_str(ok).expect("valid");
        assert_eq!(
            parsed.warnings,
            [
                "line 3 is empty and was skipped",
                "line 4 is empty and was skipped"
            ]
        );
    }

    #[test]
    fn a_quote_never_closed_is_an_error_not_a_huge_row() {
        let mut text =
            String::from("activite_id,date,type,duree,note\na,2026-10-01,individuel,30,\"x\n");
        for i in 0..4000 {
            text.push_str(&format!("b{i},2026-10-01,individuel,30,y\n"));
        }
        let split = Split {
            chunk_bytes: 1024,
            max_record_bytes: 16 * 1024,
            workers: 2,
        };
        match read_split(text.as_bytes(), split, 1000).1 {
            Err(ImportError::Rows { errors, .. }) => {
                assert_eq!(errors.len(), 1, "{errors:?}");
                assert_eq!(errors[0].line, 2);
                assert!(errors[0].message.contains("never closed"), "{errors:?}");
            }
            other => panic!("{other:?}"),
        }
        // Within the limit: one row (whose note holds the rest of the file).
        let split = Split {
            max_record_bytes: 1 << 20,
            ..split
        };
        let (frames, found) = read_split(text.as_bytes(), split, 1000);
        assert_eq!(frames.len(), 1);
        assert!(
            matches!(&found, Ok(f) if f.rows == 1 && f.errors.is_empty()),
            "{found:?}"
        );
    }

    #[test]
    fn the_last_record_may_have_no_line_end() {
        for text in [
            "activite_id,date,type,duree\na,2026-10-01,individuel,30",
            "activite_id,date,type,duree\na,2026-10-01,individuel,\"30\"",
            "activite_id,date,type,duree\r\na,2026-10-01,individuel,30\r",
        ] {
            for chunk_bytes in [1, 5, 1 << 20] {
                let split = Split {
                    chunk_bytes,
                    max_record_bytes: 1 << 20,
                    workers: 2,
                };
                let (frames, found) = read_split(text.as_bytes(), split, 3);
                assert_eq!(frames.len(), 1, "{text:?}");
                assert!(
                    matches!(&found, Ok(f) if f.rows == 1 && f.errors.is_empty()),
                    "{found:?}"
                );
            }
        }
    }

    /// Independent of the code under test: lines end at LF, CRLF or a lone CR.
    fn lines_before(bytes: &[u8]) -> u64 {
        let mut lines = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n')) {
                lines += 1;
            }
        }
        lines
    }

    /// One cell as a generator writes it: its text and how it is written.
    #[derive(Debug, Clone)]
    enum Written {
        Plain(String),
        Quoted(String),
        /// A quoted part, then more (csv_core reads on in the cell, quotes included).
        QuotedThen(String, String),
    }

    fn cell_strategy() -> impl proptest::strategy::Strategy<Value = Written> {
        use proptest::prelude::*;
        prop_oneof![
            // A quote inside an unquoted cell is one of its characters.
            "([a-z]{1,3}(\"[a-z ]{0,2})?)?".prop_map(Written::Plain),
            "[a-z,\"\n ]{0,6}(\r\n|\r)?[a-z,\"]{0,3}".prop_map(Written::Quoted),
            ("[a-z,\n]{0,3}", "[a-z][a-z\"]{0,3}").prop_map(|(a, b)| Written::QuotedThen(a, b)),
        ]
    }

    fn write_cell(cell: &Written, out: &mut Vec<u8>) {
        match cell {
            Written::Plain(text) => out.extend_from_slice(text.as_bytes()),
            Written::Quoted(text) => {
                out.push(b'"');
                out.extend_from_slice(text.replace('"', "\"\"").as_bytes());
                out.push(b'"');
            }
            Written::QuotedThen(text, more) => {
                out.push(b'"');
                out.extend_from_slice(text.replace('"', "\"\"").as_bytes());
                out.push(b'"');
                out.extend_from_slice(more.as_bytes());
            }
        }
    }

    /// A generated row: its kind, its note and beneficiary cells, its line end.
    type GeneratedRow = (u8, Written, Written, &'static str, bool);

    fn row_strategy() -> impl proptest::strategy::Strategy<Value = GeneratedRow> {
        (
            0u8..8,
            cell_strategy(),
            cell_strategy(),
            proptest::sample::select(vec!["\n", "\r\n", "\r", "\n\n", "\r\n\r\n"]),
            proptest::bool::ANY,
        )
    }

    /// A file of generated rows, and the line of each row that is not empty.
    fn generated_file(bom: bool, rows: &[GeneratedRow], end: bool) -> (Vec<u8>, Vec<u64>) {
        let mut out = Vec::new();
        if bom {
            out.extend_from_slice(b"\xEF\xBB\xBF");
        }
        out.extend_from_slice(b"activite_id,date,type,duree,beneficiaire_id,note\r\n");
        let mut lines = Vec::new();
        for (i, (kind, beneficiary, note, line_end, padded)) in rows.iter().enumerate() {
            let line = 1 + lines_before(&out);
            let mut row = Vec::new();
            match kind {
                // An empty row, an empty line.
                0 => row.extend_from_slice(b",,,,,"),
                1 => {}
                _ => {
                    let id = match kind {
                        // Quoted across lines: its text (once CRLF is LF) is the id.
                        2 => format!("\"a{i}\r\nz\""),
                        3 => format!("\"a{i}\"\"z\""),
                        _ => format!("a{i}"),
                    };
                    let duree = match kind {
                        4 => "0",
                        _ if *padded => " \"45\" ",
                        _ => "45",
                    };
                    row.extend_from_slice(id.as_bytes());
                    row.extend_from_slice(b",2026-10-01,individuel,");
                    row.extend_from_slice(duree.as_bytes());
                    row.push(b',');
                    write_cell(beneficiary, &mut row);
                    row.push(b',');
                    write_cell(note, &mut row);
                    match kind {
                        // Too many cells, invalid UTF-8.
                        5 => row.extend_from_slice(b",x"),
                        6 => row.extend_from_slice(b"\xff"),
                        _ => {}
                    }
                }
            }
            if *kind != 1 {
                lines.push(line);
            }
            out.extend_from_slice(&row);
            if end || i + 1 < rows.len() {
                out.extend_from_slice(line_end.as_bytes());
            }
        }
        (out, lines)
    }

    /// Independent of the code under test: csv reads the same records (with every CRLF made
    /// LF first, as the import reads them).
    fn csv_records(bytes: &[u8]) -> Vec<Vec<Vec<u8>>> {
        let mut lf = bytes.to_vec();
        let len = crlf_to_lf(&mut lf);
        lf.truncate(len);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(lf.as_slice());
        reader
            .byte_records()
            .map(|r| r.expect("csv").iter().map(<[u8]>::to_vec).collect())
            .collect()
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
        fn crlf_to_lf_drops_exactly_the_crs_before_lfs(
            input in proptest::collection::vec(proptest::sample::select(vec![b'a', b'\r', b'\n', b',']), 0..200),
        ) {
            let expected: Vec<u8> = input
                .iter()
                .enumerate()
                .filter(|(i, b)| !(**b == b'\r' && input.get(i + 1) == Some(&b'\n')))
                .map(|(_, b)| *b)
                .collect();
            let mut bytes = input.clone();
            let len = crlf_to_lf(&mut bytes);
            proptest::prop_assert_eq!(&bytes[..len], expected.as_slice());
        }

        /// Every cut is where csv_core ends a record (reading from the start of the bytes).
        #[test]
        fn cuts_are_where_csv_ends_records(
            bytes in proptest::collection::vec(proptest::sample::select(vec![b'a', b'"', b'\r', b'\n', b',']), 0..120),
        ) {
            if let Some(end) = last_record_end(&bytes) {
                proptest::prop_assert_eq!(bytes[end - 1], b'\n');
                let whole = csv_records(&bytes);
                let cut = csv_records(&bytes[..end]);
                let rest = csv_records(&bytes[end..]);
                let joined: Vec<_> = cut.into_iter().chain(rest).collect();
                proptest::prop_assert_eq!(joined, whole);
            }
        }

        /// However the file is cut and read, the same frames, errors, warnings and rows; the
        /// lines are the file's, the ids csv's.
        #[test]
        fn chunks_read_as_the_whole_file(
            bom in proptest::bool::ANY,
            rows in proptest::collection::vec(row_strategy(), 0..40),
            end in proptest::bool::ANY,
            chunk_bytes in 1usize..80,
            read in 1usize..50,
            workers in 1usize..4,
        ) {
            let (bytes, lines) = generated_file(bom, &rows, end);
            let whole = read_split(&bytes, Split { chunk_bytes: 1 << 20, max_record_bytes: 1 << 20, workers: 1 }, 1 << 20);
            let cut = read_split(&bytes, Split { chunk_bytes, max_record_bytes: 1 << 20, workers }, read);
            proptest::prop_assert_eq!(shown(&cut), shown(&whole));
            // Every line named (a frame, an error or an empty row) is a row's.
            let mut named: Vec<u64> = Vec::new();
            let frames: Vec<u8> = whole.0.concat();
            let frames = codec::frames(&frames).expect("frames");
            named.extend(frames.iter().map(|f| f.line));
            let found = match &whole.1 {
                Ok(found) => found,
                Err(other) => return Err(proptest::test_runner::TestCaseError::fail(format!("{other:?}"))),
            };
            named.extend(found.warnings.iter().filter_map(|w| {
                w.strip_prefix("line ")?.split(' ').next()?.parse::<u64>().ok()
            }));
            named.extend(found.errors.iter().map(|e| e.line));
            // Every row is counted, empty ones apart.
            let empty_rows = found.warnings.iter().filter(|w| w.ends_with("is empty and was skipped")).count();
            proptest::prop_assert_eq!(found.rows as usize + empty_rows, lines.len());
            proptest::prop_assert_eq!(found.unlisted, 0);
            named.sort_unstable();
            named.dedup();
            for line in &named {
                proptest::prop_assert!(lines.contains(line), "line {} is no row's: {:?}", line, lines);
            }
            // The ids of the frames are csv's first cells (trimmed).
            let records = csv_records(&bytes);
            let mut ids: Vec<&[u8]> = frames.iter().map(|f| f.id).collect();
            ids.sort_unstable();
            let mut expected: Vec<&[u8]> = records[1..]
                .iter()
                .filter_map(|r| r.first().map(|c| c.trim_ascii()))
                .filter(|id| ids.contains(id))
                .collect();
            expected.sort_unstable();
            proptest::prop_assert_eq!(ids, expected);
            if found.errors.is_empty() {
                // A valid file: every non-empty row is a frame.
                let valid_rows = records[1..].iter().filter(|r| r.iter().any(|c| !c.trim_ascii().is_empty())).count();
                proptest::prop_assert_eq!(frames.len(), valid_rows);
            }
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
