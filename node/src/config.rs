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
    /// Where the daemon listens and whom it reports to.
    #[serde(default)]
    pub network: NetworkSection,
}

/// The default port of hubs and national nodes, for libp2p over TCP and QUIC.
pub const DEFAULT_P2P_PORT: u16 = 4471;

/// The default address of the local HTTP API.
pub const DEFAULT_HTTP: &str = "127.0.0.1:8470";

/// The `[network]` section: what `maillage serve` does on the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// libp2p addresses to listen on. Absent: none for a structure (it only dials its hub),
    /// TCP and QUIC on port [`DEFAULT_P2P_PORT`] of every interface for hubs and national nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<Vec<String>>,
    /// The nodes this one reports to, as `maillage serve` prints their addresses
    /// (`/ip4/…/tcp/…/p2p/<peer id>`): a structure's hub, a hub's national node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
    /// The local HTTP API (status, figures, totals, `/metrics`): a loopback address and port,
    /// or `"off"`.
    #[serde(default = "default_http")]
    pub http: String,
    /// Day of the month after a period when its submissions close: hubs and the national node
    /// sign the period's aggregate on that day if nobody asked before (1-28).
    #[serde(default = "default_deadline_day")]
    pub deadline_day: u8,
    /// Day of the month after a period when a structure's daemon makes the period's release
    /// (if the period has activities and was not released by hand), so that its hub has it
    /// before its deadline; 0: never (releases only by `maillage release` or the HTTP API).
    #[serde(default = "default_release_day")]
    pub release_day: u8,
}

fn default_http() -> String {
    DEFAULT_HTTP.into()
}

fn default_deadline_day() -> u8 {
    10
}

fn default_release_day() -> u8 {
    8
}

impl Default for NetworkSection {
    fn default() -> Self {
        Self {
            listen: None,
            peers: Vec::new(),
            http: default_http(),
            deadline_day: default_deadline_day(),
            release_day: default_release_day(),
        }
    }
}

/// A `[network]` setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("maillage.toml, [network] {key} = {value:?}: {reason}")]
pub struct NetworkSettingError {
    /// The key.
    pub key: &'static str,
    /// The value as written.
    pub value: String,
    /// What is wrong and what would be accepted.
    pub reason: String,
}

impl NetworkSection {
    /// The listen addresses, with the role's default when the file gives none.
    pub fn listen_addresses(
        &self,
        role: Role,
    ) -> Result<Vec<libp2p::Multiaddr>, NetworkSettingError> {
        match &self.listen {
            Some(list) => list.iter().map(|a| parse_multiaddr("listen", a)).collect(),
            None if role == Role::Structure => Ok(Vec::new()),
            None => Ok([
                format!("/ip4/0.0.0.0/tcp/{DEFAULT_P2P_PORT}"),
                format!("/ip4/0.0.0.0/udp/{DEFAULT_P2P_PORT}/quic-v1"),
            ]
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect()),
        }
    }

    /// The peers this node reports to; each must end with `/p2p/<peer id>`.
    pub fn peer_addresses(&self) -> Result<Vec<libp2p::Multiaddr>, NetworkSettingError> {
        self.peers
            .iter()
            .map(|a| parse_peer_address("peers", a))
            .collect()
    }

    /// The HTTP API's address, or `None` when it is off. Only loopback addresses are accepted:
    /// the API has no authentication and shows the node's own figures.
    pub fn http_address(&self) -> Result<Option<std::net::SocketAddr>, NetworkSettingError> {
        parse_http(&self.http)
    }

    /// Checks every setting, so that `maillage serve` fails before it starts.
    pub fn validate(&self, role: Role) -> Result<(), NetworkSettingError> {
        self.listen_addresses(role)?;
        self.peer_addresses()?;
        self.http_address()?;
        if !(1..=28).contains(&self.deadline_day) {
            return Err(NetworkSettingError {
                key: "deadline_day",
                value: self.deadline_day.to_string(),
                reason: "expected a day of the month from 1 to 28".into(),
            });
        }
        if self.release_day > 28 {
            return Err(NetworkSettingError {
                key: "release_day",
                value: self.release_day.to_string(),
                reason: "expected a day of the month from 1 to 28, or 0 for never".into(),
            });
        }
        Ok(())
    }
}

fn parse_multiaddr(
    key: &'static str,
    value: &str,
) -> Result<libp2p::Multiaddr, NetworkSettingError> {
    value.trim().parse().map_err(|e| NetworkSettingError {
        key,
        value: value.into(),
        reason: format!(
            "not a libp2p address ({e}); expected e.g. /ip4/0.0.0.0/tcp/{DEFAULT_P2P_PORT} or /ip4/0.0.0.0/udp/{DEFAULT_P2P_PORT}/quic-v1"
        ),
    })
}

/// Parses the address of a peer, which must name its peer id.
pub fn parse_peer_address(
    key: &'static str,
    value: &str,
) -> Result<libp2p::Multiaddr, NetworkSettingError> {
    let addr = parse_multiaddr(key, value)?;
    if !addr
        .iter()
        .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
    {
        return Err(NetworkSettingError {
            key,
            value: value.into(),
            reason: "the address does not name the peer: expected it to end with /p2p/<peer id>, as maillage serve prints it".into(),
        });
    }
    Ok(addr)
}

/// Parses an HTTP API address: `off`, or a loopback `IP:PORT`.
pub fn parse_http(value: &str) -> Result<Option<std::net::SocketAddr>, NetworkSettingError> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let error = |reason: &str| NetworkSettingError {
        key: "http",
        value: value.into(),
        reason: reason.into(),
    };
    let addr: std::net::SocketAddr = value.parse().map_err(|_| {
        error("expected a loopback address and port such as 127.0.0.1:8470, or \"off\"")
    })?;
    if !addr.ip().is_loopback() {
        return Err(error(
            "the HTTP API has no authentication and only listens on the machine itself: use 127.0.0.1 or [::1]",
        ));
    }
    Ok(Some(addr))
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
             # max_materiel_per_row = 2\n\
             \n\
             # What maillage serve does on the network.\n\
             [network]\n\
             # libp2p listen addresses. Default: none for a structure (it only dials its hub);\n\
             # TCP and QUIC on port 4471 for hubs and national nodes:\n\
             # listen = [\"/ip4/0.0.0.0/tcp/4471\", \"/ip4/0.0.0.0/udp/4471/quic-v1\"]\n\
             # The node this one reports to (a structure's hub, a hub's national node), as\n\
             # maillage serve prints its address:\n\
             # peers = [\"/ip4/192.0.2.10/tcp/4471/p2p/12D3KooW...\"]\n\
             # Local HTTP API (status, figures, totals, /metrics): a loopback address, or \"off\".\n\
             # http = \"127.0.0.1:8470\"\n\
             # Day of the following month when a period's submissions close (1-28).\n\
             # deadline_day = 10\n\
             # Day of the following month when a structure's daemon releases the month, if it\n\
             # has activities and was not released by hand (1-28; 0: never).\n\
             # release_day = 8\n",
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
            network: NetworkSection::default(),
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
    fn network_settings() {
        let mut n = NetworkSection::default();
        assert!(n.validate(Role::Hub).is_ok());
        assert_eq!(
            n.listen_addresses(Role::Structure).map(|l| l.len()).ok(),
            Some(0)
        );
        assert_eq!(n.listen_addresses(Role::Hub).map(|l| l.len()).ok(), Some(2));
        n.http = "0.0.0.0:8470".into();
        let err = n
            .validate(Role::Hub)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("127.0.0.1"), "{err}");
        n.http = "off".into();
        assert_eq!(n.http_address().ok(), Some(None));
        n.peers = vec!["/ip4/127.0.0.1/tcp/4471".into()];
        let err = n
            .validate(Role::Hub)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("/p2p/"), "{err}");
        n.peers = vec![
            "/ip4/127.0.0.1/tcp/4471/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
                .into(),
        ];
        n.deadline_day = 31;
        let err = n
            .validate(Role::Hub)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("deadline_day"), "{err}");
        n.deadline_day = 10;
        assert!(n.validate(Role::Hub).is_ok());
        n.release_day = 29;
        let err = n
            .validate(Role::Structure)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("release_day") && err.contains("0 for never"),
            "{err}"
        );
        n.release_day = 0;
        assert!(n.validate(Role::Structure).is_ok());
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
