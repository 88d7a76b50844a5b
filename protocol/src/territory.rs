//! The official geographic code (COG): communes, départements and régions.
//!
//! The table is compiled in from `data/cog.txt`, generated from Etalab's open data by
//! `scripts/cog/regenerate.sh`; its first lines record the source and the COG year. Former
//! communes (déléguées, associées) are accepted and mapped to the commune they now belong to,
//! since structures' software may still write the old codes after a merger.

use std::collections::HashMap;
use std::sync::OnceLock;

const COG_TABLE: &str = include_str!("../data/cog.txt");

/// A commune (or a municipal arrondissement of Paris, Lyon or Marseille) of the COG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commune<'a> {
    /// The code as given (a current code, or a former commune's).
    pub code: &'a str,
    /// The current commune's code (differs from `code` for a former commune).
    pub current: &'a str,
    /// The département code, e.g. `69` or `2A` or `974`.
    pub departement: &'a str,
    /// The région code, e.g. `84`.
    pub region: &'a str,
}

/// A département of the COG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Departement {
    /// Its code.
    pub code: String,
    /// Its région's code.
    pub region: String,
    /// Its name.
    pub name: String,
}

/// A région of the COG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// Its code.
    pub code: String,
    /// Its name.
    pub name: String,
}

/// Why a territorial code was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TerritoryError {
    /// Not of the form of a commune code.
    #[error(
        "{value:?} is not a commune code: expected 5 characters, a département code (01-95, 2A, 2B, 971-976) followed by the commune number, e.g. 69385"
    )]
    Malformed {
        /// What was given.
        value: String,
    },
    /// Well-formed, but no such commune in the COG.
    #[error(
        "{value:?} is not a commune of the Code officiel géographique {year} (no such code in département {departement})"
    )]
    UnknownCommune {
        /// What was given.
        value: String,
        /// The COG year of the table.
        year: u16,
        /// The département its prefix names.
        departement: String,
    },
    /// Not one of the 101 départements.
    #[error(
        "{value:?} is not a département code: expected one of 01-19, 2A, 2B, 21-95, 971-974, 976"
    )]
    UnknownDepartement {
        /// What was given.
        value: String,
    },
    /// Not one of the 18 régions.
    #[error(
        "{value:?} is not a région code: expected one of 01-04, 06, 11, 24, 27, 28, 32, 44, 52, 53, 75, 76, 84, 93, 94"
    )]
    UnknownRegion {
        /// What was given.
        value: String,
    },
}

/// The loaded reference table.
#[derive(Debug)]
pub struct Cog {
    year: u16,
    regions: Vec<Region>,
    departements: Vec<Departement>,
    /// commune code → (index into `departements`, current code if the commune is a former one)
    communes: HashMap<String, (usize, Option<String>)>,
    current_count: usize,
}

impl Cog {
    /// The table compiled into this build, parsed once.
    pub fn get() -> &'static Cog {
        static COG: OnceLock<Cog> = OnceLock::new();
        COG.get_or_init(|| Cog::parse(COG_TABLE))
    }

    fn parse(table: &'static str) -> Cog {
        let mut cog = Cog {
            year: 0,
            regions: Vec::new(),
            departements: Vec::new(),
            communes: HashMap::with_capacity(40_000),
            current_count: 0,
        };
        // The table is generated and compiled in: a malformed line is a build defect caught by
        // this module's tests, so parsing skips what it cannot read instead of failing at run time.
        for line in table.lines().filter(|l| !l.starts_with('#')) {
            let fields: Vec<&str> = line.split('\t').collect();
            match fields.as_slice() {
                ["Y", year] => cog.year = year.parse().unwrap_or(0),
                ["R", code, name] => cog.regions.push(Region {
                    code: (*code).into(),
                    name: (*name).into(),
                }),
                ["D", code, region, name] => cog.departements.push(Departement {
                    code: (*code).into(),
                    region: (*region).into(),
                    name: (*name).into(),
                }),
                ["C", dep, suffixes] => {
                    let Some(idx) = cog.departements.iter().position(|d| d.code == *dep) else {
                        continue;
                    };
                    for suffix in suffixes.split(' ') {
                        cog.communes.insert(format!("{dep}{suffix}"), (idx, None));
                        cog.current_count += 1;
                    }
                }
                ["F", _dep, pairs] => {
                    for pair in pairs.split(' ') {
                        if let Some((former, current)) = pair.split_once('=') {
                            let dep = cog.communes.get(current).map(|(idx, _)| *idx);
                            if let Some(idx) = dep {
                                cog.communes
                                    .entry(former.to_owned())
                                    .or_insert((idx, Some(current.to_owned())));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        cog
    }

    /// The COG year of the table.
    pub fn year(&self) -> u16 {
        self.year
    }

    /// The 18 régions.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// The 101 départements.
    pub fn departements(&self) -> &[Departement] {
        &self.departements
    }

    /// How many current communes and municipal arrondissements the table holds.
    pub fn current_commune_count(&self) -> usize {
        self.current_count
    }

    /// Every current commune code (not former ones), in no particular order.
    pub fn current_commune_codes(&self) -> impl Iterator<Item = &str> + '_ {
        self.communes
            .iter()
            .filter(|(_, (_, former))| former.is_none())
            .map(|(code, _)| code.as_str())
    }

    /// Looks a commune code up: a current commune, an arrondissement, or a former commune.
    pub fn commune<'a>(&'a self, code: &'a str) -> Result<Commune<'a>, TerritoryError> {
        if !is_commune_code_shape(code) {
            return Err(TerritoryError::Malformed {
                value: code.to_owned(),
            });
        }
        match self.communes.get(code) {
            Some((idx, current)) => {
                let dep = &self.departements[*idx];
                Ok(Commune {
                    code,
                    current: current.as_deref().unwrap_or(code),
                    departement: &dep.code,
                    region: &dep.region,
                })
            }
            None => Err(TerritoryError::UnknownCommune {
                value: code.to_owned(),
                year: self.year,
                departement: departement_prefix(code).to_owned(),
            }),
        }
    }

    /// The département with that code.
    pub fn departement(&self, code: &str) -> Result<&Departement, TerritoryError> {
        self.departements
            .iter()
            .find(|d| d.code == code)
            .ok_or_else(|| TerritoryError::UnknownDepartement {
                value: code.to_owned(),
            })
    }

    /// The région with that code.
    pub fn region(&self, code: &str) -> Result<&Region, TerritoryError> {
        self.regions
            .iter()
            .find(|r| r.code == code)
            .ok_or_else(|| TerritoryError::UnknownRegion {
                value: code.to_owned(),
            })
    }
}

/// Whether `code` matches `^([013-9]\d|2[AB1-9])\d{3}$`, the shape of a commune code.
pub fn is_commune_code_shape(code: &str) -> bool {
    let b = code.as_bytes();
    if b.len() != 5 || !b[2..].iter().all(u8::is_ascii_digit) {
        return false;
    }
    match b[0] {
        b'0' | b'1' | b'3'..=b'9' => b[1].is_ascii_digit(),
        b'2' => matches!(b[1], b'A' | b'B' | b'1'..=b'9'),
        _ => false,
    }
}

fn departement_prefix(code: &str) -> &str {
    if code.starts_with("97") {
        &code[..3]
    } else {
        &code[..2]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_the_official_counts() {
        let cog = Cog::get();
        assert_eq!(cog.year(), 2026);
        assert_eq!(cog.regions().len(), 18);
        assert_eq!(cog.departements().len(), 101);
        // 34,875 communes plus the 45 municipal arrondissements of Paris, Lyon and Marseille.
        assert_eq!(cog.current_commune_count(), 34_920);
        assert_eq!(cog.current_commune_codes().count(), 34_920);
        for d in cog.departements() {
            assert!(cog.region(&d.region).is_ok(), "{}", d.code);
        }
    }

    #[test]
    fn maps_communes_to_departement_and_region() -> Result<(), TerritoryError> {
        let cog = Cog::get();
        let lyon5 = cog.commune("69385")?;
        assert_eq!((lyon5.departement, lyon5.region), ("69", "84"));
        let ajaccio = cog.commune("2A004")?;
        assert_eq!((ajaccio.departement, ajaccio.region), ("2A", "94"));
        let st_denis = cog.commune("97411")?;
        assert_eq!((st_denis.departement, st_denis.region), ("974", "04"));
        let paris = cog.commune("75056")?;
        assert_eq!(paris.region, "11");
        assert_eq!(cog.departement("2B")?.region, "94");
        assert_eq!(cog.region("53")?.name, "Bretagne");
        Ok(())
    }

    #[test]
    fn former_communes_map_to_their_current_commune() -> Result<(), TerritoryError> {
        let cordieux = Cog::get().commune("01120")?;
        assert_eq!(cordieux.current, "01262");
        assert_eq!(cordieux.departement, "01");
        Ok(())
    }

    #[test]
    fn rejects_malformed_and_unknown_codes() {
        let cog = Cog::get();
        for bad in [
            "", "6938", "693855", "2C004", "20004", "A9385", "69 85", "ab123",
        ] {
            assert!(
                matches!(cog.commune(bad), Err(TerritoryError::Malformed { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            cog.commune("69999"),
            Err(TerritoryError::UnknownCommune { .. })
        ));
        // Saint-Pierre-et-Miquelon is a COM, not one of the 101 départements.
        assert!(matches!(
            cog.commune("97502"),
            Err(TerritoryError::UnknownCommune { .. })
        ));
        assert!(cog.departement("20").is_err());
        assert!(cog.region("99").is_err());
    }
}
