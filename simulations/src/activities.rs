//! Synthetic activity records of one structure for one month, generated in memory.
//!
//! The proportions follow the node's CSV generator (`maillage_node::synth`): mostly individual
//! accompaniments, older and retired people over-represented, a few themes dominating, a share
//! of anonymous rows, and returning visitors. Returning visitors are drawn with probability
//! proportional to their past visits, so a few people come very often (and meet the
//! contribution bound), and a few accompaniments last longer than the duration bound.

use maillage_privacy::{Activity, Participant};
use maillage_protocol::Period;
use maillage_protocol::vocab::{
    ActivityType, Autonomie, Genre, Materiel, NiveauAtelier, PlaceType, StatutSocial, Thematique,
    TrancheAge,
};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use time::Date;

use crate::france::{Structure, standard_normal};

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

struct Person {
    genre: Genre,
    age: TrancheAge,
    status: StatutSocial,
    seen: bool,
}

/// The month `period` of structure `s`: the same records for the same seed, whatever else runs.
pub fn month(s: &Structure, period: Period) -> Vec<Activity> {
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
    // Month-to-month variation around the structure's mean (σ = 10%), at least one activity.
    let n = ((s.activities_per_month * (1.0 + 0.1 * standard_normal(&mut rng))).round() as i64)
        .max(1) as usize;
    let pool = (n / 2).max(4);
    let mut people: Vec<Person> = (0..pool)
        .map(|_| Person {
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
            seen: false,
        })
        .collect();
    // One entry per past visit: returning visitors are drawn in proportion to their visits.
    let mut visits: Vec<usize> = Vec::new();
    let days = period.last_day().day();
    let mut out = Vec::with_capacity(n);
    let mut line = 1u64;
    for a in 0..n {
        let collective = rng.random_bool(0.15);
        let day = rng.random_range(1..=days);
        let date = Date::from_calendar_date(period.year(), period.first_day().month(), day)
            .unwrap_or_else(|_| period.first_day());
        let place_type = pick(
            &mut rng,
            &[
                (PlaceType::LieuActivite, 80),
                (PlaceType::ADistance, 9),
                (PlaceType::Domicile, 6),
                (PlaceType::Autre, 5),
            ],
        );
        let (kind, duration_min, participants, level) = if collective {
            let level = pick(
                &mut rng,
                &[
                    (Some(NiveauAtelier::Debutant), 50),
                    (Some(NiveauAtelier::Intermediaire), 25),
                    (Some(NiveauAtelier::Avance), 5),
                    (None, 20),
                ],
            );
            let d = pick(
                &mut rng,
                &[(60u32, 30), (90, 30), (120, 30), (180, 8), (300, 2)],
            );
            (
                ActivityType::Collectif,
                d,
                rng.random_range(3..=12usize),
                level,
            )
        } else {
            let d = pick(
                &mut rng,
                &[
                    (15u32, 10),
                    (20, 10),
                    (30, 30),
                    (45, 20),
                    (60, 20),
                    (90, 7),
                    (120, 2),
                    (300, 1),
                ],
            );
            (ActivityType::Individuel, d, 1, None)
        };
        let workshop_themes: Vec<Thematique> = (0..rng.random_range(1..=2))
            .map(|_| pick(&mut rng, THEMES))
            .collect();
        let mut rows = Vec::with_capacity(participants);
        for _ in 0..participants {
            let person = if rng.random_bool(0.15) {
                None
            } else {
                let i = if !visits.is_empty() && rng.random_bool(0.5) {
                    visits[rng.random_range(0..visits.len())]
                } else {
                    rng.random_range(0..people.len())
                };
                visits.push(i);
                Some(i)
            };
            let mut themes: Vec<Thematique> = if collective {
                workshop_themes.clone()
            } else {
                (0..rng.random_range(1..=4))
                    .map(|_| pick(&mut rng, THEMES))
                    .collect()
            };
            if themes.contains(&Thematique::AideAuxDemarchesAdministratives) {
                let admin = Thematique::administrative();
                themes.push(admin[rng.random_range(0..admin.len())]);
            }
            let mut unique = Vec::with_capacity(themes.len());
            for t in themes {
                if !unique.contains(&t) {
                    unique.push(t);
                }
            }
            let materiel: &[Materiel] = pick(
                &mut rng,
                &[
                    (&[Materiel::Telephone][..], 35),
                    (&[Materiel::Ordinateur], 30),
                    (&[Materiel::Ordinateur, Materiel::Telephone], 15),
                    (
                        &[
                            Materiel::Ordinateur,
                            Materiel::Telephone,
                            Materiel::Tablette,
                        ],
                        3,
                    ),
                    (&[Materiel::Tablette], 10),
                    (&[Materiel::Aucun], 4),
                    (&[Materiel::Autre], 3),
                ],
            );
            let autonomie = if collective || rng.random_bool(0.1) {
                None
            } else {
                Some(pick(
                    &mut rng,
                    &[
                        (Autonomie::EntierementAccompagne, 45),
                        (Autonomie::PartiellementAutonome, 40),
                        (Autonomie::Autonome, 15),
                    ],
                ))
            };
            let oriented = pick(&mut rng, &[(Some(true), 10), (Some(false), 70), (None, 20)]);
            let participant = match person {
                Some(i) => {
                    let p = &mut people[i];
                    let first = !p.seen;
                    p.seen = true;
                    Participant {
                        line,
                        beneficiary: Some(format!("p{i}")),
                        first_time: Some(first),
                        themes: unique,
                        materiel: materiel.to_vec(),
                        autonomie,
                        oriented,
                        genre: Some(p.genre),
                        tranche_age: Some(p.age),
                        statut_social: Some(p.status),
                        residence: None,
                    }
                }
                None => Participant {
                    line,
                    beneficiary: None,
                    first_time: pick(&mut rng, &[(Some(true), 40), (Some(false), 30), (None, 30)]),
                    themes: unique,
                    materiel: materiel.to_vec(),
                    autonomie,
                    oriented,
                    genre: Some(pick(
                        &mut rng,
                        &[(Genre::Feminin, 52), (Genre::Masculin, 48)],
                    )),
                    tranche_age: Some(pick(&mut rng, AGES)),
                    statut_social: Some(pick(&mut rng, STATUSES)),
                    residence: None,
                },
            };
            line += 1;
            rows.push(participant);
        }
        out.push(Activity {
            id: format!("a{a}"),
            date,
            kind,
            duration_min,
            place_type: Some(place_type),
            place_commune: (place_type == PlaceType::LieuActivite).then(|| s.commune.clone()),
            level,
            batch: 1,
            participants: rows,
        });
    }
    out
}
