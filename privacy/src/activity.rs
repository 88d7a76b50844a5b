//! Validated activity records, as the node stores them.
//!
//! One [`Activity`] per `activite_id`, holding one [`Participant`] per imported row. Values are
//! the sector's vocabularies, never free text, except the structure's own identifiers.

use maillage_protocol::Period;
use maillage_protocol::vocab::{
    ActivityType, Autonomie, Genre, Materiel, NiveauAtelier, PlaceType, StatutSocial, Thematique,
    TrancheAge,
};
use serde::{Deserialize, Serialize};
use time::Date;

/// One activity (an individual accompaniment or a collective workshop) of a structure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// The structure's own identifier for the activity.
    pub id: String,
    /// The day it took place.
    pub date: Date,
    /// Individual or collective.
    pub kind: ActivityType,
    /// Duration in minutes, 1–1440.
    pub duration_min: u32,
    /// Where it took place.
    pub place_type: Option<PlaceType>,
    /// COG code of the commune where it took place.
    pub place_commune: Option<String>,
    /// The workshop's level (collective activities only).
    pub level: Option<NiveauAtelier>,
    /// Which import brought this version of the activity; orders rows "in import order".
    pub batch: u64,
    /// One entry per person taking part, in file order.
    pub participants: Vec<Participant>,
}

/// One person taking part in an activity (one row of an activity-report file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    /// The line of the file this row came from (the header is line 1).
    pub line: u64,
    /// The structure's own pseudonym for the person; `None` for an anonymous row.
    pub beneficiary: Option<String>,
    /// Whether this is the person's first accompaniment.
    pub first_time: Option<bool>,
    /// The themes of the accompaniment, without duplicates, in file order.
    pub themes: Vec<Thematique>,
    /// The equipment used, without duplicates, in file order.
    pub materiel: Vec<Materiel>,
    /// How autonomous the person was.
    pub autonomie: Option<Autonomie>,
    /// Whether the person was oriented towards another structure.
    pub oriented: Option<bool>,
    /// Declared gender.
    pub genre: Option<Genre>,
    /// Age band.
    pub tranche_age: Option<TrancheAge>,
    /// Social status.
    pub statut_social: Option<StatutSocial>,
    /// COG code of the commune of residence.
    pub residence: Option<String>,
}

impl Activity {
    /// The month this activity counts in.
    pub fn period(&self) -> Period {
        Period::of_date(self.date)
    }

    /// Whether `other` holds the same facts, whatever import brought it and at which lines.
    pub fn same_content(&self, other: &Activity) -> bool {
        let strip = |a: &Activity| {
            let mut a = a.clone();
            a.batch = 0;
            a.participants.iter_mut().for_each(|p| p.line = 0);
            a
        };
        strip(self) == strip(other)
    }
}
