//! The simulated country: régions, départements and communes of the COG compiled into
//! `maillage-protocol`, communes weighted by their legal population, hubs, and the structures
//! placed in communes.

use std::collections::HashMap;

use ed25519_dalek::SigningKey;
use maillage_protocol::Cog;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

/// Legal populations of communes (see `scripts/population.js`).
const POPULATION: &str = include_str!("../data/population.txt");

/// Share of structures placed uniformly over communes rather than by population: France
/// Services desks, town halls and rural third places put mediation where people are few.
const UNIFORM_SHARE: f64 = 0.2;

/// How hubs cover the territory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum HubLayout {
    /// 16 hubs, built from the 18 régions (see [`France::new`]).
    Regional,
    /// One hub per département (101).
    Departement,
}

/// One hub of the model.
#[derive(Debug, Clone)]
pub struct HubArea {
    /// A readable name.
    pub name: String,
    /// The commune the hub's node says it is in.
    pub seat: String,
    /// Whether it is overseas (longer network paths to the national node).
    pub overseas: bool,
}

/// One structure of the model.
#[derive(Debug, Clone)]
pub struct Structure {
    /// Its number.
    pub index: usize,
    /// Its commune (COG code).
    pub commune: String,
    /// Index into [`France::departements`].
    pub departement: usize,
    /// Index into [`France::regions`].
    pub region: usize,
    /// Index into [`France::hubs`].
    pub hub: usize,
    /// Mean activities per month (heavy-tailed across structures).
    pub activities_per_month: f64,
    /// The seed of its data.
    pub seed: u64,
    /// Its key, derived from the seed (simulations only).
    pub key: SigningKey,
}

/// The country.
#[derive(Debug)]
pub struct France {
    /// Région codes, in COG order.
    pub regions: Vec<String>,
    /// Département codes, in COG order.
    pub departements: Vec<String>,
    /// The région of each département.
    pub departement_region: Vec<usize>,
    /// The hub of each département.
    pub departement_hub: Vec<usize>,
    /// The hubs.
    pub hubs: Vec<HubArea>,
    /// Communes with their département and population, sorted by code.
    communes: Vec<(String, usize, u64)>,
    /// Cumulative population, for weighted draws.
    cumulative: Vec<u64>,
}

/// The 16 hubs of the regional layout: the 13 metropolitan régions, Corse joined to
/// Provence-Alpes-Côte d'Azur, Île-de-France and Auvergne-Rhône-Alpes split in two, and two
/// overseas hubs (Antilles-Guyane, Océan Indien). A plausible model of the 16 *Hubs
/// territoriaux*, not their official list.
fn regional_hub(departement: &str, region: &str) -> (&'static str, &'static str) {
    match (region, departement) {
        ("11", "75" | "92" | "93" | "94") => ("Île-de-France Paris et petite couronne", "75056"),
        ("11", _) => ("Île-de-France grande couronne", "78646"),
        ("84", "03" | "15" | "43" | "63") => ("Auvergne", "63113"),
        ("84", _) => ("Rhône-Alpes", "69123"),
        ("93" | "94", _) => ("Sud et Corse", "13055"),
        ("01" | "02" | "03", _) => ("Antilles-Guyane", "97209"),
        ("04" | "06", _) => ("Océan Indien", "97411"),
        ("24", _) => ("Centre-Val de Loire", "45234"),
        ("27", _) => ("Bourgogne-Franche-Comté", "21231"),
        ("28", _) => ("Normandie", "76540"),
        ("32", _) => ("Hauts-de-France", "59350"),
        ("44", _) => ("Grand Est", "67482"),
        ("52", _) => ("Pays de la Loire", "44109"),
        ("53", _) => ("Bretagne", "35238"),
        ("75", _) => ("Nouvelle-Aquitaine", "33063"),
        ("76", _) => ("Occitanie", "31555"),
        _ => ("Autre", "75056"),
    }
}

impl France {
    /// Loads the COG and the populations and lays hubs out.
    pub fn new(layout: HubLayout) -> France {
        let cog = Cog::get();
        let regions: Vec<String> = cog.regions().iter().map(|r| r.code.clone()).collect();
        let departements: Vec<String> = cog.departements().iter().map(|d| d.code.clone()).collect();
        let departement_region: Vec<usize> = cog
            .departements()
            .iter()
            .map(|d| regions.iter().position(|r| *r == d.region).unwrap_or(0))
            .collect();
        let dep_index: HashMap<&str, usize> = departements
            .iter()
            .enumerate()
            .map(|(i, d)| (d.as_str(), i))
            .collect();
        let mut hubs: Vec<HubArea> = Vec::new();
        let mut departement_hub = Vec::with_capacity(departements.len());
        // First commune of each département, as the seat of a département hub.
        let mut communes: Vec<(String, usize, u64)> = Vec::new();
        let mut known: HashMap<&str, u64> = HashMap::new();
        for line in POPULATION.lines().filter(|l| !l.starts_with('#')) {
            if let Some((code, pop)) = line.split_once('\t') {
                known.insert(code, pop.trim().parse().unwrap_or(0));
            }
        }
        let mut codes: Vec<&str> = cog.current_commune_codes().collect();
        codes.sort_unstable();
        for code in codes {
            // The parent communes of Paris, Lyon and Marseille are covered by their
            // arrondissements and have no population line.
            let Some(&pop) = known.get(code) else {
                continue;
            };
            if let Ok(c) = cog.commune(code)
                && let Some(&d) = dep_index.get(c.departement)
            {
                communes.push((code.to_owned(), d, pop));
            }
        }
        for (d, code) in departements.iter().enumerate() {
            let region = &regions[departement_region[d]];
            let (name, seat) = match layout {
                HubLayout::Regional => {
                    let (name, seat) = regional_hub(code, region);
                    (name.to_owned(), seat.to_owned())
                }
                HubLayout::Departement => {
                    let seat = communes
                        .iter()
                        .filter(|c| c.1 == d)
                        .max_by_key(|c| c.2)
                        .map(|c| c.0.clone())
                        .unwrap_or_default();
                    (format!("Hub {code}"), seat)
                }
            };
            let hub = match hubs.iter().position(|h| h.name == name) {
                Some(h) => h,
                None => {
                    hubs.push(HubArea {
                        name,
                        seat,
                        overseas: region.len() == 2 && region.as_str() < "10",
                    });
                    hubs.len() - 1
                }
            };
            departement_hub.push(hub);
        }
        let mut cumulative = Vec::with_capacity(communes.len());
        let mut total = 0u64;
        for c in &communes {
            total += c.2;
            cumulative.push(total);
        }
        France {
            regions,
            departements,
            departement_region,
            departement_hub,
            hubs,
            communes,
            cumulative,
        }
    }

    /// How many communes can receive a structure.
    pub fn commune_count(&self) -> usize {
        self.communes.len()
    }

    /// Places `n` structures, seeded: communes drawn by population (80%) or uniformly (20%);
    /// activity sizes log-normal (median `median_activities` a month, σ = `sigma`), capped at
    /// 5,000 a month.
    pub fn place(&self, n: usize, seed: u64, median_activities: f64, sigma: f64) -> Vec<Structure> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let total = self.cumulative.last().copied().unwrap_or(0).max(1);
        (0..n)
            .map(|index| {
                let c = if rng.random_bool(UNIFORM_SHARE) || self.communes.is_empty() {
                    rng.random_range(0..self.communes.len().max(1))
                } else {
                    let x = rng.random_range(0..total);
                    self.cumulative.partition_point(|&v| v <= x)
                };
                let (commune, departement, _) =
                    self.communes[c.min(self.communes.len() - 1)].clone();
                let z = standard_normal(&mut rng);
                let activities_per_month =
                    (median_activities * (sigma * z).exp()).clamp(1.0, 5_000.0);
                let mut secret = [0u8; 32];
                rng.fill(&mut secret[..]);
                Structure {
                    index,
                    commune,
                    departement,
                    region: self.departement_region[departement],
                    hub: self.departement_hub[departement],
                    activities_per_month,
                    seed: rng.random(),
                    key: SigningKey::from_bytes(&secret),
                }
            })
            .collect()
    }
}

/// A standard normal draw (Box–Muller).
pub fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.random_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_country_has_its_territories_and_hubs() {
        let france = France::new(HubLayout::Regional);
        assert_eq!(france.regions.len(), 18);
        assert_eq!(france.departements.len(), 101);
        assert_eq!(france.hubs.len(), 16);
        assert!(
            france.commune_count() > 34_000,
            "{}",
            france.commune_count()
        );
        assert_eq!(France::new(HubLayout::Departement).hubs.len(), 101);
    }

    #[test]
    fn placement_is_seeded_and_follows_population() {
        let france = France::new(HubLayout::Regional);
        let a = france.place(3_000, 7, 25.0, 1.2);
        let b = france.place(3_000, 7, 25.0, 1.2);
        assert!(
            a.iter()
                .zip(&b)
                .all(|(x, y)| x.commune == y.commune && x.seed == y.seed)
        );
        // Paris (75) holds ~3.3% of the population and 0.0% of communes.
        let paris = france
            .departements
            .iter()
            .position(|d| d == "75")
            .unwrap_or(0);
        let in_paris = a.iter().filter(|s| s.departement == paris).count();
        assert!(
            (40..=140).contains(&in_paris),
            "{in_paris} structures in Paris"
        );
        // Heavy tail: the largest 10% hold far more than 10% of the activity.
        let mut sizes: Vec<f64> = a.iter().map(|s| s.activities_per_month).collect();
        sizes.sort_by(f64::total_cmp);
        let top: f64 = sizes[2_700..].iter().sum();
        let all: f64 = sizes.iter().sum();
        assert!(top / all > 0.3, "top decile share {}", top / all);
    }
}
