//! Exact local indicators: the figures of DATA.md's catalogue, computed from one period's records.
//!
//! These never leave the node as they are; releases add noise to per-person-bounded versions.

use std::collections::HashMap;

use maillage_protocol::vocab::{
    ActivityType, Autonomie, DurationBand, Genre, Materiel, NiveauAtelier, PlaceType, StatutSocial,
    Thematique, TrancheAge, Vocabulary,
};
use maillage_protocol::{Indicator, Period};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::activity::{Activity, Participant};

/// The value of one indicator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndicatorValue {
    /// A count or a sum.
    Scalar(u64),
    /// A count per category, every category of the vocabulary listed in order.
    Categories(Vec<(&'static str, u64)>),
}

impl IndicatorValue {
    /// The value of one category (or of the scalar when `category` is `None`).
    pub fn get(&self, category: Option<&str>) -> Option<u64> {
        match (self, category) {
            (Self::Scalar(v), None) => Some(*v),
            (Self::Categories(cells), Some(c)) => {
                cells.iter().find(|(name, _)| *name == c).map(|(_, v)| *v)
            }
            _ => None,
        }
    }
}

impl Serialize for IndicatorValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Scalar(v) => serializer.serialize_u64(*v),
            Self::Categories(cells) => {
                let mut map = serializer.serialize_map(Some(cells.len()))?;
                for (name, v) in cells {
                    map.serialize_entry(name, v)?;
                }
                map.end()
            }
        }
    }
}

/// The exact indicators of one period, in catalogue order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indicators {
    /// The month they describe.
    pub period: Period,
    /// Each requested indicator with its value.
    pub values: Vec<(Indicator, IndicatorValue)>,
}

impl Indicators {
    /// The value of one indicator, if it was computed.
    pub fn get(&self, indicator: Indicator) -> Option<&IndicatorValue> {
        self.values
            .iter()
            .find(|(i, _)| *i == indicator)
            .map(|(_, v)| v)
    }
}

/// Serialized as `{"period": "2026-10", "indicators": {"activites": {...}, "beneficiaires": 7}}`,
/// indicators and categories in catalogue order.
impl Serialize for Indicators {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Values<'a>(&'a [(Indicator, IndicatorValue)]);
        impl Serialize for Values<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(Some(self.0.len()))?;
                for (indicator, value) in self.0 {
                    map.serialize_entry(indicator.code(), value)?;
                }
                map.end()
            }
        }
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("period", &self.period)?;
        map.serialize_entry("indicators", &Values(&self.values))?;
        map.end()
    }
}

/// One row of the period with the activity it belongs to.
struct Row<'a> {
    activity: &'a Activity,
    participant: &'a Participant,
}

impl Row<'_> {
    /// "Latest" order of DATA.md: latest date, then latest in import order.
    fn order(&self) -> (time::Date, u64, u64) {
        (
            self.activity.date,
            self.activity.batch,
            self.participant.line,
        )
    }
}

/// The people of a period as `beneficiaires` counts them: one per distinct non-empty
/// `beneficiaire_id`, represented by their latest row, plus one per anonymous row.
fn people<'a>(rows: &[Row<'a>]) -> Vec<&'a Participant> {
    let mut latest: HashMap<&str, &Row<'a>> = HashMap::new();
    let mut anonymous = Vec::new();
    for row in rows {
        match row.participant.beneficiary.as_deref() {
            Some(id) => {
                let entry = latest.entry(id).or_insert(row);
                if row.order() > entry.order() {
                    *entry = row;
                }
            }
            None => anonymous.push(row.participant),
        }
    }
    let mut named: Vec<&Row<'a>> = latest.into_values().collect();
    // Deterministic order, so that anything derived from this list is reproducible.
    named.sort_by_key(|r| r.order());
    named
        .into_iter()
        .map(|r| r.participant)
        .chain(anonymous)
        .collect()
}

fn histogram<V: Vocabulary>(
    categories: &[V],
    values: impl IntoIterator<Item = V>,
) -> IndicatorValue {
    let mut counts = vec![0u64; categories.len()];
    for v in values {
        if let Some(i) = categories.iter().position(|c| *c == v) {
            counts[i] += 1;
        }
    }
    IndicatorValue::Categories(categories.iter().map(|c| c.code()).zip(counts).collect())
}

/// Computes `which` indicators of `period` from a structure's activities (activities of other
/// periods are ignored).
pub fn compute(period: Period, activities: &[Activity], which: &[Indicator]) -> Indicators {
    let activities: Vec<&Activity> = activities.iter().filter(|a| a.period() == period).collect();
    let rows: Vec<Row<'_>> = activities
        .iter()
        .flat_map(|a| {
            a.participants.iter().map(move |p| Row {
                activity: a,
                participant: p,
            })
        })
        .collect();
    let people = people(&rows);
    let count = |pred: &dyn Fn(&Row<'_>) -> bool| rows.iter().filter(|r| pred(r)).count() as u64;

    let values = which
        .iter()
        .map(|&indicator| {
            let value = match indicator {
                Indicator::Activites => {
                    histogram(ActivityType::ALL, activities.iter().map(|a| a.kind))
                }
                Indicator::Accompagnements => {
                    histogram(ActivityType::ALL, rows.iter().map(|r| r.activity.kind))
                }
                Indicator::Beneficiaires => IndicatorValue::Scalar(people.len() as u64),
                Indicator::NouveauxBeneficiaires => {
                    IndicatorValue::Scalar(count(&|r| r.participant.first_time == Some(true)))
                }
                Indicator::DureeMinutes => IndicatorValue::Scalar(
                    activities.iter().map(|a| u64::from(a.duration_min)).sum(),
                ),
                Indicator::Thematiques => histogram(
                    Thematique::mediation(),
                    rows.iter()
                        .flat_map(|r| r.participant.themes.iter().copied()),
                ),
                Indicator::TranchesAge => histogram(
                    TrancheAge::ALL,
                    people
                        .iter()
                        .map(|p| p.tranche_age.unwrap_or(TrancheAge::NonCommunique)),
                ),
                Indicator::StatutsSociaux => histogram(
                    StatutSocial::ALL,
                    people
                        .iter()
                        .map(|p| p.statut_social.unwrap_or(StatutSocial::NonCommunique)),
                ),
                Indicator::Autonomie => histogram(
                    Autonomie::ALL,
                    rows.iter()
                        .filter(|r| r.activity.kind == ActivityType::Individuel)
                        .filter_map(|r| r.participant.autonomie),
                ),
                Indicator::Orientations => {
                    IndicatorValue::Scalar(count(&|r| r.participant.oriented == Some(true)))
                }
                Indicator::Genres => histogram(
                    Genre::ALL,
                    people
                        .iter()
                        .map(|p| p.genre.unwrap_or(Genre::NonCommunique)),
                ),
                Indicator::Durees => histogram(
                    DurationBand::ALL,
                    activities
                        .iter()
                        .map(|a| DurationBand::of_minutes(a.duration_min)),
                ),
                Indicator::Lieux => histogram(
                    PlaceType::ALL,
                    activities.iter().filter_map(|a| a.place_type),
                ),
                Indicator::Materiel => histogram(
                    Materiel::ALL,
                    rows.iter()
                        .flat_map(|r| r.participant.materiel.iter().copied()),
                ),
                Indicator::Demarches => histogram(
                    Thematique::administrative(),
                    rows.iter()
                        .flat_map(|r| r.participant.themes.iter().copied()),
                ),
                Indicator::NiveauxAteliers => histogram(
                    NiveauAtelier::ALL,
                    activities.iter().filter_map(|a| a.level),
                ),
            };
            (indicator, value)
        })
        .collect();
    Indicators { period, values }
}

/// The shared facts of one activity, as [`Tally`] takes them.
#[derive(Debug, Clone, Copy)]
pub struct ActivityFacts<'a> {
    /// The activity id (breaks ties between people's latest rows as [`compute`] does).
    pub id: &'a str,
    /// The day it took place.
    pub date: time::Date,
    /// Individual or collective.
    pub kind: ActivityType,
    /// Duration in minutes.
    pub duration_min: u32,
    /// Where it took place.
    pub place_type: Option<PlaceType>,
    /// The workshop's level.
    pub level: Option<NiveauAtelier>,
    /// The import that brought this version of the activity.
    pub batch: u64,
}

/// One person's row of an activity, as [`Tally`] takes it; its themes and equipment are given
/// one at a time ([`Tally::theme`], [`Tally::materiel`]).
#[derive(Debug, Clone, Copy)]
pub struct RowFacts<'a> {
    /// The row's line in its file.
    pub line: u64,
    /// The person's pseudonym; `None` for an anonymous row.
    pub beneficiary: Option<&'a str>,
    /// First accompaniment.
    pub first_time: Option<bool>,
    /// Autonomy.
    pub autonomie: Option<Autonomie>,
    /// Oriented towards another structure.
    pub oriented: Option<bool>,
    /// Declared gender.
    pub genre: Option<Genre>,
    /// Age band.
    pub tranche_age: Option<TrancheAge>,
    /// Social status.
    pub statut_social: Option<StatutSocial>,
}

/// What a person counts with in the per-person histograms.
#[derive(Debug, Clone, Copy)]
struct PersonCells {
    genre: usize,
    tranche_age: usize,
    statut_social: usize,
}

/// A named person's latest row so far.
#[derive(Debug, Clone, Copy)]
struct Latest<'a> {
    order: (time::Date, u64, u64),
    id: &'a str,
    cells: PersonCells,
}

/// A count per value of a vocabulary, by position in [`Vocabulary::ALL`].
fn counts<V: Vocabulary>() -> Vec<u64> {
    vec![0; V::ALL.len()]
}

/// The position of a value in its vocabulary.
fn position<V: Vocabulary>(v: V) -> usize {
    v.index()
}

/// Exact indicators computed as a period's activities and rows stream by, without building
/// [`Activity`] values: the node computes a month straight from its stored records this way.
///
/// Feed each activity's facts with [`Tally::activity`], then each of its rows with
/// [`Tally::row`] (and the row's themes and equipment with [`Tally::theme`] and
/// [`Tally::materiel`]); [`Tally::finish`] gives the same [`Indicators`] as [`compute`] over the
/// same activities given in id order (ids distinct), which is how the node stores them.
/// Activities of other periods are ignored, as [`compute`] ignores them.
#[derive(Debug)]
pub struct Tally<'a> {
    period: Period,
    /// The activity being fed: its facts, and whether it counts (is of the period).
    current: Option<ActivityFacts<'a>>,
    activites: Vec<u64>,
    accompagnements: Vec<u64>,
    nouveaux: u64,
    duree: u64,
    themes: Vec<u64>,
    autonomie: Vec<u64>,
    orientations: u64,
    durees: Vec<u64>,
    lieux: Vec<u64>,
    materiel: Vec<u64>,
    niveaux: Vec<u64>,
    named: HashMap<&'a str, Latest<'a>>,
    anonymous: Vec<PersonCells>,
}

impl<'a> Tally<'a> {
    /// An empty tally of `period`.
    pub fn new(period: Period) -> Self {
        Self {
            period,
            current: None,
            activites: counts::<ActivityType>(),
            accompagnements: counts::<ActivityType>(),
            nouveaux: 0,
            duree: 0,
            themes: counts::<Thematique>(),
            autonomie: counts::<Autonomie>(),
            orientations: 0,
            durees: counts::<DurationBand>(),
            lieux: counts::<PlaceType>(),
            materiel: counts::<Materiel>(),
            niveaux: counts::<NiveauAtelier>(),
            named: HashMap::new(),
            anonymous: Vec::new(),
        }
    }

    /// Starts an activity; its rows follow. Returns whether it is of the period (when not, its
    /// rows are ignored and need not be fed).
    pub fn activity(&mut self, facts: ActivityFacts<'a>) -> bool {
        if Period::of_date(facts.date) != self.period {
            self.current = None;
            return false;
        }
        self.activites[position(facts.kind)] += 1;
        self.duree += u64::from(facts.duration_min);
        self.durees[position(DurationBand::of_minutes(facts.duration_min))] += 1;
        if let Some(place) = facts.place_type {
            self.lieux[position(place)] += 1;
        }
        if let Some(level) = facts.level {
            self.niveaux[position(level)] += 1;
        }
        self.current = Some(facts);
        true
    }

    /// One row (person) of the current activity.
    pub fn row(&mut self, row: RowFacts<'a>) {
        let Some(activity) = self.current else {
            return;
        };
        self.accompagnements[position(activity.kind)] += 1;
        if row.first_time == Some(true) {
            self.nouveaux += 1;
        }
        if row.oriented == Some(true) {
            self.orientations += 1;
        }
        if activity.kind == ActivityType::Individuel
            && let Some(a) = row.autonomie
        {
            self.autonomie[position(a)] += 1;
        }
        let cells = PersonCells {
            genre: position(row.genre.unwrap_or(Genre::NonCommunique)),
            tranche_age: position(row.tranche_age.unwrap_or(TrancheAge::NonCommunique)),
            statut_social: position(row.statut_social.unwrap_or(StatutSocial::NonCommunique)),
        };
        let Some(beneficiary) = row.beneficiary else {
            self.anonymous.push(cells);
            return;
        };
        let latest = Latest {
            order: (activity.date, activity.batch, row.line),
            id: activity.id,
            cells,
        };
        self.named
            .entry(beneficiary)
            .and_modify(|held| {
                // `compute` keeps the first of equal rows in its input order: id order, then
                // the activity's own row order.
                if latest.order > held.order || (latest.order == held.order && latest.id < held.id)
                {
                    *held = latest;
                }
            })
            .or_insert(latest);
    }

    /// One theme of the current row.
    pub fn theme(&mut self, theme: Thematique) {
        if self.current.is_some() {
            self.themes[position(theme)] += 1;
        }
    }

    /// One piece of equipment of the current row.
    pub fn materiel(&mut self, materiel: Materiel) {
        if self.current.is_some() {
            self.materiel[position(materiel)] += 1;
        }
    }

    /// The `which` indicators of everything fed.
    pub fn finish(self, which: &[Indicator]) -> Indicators {
        fn cells<V: Vocabulary>(categories: &[V], counts: &[u64]) -> IndicatorValue {
            IndicatorValue::Categories(
                categories
                    .iter()
                    .map(|c| (c.code(), counts[position(*c)]))
                    .collect(),
            )
        }
        let mut genres = counts::<Genre>();
        let mut ages = counts::<TrancheAge>();
        let mut statuts = counts::<StatutSocial>();
        let people = self.named.len() as u64 + self.anonymous.len() as u64;
        for p in self
            .named
            .values()
            .map(|l| &l.cells)
            .chain(self.anonymous.iter())
        {
            genres[p.genre] += 1;
            ages[p.tranche_age] += 1;
            statuts[p.statut_social] += 1;
        }
        let values = which
            .iter()
            .map(|&indicator| {
                let value = match indicator {
                    Indicator::Activites => cells(ActivityType::ALL, &self.activites),
                    Indicator::Accompagnements => cells(ActivityType::ALL, &self.accompagnements),
                    Indicator::Beneficiaires => IndicatorValue::Scalar(people),
                    Indicator::NouveauxBeneficiaires => IndicatorValue::Scalar(self.nouveaux),
                    Indicator::DureeMinutes => IndicatorValue::Scalar(self.duree),
                    Indicator::Thematiques => cells(Thematique::mediation(), &self.themes),
                    Indicator::TranchesAge => cells(TrancheAge::ALL, &ages),
                    Indicator::StatutsSociaux => cells(StatutSocial::ALL, &statuts),
                    Indicator::Autonomie => cells(Autonomie::ALL, &self.autonomie),
                    Indicator::Orientations => IndicatorValue::Scalar(self.orientations),
                    Indicator::Genres => cells(Genre::ALL, &genres),
                    Indicator::Durees => cells(DurationBand::ALL, &self.durees),
                    Indicator::Lieux => cells(PlaceType::ALL, &self.lieux),
                    Indicator::Materiel => cells(Materiel::ALL, &self.materiel),
                    Indicator::Demarches => cells(Thematique::administrative(), &self.themes),
                    Indicator::NiveauxAteliers => cells(NiveauAtelier::ALL, &self.niveaux),
                };
                (indicator, value)
            })
            .collect();
        Indicators {
            period: self.period,
            values,
        }
    }
}

/// Feeds a [`Tally`] from activities (what the node does from its records, here from values).
pub fn tally(period: Period, activities: &[Activity], which: &[Indicator]) -> Indicators {
    let mut tally = Tally::new(period);
    for a in activities {
        let facts = ActivityFacts {
            id: &a.id,
            date: a.date,
            kind: a.kind,
            duration_min: a.duration_min,
            place_type: a.place_type,
            level: a.level,
            batch: a.batch,
        };
        if !tally.activity(facts) {
            continue;
        }
        for p in &a.participants {
            tally.row(RowFacts {
                line: p.line,
                beneficiary: p.beneficiary.as_deref(),
                first_time: p.first_time,
                autonomie: p.autonomie,
                oriented: p.oriented,
                genre: p.genre,
                tranche_age: p.tranche_age,
                statut_social: p.statut_social,
            });
            for t in &p.themes {
                tally.theme(*t);
            }
            for m in &p.materiel {
                tally.materiel(*m);
            }
        }
    }
    tally.finish(which)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vocab<V: Vocabulary + std::fmt::Debug>() -> impl Strategy<Value = V> {
        proptest::sample::select(V::ALL)
    }

    prop_compose! {
        // Few people, days, batches and lines, so that people recur and "latest" rows tie.
        fn participant()(
            beneficiary in proptest::option::of("[a-c]{1,2}"),
            first_time in proptest::option::of(any::<bool>()),
            themes in proptest::collection::vec(vocab::<Thematique>(), 0..4),
            materiel in proptest::collection::vec(vocab::<Materiel>(), 0..3),
            autonomie in proptest::option::of(vocab::<Autonomie>()),
            oriented in proptest::option::of(any::<bool>()),
            genre in proptest::option::of(vocab::<Genre>()),
            tranche_age in proptest::option::of(vocab::<TrancheAge>()),
            statut_social in proptest::option::of(vocab::<StatutSocial>()),
            line in 2u64..5,
        ) -> Participant {
            Participant {
                line, beneficiary, first_time, themes, materiel, autonomie, oriented, genre,
                tranche_age, statut_social, residence: None,
            }
        }
    }

    prop_compose! {
        fn activity()(
            id in "[a-z]{1,3}",
            day in 0i64..40,
            kind in vocab::<ActivityType>(),
            duration_min in 1u32..=300,
            place_type in proptest::option::of(vocab::<PlaceType>()),
            level in proptest::option::of(vocab::<NiveauAtelier>()),
            batch in 1u64..3,
            participants in proptest::collection::vec(participant(), 1..4),
        ) -> Activity {
            Activity {
                id,
                date: time::macros::date!(2026 - 09 - 20) + time::Duration::days(day),
                kind, duration_min, place_type, place_commune: None, level, batch, participants,
            }
        }
    }

    proptest! {
        #[test]
        fn the_tally_equals_compute(mut activities in proptest::collection::vec(activity(), 0..40)) {
            // As the store gives them: one activity per id, in id order.
            activities.sort_by(|a, b| a.id.cmp(&b.id));
            activities.dedup_by(|a, b| a.id == b.id);
            let period = Period::new(2026, 10).expect("period");
            let all: Vec<Indicator> =
                Indicator::COMMON_CORE.iter().chain(Indicator::MODULES).copied().collect();
            prop_assert_eq!(
                tally(period, &activities, &all),
                compute(period, &activities, &all)
            );
        }
    }
}
