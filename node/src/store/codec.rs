//! The compact binary forms of imported rows and stored activities.
//!
//! Rows and activities never leave the node, so their encoding only needs to be compact, fast to
//! write and read, and checked on read (a damaged store is reported, never a panic). Every
//! vocabulary value is one byte (0 = empty, else its position in the vocabulary plus one); a
//! commune code is its 5 ASCII bytes (zeros = empty); integers are little-endian.
//!
//! - A staged **row** (a frame): `[len: u32][hash: u64][line: u64][id len: u16][id][facts][person]`
//!   where `len` counts the bytes after itself.
//! - A stored **activity** (a record): `[hash: u64][id len: u16][id][content len: u32][content]
//!   [batch: u64][line: u64 per person]` where `content` is `[facts][persons: u32][person]…`.
//!   Two versions of an activity hold the same facts exactly when their contents are equal, so
//!   re-importing an unchanged activity is detected without decoding it.
//!
//! `facts` (what every row of an activity shares, [`FACTS_LEN`] bytes): `[julian day: i32][type]
//! [duree: u16][type_lieu][lieu_code_insee: 5][niveau_atelier]`. `person`: `[premier_accompagnement]
//! [oriente_vers_structure][autonomie][genre][tranche_age][statut_social][commune_code_insee: 5]
//! [thematiques: count, then one byte each][materiel: count, then one byte each][beneficiaire_id
//! len: u16][beneficiaire_id]`.

use maillage_privacy::exact::{ActivityFacts, RowFacts, Tally};
use maillage_privacy::{Activity, Participant};
use maillage_protocol::Period;
use maillage_protocol::vocab::{
    ActivityType, Autonomie, Genre, Materiel, NiveauAtelier, PlaceType, StatutSocial, Thematique,
    TrancheAge, Vocabulary,
};
use time::Date;

/// Bytes of an activity's shared facts.
pub const FACTS_LEN: usize = 14;

/// Where activities of an id are stored and where its index entry is: FNV-1a then a 64-bit
/// finalizer, a hash that never changes across builds (it decides where data lives on disk).
pub fn stable_hash(id: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64's finalizer, so that every bit of the result depends on every byte.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// A period as two bytes: months since 2000-01 (periods run from 2000-01 to 2999-12).
pub fn period_code(period: Period) -> u16 {
    let months = (period.year() - 2000) * 12 + i32::from(period.month()) - 1;
    u16::try_from(months).unwrap_or(u16::MAX)
}

/// The period of a [`period_code`].
pub fn period_of_code(code: u16) -> Option<Period> {
    let year = 2000 + i32::from(code / 12);
    Period::new(year, u8::try_from(code % 12 + 1).ok()?)
}

/// The code of an optional vocabulary value.
pub fn opt_code<V: Vocabulary>(value: Option<V>) -> u8 {
    value.map_or(0, |v| code(v))
}

/// The code of a vocabulary value.
pub fn code<V: Vocabulary>(value: V) -> u8 {
    // Vocabularies hold a few dozen values at most.
    u8::try_from(value.index() + 1).unwrap_or(u8::MAX)
}

/// The value of a code (0 = empty); `Err` for a code no value has.
fn from_code<V: Vocabulary>(code: u8) -> Result<Option<V>, Bad> {
    match code {
        0 => Ok(None),
        c => V::ALL
            .get(usize::from(c) - 1)
            .copied()
            .map(Some)
            .ok_or(Bad("vocabulary code out of range")),
    }
}

/// A damaged encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bad(pub &'static str);

impl std::fmt::Display for Bad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Reads an encoding with bounds checks.
#[derive(Debug)]
pub struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    /// Where the cursor is.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Bad> {
        let end = self.pos.checked_add(n).ok_or(Bad("length overflow"))?;
        let slice = self.bytes.get(self.pos..end).ok_or(Bad("truncated"))?;
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Bad> {
        self.take(N)?.try_into().map_err(|_| Bad("truncated"))
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, Bad> {
        Ok(self.array::<1>()?[0])
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> Result<u16, Bad> {
        self.array().map(u16::from_le_bytes)
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> Result<u32, Bad> {
        self.array().map(u32::from_le_bytes)
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> Result<u64, Bad> {
        self.array().map(u64::from_le_bytes)
    }
}

/// What every row of one activity must agree on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// The day, as a Julian day number.
    pub day: i32,
    /// [`ActivityType`] code.
    pub kind: u8,
    /// Minutes.
    pub duree: u16,
    /// [`PlaceType`] code.
    pub place_type: u8,
    /// COG code of the place, zeros when empty.
    pub place_commune: [u8; 5],
    /// [`NiveauAtelier`] code.
    pub level: u8,
}

impl Facts {
    /// Appends the encoding.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.day.to_le_bytes());
        out.push(self.kind);
        out.extend_from_slice(&self.duree.to_le_bytes());
        out.push(self.place_type);
        out.extend_from_slice(&self.place_commune);
        out.push(self.level);
    }

    /// Reads the encoding.
    pub fn read(c: &mut Cursor<'_>) -> Result<Self, Bad> {
        let bytes: [u8; FACTS_LEN] = c.array()?;
        Ok(Self::from_bytes(&bytes))
    }

    /// Reads the encoding from exactly [`FACTS_LEN`] bytes.
    pub fn from_bytes(b: &[u8; FACTS_LEN]) -> Self {
        Self {
            day: i32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            kind: b[4],
            duree: u16::from_le_bytes([b[5], b[6]]),
            place_type: b[7],
            place_commune: [b[8], b[9], b[10], b[11], b[12]],
            level: b[13],
        }
    }

    /// The day.
    pub fn date(&self) -> Result<Date, Bad> {
        Date::from_julian_day(self.day).map_err(|_| Bad("day out of range"))
    }

    /// The [`period_code`] of the day.
    pub fn period_code(&self) -> Result<u16, Bad> {
        let date = self.date()?;
        let period = Period::new(date.year(), u8::from(date.month()))
            .ok_or(Bad("date outside 2000-2999"))?;
        Ok(period_code(period))
    }

    /// The activity type.
    pub fn kind(&self) -> Result<ActivityType, Bad> {
        from_code::<ActivityType>(self.kind)?.ok_or(Bad("missing activity type"))
    }
}

/// A commune code as stored (zeros = empty) back to text.
pub fn commune_text(code: &[u8; 5]) -> Option<&str> {
    if code == &[0; 5] {
        None
    } else {
        std::str::from_utf8(code).ok()
    }
}

/// A commune code as text to its stored form; `None` unless 5 ASCII bytes.
pub fn commune_bytes(text: Option<&str>) -> [u8; 5] {
    text.and_then(|t| <[u8; 5]>::try_from(t.as_bytes()).ok())
        .unwrap_or([0; 5])
}

/// One staged row, read in place.
#[derive(Debug, Clone, Copy)]
pub struct FrameRef<'a> {
    /// [`stable_hash`] of the id.
    pub hash: u64,
    /// The row's line in its file.
    pub line: u64,
    /// The activity id.
    pub id: &'a [u8],
    /// The activity's facts as this row gives them.
    pub facts: Facts,
    /// The person's part, encoded.
    pub person: &'a [u8],
}

impl FrameRef<'_> {
    /// The sort order that groups the rows of an activity, in file order.
    pub fn key(&self) -> (u64, &[u8], u64) {
        (self.hash, self.id, self.line)
    }
}

/// Writes a frame: call [`FrameWriter::start`], append the person's fields to `buf`, then
/// [`FrameWriter::end`].
#[derive(Debug, Default)]
pub struct FrameWriter {
    /// The frame being written.
    pub buf: Vec<u8>,
}

impl FrameWriter {
    /// Starts a frame with everything up to the person's part.
    pub fn start(&mut self, hash: u64, line: u64, id: &[u8], facts: &Facts) -> Result<(), Bad> {
        let id_len = u16::try_from(id.len()).map_err(|_| Bad("id longer than 65,535 bytes"))?;
        self.buf.clear();
        self.buf.extend_from_slice(&[0; 4]);
        self.buf.extend_from_slice(&hash.to_le_bytes());
        self.buf.extend_from_slice(&line.to_le_bytes());
        self.buf.extend_from_slice(&id_len.to_le_bytes());
        self.buf.extend_from_slice(id);
        facts.write(&mut self.buf);
        Ok(())
    }

    /// Completes the frame; returns its bytes.
    pub fn end(&mut self) -> Result<&[u8], Bad> {
        let len = u32::try_from(self.buf.len() - 4).map_err(|_| Bad("frame too long"))?;
        self.buf[..4].copy_from_slice(&len.to_le_bytes());
        Ok(&self.buf)
    }
}

/// Splits a sequence of frames.
pub fn frames(bytes: &[u8]) -> Result<Vec<FrameRef<'_>>, Bad> {
    // A frame takes at least 4 + 8 + 8 + 2 + 14 + 13 bytes; most take about 80.
    let mut out = Vec::with_capacity(bytes.len() / 64);
    let mut c = Cursor::new(bytes);
    while !c.is_empty() {
        let len = c.u32()? as usize;
        out.push(frame(c.take(len)?)?);
    }
    Ok(out)
}

fn frame(bytes: &[u8]) -> Result<FrameRef<'_>, Bad> {
    let mut c = Cursor::new(bytes);
    let hash = c.u64()?;
    let line = c.u64()?;
    let id_len = usize::from(c.u16()?);
    let id = c.take(id_len)?;
    let facts = Facts::read(&mut c)?;
    let person = bytes.get(c.pos()..).ok_or(Bad("truncated"))?;
    Ok(FrameRef {
        hash,
        line,
        id,
        facts,
        person,
    })
}

/// Sorts frames so that each activity's rows are together, in file order, and calls `each`
/// with every activity's rows.
pub fn for_each_activity<'a, E>(
    frames: &mut [FrameRef<'a>],
    mut each: impl FnMut(&[FrameRef<'a>]) -> Result<(), E>,
) -> Result<(), E> {
    // Integer keys first (cheap to compare); ids only where two ids share a hash.
    frames.sort_unstable_by_key(|f| (f.hash, f.line));
    let mut start = 0;
    while start < frames.len() {
        let mut end = start + 1;
        while end < frames.len() && frames[end].hash == frames[start].hash {
            end += 1;
        }
        let run = &mut frames[start..end];
        if run[1..].iter().any(|f| f.id != run[0].id) {
            // A hash collision: the stable sort keeps each id's rows in line order.
            run.sort_by(|a, b| a.id.cmp(b.id));
        }
        let mut first = start;
        while first < end {
            let mut last = first + 1;
            while last < end && frames[last].id == frames[first].id {
                last += 1;
            }
            each(&frames[first..last])?;
            first = last;
        }
        start = end;
    }
    Ok(())
}

/// Appends the record of an activity made of `rows` (one activity's rows, in file order, which
/// agree on the facts).
pub fn write_record(rows: &[FrameRef<'_>], batch: u64, out: &mut Vec<u8>) -> Result<(), Bad> {
    let first = rows.first().ok_or(Bad("an activity without rows"))?;
    let id_len = u16::try_from(first.id.len()).map_err(|_| Bad("id too long"))?;
    out.extend_from_slice(&first.hash.to_le_bytes());
    out.extend_from_slice(&id_len.to_le_bytes());
    out.extend_from_slice(first.id);
    let persons: usize = rows.iter().map(|r| r.person.len()).sum();
    let content_len = u32::try_from(FACTS_LEN + 4 + persons).map_err(|_| Bad("too long"))?;
    out.extend_from_slice(&content_len.to_le_bytes());
    first.facts.write(out);
    let n = u32::try_from(rows.len()).map_err(|_| Bad("too many rows"))?;
    out.extend_from_slice(&n.to_le_bytes());
    for r in rows {
        out.extend_from_slice(r.person);
    }
    out.extend_from_slice(&batch.to_le_bytes());
    for r in rows {
        out.extend_from_slice(&r.line.to_le_bytes());
    }
    Ok(())
}

/// One stored activity, read in place.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    /// [`stable_hash`] of the id.
    pub hash: u64,
    /// The activity id.
    pub id: &'a [u8],
    /// Facts and persons: equal contents mean the same facts.
    pub content: &'a [u8],
    /// The whole record.
    pub bytes: &'a [u8],
    /// How many persons (rows).
    pub persons: u32,
    /// Where the record ends in the bytes given to [`records`].
    pub end: usize,
}

impl RecordRef<'_> {
    /// The order of records in a segment.
    pub fn key(&self) -> (u64, &[u8]) {
        (self.hash, self.id)
    }

    /// The [`period_code`] of the activity's day.
    pub fn period_code(&self) -> Result<u16, Bad> {
        Facts::read(&mut Cursor::new(self.content))?.period_code()
    }
}

/// The records of one partition of an import, built from its activities taken in (id hash, id)
/// order and kept sorted by (period, id hash, id): one buffer per period.
#[derive(Debug, Default)]
pub struct PeriodRecords {
    /// (period code, records), by period; emptied buffers are kept for reuse.
    periods: Vec<(u16, Vec<u8>)>,
    rows: u64,
}

impl PeriodRecords {
    /// Empties the buffers (keeping their memory).
    pub fn clear(&mut self) {
        for (_, bytes) in &mut self.periods {
            bytes.clear();
        }
        self.rows = 0;
    }

    /// Appends the record of an activity made of `rows` (see [`write_record`]); activities
    /// must come in (id hash, id) order.
    pub fn push(&mut self, rows: &[FrameRef<'_>], batch: u64) -> Result<(), Bad> {
        let first = rows.first().ok_or(Bad("an activity without rows"))?;
        let period = first.facts.period_code()?;
        let i = match self.periods.binary_search_by_key(&period, |(p, _)| *p) {
            Ok(i) => i,
            Err(i) => {
                self.periods.insert(i, (period, Vec::new()));
                i
            }
        };
        write_record(rows, batch, &mut self.periods[i].1)?;
        self.rows += rows.len() as u64;
        Ok(())
    }

    /// The records, in order, in pieces.
    pub fn pieces(&self) -> Vec<&[u8]> {
        self.periods
            .iter()
            .map(|(_, bytes)| bytes.as_slice())
            .filter(|b| !b.is_empty())
            .collect()
    }

    /// Rows the records hold.
    pub fn rows(&self) -> u64 {
        self.rows
    }
}

/// Splits a sequence of records.
pub fn records(bytes: &[u8]) -> Result<Vec<RecordRef<'_>>, Bad> {
    // A record takes at least 8 + 2 + 4 + 18 + 13 + 16 bytes; most take about 130.
    let mut out = Vec::with_capacity(bytes.len() / 96);
    let mut c = Cursor::new(bytes);
    while !c.is_empty() {
        out.push(record(&mut c, bytes)?);
    }
    Ok(out)
}

fn record<'a>(c: &mut Cursor<'a>, bytes: &'a [u8]) -> Result<RecordRef<'a>, Bad> {
    let start = c.pos();
    let hash = c.u64()?;
    let id_len = usize::from(c.u16()?);
    let id = c.take(id_len)?;
    let content_len = c.u32()? as usize;
    let content = c.take(content_len)?;
    let persons = content
        .get(FACTS_LEN..FACTS_LEN + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_le_bytes)
        .ok_or(Bad("truncated content"))?;
    c.take(8 + 8 * persons as usize)?;
    Ok(RecordRef {
        hash,
        id,
        content,
        bytes: bytes.get(start..c.pos()).ok_or(Bad("truncated"))?,
        persons,
        end: c.pos(),
    })
}

/// Decodes a record into an [`Activity`].
pub fn activity(record: &RecordRef<'_>) -> Result<Activity, Bad> {
    let id = std::str::from_utf8(record.id).map_err(|_| Bad("id is not UTF-8"))?;
    let mut c = Cursor::new(record.content);
    let facts = Facts::read(&mut c)?;
    let n = c.u32()? as usize;
    let mut participants = Vec::with_capacity(n);
    for _ in 0..n {
        participants.push(person(&mut c)?);
    }
    let tail_start = n
        .checked_mul(8)
        .and_then(|t| t.checked_add(8))
        .and_then(|t| record.bytes.len().checked_sub(t))
        .ok_or(Bad("truncated"))?;
    let mut tail = Cursor::new(record.bytes.get(tail_start..).ok_or(Bad("truncated"))?);
    let batch = tail.u64()?;
    for p in &mut participants {
        p.line = tail.u64()?;
    }
    Ok(Activity {
        id: id.to_owned(),
        date: facts.date()?,
        kind: facts.kind()?,
        duration_min: u32::from(facts.duree),
        place_type: from_code::<PlaceType>(facts.place_type)?,
        place_commune: commune_text(&facts.place_commune).map(str::to_owned),
        level: from_code::<NiveauAtelier>(facts.level)?,
        batch,
        participants,
    })
}

/// Feeds every record of `bytes` (a sequence of records) to `tally`, decoding in place: the
/// same checks as [`activity`], without building an [`Activity`].
pub fn tally_records<'a>(bytes: &'a [u8], tally: &mut Tally<'a>) -> Result<(), Bad> {
    let mut c = Cursor::new(bytes);
    while !c.is_empty() {
        c.take(8)?;
        let id_len = usize::from(c.u16()?);
        let id = std::str::from_utf8(c.take(id_len)?).map_err(|_| Bad("id is not UTF-8"))?;
        let content_len = c.u32()? as usize;
        let mut content = Cursor::new(c.take(content_len)?);
        let facts = Facts::read(&mut content)?;
        let persons = content.u32()? as usize;
        let batch = c.u64()?;
        let lines = c.take(persons.checked_mul(8).ok_or(Bad("length overflow"))?)?;
        let counted = tally.activity(ActivityFacts {
            id,
            date: facts.date()?,
            kind: facts.kind()?,
            duration_min: u32::from(facts.duree),
            place_type: from_code::<PlaceType>(facts.place_type)?,
            level: from_code::<NiveauAtelier>(facts.level)?,
            batch,
        });
        if !counted {
            continue;
        }
        for line in lines.chunks_exact(8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(line);
            let head: [u8; 11] = content.array()?;
            let themes = content.u8()?;
            let themes = content.take(usize::from(themes))?;
            let materiel = content.u8()?;
            let materiel = content.take(usize::from(materiel))?;
            let len = usize::from(content.u16()?);
            let beneficiary = match len {
                0 => None,
                n => Some(
                    std::str::from_utf8(content.take(n)?)
                        .map_err(|_| Bad("beneficiary is not UTF-8"))?,
                ),
            };
            tally.row(RowFacts {
                line: u64::from_le_bytes(word),
                beneficiary,
                first_time: flag(head[0])?,
                oriented: flag(head[1])?,
                autonomie: from_code::<Autonomie>(head[2])?,
                genre: from_code::<Genre>(head[3])?,
                tranche_age: from_code::<TrancheAge>(head[4])?,
                statut_social: from_code::<StatutSocial>(head[5])?,
            });
            for &code in themes {
                tally.theme(from_code::<Thematique>(code)?.ok_or(Bad("empty code in a list"))?);
            }
            for &code in materiel {
                tally.materiel(from_code::<Materiel>(code)?.ok_or(Bad("empty code in a list"))?);
            }
        }
        if !content.is_empty() {
            return Err(Bad("trailing bytes in a record's content"));
        }
    }
    Ok(())
}

fn flag(code: u8) -> Result<Option<bool>, Bad> {
    match code {
        0 => Ok(None),
        1 => Ok(Some(false)),
        2 => Ok(Some(true)),
        _ => Err(Bad("flag out of range")),
    }
}

/// The code of an optional yes/no.
pub fn flag_code(value: Option<bool>) -> u8 {
    match value {
        None => 0,
        Some(false) => 1,
        Some(true) => 2,
    }
}

fn list<V: Vocabulary>(c: &mut Cursor<'_>) -> Result<Vec<V>, Bad> {
    let n = usize::from(c.u8()?);
    c.take(n)?
        .iter()
        .map(|&code| from_code::<V>(code)?.ok_or(Bad("empty code in a list")))
        .collect()
}

/// Decodes a person's part (its line is set to 0).
pub fn person(c: &mut Cursor<'_>) -> Result<Participant, Bad> {
    let first_time = flag(c.u8()?)?;
    let oriented = flag(c.u8()?)?;
    let autonomie = from_code::<Autonomie>(c.u8()?)?;
    let genre = from_code::<Genre>(c.u8()?)?;
    let tranche_age = from_code::<TrancheAge>(c.u8()?)?;
    let statut_social = from_code::<StatutSocial>(c.u8()?)?;
    let residence: [u8; 5] = c.array()?;
    let themes = list::<Thematique>(c)?;
    let materiel = list::<Materiel>(c)?;
    let len = usize::from(c.u16()?);
    let beneficiary = match len {
        0 => None,
        n => Some(
            std::str::from_utf8(c.take(n)?)
                .map_err(|_| Bad("beneficiary is not UTF-8"))?
                .to_owned(),
        ),
    };
    Ok(Participant {
        line: 0,
        beneficiary,
        first_time,
        themes,
        materiel,
        autonomie,
        oriented,
        genre,
        tranche_age,
        statut_social,
        residence: commune_text(&residence).map(str::to_owned),
    })
}

/// Encodes a person's part (the inverse of [`person`]).
pub fn write_person(p: &Participant, out: &mut Vec<u8>) -> Result<(), Bad> {
    out.push(flag_code(p.first_time));
    out.push(flag_code(p.oriented));
    out.push(opt_code(p.autonomie));
    out.push(opt_code(p.genre));
    out.push(opt_code(p.tranche_age));
    out.push(opt_code(p.statut_social));
    out.extend_from_slice(&commune_bytes(p.residence.as_deref()));
    out.push(u8::try_from(p.themes.len()).map_err(|_| Bad("too many themes"))?);
    out.extend(p.themes.iter().map(|t| code(*t)));
    out.push(u8::try_from(p.materiel.len()).map_err(|_| Bad("too much equipment"))?);
    out.extend(p.materiel.iter().map(|m| code(*m)));
    let ben = p.beneficiary.as_deref().unwrap_or("");
    let len = u16::try_from(ben.len()).map_err(|_| Bad("beneficiary id too long"))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(ben.as_bytes());
    Ok(())
}

/// The facts of an activity.
pub fn facts_of(a: &Activity) -> Facts {
    Facts {
        day: a.date.to_julian_day(),
        kind: code(a.kind),
        duree: u16::try_from(a.duration_min).unwrap_or(u16::MAX),
        place_type: opt_code(a.place_type),
        place_commune: commune_bytes(a.place_commune.as_deref()),
        level: opt_code(a.level),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use maillage_protocol::Indicator;
    use proptest::prelude::*;

    fn vocab<V: Vocabulary + std::fmt::Debug>() -> impl Strategy<Value = V> {
        proptest::sample::select(V::ALL)
    }

    prop_compose! {
        fn participant()(
            beneficiary in proptest::option::of("[a-z0-9-]{1,12}"),
            first_time in proptest::option::of(any::<bool>()),
            themes in proptest::collection::vec(vocab::<Thematique>(), 0..4),
            materiel in proptest::collection::vec(vocab::<Materiel>(), 0..3),
            autonomie in proptest::option::of(vocab::<Autonomie>()),
            oriented in proptest::option::of(any::<bool>()),
            genre in proptest::option::of(vocab::<Genre>()),
            tranche_age in proptest::option::of(vocab::<TrancheAge>()),
            statut_social in proptest::option::of(vocab::<StatutSocial>()),
            residence in proptest::option::of(proptest::sample::select(vec!["69385", "2A004", "97411"])),
            line in 2u64..1_000_000,
        ) -> Participant {
            Participant {
                line, beneficiary, first_time, themes, materiel, autonomie, oriented, genre,
                tranche_age, statut_social, residence: residence.map(str::to_owned),
            }
        }
    }

    proptest! {
        #[test]
        fn records_round_trip(
            id in "[a-zA-Z0-9é-]{1,20}",
            day in 0i64..3650,
            kind in vocab::<ActivityType>(),
            duration_min in 1u32..=1440,
            place_type in proptest::option::of(vocab::<PlaceType>()),
            place_commune in proptest::option::of(proptest::sample::select(vec!["69385", "2B033"])),
            level in proptest::option::of(vocab::<NiveauAtelier>()),
            batch in any::<u64>(),
            participants in proptest::collection::vec(participant(), 1..5),
        ) {
            let date = time::macros::date!(2020 - 01 - 01) + time::Duration::days(day);
            let activity = Activity {
                id, date, kind, duration_min, place_type,
                place_commune: place_commune.map(str::to_owned), level, batch, participants,
            };
            let hash = stable_hash(activity.id.as_bytes());
            let facts = facts_of(&activity);
            let mut frames_bytes = Vec::new();
            let mut w = FrameWriter::default();
            for p in &activity.participants {
                w.start(hash, p.line, activity.id.as_bytes(), &facts).map_err(|e| TestCaseError::fail(e.0))?;
                write_person(p, &mut w.buf).map_err(|e| TestCaseError::fail(e.0))?;
                frames_bytes.extend_from_slice(w.end().map_err(|e| TestCaseError::fail(e.0))?);
            }
            let rows = frames(&frames_bytes).map_err(|e| TestCaseError::fail(e.0))?;
            let mut out = Vec::new();
            write_record(&rows, batch, &mut out).map_err(|e| TestCaseError::fail(e.0))?;
            let recs = records(&out).map_err(|e| TestCaseError::fail(e.0))?;
            prop_assert_eq!(recs.len(), 1);
            prop_assert_eq!(recs[0].bytes.len(), out.len());
            let back = activity_of(&recs[0])?;
            prop_assert_eq!(back, activity);
        }

        /// Indicators from the stored records equal `exact::compute` over the decoded
        /// activities, whatever the records hold (people recurring across activities, rows
        /// tying for a person's latest, activities of other months in the same bytes).
        #[test]
        fn indicators_from_records_equal_exact_compute(
            activities in proptest::collection::vec(month_activity(), 0..60),
        ) {
            let mut activities = activities;
            activities.sort_by(|a, b| a.id.cmp(&b.id));
            activities.dedup_by(|a, b| a.id == b.id);
            // Stored order: by (hash, id), not id.
            let mut stored = activities.clone();
            stored.sort_by_key(|a| (stable_hash(a.id.as_bytes()), a.id.clone()));
            let mut bytes = Vec::new();
            for a in &stored {
                encode_record(a, &mut bytes)?;
            }
            let period = Period::new(2026, 10).expect("period");
            let all: Vec<Indicator> =
                Indicator::COMMON_CORE.iter().chain(Indicator::MODULES).copied().collect();
            let mut tally = Tally::new(period);
            tally_records(&bytes, &mut tally).map_err(|e| TestCaseError::fail(e.0))?;
            prop_assert_eq!(
                tally.finish(&all),
                maillage_privacy::exact::compute(period, &activities, &all)
            );
        }

        #[test]
        fn damaged_records_are_errors_not_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(recs) = records(&bytes) {
                for r in recs {
                    let _ = activity(&r);
                }
            }
            let _ = frames(&bytes);
        }
    }

    prop_compose! {
        // Few people, days, batches and lines, so that people recur and latest rows tie.
        fn recurring_participant()(
            beneficiary in proptest::option::of("[a-c]{1,2}"),
            line in 2u64..5,
            p in participant(),
        ) -> Participant {
            Participant { beneficiary, line, ..p }
        }
    }

    prop_compose! {
        fn month_activity()(
            id in "[a-z]{1,3}",
            day in 0i64..45,
            kind in vocab::<ActivityType>(),
            duration_min in 1u32..=300,
            place_type in proptest::option::of(vocab::<PlaceType>()),
            level in proptest::option::of(vocab::<NiveauAtelier>()),
            batch in 1u64..3,
            participants in proptest::collection::vec(recurring_participant(), 1..4),
        ) -> Activity {
            Activity {
                id,
                date: time::macros::date!(2026 - 09 - 20) + time::Duration::days(day),
                kind, duration_min, place_type, place_commune: None, level, batch, participants,
            }
        }
    }

    /// Appends an activity's record, through frames as an import writes it.
    fn encode_record(activity: &Activity, out: &mut Vec<u8>) -> Result<(), TestCaseError> {
        let fail = |e: Bad| TestCaseError::fail(e.0);
        let hash = stable_hash(activity.id.as_bytes());
        let facts = facts_of(activity);
        let mut frames_bytes = Vec::new();
        let mut w = FrameWriter::default();
        for p in &activity.participants {
            w.start(hash, p.line, activity.id.as_bytes(), &facts)
                .map_err(fail)?;
            write_person(p, &mut w.buf).map_err(fail)?;
            frames_bytes.extend_from_slice(w.end().map_err(fail)?);
        }
        let rows = frames(&frames_bytes).map_err(fail)?;
        write_record(&rows, activity.batch, out).map_err(fail)
    }

    fn activity_of(r: &RecordRef<'_>) -> Result<Activity, TestCaseError> {
        activity(r).map_err(|e| TestCaseError::fail(e.0))
    }

    #[test]
    fn activities_sharing_a_hash_are_grouped_apart_in_line_order() -> Result<(), Bad> {
        let facts = Facts {
            day: 2_461_000,
            kind: 2,
            duree: 30,
            place_type: 0,
            place_commune: [0; 5],
            level: 0,
        };
        let mut bytes = Vec::new();
        let mut w = FrameWriter::default();
        // (hash, line, id): "b" and "a" collide on hash 7.
        for (hash, line, id) in [
            (7, 5, "b"),
            (7, 2, "a"),
            (3, 4, "c"),
            (7, 3, "b"),
            (7, 9, "a"),
        ] {
            w.start(hash, line, id.as_bytes(), &facts)?;
            bytes.extend_from_slice(w.end()?);
        }
        let mut rows = frames(&bytes)?;
        let mut groups = Vec::new();
        for_each_activity(&mut rows, |g| {
            groups.push(
                g.iter()
                    .map(|f| (f.hash, f.id.to_vec(), f.line))
                    .collect::<Vec<_>>(),
            );
            Ok::<(), Bad>(())
        })?;
        let expected: Vec<Vec<(u64, Vec<u8>, u64)>> = vec![
            vec![(3, b"c".to_vec(), 4)],
            vec![(7, b"a".to_vec(), 2), (7, b"a".to_vec(), 9)],
            vec![(7, b"b".to_vec(), 3), (7, b"b".to_vec(), 5)],
        ];
        assert_eq!(groups, expected);
        Ok(())
    }

    #[test]
    fn period_codes_round_trip() {
        for (y, m) in [(2000, 1), (2026, 10), (2999, 12)] {
            let p = Period::new(y, m).expect("period");
            assert_eq!(period_of_code(period_code(p)), Some(p));
        }
    }
}
