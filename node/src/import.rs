//! Reading activity-report files (CSV in the national activity-report model's vocabulary).
//!
//! The rules are DATA.md's "Import rules": all or nothing, every invalid row reported with its
//! line, column, value and what is accepted; spreadsheet exports accepted as they come (BOM,
//! CRLF, quoted and padded cells, any column order, unknown columns ignored with a warning).
//! Parsing is pure: it reads bytes and returns validated [`Activity`] values or every error.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;

use maillage_privacy::{Activity, Participant};
use maillage_protocol::Cog;
use maillage_protocol::vocab::{
    ActivityType, Autonomie, Genre, Materiel, NiveauAtelier, OuiNon, PlaceType, StatutSocial,
    Thematique, TrancheAge, Vocabulary,
};
use time::Date;
use time::macros::format_description;

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

/// One validated row, with the fields of its activity: what a streaming import stages.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Row {
    /// The structure's id of the activity.
    pub activite_id: String,
    /// The activity's day.
    pub date: Date,
    /// Individual or collective (the legacy type already read as `individuel`).
    pub kind: ActivityType,
    /// Minutes.
    pub duree: u32,
    /// Where it took place.
    pub place_type: Option<PlaceType>,
    /// COG code of the place.
    pub place_commune: Option<String>,
    /// Workshop level.
    pub level: Option<NiveauAtelier>,
    /// The person's part (its `line` is the row's line).
    pub participant: Participant,
}

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

/// Checks that the rows of one activity agree, keeping a compact summary per activity so that
/// a file of a million rows is checked without holding its rows.
#[derive(Default)]
struct Heads {
    by_hash: HashMap<u128, Head>,
    arena: String,
}

struct Head {
    id_start: u32,
    id_len: u32,
    first_line: u64,
    date: Date,
    kind: ActivityType,
    duree: u32,
    place_type: Option<PlaceType>,
    place_commune: Option<[u8; 5]>,
    level: Option<NiveauAtelier>,
}

fn id_hash(id: &str) -> u128 {
    use std::hash::{Hash, Hasher};
    let half = |salt: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut h);
        id.hash(&mut h);
        h.finish()
    };
    (u128::from(half(1)) << 64) | u128::from(half(2))
}

fn commune_bytes(code: Option<&str>) -> Option<[u8; 5]> {
    code.and_then(|c| c.as_bytes().try_into().ok())
}

impl Heads {
    /// Records a row; returns the errors that make it disagree with its activity's first row.
    fn check(&mut self, row: &Row) -> Vec<RowError> {
        let hash = id_hash(&row.activite_id);
        let Some(head) = self.by_hash.get(&hash) else {
            let id_start = u32::try_from(self.arena.len()).unwrap_or(u32::MAX);
            self.arena.push_str(&row.activite_id);
            self.by_hash.insert(
                hash,
                Head {
                    id_start,
                    id_len: u32::try_from(row.activite_id.len()).unwrap_or(u32::MAX),
                    first_line: row.participant.line,
                    date: row.date,
                    kind: row.kind,
                    duree: row.duree,
                    place_type: row.place_type,
                    place_commune: commune_bytes(row.place_commune.as_deref()),
                    level: row.level,
                },
            );
            return Vec::new();
        };
        let mut errors = Vec::new();
        let first_line = head.first_line;
        let stored = &self.arena[head.id_start as usize..(head.id_start + head.id_len) as usize];
        if stored != row.activite_id {
            // A 128-bit hash collision between two ids: astronomically unlikely, never silent.
            errors.push(RowError {
                line: row.participant.line,
                column: Some("activite_id".into()),
                value: Some(row.activite_id.clone()),
                message: format!("internal: this id collides with {stored:?} of line {first_line}; rename one of them"),
            });
            return errors;
        }
        let mut disagree = |column: &str, ours: String, first: String| {
            if ours != first {
                errors.push(RowError {
                    line: row.participant.line,
                    column: Some(column.to_owned()),
                    value: Some(ours),
                    message: format!(
                        "the rows of activity {:?} must agree on {column}; line {first_line} has {first:?}",
                        row.activite_id
                    ),
                });
            }
        };
        let opt = |v: Option<&str>| v.unwrap_or("").to_owned();
        let commune = |c: Option<[u8; 5]>| {
            c.map(|c| String::from_utf8_lossy(&c).into_owned())
                .unwrap_or_default()
        };
        disagree("date", row.date.to_string(), head.date.to_string());
        disagree("type", row.kind.code().into(), head.kind.code().into());
        disagree("duree", row.duree.to_string(), head.duree.to_string());
        disagree(
            "type_lieu",
            opt(row.place_type.map(PlaceType::code)),
            opt(head.place_type.map(PlaceType::code)),
        );
        disagree(
            "lieu_code_insee",
            opt(row.place_commune.as_deref()),
            commune(head.place_commune),
        );
        disagree(
            "niveau_atelier",
            opt(row.level.map(NiveauAtelier::code)),
            opt(head.level.map(NiveauAtelier::code)),
        );
        if head.kind == ActivityType::Individuel && row.kind == ActivityType::Individuel {
            errors.push(RowError {
                line: row.participant.line,
                column: Some("activite_id".into()),
                value: Some(row.activite_id.clone()),
                message: format!(
                    "an individuel activity has exactly one row; line {first_line} already has this activite_id (use type collectif for a workshop, or a distinct activite_id)"
                ),
            });
        }
        errors
    }
}

/// Collects errors up to [`MAX_LISTED_ERRORS`], counting the rest.
#[derive(Default)]
struct Errors {
    listed: Vec<RowError>,
    unlisted: u64,
}

impl Errors {
    fn push(&mut self, error: RowError) {
        if self.listed.len() < MAX_LISTED_ERRORS {
            self.listed.push(error);
        } else {
            self.unlisted += 1;
        }
    }

    fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }
}

/// Reads and validates a whole activity-report file as a stream, handing every valid row to
/// `sink` in file order. Rows are checked against the other rows of their activity as they
/// come. On any invalid row the whole file is rejected (after reading it to the end, so that
/// every error is listed); the caller must then discard what `sink` received.
pub fn validate(
    reader: impl Read,
    sink: &mut dyn FnMut(Row) -> std::io::Result<()>,
    progress: &mut dyn Progress,
) -> Result<Validated, ImportError> {
    // The csv crate reports line numbers one short after CRLF line ends; with LF only they are
    // exact, and error messages must name the right line.
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::None)
        .from_reader(CrlfToLf::new(reader));
    let mut records = csv.byte_records();

    let header = match records.next() {
        None => return Err(ImportError::Empty),
        Some(record) => record.map_err(csv_error)?,
    };
    let columns = Columns::from_header(&header)?;
    let mut warnings = Vec::new();
    let mut dropped_warnings = 0u64;
    if !columns.unknown.is_empty() {
        warnings.push(format!(
            "unknown column(s) ignored: {} (the model's columns are: {})",
            columns.unknown.join(", "),
            COLUMNS.join(", ")
        ));
    }

    let mut errors = Errors::default();
    let mut heads = Heads::default();
    let mut rows = 0u64;
    let mut row_errors = Vec::new();
    for record in records {
        let record = record.map_err(csv_error)?;
        let (line, byte) = record.position().map_or((0, 0), |p| (p.line(), p.byte()));
        if line.is_multiple_of(1024) {
            progress.advance(byte);
        }
        if record.iter().all(|cell| trim_bytes(cell).is_empty()) {
            if warnings.len() < MAX_WARNINGS {
                warnings.push(format!("line {line} is empty and was skipped"));
            } else {
                dropped_warnings += 1;
            }
            continue;
        }
        if record.len() != columns.count {
            errors.push(RowError {
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
        let row = cells.row();
        for e in row_errors.drain(..) {
            errors.push(e);
        }
        let Some(row) = row else { continue };
        for e in heads.check(&row) {
            errors.push(e);
        }
        rows += 1;
        if errors.is_empty() {
            sink(row).map_err(|e| ImportError::Stage(e.to_string()))?;
        }
    }
    if !errors.is_empty() {
        let mut listed = errors.listed;
        listed.sort_by_key(|e| e.line);
        return Err(ImportError::Rows {
            errors: listed,
            unlisted: errors.unlisted,
        });
    }
    if dropped_warnings > 0 {
        warnings.push(format!(
            "{dropped_warnings} more empty line(s) were skipped"
        ));
    }
    Ok(Validated {
        rows,
        activities: heads.by_hash.len() as u64,
        warnings,
    })
}

/// Reads and validates a whole file into memory, grouping rows into activities. `batch` is
/// recorded in every activity (it orders rows "in import order" across imports).
pub fn parse(
    bytes: &[u8],
    batch: u64,
    progress: &mut dyn Progress,
) -> Result<ParsedFile, ImportError> {
    let mut rows = Vec::new();
    let validated = validate(
        bytes,
        &mut |row| {
            rows.push(row);
            Ok(())
        },
        progress,
    )?;
    Ok(ParsedFile {
        activities: group(rows, batch),
        rows: validated.rows,
        warnings: validated.warnings,
    })
}

/// Groups validated rows (which agree within each activity) into activities, in order of
/// their first row.
pub fn group(rows: Vec<Row>, batch: u64) -> Vec<Activity> {
    let mut activities: Vec<Activity> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for row in rows {
        match by_id.get(&row.activite_id) {
            Some(&i) => activities[i].participants.push(row.participant),
            None => {
                by_id.insert(row.activite_id.clone(), activities.len());
                activities.push(Activity {
                    id: row.activite_id,
                    date: row.date,
                    kind: row.kind,
                    duration_min: row.duree,
                    place_type: row.place_type,
                    place_commune: row.place_commune,
                    level: row.level,
                    batch,
                    participants: vec![row.participant],
                });
            }
        }
    }
    activities
}

/// Turns CRLF line ends into LF as bytes stream through (a lone CR is kept).
struct CrlfToLf<R> {
    inner: R,
    pending_cr: bool,
    buf: Vec<u8>,
    pos: usize,
}

impl<R: Read> CrlfToLf<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            pending_cr: false,
            buf: Vec::new(),
            pos: 0,
        }
    }

    fn fill(&mut self) -> std::io::Result<bool> {
        let mut raw = [0u8; 64 * 1024];
        let n = self.inner.read(&mut raw)?;
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
        let mut bytes = raw[..n].iter().copied().peekable();
        if self.pending_cr {
            self.pending_cr = false;
            if bytes.peek() != Some(&b'\n') {
                self.buf.push(b'\r');
            }
        }
        while let Some(b) = bytes.next() {
            if b == b'\r' {
                match bytes.peek() {
                    Some(b'\n') => continue,
                    Some(_) => self.buf.push(b),
                    None => self.pending_cr = true,
                }
            } else {
                self.buf.push(b);
            }
        }
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

/// Where each known column is in the file.
struct Columns {
    count: usize,
    index: HashMap<&'static str, usize>,
    unknown: Vec<String>,
}

impl Columns {
    fn from_header(header: &csv::ByteRecord) -> Result<Self, ImportError> {
        let mut index = HashMap::new();
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
            match COLUMNS.iter().find(|c| **c == name) {
                Some(known) => {
                    if index.insert(*known, i).is_some() {
                        return Err(ImportError::Header(format!(
                            "column {known:?} appears twice; keep one"
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
            .filter(|c| !index.contains_key(c))
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

/// Reads the cells of one row, recording every error instead of stopping at the first.
struct Cells<'a> {
    record: &'a csv::ByteRecord,
    columns: &'a Columns,
    line: u64,
    errors: &'a mut Vec<RowError>,
}

impl Cells<'_> {
    fn error(&mut self, column: &str, value: &str, message: String) {
        self.errors.push(RowError {
            line: self.line,
            column: Some(column.to_owned()),
            value: Some(value.to_owned()),
            message,
        });
    }

    /// The trimmed text of a column; `None` when the column is absent or the cell empty.
    fn text(&mut self, column: &'static str) -> Option<String> {
        let i = *self.columns.index.get(column)?;
        let raw = trim_bytes(self.record.get(i)?);
        if raw.is_empty() {
            return None;
        }
        match std::str::from_utf8(raw) {
            Ok(text) => Some(text.to_owned()),
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

    fn required(&mut self, column: &'static str) -> Option<String> {
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

    fn one_of<V: Vocabulary>(&mut self, column: &'static str) -> Option<V> {
        let text = self.text(column)?;
        let value = V::from_code(&text);
        if value.is_none() {
            self.error(
                column,
                &text,
                format!("expected one of {}", V::codes().join(", ")),
            );
        }
        value
    }

    fn many_of<V: Vocabulary>(&mut self, column: &'static str) -> Vec<V> {
        let Some(text) = self.text(column) else {
            return Vec::new();
        };
        let mut values = Vec::new();
        for part in text.split('|').map(str::trim).filter(|p| !p.is_empty()) {
            match V::from_code(part) {
                Some(v) if !values.contains(&v) => values.push(v),
                Some(_) => {}
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
        values
    }

    fn commune(&mut self, column: &'static str) -> Option<String> {
        let text = self.text(column)?;
        match Cog::get().commune(&text) {
            Ok(_) => Some(text),
            Err(err) => {
                self.error(column, &text, err.to_string());
                None
            }
        }
    }

    fn row(&mut self) -> Option<Row> {
        let errors_before = self.errors.len();
        let activite_id = self.required("activite_id");
        let date = self.required("date").and_then(|text| {
            let format = format_description!("[year]-[month]-[day]");
            match Date::parse(&text, format) {
                Ok(date) => Some(date),
                Err(_) => {
                    self.error(
                        "date",
                        &text,
                        "expected a calendar date written YYYY-MM-DD, e.g. 2026-10-14".into(),
                    );
                    None
                }
            }
        });
        let mut legacy_demarche = false;
        let kind = self.required("type").and_then(|text| {
            if text == LEGACY_DEMARCHE {
                legacy_demarche = true;
                return Some(ActivityType::Individuel);
            }
            let kind = ActivityType::from_code(&text);
            if kind.is_none() {
                self.error(
                    "type",
                    &text,
                    format!(
                        "expected one of {} (or the legacy {LEGACY_DEMARCHE})",
                        ActivityType::codes().join(", ")
                    ),
                );
            }
            kind
        });
        let duree = self
            .required("duree")
            .and_then(|text| match text.parse::<u32>() {
                Ok(minutes @ 1..=1440) => Some(minutes),
                _ => {
                    self.error(
                        "duree",
                        &text,
                        "expected a whole number of minutes from 1 to 1440".into(),
                    );
                    None
                }
            });
        let place_type = self.one_of::<PlaceType>("type_lieu");
        let place_commune = self.commune("lieu_code_insee");
        let mut themes = self.many_of::<Thematique>("thematiques");
        if legacy_demarche && !themes.contains(&Thematique::AideAuxDemarchesAdministratives) {
            themes.push(Thematique::AideAuxDemarchesAdministratives);
        }
        let materiel = self.many_of::<Materiel>("materiel");
        let autonomie = self.one_of::<Autonomie>("autonomie");
        let oriented = self
            .one_of::<OuiNon>("oriente_vers_structure")
            .map(OuiNon::is_yes);
        let level = self.one_of::<NiveauAtelier>("niveau_atelier");
        if let (Some(level), Some(ActivityType::Individuel)) = (level, kind) {
            self.error(
                "niveau_atelier",
                level.code(),
                "a workshop level is only accepted for collectif activities; leave it empty".into(),
            );
        }
        let beneficiary = self.text("beneficiaire_id");
        let first_time = self
            .one_of::<OuiNon>("premier_accompagnement")
            .map(OuiNon::is_yes);
        let genre = self.one_of::<Genre>("genre");
        let tranche_age = self.one_of::<TrancheAge>("tranche_age");
        let statut_social = self.one_of::<StatutSocial>("statut_social");
        let residence = self.commune("commune_code_insee");

        if self.errors.len() != errors_before {
            return None;
        }
        Some(Row {
            activite_id: activite_id?,
            date: date?,
            kind: kind?,
            duree: duree?,
            place_type,
            place_commune,
            level,
            participant: Participant {
                line: self.line,
                beneficiary,
                first_time,
                themes,
                materiel,
                autonomie,
                oriented,
                genre,
                tranche_age,
                statut_social,
                residence,
            },
        })
    }
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
