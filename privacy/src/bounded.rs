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

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;

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
        let distinct_within = |values: &[Thematique], max: usize| {
            values.len() <= max && values.iter().collect::<BTreeSet<_>>().len() == values.len()
        };
        self.rows.len() <= bounds.rows()
            && self.rows.iter().all(|r| {
                r.activity.duration_min <= bounds.max_duration_min
                    && distinct_within(&r.themes, bounds.themes())
                    && r.themes.iter().all(|t| !t.is_administrative())
                    && distinct_within(&r.demarches, bounds.themes())
                    && r.demarches.iter().all(|t| t.is_administrative())
                    && r.materiel.len() <= bounds.materiel()
                    && r.materiel.iter().collect::<BTreeSet<_>>().len() == r.materiel.len()
            })
    }
}

/// The first `max` distinct values of `values` that `keep` accepts, in order.
fn first_distinct<V: Copy + Ord>(values: &[V], keep: impl Fn(V) -> bool, max: usize) -> Vec<V> {
    let mut seen = BTreeSet::new();
    values
        .iter()
        .copied()
        .filter(|&v| keep(v) && seen.insert(v))
        .take(max)
        .collect()
}

/// One row of the period with the activity it belongs to.
#[derive(Clone, Copy)]
struct Row<'a> {
    activity: &'a Activity,
    participant: &'a Participant,
}

impl<'a> Row<'a> {
    /// (date, import batch, file line), then the activity id so that the order is total.
    fn order(&self) -> (time::Date, u64, u64, &'a str) {
        (
            self.activity.date,
            self.activity.batch,
            self.participant.line,
            &self.activity.id,
        )
    }

    fn bounded(&self, bounds: &Bounds) -> BoundedRow {
        let a = self.activity;
        let p = self.participant;
        BoundedRow {
            activity: ActivityKey {
                id: a.id.clone(),
                kind: a.kind,
                duration_min: a.duration_min.min(bounds.max_duration_min),
                band: DurationBand::of_minutes(a.duration_min),
                place_type: a.place_type,
                level: a.level,
            },
            themes: first_distinct(&p.themes, |t| !t.is_administrative(), bounds.themes()),
            demarches: first_distinct(&p.themes, Thematique::is_administrative, bounds.themes()),
            materiel: first_distinct(&p.materiel, |_| true, bounds.materiel()),
            autonomie: p.autonomie,
            oriented: p.oriented == Some(true),
        }
    }
}

/// A person's contribution from all their rows of the period (at least one).
fn contribution(mut rows: Vec<Row<'_>>, bounds: &Bounds) -> Option<Contribution> {
    rows.sort_by_key(Row::order);
    let latest = rows.last()?.participant;
    Some(Contribution {
        new: rows.iter().any(|r| r.participant.first_time == Some(true)),
        genre: latest.genre.unwrap_or(Genre::NonCommunique),
        tranche_age: latest.tranche_age.unwrap_or(TrancheAge::NonCommunique),
        statut_social: latest.statut_social.unwrap_or(StatutSocial::NonCommunique),
        rows: rows
            .iter()
            .take(bounds.rows())
            .map(|r| r.bounded(bounds))
            .collect(),
    })
}

/// Bounds the contributions of `period`'s people (activities of other periods are ignored):
/// one [`Contribution`] per named person, in identifier order, then one per anonymous row.
///
/// `bounds` is expected to be valid ([`Bounds::validate`]); the result respects it either way.
pub fn bound(period: Period, activities: &[Activity], bounds: &Bounds) -> Vec<Contribution> {
    let mut named: BTreeMap<&str, Vec<Row<'_>>> = BTreeMap::new();
    let mut anonymous = Vec::new();
    for activity in activities.iter().filter(|a| a.period() == period) {
        for participant in &activity.participants {
            let row = Row {
                activity,
                participant,
            };
            match participant.beneficiary.as_deref() {
                Some(id) => named.entry(id).or_default().push(row),
                None => anonymous.push(vec![row]),
            }
        }
    }
    named
        .into_values()
        .chain(anonymous)
        .filter_map(|rows| contribution(rows, bounds))
        .collect()
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
    let people = bound(period, activities, bounds);
    which
        .iter()
        .map(|&indicator| BoundedIndicator {
            indicator,
            sensitivity: sensitivity(indicator, bounds),
            cells: cell_labels(indicator)
                .into_iter()
                .zip(cells(indicator, &people))
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

    fn small_bounds() -> impl Strategy<Value = Bounds> {
        (1u32..=4, 1u32..=300, 1u32..=4, 1u32..=3).prop_map(|(k, d, t, m)| Bounds {
            max_rows_per_person: k,
            max_duration_min: d,
            max_themes_per_row: t,
            max_materiel_per_row: m,
        })
    }

    proptest! {
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
