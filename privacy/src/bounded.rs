//! Contribution bounding: how much one person may weigh in a period's figures.
//!
//! The unit of privacy is one beneficiary over one period (a calendar month). Two datasets are
//! neighbours when one holds one more person than the other, with any rows at all. This module
//! owns the [`Bounds`] that cap what one person contributes, the bounding step itself
//! ([`bound`], from activities to one [`Contribution`] per person), the bounded exact
//! indicators computed from contributions ([`cells`]) and each indicator's [`Sensitivity`]
//! under adding or removing one person ([`sensitivity`]). It adds no noise: that is
//! [`crate::release`](mod@crate::release)'s job.
//!
//! # Bounding rules
//!
//! * A person is a distinct non-empty `beneficiaire_id`; every anonymous row is a person of its
//!   own (as `beneficiaires` counts them). Someone who comes anonymously n times is therefore n
//!   people to the mechanism, protected as a group of n (n times the loss).
//! * **K** ([`Bounds::max_rows_per_person`]): of a person's rows in the period, only the first K
//!   in (date, import batch, file line) order count. The choice depends on that person's rows
//!   only, so adding someone never changes which rows of anybody else count.
//! * **D** ([`Bounds::max_duration_min`]): an activity's duration is clamped to D minutes in
//!   `duree_minutes` (the `durees` bands use the real duration: each activity is in one band
//!   whatever its length).
//! * **T** ([`Bounds::max_themes_per_row`]): a row counts at most its first T digital-mediation
//!   themes in `thematiques` and its first T administrative themes in `demarches`, in file order.
//! * **M** ([`Bounds::max_materiel_per_row`]): a row counts at most its first M equipment
//!   values in `materiel`, in file order.
//! * Person-level answers (age band, social status, gender) come from the person's latest row
//!   of the period, as in [`crate::exact`]; a person counts in `nouveaux_beneficiaires` at most
//!   once, when any of their rows says it is their first accompaniment.
//! * Activity-level indicators (`activites`, `duree_minutes`, `durees`, `lieux`,
//!   `niveaux_ateliers`) count the distinct activities that have at least one counted row.
//!
//! When every person is within the bounds, the bounded values equal [`crate::exact::compute`]'s,
//! except that `nouveaux_beneficiaires` counts a named person once even if several of their
//! rows say `premier_accompagnement = oui`.
//!
//! # Two forms of the same contributions
//!
//! [`bound`] gives readable [`Contribution`]s (themes in file order, each row with its own
//! copy of its activity's key) and [`cells`] counts them plainly. Releases and
//! [`bounded_values`] use a packed form built by the same grouping: themes and equipment as bit
//! sets, and each row's activity as a position in one table of the period's activities (each
//! identifier with its facts once). Bounding a month of 100,000 rows then allocates per person
//! rather than per row and value, checking the bounds is a few integer comparisons per row,
//! and counting distinct activities is marking positions. Tests hold the packed form and its
//! cells to the readable ones, and the readable bounding to its first, plainest version.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::RangeInclusive;
use std::sync::Arc;

use maillage_protocol::vocab::{
    ActivityType, Autonomie, DurationBand, Genre, Materiel, NiveauAtelier, PlaceType, StatutSocial,
    Thematique, TrancheAge, Vocabulary,
};
use maillage_protocol::{Indicator, Period};
use opendp::traits::InfSqrt;
use serde::{Deserialize, Serialize};

use crate::activity::{Activity, Participant};
use crate::error::PrivacyError;

/// How much one person may contribute to one period's figures.
///
/// The defaults cover the usual month of a digital-inclusion structure: a beneficiary rarely
/// comes more than ten times a month, an accompaniment rarely lasts more than four hours, and a
/// row rarely lists more than three themes or two pieces of equipment. Rows beyond the bounds
/// still exist in the exact local figures; they only stop counting in released ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Bounds {
    /// K: at most this many rows of one person count per period (default 10, accepted 1–100).
    pub max_rows_per_person: u32,
    /// D: durations are clamped to this many minutes (default 240, accepted 1–1440).
    pub max_duration_min: u32,
    /// T: at most this many themes of a row count, per theme indicator (default 3, accepted
    /// 1–19).
    pub max_themes_per_row: u32,
    /// M: at most this many equipment values of a row count (default 2, accepted 1–5).
    pub max_materiel_per_row: u32,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            max_rows_per_person: 10,
            max_duration_min: 240,
            max_themes_per_row: 3,
            max_materiel_per_row: 2,
        }
    }
}

impl Bounds {
    /// Accepted values of [`Bounds::max_rows_per_person`].
    pub const ROWS_RANGE: RangeInclusive<u32> = 1..=100;
    /// Accepted values of [`Bounds::max_duration_min`] (the import accepts 1–1440 minutes).
    pub const DURATION_RANGE: RangeInclusive<u32> = 1..=1440;
    /// Accepted values of [`Bounds::max_themes_per_row`] (19 digital-mediation themes).
    pub const THEMES_RANGE: RangeInclusive<u32> = 1..=19;
    /// Accepted values of [`Bounds::max_materiel_per_row`] (5 equipment values).
    pub const MATERIEL_RANGE: RangeInclusive<u32> = 1..=5;

    /// Checks every bound against its accepted range.
    pub fn validate(&self) -> Result<(), PrivacyError> {
        let check = |field, value: u32, range: RangeInclusive<u32>| {
            if range.contains(&value) {
                Ok(())
            } else {
                Err(PrivacyError::BoundOutOfRange {
                    field,
                    value,
                    min: *range.start(),
                    max: *range.end(),
                })
            }
        };
        check(
            "max_rows_per_person",
            self.max_rows_per_person,
            Self::ROWS_RANGE,
        )?;
        check(
            "max_duration_min",
            self.max_duration_min,
            Self::DURATION_RANGE,
        )?;
        check(
            "max_themes_per_row",
            self.max_themes_per_row,
            Self::THEMES_RANGE,
        )?;
        check(
            "max_materiel_per_row",
            self.max_materiel_per_row,
            Self::MATERIEL_RANGE,
        )
    }

    fn rows(&self) -> usize {
        self.max_rows_per_person as usize
    }

    fn themes(&self) -> usize {
        self.max_themes_per_row as usize
    }

    fn materiel(&self) -> usize {
        self.max_materiel_per_row as usize
    }
}

/// One person's contribution to a period, after bounding.
///
/// This is the readable form, for tests, simulations and local checks. Releases use a packed
/// form of the same facts (see the [module](self) documentation); tests check that both give
/// the same cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contribution {
    /// Whether any of the person's rows says it is their first accompaniment.
    pub new: bool,
    /// Gender on the latest row (`non_communique` when empty).
    pub genre: Genre,
    /// Age band on the latest row (`non_communique` when empty).
    pub tranche_age: TrancheAge,
    /// Social status on the latest row (`non_communique` when empty).
    pub statut_social: StatutSocial,
    /// The rows that count, at most K, in (date, batch, line) order.
    pub rows: Vec<BoundedRow>,
}

/// One counted row of a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundedRow {
    /// The activity the row belongs to.
    pub activity: ActivityKey,
    /// The first T distinct digital-mediation themes of the row.
    pub themes: Vec<Thematique>,
    /// The first T distinct administrative themes of the row.
    pub demarches: Vec<Thematique>,
    /// The first M distinct equipment values of the row.
    pub materiel: Vec<Materiel>,
    /// How autonomous the person was.
    pub autonomie: Option<Autonomie>,
    /// Whether the person was oriented towards another structure.
    pub oriented: bool,
}

/// An activity as activity-level indicators see it.
///
/// Distinct keys are counted, so an activity counts once however many people took part. The
/// key holds every fact that is counted, not only the identifier: a row can then never change
/// what another person's activity counts as, even in data that breaks the import rules.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActivityKey {
    /// The structure's identifier of the activity.
    pub id: String,
    /// Individual or collective.
    pub kind: ActivityType,
    /// The duration clamped to D minutes.
    pub duration_min: u32,
    /// The band of the real (unclamped) duration.
    pub band: DurationBand,
    /// Where it took place.
    pub place_type: Option<PlaceType>,
    /// The workshop level.
    pub level: Option<NiveauAtelier>,
}

impl Contribution {
    /// Whether this contribution respects `bounds` (what [`bound`] guarantees).
    pub fn respects(&self, bounds: &Bounds) -> bool {
        let (mediation, administrative) = (mediation_bits(), administrative_bits());
        let within = |values: &[Thematique], allowed: u32| {
            values.len() <= bounds.themes()
                && values.iter().all(|t| bit(*t) & allowed != 0)
                && distinct(values)
        };
        self.rows.len() <= bounds.rows()
            && self.rows.iter().all(|r| {
                r.activity.duration_min <= bounds.max_duration_min
                    && within(&r.themes, mediation)
                    && within(&r.demarches, administrative)
                    && r.materiel.len() <= bounds.materiel()
                    && distinct(&r.materiel)
            })
    }
}

/// A vocabulary value's position in its `ALL` list, read from the enum's declaration order
/// (the same order; a test checks it) instead of searching the list.
trait Slot: Copy {
    fn slot(self) -> usize;
}

macro_rules! slots {
    ($($vocabulary:ty),+) => {
        $(impl Slot for $vocabulary {
            fn slot(self) -> usize {
                self as usize
            }
        })+
    };
}

slots!(
    ActivityType,
    Autonomie,
    DurationBand,
    Genre,
    Materiel,
    NiveauAtelier,
    PlaceType,
    StatutSocial,
    Thematique,
    TrancheAge
);

/// A value as a one-bit set: bit i stands for the value at position i of its vocabulary (every
/// vocabulary has at most 32 values; a test checks it).
fn bit<V: Slot>(value: V) -> u32 {
    1 << value.slot()
}

/// The set of the first `n` values of a vocabulary.
fn low_bits(n: usize) -> u32 {
    u32::try_from(n)
        .ok()
        .and_then(|n| 1u32.checked_shl(n))
        .map_or(u32::MAX, |b| b - 1)
}

/// The digital-mediation themes: [`Thematique::mediation`] is the start of `Thematique::ALL`.
fn mediation_bits() -> u32 {
    low_bits(Thematique::mediation().len())
}

/// The administrative themes: the rest of `Thematique::ALL`.
fn administrative_bits() -> u32 {
    low_bits(Thematique::ALL.len()) & !mediation_bits()
}

/// Whether no value of `values` appears twice.
fn distinct<V: Slot>(values: &[V]) -> bool {
    let mut seen = 0u32;
    values.iter().all(|v| {
        let b = bit(*v);
        let new = seen & b == 0;
        seen |= b;
        new
    })
}

/// The first `max` distinct values of `values` whose bit is in `keep`, in order.
fn first_distinct<V: Slot>(values: &[V], keep: u32, max: usize) -> Vec<V> {
    let mut seen = 0u32;
    let mut out = Vec::new();
    for &v in values {
        if out.len() >= max {
            break;
        }
        let b = bit(v) & keep;
        if b != 0 && seen & b == 0 {
            seen |= b;
            out.push(v);
        }
    }
    out
}

/// The set of the first `max` distinct values of `values` whose bit is in `keep`.
fn first_distinct_bits<V: Slot>(values: &[V], keep: u32, max: u32) -> u32 {
    let mut set = 0u32;
    for &v in values {
        if set.count_ones() >= max {
            break;
        }
        set |= bit(v) & keep;
    }
    set
}

/// One person's bounded contribution in the form releases use: the facts of [`Contribution`],
/// with each row's themes and equipment as bit sets (bit i for position i in `Thematique::ALL`
/// or `Materiel::ALL`) and each row's activity as a position in an [`ActivityTable`] shared by
/// everyone bounded together.
///
/// Two packed contributions are equal when they say the same: the same answers and the same
/// rows, whose activities have the same identifiers and facts, in whichever tables and at
/// whichever positions. Cells depend on nothing else, so a person's contribution is the same
/// whoever else was bounded with them.
#[derive(Debug, Clone)]
pub(crate) struct Packed {
    pub(crate) new: bool,
    pub(crate) genre: Genre,
    pub(crate) tranche_age: TrancheAge,
    pub(crate) statut_social: StatutSocial,
    /// Where the rows' activities are.
    pub(crate) activities: Arc<ActivityTable>,
    pub(crate) rows: Vec<PackedRow>,
}

/// One counted row of a [`Packed`] contribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PackedRow {
    /// The activity's position in its person's [`ActivityTable`].
    pub(crate) activity: usize,
    /// The counted digital-mediation themes (in [`mediation_bits`]) and administrative themes
    /// (in [`administrative_bits`]).
    pub(crate) themes: u32,
    /// The counted equipment values.
    pub(crate) materiel: u8,
    pub(crate) autonomie: Option<Autonomie>,
    pub(crate) oriented: bool,
}

/// What activity-level indicators count of an activity besides its identifier: an
/// [`ActivityKey`] is an identifier and its facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Facts {
    pub(crate) kind: ActivityType,
    /// Clamped to D minutes.
    pub(crate) duration_min: u32,
    /// Of the real duration.
    pub(crate) band: DurationBand,
    pub(crate) place_type: Option<PlaceType>,
    pub(crate) level: Option<NiveauAtelier>,
}

impl Facts {
    fn of(a: &Activity, bounds: &Bounds) -> Self {
        Self {
            kind: a.kind,
            duration_min: a.duration_min.min(bounds.max_duration_min),
            band: DurationBand::of_minutes(a.duration_min),
            place_type: a.place_type,
            level: a.level,
        }
    }
}

/// Activity keys, each at most once: two positions never hold the same identifier with the
/// same facts, so distinct positions of one table are distinct activities.
///
/// Identifiers sit one after the other in one buffer: a month's table is a few allocations,
/// not two per activity.
#[derive(Default)]
pub(crate) struct ActivityTable {
    ids: String,
    /// Where each identifier ends in `ids` (it starts where the previous one ends).
    ends: Vec<usize>,
    facts: Vec<Facts>,
}

impl fmt::Debug for ActivityTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActivityTable({} activities)", self.facts.len())
    }
}

impl ActivityTable {
    fn len(&self) -> usize {
        self.facts.len()
    }

    /// The identifier and facts at `position`.
    pub(crate) fn key(&self, position: usize) -> Option<(&str, &Facts)> {
        Some((
            slice_of(&self.ids, &self.ends, position)?,
            self.facts.get(position)?,
        ))
    }
}

/// Builds an [`ActivityTable`], each key once.
#[derive(Default)]
struct TableBuilder<'a> {
    table: ActivityTable,
    positions: HashMap<(&'a str, Facts), usize, FxBuild>,
}

impl<'a> TableBuilder<'a> {
    /// The position of (`id`, `facts`), added if new.
    fn position(&mut self, id: &'a str, facts: Facts) -> usize {
        let table = &mut self.table;
        *self.positions.entry((id, facts)).or_insert_with(|| {
            table.ids.push_str(id);
            table.ends.push(table.ids.len());
            table.facts.push(facts);
            table.facts.len() - 1
        })
    }
}

impl Packed {
    /// The identifier and facts of `row`'s activity.
    fn key(&self, row: &PackedRow) -> Option<(&str, &Facts)> {
        self.activities.key(row.activity)
    }

    /// Whether this contribution respects `bounds`: a few integer comparisons per row, since
    /// sets hold each value once and themes are split by their bits.
    pub(crate) fn respects(&self, bounds: &Bounds) -> bool {
        let (mediation, administrative) = (mediation_bits(), administrative_bits());
        let materiel = low_bits(Materiel::ALL.len());
        let t = bounds.max_themes_per_row;
        self.rows.len() <= bounds.rows()
            && self.rows.iter().all(|r| {
                self.activities
                    .facts
                    .get(r.activity)
                    .is_some_and(|f| f.duration_min <= bounds.max_duration_min)
                    && r.themes & !(mediation | administrative) == 0
                    && (r.themes & mediation).count_ones() <= t
                    && (r.themes & administrative).count_ones() <= t
                    && u32::from(r.materiel) & !materiel == 0
                    && r.materiel.count_ones() <= bounds.max_materiel_per_row
            })
    }
}

impl PartialEq for Packed {
    fn eq(&self, other: &Self) -> bool {
        (self.new, self.genre, self.tranche_age, self.statut_social)
            == (
                other.new,
                other.genre,
                other.tranche_age,
                other.statut_social,
            )
            && self.rows.len() == other.rows.len()
            && self.rows.iter().zip(&other.rows).all(|(a, b)| {
                (a.themes, a.materiel, a.autonomie, a.oriented)
                    == (b.themes, b.materiel, b.autonomie, b.oriented)
                    && self.key(a) == other.key(b)
            })
    }
}

impl Eq for Packed {}

/// The "Fx" hash of Firefox and rustc: a multiply and a rotation per word. Bounding hashes
/// every row's person and every activity; with SipHash that hashing was a large part of a
/// release. Hash flooding is no concern here: the keys are a structure's own identifiers,
/// hashed inside its own node.
#[derive(Debug, Default, Clone, Copy)]
struct FxHasher(u64);

impl FxHasher {
    const MULTIPLIER: u64 = 0x517c_c1b7_2722_0a95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::MULTIPLIER);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            self.add(u64::from_le_bytes(w));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn write_isize(&mut self, n: isize) {
        self.add(n as u64);
    }

    /// The multiply leaves its best bits at the top; the table picks buckets with the bottom
    /// ones.
    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
}

type FxBuild = BuildHasherDefault<FxHasher>;

/// Where a row stands among its person's rows: (date, import batch, file line), then the
/// activity id so that the order is total.
type Order<'a> = (time::Date, u64, u64, &'a str);

/// What a row says about its person.
#[derive(Clone, Copy)]
struct RowAnswers {
    first_time: bool,
    genre: Option<Genre>,
    tranche_age: Option<TrancheAge>,
    statut_social: Option<StatutSocial>,
}

/// One row of the period, with what grouping and ordering need and `R`, what the bounding
/// keeps of it.
struct Placed<'a, R> {
    order: Order<'a>,
    answers: RowAnswers,
    row: R,
}

/// Named people's identifiers, numbered in order of first appearance.
///
/// A row's person is found by comparing its identifier with a copy kept in one buffer, not
/// with the row where the person first appeared: a month's people fit in cache, its rows do
/// not, and that comparison was most of the cost of grouping.
#[derive(Default)]
struct Names {
    /// Every identifier, one after the other.
    text: String,
    /// Where each person's identifier ends in `text` (it starts where the previous one ends).
    ends: Vec<usize>,
    /// The latest person numbered with this hash of their identifier.
    by_hash: HashMap<u64, usize, FxBuild>,
    /// For each person, the one numbered before them with the same hash.
    same_hash: Vec<Option<usize>>,
}

impl Names {
    fn len(&self) -> usize {
        self.ends.len()
    }

    /// Person `p`'s identifier.
    fn get(&self, p: usize) -> Option<&str> {
        slice_of(&self.text, &self.ends, p)
    }

    /// The number of the person called `id`, numbering them if new.
    fn number(&mut self, id: &str) -> usize {
        let Self {
            text,
            ends,
            by_hash,
            same_hash,
        } = self;
        let mut hasher = FxHasher::default();
        hasher.write(id.as_bytes());
        let next = ends.len();
        let previous = match by_hash.entry(hasher.finish()) {
            Entry::Vacant(slot) => {
                slot.insert(next);
                None
            }
            Entry::Occupied(mut slot) => {
                let mut candidate = Some(*slot.get());
                while let Some(p) = candidate {
                    if slice_of(text, ends, p) == Some(id) {
                        return p;
                    }
                    candidate = same_hash.get(p).copied().flatten();
                }
                Some(slot.insert(next))
            }
        };
        text.push_str(id);
        ends.push(text.len());
        same_hash.push(previous);
        next
    }
}

/// The `i`-th of the strings laid one after the other in `text`, each ending at `ends[i]`.
fn slice_of<'t>(text: &'t str, ends: &[usize], i: usize) -> Option<&'t str> {
    let start = match i.checked_sub(1) {
        Some(previous) => *ends.get(previous)?,
        None => 0,
    };
    text.get(start..*ends.get(i)?)
}

/// The period's rows grouped by person, each person's rows in [`Order`].
///
/// What is kept of each row (`R`) is made while reading the activities in their order, when
/// an activity and its rows are in cache, and written straight to where its person's rows go
/// (a counting sort): rows are never looked up again through references in person order.
struct People<'a, R> {
    /// Named people's identifiers, in order of first appearance.
    names: Names,
    /// Where each named person's rows start in `named`, plus where the last one's end.
    starts: Vec<usize>,
    /// Every named row, person after person (in `names` order); all `Some`.
    named: Vec<Option<Placed<'a, R>>>,
    /// Every anonymous row: a person each.
    anonymous: Vec<Placed<'a, R>>,
}

impl<'a, R> People<'a, R> {
    /// Groups `period`'s rows; `shared` is called once per activity and `row` once per row,
    /// with what `shared` made for its activity.
    fn of<S>(
        period: Period,
        activities: &'a [Activity],
        mut shared: impl FnMut(&'a Activity) -> S,
        mut row: impl FnMut(&S, &'a Activity, &'a Participant) -> R,
    ) -> Self {
        let in_period = || activities.iter().filter(|a| a.period() == period);
        let rows = || in_period().flat_map(|a| &a.participants);
        // First reading: who each row is, and how many rows each person has.
        let mut names = Names::default();
        let mut starts = vec![0];
        let mut person_of = Vec::new();
        let mut anonymous = 0;
        for participant in rows() {
            let person = participant.beneficiary.as_deref().map(|id| {
                let p = names.number(id);
                if p + 1 == starts.len() {
                    starts.push(0);
                }
                p
            });
            match person {
                Some(p) => starts[p + 1] += 1,
                None => anonymous += 1,
            }
            person_of.push(person);
        }
        let mut total = 0;
        for s in &mut starts {
            total += *s;
            *s = total;
        }
        // Second reading, in the same order: each row goes after the rows of its person read
        // before it, so rows tied in `Order` keep their input order through the stable sorts.
        let mut next = starts.clone();
        let mut named: Vec<Option<Placed<'a, R>>> = (0..total).map(|_| None).collect();
        let mut anonymous = Vec::with_capacity(anonymous);
        let mut person_of = person_of.into_iter();
        for activity in in_period() {
            let s = shared(activity);
            for participant in &activity.participants {
                let placed = Placed {
                    order: (
                        activity.date,
                        activity.batch,
                        participant.line,
                        activity.id.as_str(),
                    ),
                    answers: RowAnswers {
                        first_time: participant.first_time == Some(true),
                        genre: participant.genre,
                        tranche_age: participant.tranche_age,
                        statut_social: participant.statut_social,
                    },
                    row: row(&s, activity, participant),
                };
                match person_of.next().flatten() {
                    Some(p) => {
                        // In bounds: `next[p]` stays below `starts[p + 1]` ≤ `total`.
                        named[next[p]] = Some(placed);
                        next[p] += 1;
                    }
                    None => anonymous.push(placed),
                }
            }
        }
        for w in starts.windows(2) {
            named[w[0]..w[1]].sort_by(|x, y| {
                let order = |p: &Option<Placed<'a, R>>| p.as_ref().map(|p| p.order);
                order(x).cmp(&order(y))
            });
        }
        Self {
            names,
            starts,
            named,
            anonymous,
        }
    }

    /// How many people there are.
    fn len(&self) -> usize {
        self.names.len() + self.anonymous.len()
    }

    /// The rows of the `p`-th named person, in order.
    fn named_rows(&self, p: usize) -> impl Iterator<Item = &Placed<'a, R>> + Clone {
        self.named[self.starts[p]..self.starts[p + 1]]
            .iter()
            .flatten()
    }
}

/// The person-level answers of a person's rows (at least one), in order.
struct Answers {
    new: bool,
    genre: Genre,
    tranche_age: TrancheAge,
    statut_social: StatutSocial,
}

impl Answers {
    fn of<'r, 'a: 'r, R: 'r>(rows: impl Iterator<Item = &'r Placed<'a, R>>) -> Option<Self> {
        let mut new = false;
        let mut latest = None;
        for r in rows {
            new |= r.answers.first_time;
            latest = Some(r.answers);
        }
        let latest = latest?;
        Some(Self {
            new,
            genre: latest.genre.unwrap_or(Genre::NonCommunique),
            tranche_age: latest.tranche_age.unwrap_or(TrancheAge::NonCommunique),
            statut_social: latest.statut_social.unwrap_or(StatutSocial::NonCommunique),
        })
    }
}

fn activity_key(a: &Activity, bounds: &Bounds) -> ActivityKey {
    ActivityKey {
        id: a.id.clone(),
        kind: a.kind,
        duration_min: a.duration_min.min(bounds.max_duration_min),
        band: DurationBand::of_minutes(a.duration_min),
        place_type: a.place_type,
        level: a.level,
    }
}

fn bounded_row(a: &Activity, p: &Participant, bounds: &Bounds) -> BoundedRow {
    BoundedRow {
        activity: activity_key(a, bounds),
        themes: first_distinct(&p.themes, mediation_bits(), bounds.themes()),
        demarches: first_distinct(&p.themes, administrative_bits(), bounds.themes()),
        materiel: first_distinct(&p.materiel, u32::MAX, bounds.materiel()),
        autonomie: p.autonomie,
        oriented: p.oriented == Some(true),
    }
}

fn packed_row(activity: usize, p: &Participant, bounds: &Bounds) -> PackedRow {
    let t = bounds.max_themes_per_row;
    let materiel = first_distinct_bits(&p.materiel, u32::MAX, bounds.max_materiel_per_row);
    PackedRow {
        activity,
        themes: first_distinct_bits(&p.themes, mediation_bits(), t)
            | first_distinct_bits(&p.themes, administrative_bits(), t),
        // Lossless: the 5 equipment values are bits 0–4.
        materiel: materiel as u8,
        autonomie: p.autonomie,
        oriented: p.oriented == Some(true),
    }
}

/// A person's contribution from all their rows of the period (at least one), in order.
fn contribution<'r, 'a: 'r>(
    rows: impl Iterator<Item = &'r Placed<'a, (&'a Activity, &'a Participant)>> + Clone,
    bounds: &Bounds,
) -> Option<Contribution> {
    let answers = Answers::of(rows.clone())?;
    Some(Contribution {
        new: answers.new,
        genre: answers.genre,
        tranche_age: answers.tranche_age,
        statut_social: answers.statut_social,
        rows: rows
            .take(bounds.rows())
            .map(|r| bounded_row(r.row.0, r.row.1, bounds))
            .collect(),
    })
}

/// Bounds the contributions of `period`'s people (activities of other periods are ignored):
/// one [`Contribution`] per named person, in identifier order, then one per anonymous row.
///
/// `bounds` is expected to be valid ([`Bounds::validate`]); the result respects it either way.
pub fn bound(period: Period, activities: &[Activity], bounds: &Bounds) -> Vec<Contribution> {
    let people = People::of(period, activities, |_| (), |(), a, p| (a, p));
    let mut by_name: Vec<usize> = (0..people.names.len()).collect();
    by_name.sort_unstable_by_key(|&p| people.names.get(p));
    let mut out = Vec::with_capacity(people.len());
    out.extend(
        by_name
            .into_iter()
            .filter_map(|p| contribution(people.named_rows(p), bounds)),
    );
    out.extend(
        people
            .anonymous
            .iter()
            .filter_map(|r| contribution(std::iter::once(r), bounds)),
    );
    out
}

/// [`bound`] in the packed form releases use: the same people with the same counted facts,
/// named people in order of first appearance (the order changes no cell).
pub(crate) fn bound_packed(
    period: Period,
    activities: &[Activity],
    bounds: &Bounds,
) -> Vec<Packed> {
    let mut table = TableBuilder::default();
    let people = People::of(
        period,
        activities,
        |a| table.position(&a.id, Facts::of(a, bounds)),
        |&position, _, p| packed_row(position, p, bounds),
    );
    let table = Arc::new(table.table);
    let mut out = Vec::with_capacity(people.len());
    let mut named = people.named.into_iter().flatten();
    let mut group = Vec::new();
    for w in people.starts.windows(2) {
        group.clear();
        group.extend(named.by_ref().take(w[1] - w[0]));
        out.extend(pack(&group, &table, bounds));
    }
    for placed in &people.anonymous {
        out.extend(pack(std::slice::from_ref(placed), &table, bounds));
    }
    out
}

/// A person's packed contribution from all their rows (at least one), in order.
fn pack(
    rows: &[Placed<'_, PackedRow>],
    activities: &Arc<ActivityTable>,
    bounds: &Bounds,
) -> Option<Packed> {
    let answers = Answers::of(rows.iter())?;
    Some(Packed {
        new: answers.new,
        genre: answers.genre,
        tranche_age: answers.tranche_age,
        statut_social: answers.statut_social,
        activities: Arc::clone(activities),
        rows: rows.iter().take(bounds.rows()).map(|r| r.row).collect(),
    })
}

/// Where each cell of `indicator` stands: `None` for a plain count or sum, else its category
/// code, in catalogue order.
pub fn cell_labels(indicator: Indicator) -> Vec<Option<&'static str>> {
    let categories = indicator.categories();
    if categories.is_empty() {
        vec![None]
    } else {
        categories.into_iter().map(Some).collect()
    }
}

fn saturating_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn histogram<V: Vocabulary>(categories: &[V], values: impl IntoIterator<Item = V>) -> Vec<i64> {
    let mut counts = vec![0i64; categories.len()];
    for v in values {
        if let Some(i) = categories.iter().position(|c| *c == v) {
            counts[i] = counts[i].saturating_add(1);
        }
    }
    counts
}

/// The bounded exact value of `indicator` over `people`: one value per cell, in the order of
/// [`cell_labels`].
///
/// Releases compute the same cells from the packed form, faster; this is the plain reading
/// that tests hold the packed one to.
pub fn cells(indicator: Indicator, people: &[Contribution]) -> Vec<i64> {
    let rows = || people.iter().flat_map(|p| &p.rows);
    let activities = || rows().map(|r| &r.activity).collect::<BTreeSet<_>>();
    let count = |n: usize| vec![saturating_i64(n)];
    match indicator {
        Indicator::Activites => histogram(ActivityType::ALL, activities().iter().map(|a| a.kind)),
        Indicator::Accompagnements => histogram(ActivityType::ALL, rows().map(|r| r.activity.kind)),
        Indicator::Beneficiaires => count(people.len()),
        Indicator::NouveauxBeneficiaires => count(people.iter().filter(|p| p.new).count()),
        Indicator::DureeMinutes => vec![
            activities()
                .iter()
                .fold(0i64, |sum, a| sum.saturating_add(i64::from(a.duration_min))),
        ],
        Indicator::Thematiques => histogram(
            Thematique::mediation(),
            rows().flat_map(|r| r.themes.iter().copied()),
        ),
        Indicator::TranchesAge => histogram(TrancheAge::ALL, people.iter().map(|p| p.tranche_age)),
        Indicator::StatutsSociaux => {
            histogram(StatutSocial::ALL, people.iter().map(|p| p.statut_social))
        }
        Indicator::Autonomie => histogram(
            Autonomie::ALL,
            rows()
                .filter(|r| r.activity.kind == ActivityType::Individuel)
                .filter_map(|r| r.autonomie),
        ),
        Indicator::Orientations => count(rows().filter(|r| r.oriented).count()),
        Indicator::Genres => histogram(Genre::ALL, people.iter().map(|p| p.genre)),
        Indicator::Durees => histogram(DurationBand::ALL, activities().iter().map(|a| a.band)),
        Indicator::Lieux => histogram(
            PlaceType::ALL,
            activities().iter().filter_map(|a| a.place_type),
        ),
        Indicator::Materiel => histogram(
            Materiel::ALL,
            rows().flat_map(|r| r.materiel.iter().copied()),
        ),
        Indicator::Demarches => histogram(
            Thematique::administrative(),
            rows().flat_map(|r| r.demarches.iter().copied()),
        ),
        Indicator::NiveauxAteliers => histogram(
            NiveauAtelier::ALL,
            activities().iter().filter_map(|a| a.level),
        ),
    }
}

/// Counts of `values` per category.
fn tally<V: Slot>(categories: &[V], values: impl IntoIterator<Item = V>) -> Vec<i64> {
    let mut by_slot = [0i64; 32];
    for v in values {
        if let Some(n) = by_slot.get_mut(v.slot()) {
            *n += 1;
        }
    }
    categories
        .iter()
        .map(|c| by_slot.get(c.slot()).copied().unwrap_or(0))
        .collect()
}

/// Counts per category of the values in `sets`.
fn tally_bits<V: Slot>(categories: &[V], sets: impl IntoIterator<Item = u32>) -> Vec<i64> {
    let mut by_slot = [0i64; 32];
    for mut set in sets {
        while set != 0 {
            // trailing_zeros of a non-zero u32 is below 32.
            by_slot[set.trailing_zeros() as usize] += 1;
            set &= set - 1;
        }
    }
    categories
        .iter()
        .map(|c| by_slot.get(c.slot()).copied().unwrap_or(0))
        .collect()
}

/// The facts of the distinct activities of `people`'s rows.
///
/// Within a table, distinct positions are distinct activities: marking positions is enough.
/// People bounded apart (several tables, only ever in tests) are merged by identifier and
/// facts.
fn distinct_activities(people: &[Packed]) -> Vec<&Facts> {
    let mut tables: Vec<(&ActivityTable, Vec<bool>)> = Vec::new();
    let mut which: HashMap<*const ActivityTable, usize, FxBuild> = HashMap::default();
    let mut last: Option<(*const ActivityTable, usize)> = None;
    for p in people {
        let address = Arc::as_ptr(&p.activities);
        let t = match last {
            Some((a, t)) if a == address => t,
            _ => *which.entry(address).or_insert_with(|| {
                tables.push((&p.activities, vec![false; p.activities.len()]));
                tables.len() - 1
            }),
        };
        last = Some((address, t));
        for r in &p.rows {
            if let Some(seen) = tables[t].1.get_mut(r.activity) {
                *seen = true;
            }
        }
    }
    let marked = tables.iter().flat_map(|(table, seen)| {
        seen.iter()
            .enumerate()
            .filter(|(_, seen)| **seen)
            .filter_map(|(position, _)| table.key(position))
    });
    if tables.len() <= 1 {
        marked.map(|(_, facts)| facts).collect()
    } else {
        let mut merged = HashSet::with_capacity_and_hasher(people.len(), FxBuild::default());
        marked
            .filter(|key| merged.insert(*key))
            .map(|(_, facts)| facts)
            .collect()
    }
}

/// [`cells`] over packed contributions: what a release adds noise to.
pub(crate) fn packed_cells(indicator: Indicator, people: &[Packed]) -> Vec<i64> {
    let rows = || people.iter().flat_map(|p| &p.rows);
    // Rows whose activity is missing from their table count nowhere; `respects` refuses them.
    let facts = || {
        people.iter().flat_map(|p| {
            p.rows
                .iter()
                .filter_map(|r| Some((p.activities.facts.get(r.activity)?, r)))
        })
    };
    let activities = || distinct_activities(people);
    let count = |n: usize| vec![saturating_i64(n)];
    match indicator {
        Indicator::Activites => tally(ActivityType::ALL, activities().into_iter().map(|a| a.kind)),
        Indicator::Accompagnements => tally(ActivityType::ALL, facts().map(|(f, _)| f.kind)),
        Indicator::Beneficiaires => count(people.len()),
        Indicator::NouveauxBeneficiaires => count(people.iter().filter(|p| p.new).count()),
        Indicator::DureeMinutes => vec![
            activities()
                .into_iter()
                .fold(0i64, |sum, a| sum.saturating_add(i64::from(a.duration_min))),
        ],
        Indicator::Thematiques => tally_bits(
            Thematique::mediation(),
            rows().map(|r| r.themes & mediation_bits()),
        ),
        Indicator::TranchesAge => tally(TrancheAge::ALL, people.iter().map(|p| p.tranche_age)),
        Indicator::StatutsSociaux => {
            tally(StatutSocial::ALL, people.iter().map(|p| p.statut_social))
        }
        Indicator::Autonomie => tally(
            Autonomie::ALL,
            facts()
                .filter(|(f, _)| f.kind == ActivityType::Individuel)
                .filter_map(|(_, r)| r.autonomie),
        ),
        Indicator::Orientations => count(rows().filter(|r| r.oriented).count()),
        Indicator::Genres => tally(Genre::ALL, people.iter().map(|p| p.genre)),
        Indicator::Durees => tally(DurationBand::ALL, activities().into_iter().map(|a| a.band)),
        Indicator::Lieux => tally(
            PlaceType::ALL,
            activities().into_iter().filter_map(|a| a.place_type),
        ),
        Indicator::Materiel => tally_bits(Materiel::ALL, rows().map(|r| u32::from(r.materiel))),
        Indicator::Demarches => tally_bits(
            Thematique::administrative(),
            rows().map(|r| r.themes & administrative_bits()),
        ),
        Indicator::NiveauxAteliers => tally(
            NiveauAtelier::ALL,
            activities().into_iter().filter_map(|a| a.level),
        ),
    }
}

/// How far one person can move an indicator's cells (added or removed, all else unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sensitivity {
    /// Bound on the sum over the indicator's cells of |change| (for the Laplace mechanism).
    pub l1: i64,
    /// Bound on the square root of the sum of squared changes (for the Gaussian mechanism),
    /// rounded up.
    pub l2: f64,
}

/// The sensitivity of `indicator` under adding or removing one person, given `bounds`.
///
/// With K rows per person, D minutes per activity, T themes and M equipment values per row
/// (T and M capped by the size of the vocabulary they pick from):
///
/// * **Person-level** (`beneficiaires`, `nouveaux_beneficiaires`, `tranches_age`,
///   `statuts_sociaux`, `genres`): the person adds 1 to exactly one cell (or none). L1 = L2 = 1.
/// * **Row-level, one cell per row** (`accompagnements`, `autonomie`, `orientations`): at most
///   K rows, each adding 1 to at most one cell. L1 = K; with counts `c_i` summing to at most K,
///   `Σ c_i²` is largest when all fall in one cell, so L2 = K.
/// * **Row-level, several cells per row** (`thematiques`, `demarches` with T' = min(T, 19 or
///   11); `materiel` with M' = min(M, 5)): each of K rows adds 1 to at most T' distinct cells.
///   L1 = K·T'; each cell moves by at most K and all cells by at most K·T' in total, so `Σ c_i²`
///   is at most T'·K² and L2 = K·√T'.
/// * **Activity-level** (`activites`, `durees`, `lieux`, `niveaux_ateliers`): an activity
///   counts when at least one counted row belongs to it, and which rows count never depends on
///   other people; so adding a person creates at most K new activity keys (those of their own
///   counted rows) and changes no existing one, and removing them removes at most K. Each key
///   is in one cell: L1 = L2 = K.
/// * **`duree_minutes`**: the same at most K activities, each clamped to D: L1 = L2 = K·D.
pub fn sensitivity(indicator: Indicator, bounds: &Bounds) -> Sensitivity {
    let k = i64::from(bounds.max_rows_per_person);
    let d = i64::from(bounds.max_duration_min);
    let capped = |bound: u32, cells: usize| i64::from(bound).min(saturating_i64(cells));
    // Saturating: out-of-range bounds are refused by `Bounds::validate`, never wrapped here.
    let square = |x: i64| x.saturating_mul(x);
    let (l1, l2_squared) = match indicator {
        Indicator::Beneficiaires
        | Indicator::NouveauxBeneficiaires
        | Indicator::TranchesAge
        | Indicator::StatutsSociaux
        | Indicator::Genres => (1, 1),
        Indicator::Accompagnements
        | Indicator::Autonomie
        | Indicator::Orientations
        | Indicator::Activites
        | Indicator::Durees
        | Indicator::Lieux
        | Indicator::NiveauxAteliers => (k, square(k)),
        Indicator::DureeMinutes => (k.saturating_mul(d), square(k.saturating_mul(d))),
        Indicator::Thematiques | Indicator::Demarches | Indicator::Materiel => {
            let per_row = match indicator {
                Indicator::Materiel => capped(bounds.max_materiel_per_row, Materiel::ALL.len()),
                _ => capped(bounds.max_themes_per_row, indicator.categories().len()),
            };
            (k.saturating_mul(per_row), per_row.saturating_mul(square(k)))
        }
    };
    // L2 ≤ L1 always holds, so L1 is a valid (looser) fallback when the rounded-up square root
    // cannot be computed exactly (beyond 2^53 the cast to f64 could round down).
    let l2 = if l2_squared <= 1 << 53 {
        (l2_squared as f64).inf_sqrt().unwrap_or(l1 as f64)
    } else {
        l1 as f64
    };
    Sensitivity { l1, l2 }
}

/// One indicator's bounded exact cells with its sensitivity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BoundedIndicator {
    /// The indicator.
    pub indicator: Indicator,
    /// How far one person can move its cells.
    pub sensitivity: Sensitivity,
    /// Each cell's label and bounded exact value, in catalogue order.
    pub cells: Vec<(Option<&'static str>, i64)>,
}

/// The bounded exact values of `which` for `period`: what a release adds noise to.
///
/// These never leave the node; they exist for tests, simulations and local checks.
pub fn bounded_values(
    period: Period,
    activities: &[Activity],
    bounds: &Bounds,
    which: &[Indicator],
) -> Vec<BoundedIndicator> {
    let people = bound_packed(period, activities, bounds);
    which
        .iter()
        .map(|&indicator| BoundedIndicator {
            indicator,
            sensitivity: sensitivity(indicator, bounds),
            cells: cell_labels(indicator)
                .into_iter()
                .zip(packed_cells(indicator, &people))
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exact;
    use crate::testing::{add_person, month};
    use proptest::prelude::*;

    fn october() -> Period {
        // unwrap safety: a constant, valid period.
        #[allow(clippy::unwrap_used)]
        Period::new(2026, 10).unwrap()
    }

    /// Σ|Δ| and √ΣΔ² between two cell vectors of one indicator.
    fn distances(
        before: &[(Option<&'static str>, i64)],
        after: &[(Option<&'static str>, i64)],
    ) -> (i64, f64) {
        let deltas: Vec<i64> = before
            .iter()
            .zip(after)
            .map(|(b, a)| (a.1 - b.1).abs())
            .collect();
        (
            deltas.iter().sum(),
            deltas.iter().map(|d| (d * d) as f64).sum::<f64>().sqrt(),
        )
    }

    #[test]
    fn validation_names_the_field_and_the_accepted_range() {
        assert_eq!(Bounds::default().validate(), Ok(()));
        let cases = [
            (
                Bounds {
                    max_rows_per_person: 0,
                    ..Bounds::default()
                },
                "max_rows_per_person",
                1,
                100,
            ),
            (
                Bounds {
                    max_rows_per_person: 101,
                    ..Bounds::default()
                },
                "max_rows_per_person",
                1,
                100,
            ),
            (
                Bounds {
                    max_duration_min: 1441,
                    ..Bounds::default()
                },
                "max_duration_min",
                1,
                1440,
            ),
            (
                Bounds {
                    max_themes_per_row: 0,
                    ..Bounds::default()
                },
                "max_themes_per_row",
                1,
                19,
            ),
            (
                Bounds {
                    max_materiel_per_row: 6,
                    ..Bounds::default()
                },
                "max_materiel_per_row",
                1,
                5,
            ),
        ];
        for (bounds, field, min, max) in cases {
            let err = bounds.validate().err();
            assert!(
                matches!(err, Some(PrivacyError::BoundOutOfRange { field: f, min: lo, max: hi, .. })
                    if f == field && lo == min && hi == max),
                "{bounds:?} gave {err:?}"
            );
        }
        let message = Bounds {
            max_rows_per_person: 0,
            ..Bounds::default()
        }
        .validate()
        .map_err(|e| e.to_string());
        assert_eq!(
            message,
            Err(
                "bounds.max_rows_per_person = 0 is out of range: expected an integer from 1 to 100"
                    .to_owned()
            )
        );
    }

    #[test]
    fn bounds_deserialize_with_defaults_and_refuse_unknown_fields() {
        let b: Result<Bounds, _> = serde_json::from_str(r#"{"max_rows_per_person": 4}"#);
        assert_eq!(
            b.ok(),
            Some(Bounds {
                max_rows_per_person: 4,
                ..Bounds::default()
            })
        );
        assert!(serde_json::from_str::<Bounds>(r#"{"max_rows": 4}"#).is_err());
    }

    #[test]
    fn bounding_keeps_the_first_rows_clamps_and_truncates() {
        let period = october();
        let mut activities = Vec::new();
        // One person, five individual activities on decreasing dates: the *earliest* K count.
        add_person(
            &mut activities,
            period,
            Some("p"),
            5,
            ActivityType::Individuel,
            |_| None,
        );
        for (i, a) in activities.iter_mut().enumerate() {
            a.date = period.last_day() - time::Duration::days(i as i64);
            a.duration_min = 100 + i as u32;
        }
        // The latest row (extreme-0, last day) carries the person-level answers.
        activities[0].participants[0].genre = Some(Genre::Masculin);
        let bounds = Bounds {
            max_rows_per_person: 2,
            max_duration_min: 102,
            max_themes_per_row: 2,
            max_materiel_per_row: 1,
        };
        let people = bound(period, &activities, &bounds);
        assert_eq!(people.len(), 1);
        let p = &people[0];
        assert!(p.respects(&bounds));
        assert_eq!(p.genre, Genre::Masculin);
        let ids: Vec<&str> = p.rows.iter().map(|r| r.activity.id.as_str()).collect();
        assert_eq!(ids, ["extreme-4", "extreme-3"]);
        assert_eq!(
            p.rows[0].activity.duration_min, 102,
            "104 minutes clamped to 102"
        );
        assert_eq!(p.rows[0].activity.band, DurationBand::De60A120);
        assert_eq!(
            p.rows[0].themes,
            [
                Thematique::DiagnosticNumerique,
                Thematique::PrendreEnMainDuMateriel
            ]
        );
        assert_eq!(
            p.rows[0].demarches,
            [
                Thematique::PapiersElectionsCitoyennete,
                Thematique::FamilleScolarite
            ]
        );
        assert_eq!(p.rows[0].materiel, [Materiel::Ordinateur]);
        assert_eq!(cells(Indicator::DureeMinutes, &people), [204]);
        assert_eq!(cells(Indicator::Accompagnements, &people), [2, 0]);
        assert_eq!(
            cells(Indicator::NouveauxBeneficiaires, &people),
            [1],
            "new once, not five times"
        );
    }

    #[test]
    fn duplicate_values_in_a_row_count_once() {
        let period = october();
        let mut activities = Vec::new();
        add_person(
            &mut activities,
            period,
            Some("p"),
            1,
            ActivityType::Individuel,
            |_| None,
        );
        let row = &mut activities[0].participants[0];
        row.themes = vec![Thematique::Email, Thematique::Email, Thematique::Logement];
        row.materiel = vec![Materiel::Tablette, Materiel::Tablette];
        let people = bound(period, &activities, &Bounds::default());
        assert_eq!(people[0].rows[0].themes, [Thematique::Email]);
        assert_eq!(people[0].rows[0].demarches, [Thematique::Logement]);
        assert_eq!(people[0].rows[0].materiel, [Materiel::Tablette]);
        let mut broken = people[0].clone();
        broken.rows[0].materiel.push(Materiel::Tablette);
        assert!(!broken.respects(&Bounds::default()));
    }

    #[test]
    fn anonymous_rows_are_one_person_each_and_other_periods_are_ignored() {
        let period = october();
        let mut activities = month(period, 3, 0, 0);
        add_person(
            &mut activities,
            period,
            None,
            3,
            ActivityType::Collectif,
            |_| None,
        );
        add_person(
            &mut activities,
            period,
            None,
            1,
            ActivityType::Collectif,
            |_| Some(0),
        );
        add_person(
            &mut activities,
            period.next(),
            Some("x"),
            3,
            ActivityType::Individuel,
            |_| None,
        );
        let people = bound(period, &activities, &Bounds::default());
        assert_eq!(people.len(), 2);
        assert_eq!(cells(Indicator::Beneficiaires, &people), [2]);
        assert_eq!(
            cells(Indicator::Activites, &people),
            [0, 1],
            "both rows share one workshop"
        );
        assert_eq!(cells(Indicator::Accompagnements, &people), [0, 2]);
    }

    #[test]
    fn sensitivities_follow_the_bounds() {
        let b = Bounds::default();
        let s = |i| sensitivity(i, &b);
        assert_eq!(s(Indicator::Beneficiaires), Sensitivity { l1: 1, l2: 1.0 });
        assert_eq!(s(Indicator::TranchesAge), Sensitivity { l1: 1, l2: 1.0 });
        assert_eq!(s(Indicator::Activites), Sensitivity { l1: 10, l2: 10.0 });
        assert_eq!(
            s(Indicator::DureeMinutes),
            Sensitivity {
                l1: 2400,
                l2: 2400.0
            }
        );
        assert_eq!(s(Indicator::Thematiques).l1, 30);
        assert!((s(Indicator::Thematiques).l2 - 10.0 * 3f64.sqrt()).abs() < 1e-12);
        assert!(s(Indicator::Thematiques).l2 >= 10.0 * 3f64.sqrt());
        assert_eq!(s(Indicator::Materiel).l1, 20);
        // T is capped by the 11 administrative themes.
        let wide = Bounds {
            max_themes_per_row: 19,
            ..b
        };
        assert_eq!(sensitivity(Indicator::Demarches, &wide).l1, 110);
        assert_eq!(sensitivity(Indicator::Thematiques, &wide).l1, 190);
    }

    /// With the extreme person alone, every sensitivity is reached: none is overstated.
    #[test]
    fn sensitivities_are_attained() {
        let period = october();
        let bounds = Bounds {
            max_rows_per_person: 4,
            max_duration_min: 90,
            max_themes_per_row: 2,
            max_materiel_per_row: 3,
        };
        let empty = bounded_values(period, &[], &bounds, Indicator::ALL);
        let mut reached = vec![(0i64, 0f64); Indicator::ALL.len()];
        for kind in ActivityType::ALL {
            let mut activities = Vec::new();
            add_person(&mut activities, period, Some("x"), 9, *kind, |_| None);
            let after = bounded_values(period, &activities, &bounds, Indicator::ALL);
            for (i, (b, a)) in empty.iter().zip(&after).enumerate() {
                let (l1, l2) = distances(&b.cells, &a.cells);
                reached[i] = (reached[i].0.max(l1), reached[i].1.max(l2));
            }
        }
        for (b, (l1, l2)) in empty.iter().zip(reached) {
            assert_eq!(l1, b.sensitivity.l1, "{}", b.indicator);
            assert!(
                (l2 - b.sensitivity.l2).abs() < 1e-9,
                "{}: {l2} vs {}",
                b.indicator,
                b.sensitivity.l2
            );
        }
    }

    /// The bounding as first written (sets and per-person vectors): the oracle the faster
    /// grouping and the packed form are held to.
    fn reference_bound(
        period: Period,
        activities: &[Activity],
        bounds: &Bounds,
    ) -> Vec<Contribution> {
        fn first<V: Copy + Ord>(values: &[V], keep: impl Fn(V) -> bool, max: usize) -> Vec<V> {
            let mut seen = BTreeSet::new();
            values
                .iter()
                .copied()
                .filter(|&v| keep(v) && seen.insert(v))
                .take(max)
                .collect()
        }
        type RefRow<'a> = (&'a Activity, &'a Participant);
        let mut named: std::collections::BTreeMap<&str, Vec<RefRow<'_>>> = Default::default();
        let mut anonymous = Vec::new();
        for a in activities.iter().filter(|a| a.period() == period) {
            for p in &a.participants {
                match p.beneficiary.as_deref() {
                    Some(id) => named.entry(id).or_default().push((a, p)),
                    None => anonymous.push(vec![(a, p)]),
                }
            }
        }
        named
            .into_values()
            .chain(anonymous)
            .filter_map(|mut rows| {
                rows.sort_by_key(|(a, p)| (a.date, a.batch, p.line, a.id.clone()));
                let latest = rows.last()?.1;
                Some(Contribution {
                    new: rows.iter().any(|(_, p)| p.first_time == Some(true)),
                    genre: latest.genre.unwrap_or(Genre::NonCommunique),
                    tranche_age: latest.tranche_age.unwrap_or(TrancheAge::NonCommunique),
                    statut_social: latest.statut_social.unwrap_or(StatutSocial::NonCommunique),
                    rows: rows
                        .iter()
                        .take(bounds.rows())
                        .map(|(a, p)| BoundedRow {
                            activity: ActivityKey {
                                id: a.id.clone(),
                                kind: a.kind,
                                duration_min: a.duration_min.min(bounds.max_duration_min),
                                band: DurationBand::of_minutes(a.duration_min),
                                place_type: a.place_type,
                                level: a.level,
                            },
                            themes: first(&p.themes, |t| !t.is_administrative(), bounds.themes()),
                            demarches: first(
                                &p.themes,
                                Thematique::is_administrative,
                                bounds.themes(),
                            ),
                            materiel: first(&p.materiel, |_| true, bounds.materiel()),
                            autonomie: p.autonomie,
                            oriented: p.oriented == Some(true),
                        })
                        .collect(),
                })
            })
            .collect()
    }

    /// A readable contribution in packed form, with a table of its own.
    fn pack_contribution(c: &Contribution) -> Packed {
        let set = |values: &[Thematique]| values.iter().fold(0, |s, t| s | bit(*t));
        let mut table = TableBuilder::default();
        let rows = c
            .rows
            .iter()
            .map(|r| {
                let k = &r.activity;
                let facts = Facts {
                    kind: k.kind,
                    duration_min: k.duration_min,
                    band: k.band,
                    place_type: k.place_type,
                    level: k.level,
                };
                PackedRow {
                    activity: table.position(&k.id, facts),
                    themes: set(&r.themes) | set(&r.demarches),
                    materiel: r.materiel.iter().fold(0, |s, m| s | (1u8 << m.slot())),
                    autonomie: r.autonomie,
                    oriented: r.oriented,
                }
            })
            .collect();
        Packed {
            new: c.new,
            genre: c.genre,
            tranche_age: c.tranche_age,
            statut_social: c.statut_social,
            activities: Arc::new(table.table),
            rows,
        }
    }

    /// What a packed contribution says, comparable and ordered: to sort people.
    type View = (
        bool,
        Genre,
        TrancheAge,
        StatutSocial,
        Vec<(Option<ActivityKey>, u32, u8, Option<Autonomie>, bool)>,
    );

    fn view(p: &Packed) -> View {
        let rows = p.rows.iter().map(|r| {
            let key = p.key(r).map(|(id, f)| ActivityKey {
                id: id.to_owned(),
                kind: f.kind,
                duration_min: f.duration_min,
                band: f.band,
                place_type: f.place_type,
                level: f.level,
            });
            (key, r.themes, r.materiel, r.autonomie, r.oriented)
        });
        (
            p.new,
            p.genre,
            p.tranche_age,
            p.statut_social,
            rows.collect(),
        )
    }

    /// How an activity is imported a second time under the same identifier in
    /// [`awkward_month`], as data breaking the import rules could be.
    #[derive(Debug, Clone, Copy)]
    enum Again {
        /// In a later batch, with the same facts, for other people.
        SameFacts,
        /// In a later batch, with another duration, for other people.
        OtherDuration,
        /// In the same batch at the same lines, for the same people with other answers: their
        /// rows are tied in (date, batch, line, id) and keep their input order.
        Tied,
    }

    fn again() -> impl Strategy<Value = Again> {
        prop_oneof![
            Just(Again::SameFacts),
            Just(Again::OtherDuration),
            Just(Again::Tied)
        ]
    }

    /// A synthetic month where the bounds bind, with an extreme person, and some activities
    /// imported twice.
    fn awkward_month(
        seed: u64,
        activities: usize,
        people: u64,
        extreme_rows: usize,
        duplicated: &[(usize, Again)],
    ) -> Vec<Activity> {
        let period = october();
        let mut data = month(period, seed, activities, people);
        add_person(
            &mut data,
            period,
            Some("extreme"),
            extreme_rows,
            ActivityType::Individuel,
            |r| (r % 2 == 0).then_some(r * 7),
        );
        if !data.is_empty() {
            for &(i, again) in duplicated {
                let mut copy = data[i % data.len()].clone();
                match again {
                    Again::SameFacts | Again::OtherDuration => {
                        copy.batch += 10;
                        if matches!(again, Again::OtherDuration) {
                            copy.duration_min = copy.duration_min % 1440 + 1;
                        }
                        for p in &mut copy.participants {
                            p.line += 1_000_000;
                            if let Some(b) = &mut p.beneficiary {
                                b.push('x');
                            }
                        }
                    }
                    Again::Tied => {
                        for p in &mut copy.participants {
                            p.first_time = Some(true);
                            p.genre = Some(Genre::Masculin);
                            p.themes.reverse();
                            p.materiel.reverse();
                        }
                    }
                }
                data.push(copy);
            }
        }
        data
    }

    #[test]
    fn slots_are_positions_in_the_vocabularies() {
        fn check<V: Vocabulary + Slot + std::fmt::Debug>(max: usize) {
            assert!(V::ALL.len() <= max, "{}: {} values", V::NAME, V::ALL.len());
            for v in V::ALL {
                assert_eq!(v.slot(), v.index(), "{}: {v:?}", V::NAME);
            }
        }
        check::<ActivityType>(32);
        check::<Autonomie>(32);
        check::<DurationBand>(32);
        check::<Genre>(32);
        check::<Materiel>(8);
        check::<NiveauAtelier>(32);
        check::<PlaceType>(32);
        check::<StatutSocial>(32);
        check::<Thematique>(32);
        check::<TrancheAge>(32);
        for t in Thematique::ALL {
            assert_eq!(bit(*t) & mediation_bits() != 0, !t.is_administrative());
            assert_eq!(bit(*t) & administrative_bits() != 0, t.is_administrative());
        }
        assert_eq!(mediation_bits() & administrative_bits(), 0);
        assert_eq!(low_bits(0), 0);
        assert_eq!(low_bits(5), 0b1_1111);
        assert_eq!(low_bits(32), u32::MAX);
    }

    /// Two identifiers with the same hash are two people.
    #[test]
    fn names_with_the_same_hash_stay_apart() {
        let hash = |id: &str| {
            let mut h = FxHasher::default();
            h.write(id.as_bytes());
            h.finish()
        };
        let word = |bytes: &[u8]| {
            let mut w = [0u8; 8];
            w.copy_from_slice(bytes);
            u64::from_le_bytes(w)
        };
        let mix = |w: u64| w.wrapping_mul(FxHasher::MULTIPLIER).rotate_left(5);
        // Two 16-byte identifiers hash alike when mix(head) ^ tail is the same for both.
        let first = "aaaaaaaacccccccc";
        let target = mix(word(&first.as_bytes()[..8])) ^ word(&first.as_bytes()[8..]);
        let Some(second) = (0u32..100_000).find_map(|i| {
            // Least significant digit first: the low bits of a word stir the most.
            let head: String = format!("{i:08}").chars().rev().collect();
            let tail = (target ^ mix(word(head.as_bytes()))).to_le_bytes();
            let tail = std::str::from_utf8(&tail).ok()?.to_owned();
            Some(head + &tail)
        }) else {
            panic!("no colliding identifier found")
        };
        assert_ne!(first, second);
        assert_eq!(hash(first), hash(&second));
        let mut names = Names::default();
        assert_eq!(names.number(first), 0);
        assert_eq!(names.number("x"), 1);
        assert_eq!(names.number(&second), 2);
        assert_eq!(names.number(first), 0);
        assert_eq!(names.number(&second), 2);
        assert_eq!(names.len(), 3);
        assert_eq!(names.get(2), Some(second.as_str()));
        assert_eq!(names.get(3), None);
    }

    #[test]
    fn the_packed_form_refuses_what_the_bounds_refuse() {
        let period = october();
        let bounds = Bounds {
            max_rows_per_person: 2,
            max_duration_min: 60,
            max_themes_per_row: 2,
            max_materiel_per_row: 2,
        };
        let mut activities = Vec::new();
        add_person(
            &mut activities,
            period,
            Some("p"),
            5,
            ActivityType::Individuel,
            |_| None,
        );
        let people = bound_packed(period, &activities, &bounds);
        let [p] = people.as_slice() else {
            panic!("one person")
        };
        assert!(p.respects(&bounds));
        assert_eq!(p.rows.len(), 2);
        assert_eq!((p.rows[0].themes & mediation_bits()).count_ones(), 2);
        assert_eq!((p.rows[0].themes & administrative_bits()).count_ones(), 2);
        assert_eq!(p.rows[0].materiel.count_ones(), 2);
        let broken = |f: &dyn Fn(&mut Packed)| {
            let mut q = p.clone();
            f(&mut q);
            q.respects(&bounds)
        };
        assert!(!broken(&|q| q.rows.push(q.rows[0])));
        assert!(!broken(&|q| q.rows[1].themes |= mediation_bits()));
        assert!(!broken(&|q| q.rows[1].themes |= administrative_bits()));
        assert!(!broken(&|q| q.rows[0].themes |= 1 << 31));
        assert!(!broken(&|q| q.rows[0].materiel = 0b111));
        assert!(!broken(&|q| q.rows[0].materiel = 0b100_0000));
        assert!(!broken(&|q| q.rows[0].activity = q.activities.len()));
        assert!(!p.respects(&Bounds {
            max_duration_min: 59,
            ..bounds
        }));
    }

    /// A person's packed contribution is the same (as OpenDP's neighbouring datasets need)
    /// whoever else is bounded with them, though their activities then sit elsewhere in
    /// another table.
    #[test]
    fn a_packed_contribution_does_not_depend_on_the_others() {
        let period = october();
        let mut alone = Vec::new();
        add_person(
            &mut alone,
            period,
            Some("p"),
            3,
            ActivityType::Individuel,
            |_| None,
        );
        let mut together = month(period, 9, 20, 5);
        together.extend(alone.iter().cloned());
        let bounds = Bounds::default();
        let alone = bound_packed(period, &alone, &bounds);
        let together = bound_packed(period, &together, &bounds);
        let [p] = alone.as_slice() else {
            panic!("one person")
        };
        let same: Vec<&Packed> = together.iter().filter(|q| *q == p).collect();
        assert_eq!(same.len(), 1);
        assert!(!Arc::ptr_eq(&p.activities, &same[0].activities));
        assert_ne!(p.activities.len(), same[0].activities.len());
    }

    /// Equal activity keys count once even when they are two imports of one activity, and
    /// different facts under one identifier count twice, in both forms.
    #[test]
    fn activities_count_by_their_facts_in_both_forms() {
        let period = october();
        let data = awkward_month(
            3,
            4,
            0,
            0,
            &[(0, Again::SameFacts), (1, Again::OtherDuration)],
        );
        let bounds = Bounds::default();
        let readable = bound(period, &data, &bounds);
        let packed = bound_packed(period, &data, &bounds);
        for indicator in [Indicator::Activites, Indicator::DureeMinutes] {
            assert_eq!(
                packed_cells(indicator, &packed),
                cells(indicator, &readable),
                "{indicator}"
            );
        }
        assert_eq!(
            packed_cells(Indicator::Activites, &packed)
                .iter()
                .sum::<i64>(),
            5,
            "4 activities, one imported again with another duration"
        );
    }

    fn small_bounds() -> impl Strategy<Value = Bounds> {
        (1u32..=4, 1u32..=300, 1u32..=4, 1u32..=3).prop_map(|(k, d, t, m)| Bounds {
            max_rows_per_person: k,
            max_duration_min: d,
            max_themes_per_row: t,
            max_materiel_per_row: m,
        })
    }

    proptest! {
        /// The grouping keeps exactly the contributions the first bounding kept, in the same
        /// order, and the packed form holds the same facts and gives the same cells.
        #[test]
        fn both_forms_keep_what_the_reference_keeps(
            seed in any::<u64>(),
            activities in 0usize..40,
            people in 0u64..12,
            bounds in small_bounds(),
            extreme_rows in 0usize..12,
            duplicated in proptest::collection::vec((0usize..100, again()), 0..4),
        ) {
            let period = october();
            let data = awkward_month(seed, activities, people, extreme_rows, &duplicated);
            let readable = bound(period, &data, &bounds);
            prop_assert_eq!(&readable, &reference_bound(period, &data, &bounds));
            prop_assert!(readable.iter().all(|c| c.respects(&bounds)));
            let mut packed = bound_packed(period, &data, &bounds);
            prop_assert!(packed.iter().all(|c| c.respects(&bounds)));
            for indicator in Indicator::ALL {
                prop_assert_eq!(
                    packed_cells(*indicator, &packed),
                    cells(*indicator, &readable),
                    "{}", indicator
                );
            }
            // Each person bounded apart, with a table of their own: activities shared by
            // several people are merged by identifier and facts.
            let mut apart: Vec<Packed> = readable.iter().map(pack_contribution).collect();
            for indicator in Indicator::ALL {
                prop_assert_eq!(
                    packed_cells(*indicator, &apart),
                    cells(*indicator, &readable),
                    "{} apart", indicator
                );
            }
            apart.sort_by_cached_key(view);
            packed.sort_by_cached_key(view);
            prop_assert_eq!(packed, apart);
        }

        /// Adding one person with extreme data (up to 12 rows, each with every theme and
        /// piece of equipment, 1440-minute activities, new or joining existing ones) moves each
        /// indicator by at most its stated L1 and L2 sensitivities. Removing them is the same
        /// pair of datasets read the other way.
        #[test]
        fn one_person_moves_each_indicator_by_at_most_its_sensitivity(
            seed in any::<u64>(),
            activities in 0usize..25,
            people in 0u64..8,
            bounds in small_bounds(),
            rows in 0usize..12,
            anonymous in any::<bool>(),
            collective in any::<bool>(),
            joins in proptest::collection::vec(proptest::option::of(0usize..50), 12),
        ) {
            let period = october();
            let before = month(period, seed, activities, people);
            let mut after = before.clone();
            let kind = if collective { ActivityType::Collectif } else { ActivityType::Individuel };
            let who = (!anonymous).then_some("extreme");
            add_person(&mut after, period, who, rows, kind, |r| joins[r]);
            let b = bounded_values(period, &before, &bounds, Indicator::ALL);
            let a = bounded_values(period, &after, &bounds, Indicator::ALL);
            for (b, a) in b.iter().zip(&a) {
                let (l1, l2) = distances(&b.cells, &a.cells);
                prop_assert!(l1 <= b.sensitivity.l1, "{}: L1 {} > {}", b.indicator, l1, b.sensitivity.l1);
                prop_assert!(l2 <= b.sensitivity.l2, "{}: L2 {} > {}", b.indicator, l2, b.sensitivity.l2);
            }
        }

        /// Within the widest bounds nothing is cut, and the bounded values are the exact ones
        /// (`nouveaux_beneficiaires` aside: it counts people, not rows).
        #[test]
        fn without_binding_bounds_the_values_are_exact(
            seed in any::<u64>(),
            activities in 0usize..25,
            people in 0u64..30,
        ) {
            let period = october();
            let data = month(period, seed, activities, people);
            let widest = Bounds {
                max_rows_per_person: 100,
                max_duration_min: 1440,
                max_themes_per_row: 19,
                max_materiel_per_row: 5,
            };
            let exact = exact::compute(period, &data, Indicator::ALL);
            for b in bounded_values(period, &data, &widest, Indicator::ALL) {
                if b.indicator == Indicator::NouveauxBeneficiaires {
                    continue;
                }
                let value = exact.get(b.indicator).ok_or_else(|| TestCaseError::fail("computed"))?;
                for (label, v) in &b.cells {
                    prop_assert_eq!(value.get(*label).map(|x| x as i64), Some(*v), "{} {:?}", b.indicator, label);
                }
            }
        }
    }
}
