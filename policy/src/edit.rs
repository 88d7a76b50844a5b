//! Proposals: edits to the policy document, as a proposal file states them.
//!
//! A proposal file is TOML or JSON with one list, `edits`, each edit naming its operation in
//! `op`. Each edit touches only the fields it names, so concurrent proposals that change
//! different things all survive the merge; two proposals that set the same field concurrently
//! resolve to one of the values, the same on every peer.
//!
//! ```toml
//! [[edits]]
//! op = "set_budget"          # ε (Laplace) or ρ (Gaussian) per period, up to 6 decimals
//! budget = 0.8
//!
//! [[edits]]
//! op = "add_indicator"       # from the catalogue; kind and categories come from it
//! indicator = "genres"
//! weight = 1                 # optional, default 1
//!
//! [[edits]]
//! op = "add_member"
//! key = "<64 hex>"
//! name = "Association Les Clés"
//! role = "structure"         # structure, hub, national or auditor
//! hub = "<64 hex>"           # structures: the key of their hub
//! commune = "69385"          # optional COG code
//! pivot = "73282932000074"   # optional SIRET, RNA or RIDET
//! place_id = "..."           # optional places-standard id
//! ```
//!
//! Operations: `set_mechanism` (`mechanism`), `set_budget` (`budget`), `set_bounds` (any of
//! `max_rows_per_person`, `max_duration_min`, `max_themes_per_row`, `max_materiel_per_row`),
//! `add_indicator` (`indicator`, `weight`), `remove_indicator` (`indicator`), `set_weight`
//! (`indicator`, `weight`), `set_calendar` (any of `submission_deadline_days`,
//! `superseded_grace_days`), `add_member` (as above), `update_member` (`key` and any of `name`,
//! `role`, `pivot`, `hub`, `commune`, `place_id`), `remove_member` (`key`),
//! `add_committee_member` (`key`, `name`), `remove_committee_member` (`key`), `set_quorum`
//! (`quorum`). Unknown operations and fields are refused.

use automerge::transaction::{Transactable, Transaction};
use automerge::{ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value as AmValue};
use maillage_protocol::Indicator;
use maillage_protocol::vocab::Vocabulary;
use serde::{Deserialize, Serialize};

use crate::document::put_json;
use crate::model::{IndicatorEntry, Mechanism, Member, PublicKey, Role};

/// A whole proposal file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    /// The edits, applied in order as one change.
    pub edits: Vec<Edit>,
}

fn one() -> u32 {
    1
}

/// One edit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Edit {
    /// Sets the noise mechanism.
    SetMechanism {
        /// `laplace` or `gaussian`.
        mechanism: Mechanism,
    },
    /// Sets the budget per period (ε or ρ), with at most 6 decimals.
    SetBudget {
        /// The budget.
        budget: f64,
    },
    /// Sets some contribution bounds.
    SetBounds {
        /// K.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_rows_per_person: Option<u32>,
        /// D.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_duration_min: Option<u32>,
        /// T.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_themes_per_row: Option<u32>,
        /// M.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_materiel_per_row: Option<u32>,
    },
    /// Adds an indicator of the catalogue.
    AddIndicator {
        /// The indicator.
        indicator: Indicator,
        /// Its weight (default 1).
        #[serde(default = "one")]
        weight: u32,
    },
    /// Removes an indicator.
    RemoveIndicator {
        /// The indicator.
        indicator: Indicator,
    },
    /// Declares an indicator of an optional module beyond the compiled catalogue (refused if
    /// its identifier is taken).
    AddModuleIndicator {
        /// Its identifier.
        id: String,
        /// Its module.
        module: String,
        /// `count`, `count_by`, `sum` or `histogram`.
        kind: String,
        /// Its categories (for `count_by` and `histogram`).
        #[serde(default)]
        categories: Vec<String>,
        /// The most one person adds to it in a period.
        max_contribution: u32,
        /// Its weight (default 1).
        #[serde(default = "one")]
        weight: u32,
    },
    /// Removes a module indicator.
    RemoveModuleIndicator {
        /// Its identifier.
        id: String,
    },
    /// Changes an indicator's weight.
    SetWeight {
        /// The indicator.
        indicator: Indicator,
        /// The weight.
        weight: u32,
    },
    /// Sets calendar durations.
    SetCalendar {
        /// Days after the month's end releases are due.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        submission_deadline_days: Option<u32>,
        /// Days a superseded version is still accepted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        superseded_grace_days: Option<u32>,
    },
    /// Registers a member (refused if the key is already registered).
    AddMember {
        /// Its key.
        key: PublicKey,
        /// Its name.
        name: String,
        /// Its role.
        role: Role,
        /// SIRET, RNA or RIDET.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pivot: Option<String>,
        /// Its hub's key (structures).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hub: Option<PublicKey>,
        /// COG code of its commune.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        commune: Option<String>,
        /// Its places-standard id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        place_id: Option<String>,
    },
    /// Changes some fields of a registered member.
    UpdateMember {
        /// Its key.
        key: PublicKey,
        /// New name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// New role.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<Role>,
        /// New pivot.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pivot: Option<String>,
        /// New hub.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hub: Option<PublicKey>,
        /// New commune.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        commune: Option<String>,
        /// New place id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        place_id: Option<String>,
    },
    /// Removes a member.
    RemoveMember {
        /// Its key.
        key: PublicKey,
    },
    /// Adds a committee key.
    AddCommitteeMember {
        /// The key.
        key: PublicKey,
        /// Who holds it.
        name: String,
    },
    /// Removes a committee key.
    RemoveCommitteeMember {
        /// The key.
        key: PublicKey,
    },
    /// Sets the quorum.
    SetQuorum {
        /// Distinct committee signatures needed.
        quorum: u32,
    },
}

/// Why a proposal could not be applied (nothing was changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EditError {
    /// An edit does not apply.
    #[error("edit {} ({op}): {reason}", index + 1)]
    Edit {
        /// Its position in the proposal, from 0.
        index: usize,
        /// Its operation.
        op: &'static str,
        /// Why.
        reason: String,
    },
    /// The document has no content to edit yet.
    #[error(
        "the policy document is empty: create the genesis or sync it from a peer before proposing edits"
    )]
    EmptyDocument,
}

impl Edit {
    /// The operation's name, as files write it.
    pub fn op(&self) -> &'static str {
        match self {
            Self::SetMechanism { .. } => "set_mechanism",
            Self::SetBudget { .. } => "set_budget",
            Self::SetBounds { .. } => "set_bounds",
            Self::AddIndicator { .. } => "add_indicator",
            Self::RemoveIndicator { .. } => "remove_indicator",
            Self::AddModuleIndicator { .. } => "add_module_indicator",
            Self::RemoveModuleIndicator { .. } => "remove_module_indicator",
            Self::SetWeight { .. } => "set_weight",
            Self::SetCalendar { .. } => "set_calendar",
            Self::AddMember { .. } => "add_member",
            Self::UpdateMember { .. } => "update_member",
            Self::RemoveMember { .. } => "remove_member",
            Self::AddCommitteeMember { .. } => "add_committee_member",
            Self::RemoveCommitteeMember { .. } => "remove_committee_member",
            Self::SetQuorum { .. } => "set_quorum",
        }
    }

    /// The edit that registers `member` under `key`.
    pub fn add_member(key: PublicKey, member: Member) -> Self {
        Self::AddMember {
            key,
            name: member.name,
            role: member.role,
            pivot: member.pivot,
            hub: member.hub,
            commune: member.commune,
            place_id: member.place_id,
        }
    }

    pub(crate) fn apply(&self, tx: &mut Transaction<'_>) -> Result<(), String> {
        let am = |e: automerge::AutomergeError| e.to_string();
        match self {
            Self::SetMechanism { mechanism } => {
                let privacy = map(tx, &["privacy"])?;
                tx.put(&privacy, "mechanism", mechanism.as_str())
                    .map_err(am)
            }
            Self::SetBudget { budget } => {
                let micro = budget_micro(*budget)?;
                let privacy = map(tx, &["privacy"])?;
                tx.put(&privacy, "budget_micro", ScalarValue::Int(micro))
                    .map_err(am)
            }
            Self::SetBounds {
                max_rows_per_person,
                max_duration_min,
                max_themes_per_row,
                max_materiel_per_row,
            } => {
                let bounds = map(tx, &["privacy", "bounds"])?;
                let fields = [
                    ("max_rows_per_person", max_rows_per_person),
                    ("max_duration_min", max_duration_min),
                    ("max_themes_per_row", max_themes_per_row),
                    ("max_materiel_per_row", max_materiel_per_row),
                ];
                if fields.iter().all(|(_, v)| v.is_none()) {
                    return Err("names no bound: expected at least one of max_rows_per_person, max_duration_min, max_themes_per_row, max_materiel_per_row".into());
                }
                for (name, value) in fields {
                    if let Some(v) = value {
                        tx.put(&bounds, name, ScalarValue::Int(i64::from(*v)))
                            .map_err(am)?;
                    }
                }
                Ok(())
            }
            Self::AddIndicator { indicator, weight } => {
                let indicators = map(tx, &["indicators"])?;
                if exists(tx, &indicators, indicator.code())? {
                    return Err(format!(
                        "indicator {indicator} is already in the policy: use set_weight to change its weight"
                    ));
                }
                let entry =
                    serde_json::to_value(IndicatorEntry::from_catalogue(*indicator, *weight))
                        .map_err(|e| e.to_string())?;
                put_json(tx, &indicators, indicator.code(), &entry).map_err(am)
            }
            Self::RemoveIndicator { indicator } => {
                let indicators = map(tx, &["indicators"])?;
                if !exists(tx, &indicators, indicator.code())? {
                    return Err(format!("indicator {indicator} is not in the policy"));
                }
                tx.delete(&indicators, indicator.code()).map_err(am)
            }
            Self::AddModuleIndicator {
                id,
                module,
                kind,
                categories,
                max_contribution,
                weight,
            } => {
                let modules = map(tx, &["modules"])?;
                if exists(tx, &modules, id)? {
                    return Err(format!(
                        "module indicator {id} is already in the policy: remove it first to redefine it"
                    ));
                }
                let entry = serde_json::to_value(crate::model::ModuleIndicator {
                    module: module.clone(),
                    kind: kind.clone(),
                    categories: categories.clone(),
                    max_contribution: *max_contribution,
                    weight: *weight,
                })
                .map_err(|e| e.to_string())?;
                put_json(tx, &modules, id, &entry).map_err(am)
            }
            Self::RemoveModuleIndicator { id } => {
                let modules = map(tx, &["modules"])?;
                if !exists(tx, &modules, id)? {
                    return Err(format!("module indicator {id} is not in the policy"));
                }
                tx.delete(&modules, id.as_str()).map_err(am)
            }
            Self::SetWeight { indicator, weight } => {
                let indicators = map(tx, &["indicators"])?;
                let Some(entry) = child_map(tx, &indicators, indicator.code())? else {
                    return Err(format!(
                        "indicator {indicator} is not in the policy: use add_indicator"
                    ));
                };
                tx.put(&entry, "weight", ScalarValue::Int(i64::from(*weight)))
                    .map_err(am)
            }
            Self::SetCalendar {
                submission_deadline_days,
                superseded_grace_days,
            } => {
                if submission_deadline_days.is_none() && superseded_grace_days.is_none() {
                    return Err("names no field: expected submission_deadline_days or superseded_grace_days".into());
                }
                let calendar = map(tx, &["calendar"])?;
                for (name, value) in [
                    ("submission_deadline_days", submission_deadline_days),
                    ("superseded_grace_days", superseded_grace_days),
                ] {
                    if let Some(v) = value {
                        tx.put(&calendar, name, ScalarValue::Int(i64::from(*v)))
                            .map_err(am)?;
                    }
                }
                Ok(())
            }
            Self::AddMember {
                key,
                name,
                role,
                pivot,
                hub,
                commune,
                place_id,
            } => {
                let members = map(tx, &["members"])?;
                if exists(tx, &members, &key.to_hex())? {
                    return Err(format!(
                        "member {key} is already registered: use update_member or remove_member"
                    ));
                }
                let member = Member {
                    name: name.clone(),
                    role: *role,
                    pivot: pivot.clone(),
                    hub: *hub,
                    commune: commune.clone(),
                    place_id: place_id.clone(),
                };
                let value = serde_json::to_value(member).map_err(|e| e.to_string())?;
                put_json(tx, &members, &key.to_hex(), &value).map_err(am)
            }
            Self::UpdateMember {
                key,
                name,
                role,
                pivot,
                hub,
                commune,
                place_id,
            } => {
                let members = map(tx, &["members"])?;
                let Some(entry) = child_map(tx, &members, &key.to_hex())? else {
                    return Err(format!("member {key} is not registered: use add_member"));
                };
                let fields: [(&str, Option<String>); 6] = [
                    ("name", name.clone()),
                    ("role", role.map(|r| r.as_str().to_owned())),
                    ("pivot", pivot.clone()),
                    ("hub", hub.map(|h| h.to_hex())),
                    ("commune", commune.clone()),
                    ("place_id", place_id.clone()),
                ];
                if fields.iter().all(|(_, v)| v.is_none()) {
                    return Err("names no field to change".into());
                }
                for (field, value) in fields {
                    if let Some(v) = value {
                        tx.put(&entry, field, v).map_err(am)?;
                    }
                }
                // A member that stops being a structure reports to no hub.
                if role.is_some_and(|r| r != Role::Structure) && hub.is_none() {
                    tx.delete(&entry, "hub").map_err(am)?;
                }
                Ok(())
            }
            Self::RemoveMember { key } => {
                let members = map(tx, &["members"])?;
                if !exists(tx, &members, &key.to_hex())? {
                    return Err(format!("member {key} is not registered"));
                }
                tx.delete(&members, key.to_hex()).map_err(am)
            }
            Self::AddCommitteeMember { key, name } => {
                let members = map(tx, &["committee", "members"])?;
                if exists(tx, &members, &key.to_hex())? {
                    return Err(format!("{key} is already on the committee"));
                }
                let entry = tx
                    .put_object(&members, key.to_hex(), ObjType::Map)
                    .map_err(am)?;
                tx.put(&entry, "name", name.as_str()).map_err(am)
            }
            Self::RemoveCommitteeMember { key } => {
                let members = map(tx, &["committee", "members"])?;
                if !exists(tx, &members, &key.to_hex())? {
                    return Err(format!("{key} is not on the committee"));
                }
                tx.delete(&members, key.to_hex()).map_err(am)
            }
            Self::SetQuorum { quorum } => {
                let committee = map(tx, &["committee"])?;
                tx.put(&committee, "quorum", ScalarValue::Int(i64::from(*quorum)))
                    .map_err(am)
            }
        }
    }
}

/// ε or ρ in millionths, refusing what is not a positive number with at most 6 decimals.
fn budget_micro(budget: f64) -> Result<i64, String> {
    let micro = (budget * 1e6).round();
    if !budget.is_finite() || budget <= 0.0 || !(1.0..=1e15).contains(&micro) {
        return Err(format!(
            "budget {budget} is not accepted: expected a number greater than 0 with at most 6 decimals"
        ));
    }
    if ((micro / 1e6) - budget).abs() > budget * 1e-12 {
        return Err(format!(
            "budget {budget} has more than 6 decimals: the policy records budgets in millionths"
        ));
    }
    // In range: checked above.
    Ok(micro as i64)
}

/// The map at `path` from the root, created if absent (or if a malformed document holds
/// something else there).
fn map(tx: &mut Transaction<'_>, path: &[&str]) -> Result<ObjId, String> {
    let mut obj = ROOT;
    for key in path {
        obj = match child_map(tx, &obj, key)? {
            Some(id) => id,
            None => tx
                .put_object(&obj, *key, ObjType::Map)
                .map_err(|e| e.to_string())?,
        };
    }
    Ok(obj)
}

fn child_map(tx: &Transaction<'_>, obj: &ObjId, key: &str) -> Result<Option<ObjId>, String> {
    match tx.get(obj, key).map_err(|e| e.to_string())? {
        Some((AmValue::Object(ObjType::Map), id)) => Ok(Some(id)),
        _ => Ok(None),
    }
}

fn exists(tx: &Transaction<'_>, obj: &ObjId, key: &str) -> Result<bool, String> {
    Ok(tx.get(obj, key).map_err(|e| e.to_string())?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_are_read_to_the_millionth() {
        assert_eq!(budget_micro(1.0), Ok(1_000_000));
        assert_eq!(budget_micro(0.1), Ok(100_000));
        assert_eq!(budget_micro(0.000001), Ok(1));
        assert_eq!(budget_micro(2.5), Ok(2_500_000));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 0.0000001, 0.1234567] {
            assert!(budget_micro(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn proposal_files_read_with_tagged_edits() -> Result<(), serde_json::Error> {
        let p: Proposal = serde_json::from_str(
            r#"{"edits": [{"op": "set_budget", "budget": 0.5},
                          {"op": "add_indicator", "indicator": "genres"},
                          {"op": "set_quorum", "quorum": 2}]}"#,
        )?;
        assert_eq!(p.edits.len(), 3);
        assert_eq!(
            p.edits[1],
            Edit::AddIndicator {
                indicator: Indicator::Genres,
                weight: 1
            }
        );
        let unknown_op = serde_json::from_str::<Proposal>(r#"{"edits": [{"op": "nope"}]}"#);
        assert!(unknown_op.is_err());
        let unknown_field = serde_json::from_str::<Proposal>(
            r#"{"edits": [{"op": "set_quorum", "quorum": 2, "extra": 1}]}"#,
        );
        assert!(unknown_field.is_err());
        let bad_indicator = serde_json::from_str::<Proposal>(
            r#"{"edits": [{"op": "add_indicator", "indicator": "nope"}]}"#,
        );
        let err = bad_indicator
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("expected one of"), "{err}");
        Ok(())
    }
}
