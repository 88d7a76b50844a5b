//! What a proposed version changes compared with the adopted one, for people to read.
//!
//! Each [`Change`] displays as one line in French (the committee reads it before signing).

use std::fmt;

use maillage_protocol::Indicator;
use maillage_protocol::vocab::Vocabulary;

use crate::model::{Member, Policy, PublicKey};

/// One difference between two versions.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// The schema version.
    Schema {
        /// Before.
        from: u64,
        /// After.
        to: u64,
    },
    /// A privacy or calendar setting.
    Setting {
        /// The field's path, e.g. `privacy.budget_micro`.
        field: &'static str,
        /// Before, as text.
        from: String,
        /// After, as text.
        to: String,
    },
    /// An indicator added.
    IndicatorAdded {
        /// The indicator.
        indicator: Indicator,
        /// Its weight.
        weight: u32,
    },
    /// An indicator removed.
    IndicatorRemoved {
        /// The indicator.
        indicator: Indicator,
    },
    /// An indicator's entry changed.
    IndicatorChanged {
        /// The indicator.
        indicator: Indicator,
        /// The field.
        field: &'static str,
        /// Before.
        from: String,
        /// After.
        to: String,
    },
    /// A module indicator declared.
    ModuleAdded {
        /// Its identifier.
        id: String,
        /// Its definition.
        indicator: crate::model::ModuleIndicator,
    },
    /// A module indicator removed.
    ModuleRemoved {
        /// Its identifier.
        id: String,
    },
    /// A module indicator's definition changed (shown before → after, as JSON).
    ModuleChanged {
        /// Its identifier.
        id: String,
        /// Before.
        from: String,
        /// After.
        to: String,
    },
    /// A member registered.
    MemberAdded {
        /// Its key.
        key: PublicKey,
        /// Its entry.
        member: Member,
    },
    /// A member removed.
    MemberRemoved {
        /// Its key.
        key: PublicKey,
        /// Its entry before.
        member: Member,
    },
    /// A member's entry changed.
    MemberChanged {
        /// Its key.
        key: PublicKey,
        /// Its name (after).
        name: String,
        /// The field.
        field: &'static str,
        /// Before (`-` when absent).
        from: String,
        /// After (`-` when absent).
        to: String,
    },
    /// A committee key added.
    CommitteeAdded {
        /// The key.
        key: PublicKey,
        /// Who holds it.
        name: String,
    },
    /// A committee key removed.
    CommitteeRemoved {
        /// The key.
        key: PublicKey,
        /// Who held it.
        name: String,
    },
    /// A committee member renamed.
    CommitteeRenamed {
        /// The key.
        key: PublicKey,
        /// Before.
        from: String,
        /// After.
        to: String,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Schema { from, to } => write!(f, "version du schéma : {from} → {to}"),
            Self::Setting { field, from, to } => write!(f, "{field} : {from} → {to}"),
            Self::IndicatorAdded { indicator, weight } => write!(
                f,
                "+ indicateur {} ({}), poids {weight}",
                indicator.code(),
                indicator.label()
            ),
            Self::IndicatorRemoved { indicator } => write!(
                f,
                "- indicateur {} ({})",
                indicator.code(),
                indicator.label()
            ),
            Self::IndicatorChanged {
                indicator,
                field,
                from,
                to,
            } => write!(f, "indicateur {} : {field} {from} → {to}", indicator.code()),
            Self::ModuleAdded { id, indicator } => write!(
                f,
                "+ indicateur de module {id} (module {}, {}{}), borne {} par personne, poids {}",
                indicator.module,
                indicator.kind,
                if indicator.categories.is_empty() {
                    String::new()
                } else {
                    format!(" : {}", indicator.categories.join(", "))
                },
                indicator.max_contribution,
                indicator.weight
            ),
            Self::ModuleRemoved { id } => write!(f, "- indicateur de module {id}"),
            Self::ModuleChanged { id, from, to } => {
                write!(f, "indicateur de module {id} : {from} → {to}")
            }
            Self::MemberAdded { key, member } => write!(
                f,
                "+ membre {} « {} » ({}{}{})",
                key.short(),
                member.name,
                member.role,
                member
                    .hub
                    .map(|h| format!(", hub {}", h.short()))
                    .unwrap_or_default(),
                member
                    .commune
                    .as_ref()
                    .map(|c| format!(", commune {c}"))
                    .unwrap_or_default()
            ),
            Self::MemberRemoved { key, member } => write!(
                f,
                "- membre {} « {} » ({})",
                key.short(),
                member.name,
                member.role
            ),
            Self::MemberChanged {
                key,
                name,
                field,
                from,
                to,
            } => write!(
                f,
                "membre {} « {name} » : {field} {from} → {to}",
                key.short()
            ),
            Self::CommitteeAdded { key, name } => {
                write!(f, "+ comité de pilotage : {} « {name} »", key.short())
            }
            Self::CommitteeRemoved { key, name } => {
                write!(f, "- comité de pilotage : {} « {name} »", key.short())
            }
            Self::CommitteeRenamed { key, from, to } => write!(
                f,
                "comité de pilotage {} : nom « {from} » → « {to} »",
                key.short()
            ),
        }
    }
}

fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

/// The changes from `old` to `new`, in schema order (settings, indicators, members, committee).
pub fn diff(old: &Policy, new: &Policy) -> Vec<Change> {
    let mut out = Vec::new();
    if old.schema != new.schema {
        out.push(Change::Schema {
            from: old.schema,
            to: new.schema,
        });
    }
    let mut setting = |field: &'static str, from: String, to: String| {
        if from != to {
            out.push(Change::Setting { field, from, to });
        }
    };
    let (a, b) = (&old.privacy, &new.privacy);
    setting(
        "privacy.mechanism",
        a.mechanism.to_string(),
        b.mechanism.to_string(),
    );
    setting(
        "privacy.budget",
        format!("{} = {}", a.mechanism.symbol(), a.budget()),
        format!("{} = {}", b.mechanism.symbol(), b.budget()),
    );
    for ((field, from, ..), (_, to, ..)) in a.bounds.entries().into_iter().zip(b.bounds.entries()) {
        let field = match field {
            "max_rows_per_person" => "privacy.bounds.max_rows_per_person",
            "max_duration_min" => "privacy.bounds.max_duration_min",
            "max_themes_per_row" => "privacy.bounds.max_themes_per_row",
            _ => "privacy.bounds.max_materiel_per_row",
        };
        setting(field, from.to_string(), to.to_string());
    }
    let (a, b) = (&old.calendar, &new.calendar);
    setting("calendar.period", a.period.clone(), b.period.clone());
    setting(
        "calendar.submission_deadline_days",
        a.submission_deadline_days.to_string(),
        b.submission_deadline_days.to_string(),
    );
    setting(
        "calendar.superseded_grace_days",
        a.superseded_grace_days.to_string(),
        b.superseded_grace_days.to_string(),
    );

    for (indicator, e) in &old.indicators {
        match new.indicators.get(indicator) {
            None => out.push(Change::IndicatorRemoved {
                indicator: *indicator,
            }),
            Some(n) => {
                let fields = [
                    ("weight", e.weight.to_string(), n.weight.to_string()),
                    ("kind", e.kind.clone(), n.kind.clone()),
                    ("categories", e.categories.join("|"), n.categories.join("|")),
                    ("module", e.module.to_string(), n.module.to_string()),
                ];
                for (field, from, to) in fields {
                    if from != to {
                        out.push(Change::IndicatorChanged {
                            indicator: *indicator,
                            field,
                            from,
                            to,
                        });
                    }
                }
            }
        }
    }
    for (indicator, e) in &new.indicators {
        if !old.indicators.contains_key(indicator) {
            out.push(Change::IndicatorAdded {
                indicator: *indicator,
                weight: e.weight,
            });
        }
    }
    for (id, m) in &old.modules {
        match new.modules.get(id) {
            None => out.push(Change::ModuleRemoved { id: id.clone() }),
            Some(n) if n != m => out.push(Change::ModuleChanged {
                id: id.clone(),
                from: String::from_utf8_lossy(&crate::model::canonical_json(m)).into_owned(),
                to: String::from_utf8_lossy(&crate::model::canonical_json(n)).into_owned(),
            }),
            Some(_) => {}
        }
    }
    for (id, m) in &new.modules {
        if !old.modules.contains_key(id) {
            out.push(Change::ModuleAdded {
                id: id.clone(),
                indicator: m.clone(),
            });
        }
    }

    for (key, m) in &old.members {
        match new.members.get(key) {
            None => out.push(Change::MemberRemoved {
                key: *key,
                member: m.clone(),
            }),
            Some(n) => {
                let fields = [
                    ("name", Some(m.name.clone()), Some(n.name.clone())),
                    ("role", Some(m.role.to_string()), Some(n.role.to_string())),
                    ("pivot", m.pivot.clone(), n.pivot.clone()),
                    ("hub", m.hub.map(|h| h.to_hex()), n.hub.map(|h| h.to_hex())),
                    ("commune", m.commune.clone(), n.commune.clone()),
                    ("place_id", m.place_id.clone(), n.place_id.clone()),
                ];
                for (field, from, to) in fields {
                    if from != to {
                        out.push(Change::MemberChanged {
                            key: *key,
                            name: n.name.clone(),
                            field,
                            from: opt(&from),
                            to: opt(&to),
                        });
                    }
                }
            }
        }
    }
    for (key, m) in &new.members {
        if !old.members.contains_key(key) {
            out.push(Change::MemberAdded {
                key: *key,
                member: m.clone(),
            });
        }
    }

    if old.committee.quorum != new.committee.quorum {
        out.push(Change::Setting {
            field: "committee.quorum",
            from: old.committee.quorum.to_string(),
            to: new.committee.quorum.to_string(),
        });
    }
    for (key, c) in &old.committee.members {
        match new.committee.members.get(key) {
            None => out.push(Change::CommitteeRemoved {
                key: *key,
                name: c.name.clone(),
            }),
            Some(n) if n.name != c.name => out.push(Change::CommitteeRenamed {
                key: *key,
                from: c.name.clone(),
                to: n.name.clone(),
            }),
            Some(_) => {}
        }
    }
    for (key, c) in &new.committee.members {
        if !old.committee.members.contains_key(key) {
            out.push(Change::CommitteeAdded {
                key: *key,
                name: c.name.clone(),
            });
        }
    }
    out
}
