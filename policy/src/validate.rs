//! The rules a policy must satisfy before it can be signed or adopted.
//!
//! [`Policy::validate`] checks every rule and reports every problem, each naming where it is
//! (`members.<key>.hub`, `indicators.thematiques.categories`, …), what was found and what would
//! be accepted.

use std::collections::BTreeMap;
use std::fmt;

use maillage_protocol::{Cog, Indicator};

use crate::model::{Policy, PublicKey, Role, SCHEMA_VERSION};

/// The longest accepted name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// The largest accepted indicator weight.
pub const MAX_WEIGHT: u32 = 1_000_000;
/// The most indicators (catalogue and modules) in one policy.
pub const MAX_INDICATORS: usize = 200;
/// The largest contribution bound of a module indicator.
pub const MAX_CONTRIBUTION: u32 = 1_000_000;
/// Accepted numbers of categories of a `count_by` or `histogram` module indicator.
pub const MODULE_CATEGORIES: std::ops::RangeInclusive<usize> = 2..=64;

/// Whether `text` is an identifier: 1–64 of `a-z`, `0-9`, `_`, starting with a letter.
pub fn is_identifier(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text.starts_with(|c: char| c.is_ascii_lowercase())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
/// Accepted submission deadlines, in days after the month ends.
pub const DEADLINE_DAYS: std::ops::RangeInclusive<u32> = 1..=90;
/// Accepted grace periods for a superseded version, in days.
pub const GRACE_DAYS: std::ops::RangeInclusive<u32> = 0..=90;

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// Another schema version.
    #[error("schema: version {found} is not supported: this build reads version {supported}")]
    Schema {
        /// The version found.
        found: u64,
        /// The version this build reads.
        supported: u64,
    },
    /// The budget is outside its range.
    #[error(
        "privacy.budget_micro: {value} is out of range: expected 1 to {max} millionths ({symbol} from 0.000001 to 10)"
    )]
    Budget {
        /// The value.
        value: u64,
        /// The largest accepted.
        max: u64,
        /// ε or ρ.
        symbol: &'static str,
    },
    /// A contribution bound is outside its range.
    #[error("privacy.bounds.{field}: {value} is out of range: expected {min} to {max}")]
    Bound {
        /// The bound.
        field: &'static str,
        /// The value.
        value: u32,
        /// Smallest accepted.
        min: u32,
        /// Largest accepted.
        max: u32,
    },
    /// No indicator is released.
    #[error("indicators: the policy releases no indicator: expected at least one")]
    NoIndicators,
    /// An indicator's kind differs from the catalogue's.
    #[error(
        "indicators.{indicator}.kind: {found:?} does not match the catalogue: expected {expected:?}"
    )]
    Kind {
        /// The indicator.
        indicator: Indicator,
        /// The kind written.
        found: String,
        /// The catalogue's.
        expected: &'static str,
    },
    /// An indicator's categories differ from the catalogue's.
    #[error(
        "indicators.{indicator}.categories: [{}] does not match the catalogue: expected [{}] in this order{}",
        found.join(", "), expected.join(", "),
        duplicate.as_ref().map(|d| format!(" ({d:?} is listed twice)")).unwrap_or_default()
    )]
    Categories {
        /// The indicator.
        indicator: Indicator,
        /// The categories written.
        found: Vec<String>,
        /// The catalogue's.
        expected: Vec<&'static str>,
        /// A category listed more than once, if any.
        duplicate: Option<String>,
    },
    /// An indicator's core/module flag differs from the catalogue's.
    #[error(
        "indicators.{indicator}.module: {found} does not match the catalogue: expected {expected}"
    )]
    Module {
        /// The indicator.
        indicator: Indicator,
        /// The flag written.
        found: bool,
        /// The catalogue's.
        expected: bool,
    },
    /// A module indicator breaks a rule (identifier, kind, categories, bound or weight).
    #[error("modules.{id}{field}: {reason}")]
    ModuleIndicator {
        /// Its identifier as written.
        id: String,
        /// The field, with its leading dot (empty for the identifier itself).
        field: &'static str,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// More indicators than a node will release.
    #[error("indicators and modules: {count} indicators: at most {MAX_INDICATORS} accepted")]
    TooManyIndicators {
        /// How many.
        count: usize,
    },
    /// A weight is outside its range.
    #[error("indicators.{indicator}.weight: {value} is out of range: expected 1 to {MAX_WEIGHT}")]
    Weight {
        /// The indicator.
        indicator: Indicator,
        /// The weight.
        value: u32,
    },
    /// The calendar's period is not `month`.
    #[error("calendar.period: {found:?} is not a reporting period: expected \"month\"")]
    Period {
        /// What was written.
        found: String,
    },
    /// A calendar duration outside its range.
    #[error("calendar.{field}: {value} days is out of range: expected {min} to {max}")]
    Days {
        /// The field.
        field: &'static str,
        /// The value.
        value: u32,
        /// Smallest accepted.
        min: u32,
        /// Largest accepted.
        max: u32,
    },
    /// A key that is not a usable ed25519 public key.
    #[error("{path}: {key} is not a usable ed25519 public key: {reason}")]
    Key {
        /// Where.
        path: String,
        /// The key.
        key: PublicKey,
        /// Why.
        reason: &'static str,
    },
    /// A name that is empty, too long or holds control characters.
    #[error(
        "{path}: {value:?} is not accepted: expected 1 to {MAX_NAME_CHARS} characters without control characters"
    )]
    Name {
        /// Where.
        path: String,
        /// The name (or its beginning).
        value: String,
    },
    /// A pivot that is not a SIRET, RNA or RIDET.
    #[error("members.{member}.pivot: {reason}")]
    Pivot {
        /// The member.
        member: PublicKey,
        /// Why.
        reason: String,
    },
    /// A commune code that is not in the COG.
    #[error("members.{member}.commune: {reason}")]
    Commune {
        /// The member.
        member: PublicKey,
        /// Why, as the territory table says it.
        reason: String,
    },
    /// A structure that names no hub.
    #[error(
        "members.{member}.hub: structure {name:?} names no hub: expected the key of a registered hub"
    )]
    MissingHub {
        /// The member.
        member: PublicKey,
        /// Its name.
        name: String,
    },
    /// A non-structure that names a hub.
    #[error(
        "members.{member}.hub: a member of role {role} reports to no hub: remove the field (only structures name a hub)"
    )]
    UnexpectedHub {
        /// The member.
        member: PublicKey,
        /// Its role.
        role: Role,
    },
    /// A hub key that is not registered as a hub.
    #[error(
        "members.{member}.hub: {hub} is {what}: expected the key of a registered member of role hub"
    )]
    UnknownHub {
        /// The member.
        member: PublicKey,
        /// The hub key it names.
        hub: PublicKey,
        /// `not registered` or `registered as <role>`.
        what: String,
    },
    /// A place registered under two keys.
    #[error(
        "members.{second}.place_id: place {place_id:?} is already registered under key {first}: a place has one key"
    )]
    DuplicatePlace {
        /// The place id.
        place_id: String,
        /// The first key (in key order).
        first: PublicKey,
        /// The other key.
        second: PublicKey,
    },
    /// A place id that is empty, too long or has control characters.
    #[error(
        "members.{member}.place_id: {value:?} is not accepted: expected 1 to 200 characters without control characters"
    )]
    PlaceId {
        /// The member.
        member: PublicKey,
        /// The value.
        value: String,
    },
    /// No committee.
    #[error("committee.members: the committee is empty: expected at least one key")]
    EmptyCommittee,
    /// A quorum that is not a majority of the committee, or exceeds it.
    #[error(
        "committee.quorum: {quorum} is not accepted for a committee of {size}: expected {min} to {size} (more than half, so two disjoint quorums can never adopt two versions)"
    )]
    Quorum {
        /// The quorum.
        quorum: u32,
        /// The committee's size.
        size: usize,
        /// The smallest accepted.
        min: usize,
    },
}

/// Every broken rule of a policy, in a stable order (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<Problem>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the policy is not valid ({} problem(s))", self.0.len())?;
        for p in &self.0 {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

fn bad_name(s: &str) -> bool {
    let n = s.chars().count();
    n == 0 || n > MAX_NAME_CHARS || s.chars().any(char::is_control) || s.trim() != s
}

fn excerpt(s: &str) -> String {
    s.chars().take(80).collect()
}

impl Policy {
    /// Checks every rule; `Ok` only when none is broken.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(problems))
        }
    }

    /// Every broken rule (empty when the policy is valid).
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.schema != SCHEMA_VERSION {
            out.push(Problem::Schema {
                found: self.schema,
                supported: SCHEMA_VERSION,
            });
        }
        self.check_privacy(&mut out);
        self.check_indicators(&mut out);
        self.check_modules(&mut out);
        self.check_calendar(&mut out);
        self.check_members(&mut out);
        self.check_committee(&mut out);
        out
    }

    fn check_privacy(&self, out: &mut Vec<Problem>) {
        let p = &self.privacy;
        if !(1..=crate::model::Privacy::MAX_BUDGET_MICRO).contains(&p.budget_micro) {
            out.push(Problem::Budget {
                value: p.budget_micro,
                max: crate::model::Privacy::MAX_BUDGET_MICRO,
                symbol: p.mechanism.symbol(),
            });
        }
        for (field, value, min, max) in p.bounds.entries() {
            if !(min..=max).contains(&value) {
                out.push(Problem::Bound {
                    field,
                    value,
                    min,
                    max,
                });
            }
        }
    }

    fn check_modules(&self, out: &mut Vec<Problem>) {
        let count = self.indicators.len() + self.modules.len();
        if count > MAX_INDICATORS {
            out.push(Problem::TooManyIndicators { count });
        }
        for (id, m) in &self.modules {
            let mut bad = |field: &'static str, reason: String| {
                out.push(Problem::ModuleIndicator {
                    id: id.clone(),
                    field,
                    reason,
                })
            };
            if !is_identifier(id) {
                bad(
                    "",
                    "not an identifier: expected 1 to 64 of a-z, 0-9 and _, starting with a letter"
                        .into(),
                );
            } else if Indicator::COMMON_CORE
                .iter()
                .chain(Indicator::MODULES)
                .any(|i| maillage_protocol::vocab::Vocabulary::code(*i) == id)
            {
                bad("", "is an indicator of the compiled catalogue: add it with add_indicator, not as a module indicator".into());
            }
            if !is_identifier(&m.module) {
                bad(
                    ".module",
                    format!(
                        "{:?} is not an identifier: expected 1 to 64 of a-z, 0-9 and _, starting with a letter",
                        m.module
                    ),
                );
            }
            let categorical = match m.kind.as_str() {
                "count" | "sum" => false,
                "count_by" | "histogram" => true,
                other => {
                    bad(
                        ".kind",
                        format!(
                            "{other:?} is not a kind: expected count, count_by, sum or histogram"
                        ),
                    );
                    false
                }
            };
            if categorical && !MODULE_CATEGORIES.contains(&m.categories.len()) {
                bad(
                    ".categories",
                    format!(
                        "{} categories: a {} needs {} to {}",
                        m.categories.len(),
                        m.kind,
                        MODULE_CATEGORIES.start(),
                        MODULE_CATEGORIES.end()
                    ),
                );
            }
            if !categorical && !m.categories.is_empty() {
                bad(
                    ".categories",
                    format!("a {} has no categories: expected an empty list", m.kind),
                );
            }
            for (i, c) in m.categories.iter().enumerate() {
                if !is_identifier(c) {
                    bad(
                        ".categories",
                        format!(
                            "{c:?} is not an identifier: expected 1 to 64 of a-z, 0-9 and _, starting with a letter"
                        ),
                    );
                } else if m.categories[..i].contains(c) {
                    bad(".categories", format!("{c:?} is listed twice"));
                }
            }
            if !(1..=MAX_CONTRIBUTION).contains(&m.max_contribution) {
                bad(
                    ".max_contribution",
                    format!(
                        "{} is out of range: expected 1 to {MAX_CONTRIBUTION}",
                        m.max_contribution
                    ),
                );
            }
            if !(1..=MAX_WEIGHT).contains(&m.weight) {
                bad(
                    ".weight",
                    format!("{} is out of range: expected 1 to {MAX_WEIGHT}", m.weight),
                );
            }
        }
    }

    fn check_indicators(&self, out: &mut Vec<Problem>) {
        if self.indicators.is_empty() {
            out.push(Problem::NoIndicators);
        }
        for (&indicator, entry) in &self.indicators {
            let kind = indicator.kind().as_str();
            if entry.kind != kind {
                out.push(Problem::Kind {
                    indicator,
                    found: entry.kind.clone(),
                    expected: kind,
                });
            }
            let expected = indicator.categories();
            if entry.categories.len() != expected.len()
                || entry.categories.iter().zip(&expected).any(|(a, b)| a != b)
            {
                let duplicate = entry
                    .categories
                    .iter()
                    .enumerate()
                    .find(|(i, c)| entry.categories[..*i].contains(c))
                    .map(|(_, c)| c.clone());
                out.push(Problem::Categories {
                    indicator,
                    found: entry.categories.clone(),
                    expected,
                    duplicate,
                });
            }
            let module = !indicator.is_common_core();
            if entry.module != module {
                out.push(Problem::Module {
                    indicator,
                    found: entry.module,
                    expected: module,
                });
            }
            if !(1..=MAX_WEIGHT).contains(&entry.weight) {
                out.push(Problem::Weight {
                    indicator,
                    value: entry.weight,
                });
            }
        }
    }

    fn check_calendar(&self, out: &mut Vec<Problem>) {
        let c = &self.calendar;
        if c.period != "month" {
            out.push(Problem::Period {
                found: excerpt(&c.period),
            });
        }
        for (field, value, range) in [
            (
                "submission_deadline_days",
                c.submission_deadline_days,
                DEADLINE_DAYS,
            ),
            ("superseded_grace_days", c.superseded_grace_days, GRACE_DAYS),
        ] {
            if !range.contains(&value) {
                out.push(Problem::Days {
                    field,
                    value,
                    min: *range.start(),
                    max: *range.end(),
                });
            }
        }
    }

    fn check_members(&self, out: &mut Vec<Problem>) {
        let cog = Cog::get();
        let mut places: BTreeMap<&str, PublicKey> = BTreeMap::new();
        for (key, m) in &self.members {
            if let Err(reason) = key.verifying_key() {
                out.push(Problem::Key {
                    path: format!("members.{key}"),
                    key: *key,
                    reason,
                });
            }
            if bad_name(&m.name) {
                out.push(Problem::Name {
                    path: format!("members.{key}.name"),
                    value: excerpt(&m.name),
                });
            }
            if let Some(pivot) = &m.pivot
                && let Err(reason) = validate_pivot(pivot)
            {
                out.push(Problem::Pivot {
                    member: *key,
                    reason,
                });
            }
            if let Some(code) = &m.commune
                && let Err(e) = cog.commune(code)
            {
                out.push(Problem::Commune {
                    member: *key,
                    reason: e.to_string(),
                });
            }
            match (m.role, &m.hub) {
                (Role::Structure, None) => out.push(Problem::MissingHub {
                    member: *key,
                    name: excerpt(&m.name),
                }),
                (Role::Structure, Some(hub)) => match self.members.get(hub) {
                    Some(h) if h.role == Role::Hub => {}
                    Some(h) => out.push(Problem::UnknownHub {
                        member: *key,
                        hub: *hub,
                        what: format!("registered as {}", h.role),
                    }),
                    None => out.push(Problem::UnknownHub {
                        member: *key,
                        hub: *hub,
                        what: "not registered".into(),
                    }),
                },
                (role, Some(_)) => out.push(Problem::UnexpectedHub { member: *key, role }),
                (_, None) => {}
            }
            if let Some(place) = &m.place_id {
                if bad_name(place) {
                    out.push(Problem::PlaceId {
                        member: *key,
                        value: excerpt(place),
                    });
                } else if let Some(first) = places.get(place.as_str()) {
                    out.push(Problem::DuplicatePlace {
                        place_id: place.clone(),
                        first: *first,
                        second: *key,
                    });
                } else {
                    places.insert(place, *key);
                }
            }
        }
    }

    fn check_committee(&self, out: &mut Vec<Problem>) {
        let c = &self.committee;
        for (key, member) in &c.members {
            if let Err(reason) = key.verifying_key() {
                out.push(Problem::Key {
                    path: format!("committee.members.{key}"),
                    key: *key,
                    reason,
                });
            }
            if bad_name(&member.name) {
                out.push(Problem::Name {
                    path: format!("committee.members.{key}.name"),
                    value: excerpt(&member.name),
                });
            }
        }
        let size = c.members.len();
        if size == 0 {
            out.push(Problem::EmptyCommittee);
            return;
        }
        let min = size / 2 + 1;
        let q = c.quorum as usize;
        if q < min || q > size {
            out.push(Problem::Quorum {
                quorum: c.quorum,
                size,
                min,
            });
        }
    }
}

/// Checks a SIRET (14 digits, Luhn; La Poste's establishments use a digit-sum rule), an RNA
/// number (W + 9 characters) or a RIDET (6–7 digits, optionally `.NNN`).
pub fn validate_pivot(pivot: &str) -> Result<(), String> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if pivot.len() == 14 && digits(pivot) {
        let digit_sum: u32 = pivot.bytes().map(|b| u32::from(b - b'0')).sum();
        let la_poste = pivot.starts_with("356000000") && digit_sum.is_multiple_of(5);
        return if la_poste || luhn(pivot) {
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
        "{:?} is not a SIRET (14 digits), an RNA number (W followed by 9 characters) or a RIDET (6 or 7 digits, optionally .NNN)",
        excerpt(pivot)
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
