//! Seeded synthetic activity reports, in the import format, with realistic proportions.
//!
//! Used by the demo, the tests and the simulations. The proportions (mostly individual
//! accompaniments, older and retired people over-represented, a few themes dominating, a share
//! of anonymous rows, people coming back several times) follow the sector's published activity
//! reports in broad strokes; they are plausible, not official statistics.

use std::io::Write;

use maillage_protocol::vocab::{
    Autonomie, Genre, Materiel, NiveauAtelier, PlaceType, StatutSocial, Thematique, TrancheAge,
    Vocabulary,
};
use maillage_protocol::{Cog, Period};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

use crate::import::COLUMNS;

/// What to generate.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    /// The seed: the same options give the same file, byte for byte.
    pub seed: u64,
    /// The first month.
    pub first: Period,
    /// How many consecutive months.
    pub months: u32,
    /// Mean number of activities per month.
    pub activities_per_month: u32,
    /// COG code of the structure's commune.
    pub commune: String,
    /// Prefix of generated `activite_id`s, so that several structures' files never collide.
    pub id_prefix: String,
}

impl Default for SynthOptions {
    fn default() -> Self {
        Self {
            seed: 1,
            first: Period::new(2026, 9).unwrap_or_else(|| unreachable!("2026-09 is in range")),
            months: 2,
            activities_per_month: 60,
            commune: "69385".into(),
            id_prefix: "act".into(),
        }
    }
}

/// Counts of what was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SynthStats {
    /// Activities written.
    pub activities: u64,
    /// Rows written.
    pub rows: u64,
}

struct Person {
    id: String,
    genre: Genre,
    age: TrancheAge,
    status: StatutSocial,
    residence: String,
    seen: bool,
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, weighted: &[(T, u32)]) -> T {
    let total: u32 = weighted.iter().map(|(_, w)| w).sum();
    let mut x = rng.random_range(0..total.max(1));
    for (value, weight) in weighted {
        if x < *weight {
            return *value;
        }
        x -= weight;
    }
    weighted[weighted.len() - 1].0
}

const THEMES: &[(Thematique, u32)] = &[
    (Thematique::PrendreEnMainDuMateriel, 20),
    (Thematique::NavigationSurInternet, 14),
    (Thematique::Email, 14),
    (Thematique::AideAuxDemarchesAdministratives, 16),
    (Thematique::GereSesContenusNumeriques, 8),
    (Thematique::SecuriteNumerique, 7),
    (Thematique::Bureautique, 6),
    (Thematique::BanqueEtAchatsEnLigne, 5),
    (Thematique::Sante, 5),
    (Thematique::ReseauxSociaux, 4),
    (Thematique::InsertionProfessionnelle, 4),
    (Thematique::DiagnosticNumerique, 3),
    (Thematique::MaintenanceDeMateriel, 2),
    (Thematique::CultureNumerique, 2),
    (Thematique::IntelligenceArtificielle, 2),
    (Thematique::Parentalite, 1),
    (Thematique::ScolariteEtNumerique, 1),
    (Thematique::CreerAvecLeNumerique, 1),
    (Thematique::Entrepreneuriat, 1),
];

const AGES: &[(TrancheAge, u32)] = &[
    (TrancheAge::MoinsDeDouze, 2),
    (TrancheAge::DouzeDixHuit, 4),
    (TrancheAge::DixHuitVingtQuatre, 7),
    (TrancheAge::VingtCinqTrenteNeuf, 14),
    (TrancheAge::QuaranteCinquanteNeuf, 22),
    (TrancheAge::SoixanteSoixanteNeuf, 22),
    (TrancheAge::SoixanteDixPlus, 24),
    (TrancheAge::NonCommunique, 5),
];

const STATUSES: &[(StatutSocial, u32)] = &[
    (StatutSocial::Scolarise, 6),
    (StatutSocial::SansEmploi, 24),
    (StatutSocial::EnEmploi, 18),
    (StatutSocial::Retraite, 40),
    (StatutSocial::NonCommunique, 12),
];

/// Writes a synthetic activity-report CSV file; returns what it wrote.
pub fn generate(options: &SynthOptions, out: impl Write) -> std::io::Result<SynthStats> {
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let cog = Cog::get();
    let departement = cog
        .commune(&options.commune)
        .map(|c| c.departement.to_owned())
        .unwrap_or_else(|_| "69".into());
    let mut nearby: Vec<&str> = cog
        .current_commune_codes()
        .filter(|c| c.starts_with(&departement))
        .collect();
    nearby.sort_unstable();
    let nearby: Vec<&str> = nearby.into_iter().take(40).collect();

    let pool_size = (options.activities_per_month as usize * options.months as usize / 2).max(8);
    let mut people: Vec<Person> = (0..pool_size)
        .map(|i| Person {
            id: format!("{}-p{i:05}", options.id_prefix),
            genre: pick(
                &mut rng,
                &[
                    (Genre::Feminin, 52),
                    (Genre::Masculin, 45),
                    (Genre::NonCommunique, 3),
                ],
            ),
            age: pick(&mut rng, AGES),
            status: pick(&mut rng, STATUSES),
            residence: if rng.random_bool(0.6) || nearby.is_empty() {
                options.commune.clone()
            } else {
                nearby[rng.random_range(0..nearby.len())].to_owned()
            },
            seen: false,
        })
        .collect();

    let mut returning: Vec<usize> = Vec::new();
    let mut csv = csv::Writer::from_writer(out);
    csv.write_record(COLUMNS)?;
    let mut stats = SynthStats::default();
    let mut period = options.first;
    for _ in 0..options.months {
        let days = u32::from(period.last_day().day());
        let spread = (options.activities_per_month / 5).max(1);
        let n = options.activities_per_month + rng.random_range(0..=2 * spread) - spread;
        let mut activities: Vec<(u32, bool)> = (0..n)
            .map(|_| (rng.random_range(1..=days), rng.random_bool(0.2)))
            .collect();
        activities.sort_unstable();
        for (day, collective) in activities {
            stats.activities += 1;
            let id = format!("{}-{}", options.id_prefix, stats.activities);
            let date = format!("{period}-{day:02}");
            let place = pick(
                &mut rng,
                &[
                    (PlaceType::LieuActivite, 80),
                    (PlaceType::ADistance, 9),
                    (PlaceType::Domicile, 6),
                    (PlaceType::Autre, 5),
                ],
            );
            let place_commune = if place == PlaceType::LieuActivite {
                options.commune.as_str()
            } else {
                ""
            };
            let (kind, duration, participants, level) = if collective {
                let level = pick(
                    &mut rng,
                    &[
                        (Some(NiveauAtelier::Debutant), 50),
                        (Some(NiveauAtelier::Intermediaire), 25),
                        (Some(NiveauAtelier::Avance), 5),
                        (None, 20),
                    ],
                );
                let duration = pick(&mut rng, &[(60u32, 30), (90, 30), (120, 30), (180, 10)]);
                ("collectif", duration, rng.random_range(3..=10usize), level)
            } else {
                let duration = pick(
                    &mut rng,
                    &[
                        (15u32, 10),
                        (20, 10),
                        (30, 30),
                        (45, 20),
                        (60, 20),
                        (90, 8),
                        (120, 2),
                    ],
                );
                ("individuel", duration, 1, None)
            };
            let workshop_themes: Vec<Thematique> = (0..rng.random_range(1..=2))
                .map(|_| pick(&mut rng, THEMES))
                .collect();
            for _ in 0..participants {
                stats.rows += 1;
                let anonymous = rng.random_bool(0.15);
                let person = if anonymous {
                    None
                } else {
                    // Returning visitors: half the time, someone already seen.
                    let i = if !returning.is_empty() && rng.random_bool(0.5) {
                        returning[rng.random_range(0..returning.len())]
                    } else {
                        rng.random_range(0..people.len())
                    };
                    if !people[i].seen {
                        returning.push(i);
                    }
                    Some(i)
                };
                let mut themes = if collective {
                    workshop_themes.clone()
                } else {
                    (0..rng.random_range(1..=3))
                        .map(|_| pick(&mut rng, THEMES))
                        .collect()
                };
                if themes.contains(&Thematique::AideAuxDemarchesAdministratives) {
                    let admin = Thematique::administrative();
                    themes.push(admin[rng.random_range(0..admin.len())]);
                }
                themes.dedup();
                let themes: Vec<&str> = themes.iter().map(|t| t.code()).collect();
                let materiel: &[Materiel] = pick(
                    &mut rng,
                    &[
                        (&[Materiel::Telephone][..], 35),
                        (&[Materiel::Ordinateur], 30),
                        (&[Materiel::Ordinateur, Materiel::Telephone], 15),
                        (&[Materiel::Tablette], 10),
                        (&[Materiel::Aucun], 7),
                        (&[Materiel::Autre], 3),
                    ],
                );
                let materiel: Vec<&str> = materiel.iter().map(|m| m.code()).collect();
                let autonomie = if collective || rng.random_bool(0.1) {
                    ""
                } else {
                    pick(
                        &mut rng,
                        &[
                            (Autonomie::EntierementAccompagne, 45),
                            (Autonomie::PartiellementAutonome, 40),
                            (Autonomie::Autonome, 15),
                        ],
                    )
                    .code()
                };
                let oriented = pick(&mut rng, &[("oui", 10), ("non", 70), ("", 20)]);
                let blank = rng.random_bool(0.1);
                let (beneficiary, first, genre, age, status, residence) = match person {
                    Some(i) => {
                        let p = &mut people[i];
                        let first = if p.seen { "non" } else { "oui" };
                        p.seen = true;
                        (
                            p.id.clone(),
                            first,
                            if blank { "" } else { p.genre.code() },
                            if blank { "" } else { p.age.code() },
                            if blank { "" } else { p.status.code() },
                            p.residence.clone(),
                        )
                    }
                    None => (
                        String::new(),
                        pick(&mut rng, &[("oui", 40), ("non", 30), ("", 30)]),
                        pick(&mut rng, &[(Genre::Feminin, 52), (Genre::Masculin, 48)]).code(),
                        pick(&mut rng, AGES).code(),
                        pick(&mut rng, STATUSES).code(),
                        String::new(),
                    ),
                };
                csv.write_record([
                    id.as_str(),
                    &date,
                    kind,
                    &duration.to_string(),
                    place.code(),
                    place_commune,
                    &themes.join("|"),
                    &materiel.join("|"),
                    autonomie,
                    oriented,
                    level.map_or("", NiveauAtelier::code),
                    &beneficiary,
                    first,
                    genre,
                    age,
                    status,
                    &residence,
                ])?;
            }
        }
        period = period.next();
    }
    csv.flush()?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import;

    #[test]
    fn same_seed_same_bytes_and_the_file_imports() -> Result<(), Box<dyn std::error::Error>> {
        let options = SynthOptions {
            seed: 7,
            ..SynthOptions::default()
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let stats = generate(&options, &mut a)?;
        generate(&options, &mut b)?;
        assert_eq!(a, b);
        let other = generate(
            &SynthOptions {
                seed: 8,
                ..options.clone()
            },
            Vec::new(),
        )?;
        assert_ne!(other, stats, "another seed gives other data");
        let parsed = import::parse(&a, 1, &mut ())?;
        assert_eq!(parsed.activities.len() as u64, stats.activities);
        assert_eq!(parsed.rows, stats.rows);
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        Ok(())
    }
}
