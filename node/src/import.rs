//! Reading activity-report files (CSV in the national activity-report model's vocabulary).
//!
//! The rules are DATA.md's "Import rules": all or nothing, every invalid row reported with its
//! line, column, value and what is accepted; spreadsheet exports accepted as they come (BOM,
//! CRLF, quoted and padded cells, any column order, unknown columns ignored with a warning).
//! Parsing is pure: it reads bytes and returns validated [`Activity`] values or every error.

use std::collections::HashMap;
use std::fmt;

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
    /// Some rows are invalid; every one is listed.
    #[error("{} invalid row(s); nothing was imported:\n{}", .0.len(), list(.0))]
    Rows(Vec<RowError>),
}

fn list(errors: &[RowError]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A file that passed every check.
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

/// One validated row before rows are grouped into activities.
struct Row {
    line: u64,
    activite_id: String,
    date: Date,
    kind: ActivityType,
    duree: u32,
    place_type: Option<PlaceType>,
    place_commune: Option<String>,
    level: Option<NiveauAtelier>,
    participant: Participant,
}

/// Reads and validates a whole activity-report file. `batch` is recorded in every activity
/// (it orders rows "in import order" across imports).
pub fn parse(
    bytes: &[u8],
    batch: u64,
    progress: &mut dyn Progress,
) -> Result<ParsedFile, ImportError> {
    // The csv crate reports line numbers one short after CRLF line ends; with LF only they are
    // exact, and error messages must name the right line.
    let normalized = normalize_line_ends(bytes);
    let reader: &[u8] = &normalized;
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::None)
        .from_reader(reader);
    let mut records = csv.byte_records();

    let header = match records.next() {
        None => return Err(ImportError::Empty),
        Some(record) => record.map_err(csv_error)?,
    };
    let columns = Columns::from_header(&header)?;
    let mut warnings = Vec::new();
    if !columns.unknown.is_empty() {
        warnings.push(format!(
            "unknown column(s) ignored: {} (the model's columns are: {})",
            columns.unknown.join(", "),
            COLUMNS.join(", ")
        ));
    }

    let mut errors = Vec::new();
    let mut rows = Vec::new();
    let mut record_count: u64 = 0;
    for record in records {
        let record = record.map_err(csv_error)?;
        let line = record.position().map_or(0, |p| p.line());
        record_count += 1;
        if record_count.is_multiple_of(1024) {
            progress.advance(record.position().map_or(0, |p| p.byte()));
        }
        if record.iter().all(|cell| trim_bytes(cell).is_empty()) {
            warnings.push(format!("line {line} is empty and was skipped"));
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
            errors: &mut errors,
        };
        if let Some(row) = cells.row() {
            rows.push(row);
        }
    }
    let activities = group(rows, batch, &mut errors);
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.line);
        return Err(ImportError::Rows(errors));
    }
    let rows = activities.iter().map(|a| a.participants.len() as u64).sum();
    Ok(ParsedFile {
        activities,
        rows,
        warnings,
    })
}

fn normalize_line_ends(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !bytes.contains(&b'\r') {
        return std::borrow::Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut iter = bytes.iter().copied().peekable();
    while let Some(b) = iter.next() {
        if b == b'\r' && iter.peek() == Some(&b'\n') {
            continue;
        }
        out.push(b);
    }
    std::borrow::Cow::Owned(out)
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
            line: self.line,
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

/// Groups rows by `activite_id`, checking that the rows of one activity agree.
fn group(rows: Vec<Row>, batch: u64, errors: &mut Vec<RowError>) -> Vec<Activity> {
    let mut activities: Vec<(u64, Activity)> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for row in rows {
        let Some(&i) = by_id.get(&row.activite_id) else {
            by_id.insert(row.activite_id.clone(), activities.len());
            activities.push((
                row.line,
                Activity {
                    id: row.activite_id,
                    date: row.date,
                    kind: row.kind,
                    duration_min: row.duree,
                    place_type: row.place_type,
                    place_commune: row.place_commune,
                    level: row.level,
                    batch,
                    participants: vec![row.participant],
                },
            ));
            continue;
        };
        let (first_line, activity) = &mut activities[i];
        let mut disagree = |column: &str, ours: String, first: String| {
            if ours != first {
                errors.push(RowError {
                    line: row.line,
                    column: Some(column.to_owned()),
                    value: Some(ours),
                    message: format!(
                        "the rows of activity {:?} must agree on {column}; line {first_line} has {first:?}",
                        activity.id
                    ),
                });
            }
        };
        let opt = |v: Option<&str>| v.unwrap_or("").to_owned();
        disagree("date", row.date.to_string(), activity.date.to_string());
        disagree("type", row.kind.code().into(), activity.kind.code().into());
        disagree(
            "duree",
            row.duree.to_string(),
            activity.duration_min.to_string(),
        );
        disagree(
            "type_lieu",
            opt(row.place_type.map(PlaceType::code)),
            opt(activity.place_type.map(PlaceType::code)),
        );
        disagree(
            "lieu_code_insee",
            opt(row.place_commune.as_deref()),
            opt(activity.place_commune.as_deref()),
        );
        disagree(
            "niveau_atelier",
            opt(row.level.map(NiveauAtelier::code)),
            opt(activity.level.map(NiveauAtelier::code)),
        );
        if activity.kind == ActivityType::Individuel && row.kind == ActivityType::Individuel {
            errors.push(RowError {
                line: row.line,
                column: Some("activite_id".into()),
                value: Some(activity.id.clone()),
                message: format!(
                    "an individuel activity has exactly one row; line {first_line} already has this activite_id (use type collectif for a workshop, or a distinct activite_id)"
                ),
            });
        }
        activity.participants.push(row.participant);
    }
    activities.into_iter().map(|(_, a)| a).collect()
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
            Err(ImportError::Rows(errors)) => errors,
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
            Err(ImportError::Rows(errors)) => {
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
