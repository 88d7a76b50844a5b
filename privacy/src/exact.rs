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
