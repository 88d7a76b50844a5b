//! Test data: seeded synthetic months of activities and the extreme person of sensitivity tests.

use maillage_protocol::Period;
use maillage_protocol::vocab::{
    ActivityType, Autonomie, Genre, Materiel, NiveauAtelier, PlaceType, StatutSocial, Thematique,
    TrancheAge, Vocabulary,
};

use crate::activity::{Activity, Participant};

/// A small xorshift generator: test data only, never noise.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `0..n` (n > 0), up to a negligible bias.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub(crate) fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    pub(crate) fn pick<T: Copy>(&mut self, values: &[T]) -> T {
        values[self.below(values.len() as u64) as usize]
    }

    fn maybe<T: Copy>(&mut self, values: &[T]) -> Option<T> {
        if self.percent(20) {
            None
        } else {
            Some(self.pick(values))
        }
    }

    /// Up to `max` distinct values, in random order (as a validated import stores them).
    fn some_of<T: Copy + PartialEq>(&mut self, values: &[T], max: u64) -> Vec<T> {
        let mut out = Vec::new();
        for _ in 0..self.below(max + 1) {
            let v = self.pick(values);
            if !out.contains(&v) {
                out.push(v);
            }
        }
        out
    }
}

fn participant(rng: &mut Rng, line: u64, beneficiary: Option<String>) -> Participant {
    Participant {
        line,
        beneficiary,
        first_time: if rng.percent(30) {
            None
        } else {
            Some(rng.percent(30))
        },
        themes: rng.some_of(Thematique::ALL, 6),
        materiel: rng.some_of(Materiel::ALL, 3),
        autonomie: rng.maybe(Autonomie::ALL),
        oriented: if rng.percent(30) {
            None
        } else {
            Some(rng.percent(20))
        },
        genre: rng.maybe(Genre::ALL),
        tranche_age: rng.maybe(TrancheAge::ALL),
        statut_social: rng.maybe(StatutSocial::ALL),
        residence: None,
    }
}

/// A synthetic month: `activities` activities of `period` (unique ids), whose rows name up to
/// `people` beneficiaries (`b0`, `b1`, …) or are anonymous, with durations up to 1440 minutes
/// and up to 6 themes per row, so that small bounds bind.
pub(crate) fn month(period: Period, seed: u64, activities: usize, people: u64) -> Vec<Activity> {
    let mut rng = Rng::new(seed);
    let days = u64::from(period.last_day().day());
    let mut line = 1;
    (0..activities)
        .map(|i| {
            let kind = rng.pick(ActivityType::ALL);
            let size = match kind {
                ActivityType::Individuel => 1,
                ActivityType::Collectif => 1 + rng.below(5),
            };
            let participants = (0..size)
                .map(|_| {
                    line += 1;
                    let who =
                        (people > 0 && rng.percent(75)).then(|| format!("b{}", rng.below(people)));
                    participant(&mut rng, line, who)
                })
                .collect();
            Activity {
                id: format!("a{i}"),
                date: period.first_day() + time::Duration::days(rng.below(days) as i64),
                kind,
                duration_min: 1 + rng.below(1440) as u32,
                place_type: rng.maybe(PlaceType::ALL),
                place_commune: None,
                level: match kind {
                    ActivityType::Collectif => rng.maybe(NiveauAtelier::ALL),
                    ActivityType::Individuel => None,
                },
                batch: 1 + rng.below(3),
                participants,
            }
        })
        .collect()
}

/// The row of a person who pushes every indicator as far as one row can.
fn extreme_row(line: u64, beneficiary: Option<&str>) -> Participant {
    Participant {
        line,
        beneficiary: beneficiary.map(str::to_owned),
        first_time: Some(true),
        themes: Thematique::ALL.to_vec(),
        materiel: Materiel::ALL.to_vec(),
        autonomie: Some(Autonomie::Autonome),
        oriented: Some(true),
        genre: Some(Genre::Feminin),
        tranche_age: Some(TrancheAge::SoixanteDixPlus),
        statut_social: Some(StatutSocial::Retraite),
        residence: None,
    }
}

/// Adds one person (`beneficiary`, or anonymous with a single row) with `rows` rows to
/// `activities`: each row either joins an existing activity of `period` (when `join` says so for
/// that row and one exists) or is a new activity of `kind` lasting 1440 minutes; every row has
/// every theme and every piece of equipment.
pub(crate) fn add_person(
    activities: &mut Vec<Activity>,
    period: Period,
    beneficiary: Option<&str>,
    rows: usize,
    kind: ActivityType,
    join: impl Fn(usize) -> Option<usize>,
) {
    let rows = if beneficiary.is_none() {
        rows.min(1)
    } else {
        rows
    };
    let existing: Vec<usize> = (0..activities.len())
        .filter(|&i| activities[i].period() == period)
        .collect();
    for r in 0..rows {
        let line = 100_000 + r as u64;
        let target = join(r)
            .filter(|_| !existing.is_empty())
            .map(|j| existing[j % existing.len()]);
        match target {
            Some(i) => activities[i]
                .participants
                .push(extreme_row(line, beneficiary)),
            None => activities.push(Activity {
                id: format!("extreme-{r}"),
                date: period.first_day(),
                kind,
                duration_min: 1440,
                place_type: Some(PlaceType::Domicile),
                place_commune: None,
                level: (kind == ActivityType::Collectif).then_some(NiveauAtelier::Avance),
                batch: 9,
                participants: vec![extreme_row(line, beneficiary)],
            }),
        }
    }
}
