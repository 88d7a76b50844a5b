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

use crate::store::codec::{
    self, Facts, FrameRef, FrameWriter, commune_bytes, commune_text, stable_hash,
};

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

/// Reads a whole activity-report file as a stream, checking every cell, and hands each valid
/// row to `sink` as a frame (see [`crate::store::codec`]), in file order. Rows with invalid
/// cells are recorded in [`Reading::errors`] and not handed on; the file is read to its end so
/// that every error is listed. Whether the rows of each activity agree is checked afterwards,
/// on the grouped frames, by [`check_activity`]. Only a problem with the file as a whole (no
/// header, a bad header, unreadable bytes) is an `Err`.
pub fn read_rows(
    reader: impl Read,
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
    let mut record = csv::ByteRecord::new();
    if !csv.read_byte_record(&mut record).map_err(csv_error)? {
        return Err(ImportError::Empty);
    }
    let columns = Columns::from_header(&record)?;
    let mut reading = Reading::default();
    let mut dropped_warnings = 0u64;
    if !columns.unknown.is_empty() {
        reading.warnings.push(format!(
            "unknown column(s) ignored: {} (the model's columns are: {})",
            columns.unknown.join(", "),
            COLUMNS.join(", ")
        ));
    }

    let mut frame = FrameWriter::default();
    let mut row_errors = Vec::new();
    while csv.read_byte_record(&mut record).map_err(csv_error)? {
        let (line, byte) = record.position().map_or((0, 0), |p| (p.line(), p.byte()));
        if line.is_multiple_of(1024) {
            progress.advance(byte);
        }
        if record.iter().all(|cell| trim_bytes(cell).is_empty()) {
            if reading.warnings.len() < MAX_WARNINGS {
                reading
                    .warnings
                    .push(format!("line {line} is empty and was skipped"));
            } else {
                dropped_warnings += 1;
            }
            continue;
        }
        reading.rows += 1;
        if record.len() != columns.count {
            reading.errors.push(RowError {
                line,
                column: None,
                value: None,
                message: format!(
                    "the row has {} cell(s) but the header has {} column(s); check the separator (a comma) and the quoting of cells that contain commas",
                    record.len(),
                    columns.count
                ),
            });
            continue;
        }
        let mut cells = Cells {
            record: &record,
            columns: &columns,
            line,
            errors: &mut row_errors,
        };
        let valid = cells.row(&mut frame);
        if !row_errors.is_empty() {
            for e in row_errors.drain(..) {
                reading.errors.push(e);
            }
            continue;
        }
        if valid {
            let bytes = frame
                .end()
                .map_err(|e| ImportError::Stage(e.to_string()))?;
            sink(bytes).map_err(|e| ImportError::Stage(e.to_string()))?;
        }
    }
    if dropped_warnings > 0 {
        reading.warnings.push(format!(
            "{dropped_warnings} more empty line(s) were skipped"
        ));
    }
    Ok(reading)
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
    let id = String::from_utf8_lossy(head.id);
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
                        "the rows of activity {id:?} must agree on {column}; line {first_line} has {first:?}"
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
                value: Some(id.clone().into_owned()),
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

/// Turns CRLF line ends into LF as bytes stream through (a lone CR is kept).
struct CrlfToLf<R> {
    inner: R,
    pending_cr: bool,
    raw: Vec<u8>,
    buf: Vec<u8>,
    pos: usize,
}

impl<R: Read> CrlfToLf<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            pending_cr: false,
            raw: vec![0; 64 * 1024],
            buf: Vec::with_capacity(64 * 1024 + 1),
            pos: 0,
        }
    }

    fn fill(&mut self) -> std::io::Result<bool> {
        let n = self.inner.read(&mut self.raw)?;
        self.buf.clear();
        self.pos = 0;
        if n == 0 {
            if self.pending_cr {
                self.pending_cr = false;
                self.buf.push(b'\r');
                return Ok(true);
            }
            return Ok(false);
        }
        let mut raw = &self.raw[..n];
        if self.pending_cr {
            self.pending_cr = false;
            if raw.first() != Some(&b'\n') {
                self.buf.push(b'\r');
            }
        }
        // Copy runs without CR whole; drop each CR that a LF follows.
        while let Some(i) = raw.iter().position(|&b| b == b'\r') {
            self.buf.extend_from_slice(&raw[..i]);
            match raw.get(i + 1) {
                Some(b'\n') => {}
                Some(_) => self.buf.push(b'\r'),
                None => self.pending_cr = true,
            }
            raw = &raw[i + 1..];
        }
        self.buf.extend_from_slice(raw);
        Ok(true)
    }
}

impl<R: Read> Read for CrlfToLf<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.buf.len() {
            if !self.fill()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
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

/// The code (position + 1) of the value of vocabulary `V` written `text`.
fn lookup<V: Vocabulary>(text: &str) -> Option<u8> {
    V::ALL
        .iter()
        .position(|v| v.code() == text)
        .and_then(|i| u8::try_from(i + 1).ok())
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

/// Reads the cells of one row, recording every error instead of stopping at the first.
struct Cells<'a> {
    record: &'a csv::ByteRecord,
    columns: &'a Columns,
    line: u64,
    errors: &'a mut Vec<RowError>,
}

impl<'a> Cells<'a> {
    fn error(&mut self, column: usize, value: &str, message: String) {
        self.errors.push(RowError {
            line: self.line,
            column: Some(COLUMNS[column].to_owned()),
            value: Some(value.to_owned()),
            message,
        });
    }

    /// The trimmed text of a column; `None` when the column is absent or the cell empty.
    fn text(&mut self, column: usize) -> Option<&'a str> {
        let i = self.columns.index[column]?;
        let record: &'a csv::ByteRecord = self.record;
        let raw = trim_bytes(record.get(i)?);
        if raw.is_empty() {
            return None;
        }
        match std::str::from_utf8(raw) {
            Ok(text) => Some(text),
            Err(_) => {
                let shown = String::from_utf8_lossy(raw).into_owned();
                self.error(
                    column,
                    &shown,
                    "invalid UTF-8: save the file as UTF-8".into(),
                );
                None
            }
        }
    }

    fn required(&mut self, column: usize) -> Option<&'a str> {
        let errors_before = self.errors.len();
        let text = self.text(column);
        if text.is_none() && self.errors.len() == errors_before {
            self.error(
                column,
                "",
                "this column is required and the cell is empty".into(),
            );
        }
        text
    }

    /// An identifier (of an activity or a person), stored with a 16-bit length.
    fn identifier(&mut self, text: Option<&'a str>, column: usize) -> Option<&'a str> {
        let text = text?;
        if text.len() > usize::from(u16::MAX) {
            let shown: String = text.chars().take(40).collect();
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
    fn one_of<V: Vocabulary>(&mut self, column: usize) -> u8 {
        let Some(text) = self.text(column) else {
            return 0;
        };
        match lookup::<V>(text) {
            Some(code) => code,
            None => {
                self.error(
                    column,
                    text,
                    format!("expected one of {}", V::codes().join(", ")),
                );
                0
            }
        }
    }

    fn many_of<V: Vocabulary>(&mut self, column: usize) -> CodeList {
        let mut list = CodeList::default();
        let Some(text) = self.text(column) else {
            return list;
        };
        for part in text.split('|').map(str::trim).filter(|p| !p.is_empty()) {
            match lookup::<V>(part) {
                Some(code) => list.add(code),
                None => self.error(
                    column,
                    part,
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
        let Some(text) = self.text(column) else {
            return [0; 5];
        };
        match Cog::get().commune(text) {
            Ok(_) => commune_bytes(Some(text)),
            Err(err) => {
                self.error(column, text, err.to_string());
                [0; 5]
            }
        }
    }

    fn date(&mut self) -> Option<i32> {
        let text = self.required(DATE)?;
        match parse_date(text) {
            Some(date) if (2000..=2999).contains(&date.year()) => Some(date.to_julian_day()),
            Some(_) => {
                self.error(
                    DATE,
                    text,
                    "expected a date from 2000-01-01 to 2999-12-31".into(),
                );
                None
            }
            None => {
                self.error(
                    DATE,
                    text,
                    "expected a calendar date written YYYY-MM-DD, e.g. 2026-10-14".into(),
                );
                None
            }
        }
    }

    /// Checks every cell; when all are valid, writes the row's frame into `frame` and returns
    /// `true`.
    fn row(&mut self, frame: &mut FrameWriter) -> bool {
        let errors_before = self.errors.len();
        let activite_id = self.required(ACTIVITE_ID);
        let activite_id = self.identifier(activite_id, ACTIVITE_ID);
        let day = self.date();
        let mut legacy_demarche = false;
        let kind = self.required(TYPE).and_then(|text| {
            if text == LEGACY_DEMARCHE {
                legacy_demarche = true;
                return Some(codec::code(ActivityType::Individuel));
            }
            let kind = lookup::<ActivityType>(text);
            if kind.is_none() {
                self.error(
                    TYPE,
                    text,
                    format!(
                        "expected one of {} (or the legacy {LEGACY_DEMARCHE})",
                        ActivityType::codes().join(", ")
                    ),
                );
            }
            kind
        });
        let duree = self
            .required(DUREE)
            .and_then(|text| match text.parse::<u16>() {
                Ok(minutes @ 1..=1440) => Some(minutes),
                _ => {
                    self.error(
                        DUREE,
                        text,
                        "expected a whole number of minutes from 1 to 1440".into(),
                    );
                    None
                }
            });
        let place_type = self.one_of::<PlaceType>(TYPE_LIEU);
        let place_commune = self.commune(LIEU_CODE_INSEE);
        let mut themes = self.many_of::<Thematique>(THEMATIQUES);
        if legacy_demarche {
            themes.add(codec::code(Thematique::AideAuxDemarchesAdministratives));
        }
        let materiel = self.many_of::<Materiel>(MATERIEL);
        let autonomie = self.one_of::<Autonomie>(AUTONOMIE);
        let oriented = self.one_of::<OuiNon>(ORIENTE);
        let level = self.one_of::<NiveauAtelier>(NIVEAU_ATELIER);
        if level != 0 && kind == Some(codec::code(ActivityType::Individuel)) {
            self.error(
                NIVEAU_ATELIER,
                vocab_text::<NiveauAtelier>(level),
                "a workshop level is only accepted for collectif activities; leave it empty".into(),
            );
        }
        let beneficiary = self.text(BENEFICIAIRE_ID);
        let beneficiary = self.identifier(beneficiary, BENEFICIAIRE_ID);
        let first_time = self.one_of::<OuiNon>(PREMIER);
        let genre = self.one_of::<Genre>(GENRE);
        let tranche_age = self.one_of::<TrancheAge>(TRANCHE_AGE);
        let statut_social = self.one_of::<StatutSocial>(STATUT_SOCIAL);
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
        if frame
            .start(stable_hash(id.as_bytes()), self.line, id.as_bytes(), &facts)
            .is_err()
        {
            return false;
        }
        let out = &mut frame.buf;
        out.push(yes_no_flag(first_time));
        out.push(yes_no_flag(oriented));
        out.extend_from_slice(&[autonomie, genre, tranche_age, statut_social]);
        out.extend_from_slice(&residence);
        themes.write(out);
        materiel.write(out);
        let beneficiary = beneficiary.unwrap_or("");
        // Checked by `identifier`.
        out.extend_from_slice(&(beneficiary.len() as u16).to_le_bytes());
        out.extend_from_slice(beneficiary.as_bytes());
        true
    }
}

/// An `oui`/`non` code (as [`lookup`] gives it) as a stored flag.
fn yes_no_flag(code: u8) -> u8 {
    let value = usize::from(code)
        .checked_sub(1)
        .and_then(|i| OuiNon::ALL.get(i))
        .map(|v| v.is_yes());
    codec::flag_code(value)
}

/// A date written exactly `YYYY-MM-DD`.
fn parse_date(text: &str) -> Option<Date> {
    let b = text.as_bytes();
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

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let mut input = b"activite_id,date,type,duree,thematiques,genre\n".to_vec();
            input.extend_from_slice(&bytes);
            let _ = parse(&input, 1, &mut ());
        }

        #[test]
        fn never_panics_on_arbitrary_text(text in "[a-z0-9,|\"\r\n -]{0,300}") {
            let _ = parse(text.as_bytes(), 1, &mut ());
        }
    }
}
