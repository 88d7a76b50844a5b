//! `maillage.toml`: the node's configuration, with working defaults.

use std::fmt;
use std::str::FromStr;

use maillage_privacy::release::PrivacyParams;
use serde::{Deserialize, Serialize};

/// A node's role in the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A structure that records activities and publishes releases.
    Structure,
    /// A regional hub that aggregates its members.
    Hub,
    /// The national node that aggregates hubs and answers queries.
    National,
    /// A read-only verifying peer.
    Auditor,
}

impl Role {
    /// The role's name in files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Structure => "structure",
            Self::Hub => "hub",
            Self::National => "national",
            Self::Auditor => "auditor",
        }
    }

    /// The French label shown to people.
    pub fn label(self) -> &'static str {
        match self {
            Self::Structure => "structure",
            Self::Hub => "hub territorial",
            Self::National => "niveau national",
            Self::Auditor => "auditeur",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        <Self as clap::ValueEnum>::from_str(s, false).map_err(|_| {
            format!("unknown role {s:?}: expected structure, hub, national or auditor")
        })
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Who this node is.
    pub node: NodeSection,
    /// How releases are made (the governance policy will replace these local settings).
    #[serde(default)]
    pub privacy: PrivacyParams,
}

/// The `[node]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// The node's role.
    pub role: Role,
    /// The organisation's name.
    pub name: String,
    /// COG code of the commune where the structure is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_insee: Option<String>,
    /// SIRET, RNA or RIDET identifier of the organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pivot: Option<String>,
}

impl Config {
    /// The commented file `maillage init` writes.
    pub fn to_commented_toml(&self) -> String {
        let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
        let optional = |key: &str, value: &Option<String>, help: &str| match value {
            Some(v) => format!("# {help}\n{key} = {}\n", quote(v)),
            None => format!("# {help}\n# {key} = \"\"\n"),
        };
        format!(
            "# Maillage node configuration.\n\
             # Written by `maillage init`; every setting below has a working default.\n\
             # Unknown keys are refused, so that a typo never goes unnoticed.\n\
             \n\
             [node]\n\
             # The node's role: structure, hub, national or auditor.\n\
             role = {}\n\
             # The organisation's name, as shown to hubs and in dashboards.\n\
             name = {}\n\
             {}{}\
             \n\
             # How monthly releases are made. Every key has a default (shown commented out);\n\
             # the sector's adopted policy will replace these local settings.\n\
             [privacy]\n\
             # Noise mechanism: \"laplace\" (discrete Laplace, pure ε-DP) or \"gaussian\" (discrete Gaussian, ρ-zCDP).\n\
             # mechanism = \"laplace\"\n\
             # Privacy budget per month: ε for Laplace, ρ for Gaussian (0 < budget <= 10).\n\
             # budget = 1.0\n\
             # Indicators released, each with its share of the budget (default: the ten\n\
             # common-core indicators, weight 1 each):\n\
             # indicators = [{{ indicator = \"activites\", weight = 1.0 }}, ...]\n\
             \n\
             # Contribution bounds: how much one person can weigh in a release.\n\
             [privacy.bounds]\n\
             # K: at most this many accompaniments of one person count per month (1-100).\n\
             # max_rows_per_person = 10\n\
             # D: durations are clamped to this many minutes (1-1440).\n\
             # max_duration_min = 240\n\
             # T: at most this many themes of one accompaniment count (1-19).\n\
             # max_themes_per_row = 3\n\
             # M: at most this many equipment values of one accompaniment count (1-5).\n\
             # max_materiel_per_row = 2\n",
            quote(self.node.role.as_str()),
            quote(&self.node.name),
            optional(
                "code_insee",
                &self.node.code_insee,
                "COG code of the structure's commune (5 characters, e.g. 69385)."
            ),
            optional(
                "pivot",
                &self.node.pivot,
                "The organisation's SIRET (14 digits), RNA (W + 9 digits) or RIDET identifier."
            ),
        )
    }
}

/// Checks a SIRET (14 digits, Luhn), an RNA number (W + 9 characters) or a RIDET (6–7 digits,
/// optionally followed by a 3-digit establishment number).
pub fn validate_pivot(pivot: &str) -> Result<(), String> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if pivot.len() == 14 && digits(pivot) {
        // La Poste's establishments (SIREN 356000000) use a digit-sum rule instead of Luhn.
        let la_poste = pivot.starts_with("356000000")
            && pivot
                .bytes()
                .map(|b| u32::from(b - b'0'))
                .sum::<u32>()
                .is_multiple_of(5);
        let ok = la_poste || luhn(pivot);
        return if ok {
            Ok(())
        } else {
            Err(format!(
                "{pivot:?} is not a valid SIRET: its check digit is wrong"
            ))
        };
    }
    if pivot.len() == 10
        && pivot.starts_with('W')
        && pivot[1..].bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Ok(());
    }
    let ridet = match pivot.split_once(['.', ' ']) {
        Some((company, est)) => {
            digits(company) && (6..=7).contains(&company.len()) && digits(est) && est.len() == 3
        }
        None => digits(pivot) && (6..=7).contains(&pivot.len()),
    };
    if ridet {
        return Ok(());
    }
    Err(format!(
        "{pivot:?} is not a SIRET (14 digits), an RNA number (W followed by 9 characters) or a RIDET (6 or 7 digits, optionally .NNN)"
    ))
}

fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commented_file_round_trips() -> Result<(), toml::de::Error> {
        let config = Config {
            node: NodeSection {
                role: Role::Structure,
                name: "Association \"Les Clés\"".into(),
                code_insee: Some("69385".into()),
                pivot: None,
            },
            privacy: PrivacyParams::default(),
        };
        let text = config.to_commented_toml();
        assert_eq!(toml::from_str::<Config>(&text)?, config);
        Ok(())
    }

    #[test]
    fn unknown_keys_are_refused() {
        let text = "[node]\nrole = \"hub\"\nname = \"x\"\nnmae = \"y\"\n";
        let err = toml::from_str::<Config>(text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("nmae"), "{err}");
    }

    #[test]
    fn pivots() {
        assert!(validate_pivot("73282932000074").is_ok()); // a real SIRET shape with Luhn
        assert!(validate_pivot("73282932000075").is_err());
        assert!(validate_pivot("35600000049837").is_ok()); // La Poste rule, not Luhn
        assert!(validate_pivot("W751234567").is_ok());
        assert!(validate_pivot("1234567").is_ok());
        assert!(validate_pivot("1234567.001").is_ok());
        assert!(validate_pivot("abc").is_err());
        assert!(validate_pivot("").is_err());
    }
}
