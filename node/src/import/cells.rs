//! Checking the cells of one row against the national activity-report model: the columns of
//! the header, the vocabularies, commune codes (COG), dates and durations, and writing the
//! frame of a valid row.

use super::*;

pub(super) fn trim_bytes(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

// Positions of the model's columns in COLUMNS.
pub(super) const ACTIVITE_ID: usize = 0;
pub(super) const DATE: usize = 1;
pub(super) const TYPE: usize = 2;
pub(super) const DUREE: usize = 3;
pub(super) const TYPE_LIEU: usize = 4;
pub(super) const LIEU_CODE_INSEE: usize = 5;
pub(super) const THEMATIQUES: usize = 6;
pub(super) const MATERIEL: usize = 7;
pub(super) const AUTONOMIE: usize = 8;
pub(super) const ORIENTE: usize = 9;
pub(super) const NIVEAU_ATELIER: usize = 10;
pub(super) const BENEFICIAIRE_ID: usize = 11;
pub(super) const PREMIER: usize = 12;
pub(super) const GENRE: usize = 13;
pub(super) const TRANCHE_AGE: usize = 14;
pub(super) const STATUT_SOCIAL: usize = 15;
pub(super) const COMMUNE_CODE_INSEE: usize = 16;

/// Where each known column is in the file.
pub(super) struct Columns {
    pub(super) count: usize,
    /// For each of [`COLUMNS`], its position in the file.
    pub(super) index: [Option<usize>; COLUMNS.len()],
    pub(super) unknown: Vec<String>,
}

impl Columns {
    pub(super) fn from_header(header: &[&[u8]]) -> Result<Self, ImportError> {
        let mut index = [None; COLUMNS.len()];
        let mut unknown = Vec::new();
        for (i, raw) in header.iter().copied().enumerate() {
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
pub(super) struct VocabTable {
    pub(super) slots: [u8; 128],
    pub(super) codes: Vec<(&'static [u8], (u64, u64))>,
}

impl VocabTable {
    pub(super) fn new<V: Vocabulary>() -> Self {
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

    pub(super) fn hash(len: usize, (first, last): (u64, u64)) -> usize {
        let mixed = (first ^ last.rotate_left(29) ^ len as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (mixed >> 57) as usize
    }

    pub(super) fn get(&self, text: &[u8]) -> Option<u8> {
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
pub(super) fn words(text: &[u8]) -> (u64, u64) {
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
pub(super) struct Vocabs {
    pub(super) activity_type: VocabTable,
    pub(super) place_type: VocabTable,
    pub(super) thematique: VocabTable,
    pub(super) materiel: VocabTable,
    pub(super) autonomie: VocabTable,
    pub(super) oui_non: VocabTable,
    pub(super) niveau: VocabTable,
    pub(super) genre: VocabTable,
    pub(super) tranche_age: VocabTable,
    pub(super) statut_social: VocabTable,
}

impl Vocabs {
    pub(super) fn new() -> Self {
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
pub(super) struct CommuneCache {
    pub(super) slots: [[u8; 5]; 256],
}

impl CommuneCache {
    pub(super) fn new() -> Self {
        Self {
            slots: [[0; 5]; 256],
        }
    }

    pub(super) fn slot(code: &[u8; 5]) -> usize {
        let h = code
            .iter()
            .fold(0u32, |h, &b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        (h & 255) as usize
    }
}

/// Up to 32 distinct codes of a multi-valued cell, in file order.
#[derive(Default)]
pub(super) struct CodeList {
    pub(super) codes: [u8; 32],
    pub(super) len: usize,
}

impl CodeList {
    pub(super) fn add(&mut self, code: u8) {
        if !self.codes[..self.len].contains(&code) && self.len < self.codes.len() {
            self.codes[self.len] = code;
            self.len += 1;
        }
    }

    pub(super) fn write(&self, out: &mut Vec<u8>) {
        // At most 32 codes.
        out.push(self.len as u8);
        out.extend_from_slice(&self.codes[..self.len]);
    }
}

/// The last valid date cell read and its Julian day (rows often share their date).
#[derive(Default)]
pub(super) struct DateCache(Option<([u8; 10], i32)>);

/// Reads the cells of one row, recording every error instead of stopping at the first.
pub(super) struct Cells<'a, 'r> {
    /// The trimmed cell of each of [`COLUMNS`] (empty when the column is absent).
    pub(super) cells: [&'r [u8]; COLUMNS.len()],
    /// Whether the whole row is ASCII (then every cell is valid UTF-8).
    pub(super) ascii: bool,
    pub(super) line: u64,
    pub(super) dates: &'a mut DateCache,
    pub(super) errors: &'a mut Vec<RowError>,
    pub(super) vocabs: &'a Vocabs,
    pub(super) communes: &'a mut CommuneCache,
}

impl<'r> Cells<'_, 'r> {
    pub(super) fn error(&mut self, column: usize, value: &str, message: String) {
        self.errors.push(RowError {
            line: self.line,
            column: Some(COLUMNS[column].to_owned()),
            value: Some(value.to_owned()),
            message,
        });
    }

    pub(super) fn utf8_error(&mut self, column: usize, raw: &[u8]) {
        let shown = String::from_utf8_lossy(raw).into_owned();
        self.error(
            column,
            &shown,
            "invalid UTF-8: save the file as UTF-8".into(),
        );
    }

    /// The bytes of a column; `None` when the column is absent or the cell empty.
    pub(super) fn bytes(&self, column: usize) -> Option<&'r [u8]> {
        Some(self.cells[column]).filter(|b| !b.is_empty())
    }

    /// The text of a column, as bytes that are valid UTF-8; `None` when the column is absent,
    /// the cell empty or not UTF-8 (then an error is recorded).
    pub(super) fn text(&mut self, column: usize) -> Option<&'r [u8]> {
        let raw = self.bytes(column)?;
        if self.ascii || std::str::from_utf8(raw).is_ok() {
            Some(raw)
        } else {
            self.utf8_error(column, raw);
            None
        }
    }

    /// Records that a required cell is empty; `None` then.
    pub(super) fn required(&mut self, column: usize) -> Option<&'r [u8]> {
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
    pub(super) fn invalid(&mut self, column: usize, raw: &[u8], message: impl FnOnce() -> String) {
        match std::str::from_utf8(raw) {
            Ok(text) => self.error(column, text, message()),
            Err(_) => self.utf8_error(column, raw),
        }
    }

    /// An identifier (of an activity or a person, valid UTF-8), stored with a 16-bit length.
    pub(super) fn identifier(&mut self, text: Option<&'r [u8]>, column: usize) -> Option<&'r [u8]> {
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
    pub(super) fn one_of<V: Vocabulary>(&mut self, column: usize, table: &VocabTable) -> u8 {
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

    pub(super) fn many_of<V: Vocabulary>(&mut self, column: usize, table: &VocabTable) -> CodeList {
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

    pub(super) fn commune(&mut self, column: usize) -> [u8; 5] {
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

    pub(super) fn date(&mut self) -> Option<i32> {
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

    pub(super) fn duree(&mut self) -> Option<u16> {
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
    pub(super) fn row(&mut self, frame: &mut FrameWriter) -> bool {
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
pub(super) fn yes_no_flag(code: u8) -> u8 {
    let value = usize::from(code)
        .checked_sub(1)
        .and_then(|i| OuiNon::ALL.get(i))
        .map(|v| v.is_yes());
    codec::flag_code(value)
}

/// A date written exactly `YYYY-MM-DD`.
pub(super) fn parse_date(b: &[u8]) -> Option<Date> {
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
