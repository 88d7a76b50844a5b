//! How a hub or national node answers the requests of its admitted members.

use maillage_protocol::network::{Request, Response, Totals, TotalsRow};
use maillage_protocol::{Indicator, Period};

use crate::config::Role;
use crate::hub::Hub;

fn unix_now() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
}

/// Accepts releases sent by members (`senders[i]` sent `releases[i]`; a member may only send
/// its own) as one batch (one checkpoint, one sync), and answers each: its receipt, or why it
/// was refused.
pub fn submit_releases(
    hub: &mut Hub<'_>,
    releases: &[Vec<u8>],
    senders: &[ed25519_dalek::VerifyingKey],
) -> Vec<Response> {
    let count = releases.len();
    match hub.accept_from(releases, Some(senders), unix_now()) {
        Ok(outcomes) => outcomes
            .into_iter()
            .map(|outcome| match outcome {
                Ok(accepted) => Response::Receipt {
                    receipt: accepted.receipt.to_bytes(),
                },
                Err(refusal) => Response::Refused {
                    reason: refusal.to_string(),
                },
            })
            .collect(),
        Err(e) => {
            tracing::error!(error = %e, releases = count, "accepting releases failed");
            vec![
                Response::Error {
                    message: "the hub could not store the release; try again later".into(),
                };
                count
            ]
        }
    }
}

/// Answers one request of an admitted member.
pub fn answer(
    hub: &mut Hub<'_>,
    member: &ed25519_dalek::VerifyingKey,
    member_role: Role,
    request: Request,
) -> Response {
    let role = hub.node().config.node.role;
    match request {
        Request::SubmitRelease { .. } if role != Role::Hub || member_role != Role::Structure => {
            Response::Refused {
                reason: format!(
                    "this node is a {role} and takes releases only from structures it lists; you are listed as a {member_role}"
                ),
            }
        }
        Request::SubmitAggregate { .. } if role != Role::National || member_role != Role::Hub => {
            Response::Refused {
                reason: format!(
                    "this node is a {role} and takes aggregates only from hubs it lists (a national node does); you are listed as a {member_role}"
                ),
            }
        }
        Request::SubmitRelease { release } => submit_releases(hub, &[release], &[*member])
            .pop()
            .unwrap_or(Response::Error {
                message: "no outcome".into(),
            }),
        Request::PolicySync { .. } | Request::FetchAdoptions { .. } => Response::Error {
            message: "policy requests are answered by the daemon's policy sync".into(),
        },
        Request::FetchCheckpoint { size } => match hub.checkpoints() {
            Ok(all) => {
                let found = match size {
                    Some(size) => all.into_iter().find(|c| c.checkpoint().tree_size == size),
                    None => all.into_iter().last(),
                };
                match found {
                    Some(c) => Response::Checkpoint {
                        checkpoint: c.to_bytes(),
                    },
                    None => Response::Error {
                        message: "no such checkpoint".into(),
                    },
                }
            }
            Err(e) => Response::Error {
                message: e.to_string(),
            },
        },
        Request::FetchContribution { index } if index < hub.log_size() => {
            match hub.contribution(index) {
                Ok((release, receipt)) => Response::Contribution {
                    release: release.to_bytes(),
                    receipt: receipt.to_bytes(),
                },
                Err(e) => Response::Error {
                    message: e.to_string(),
                },
            }
        }
        Request::FetchContribution { index } => Response::Error {
            message: format!("no leaf {index}: the log has {} leaves", hub.log_size()),
        },
        Request::FetchProof { index, size } => match hub.log().inclusion_proof(index, size) {
            Ok(hashes) => Response::Proof { hashes },
            Err(e) => Response::Error {
                message: e.to_string(),
            },
        },
        Request::Query {
            indicator,
            period,
            by,
        } => query(hub, &indicator, &period, by),
        Request::SubmitAggregate { aggregate } => {
            let signed = match maillage_protocol::SignedAggregate::decode(&aggregate) {
                Ok(a) if a.aggregate().signer != *member => {
                    return Response::Refused {
                        reason: "a hub may only submit its own aggregates".into(),
                    };
                }
                Ok(a) => a,
                Err(e) => {
                    return Response::Refused {
                        reason: format!("invalid aggregate: {e}"),
                    };
                }
            };
            match hub.accept_aggregate(&signed, unix_now()) {
                Ok(Ok(accepted)) => Response::Receipt {
                    receipt: accepted.receipt.to_bytes(),
                },
                Ok(Err(refusal)) => Response::Refused {
                    reason: refusal.to_string(),
                },
                Err(e) => {
                    tracing::error!(error = %e, "accepting an aggregate failed");
                    Response::Error {
                        message: "the national node could not store the aggregate; try again later"
                            .into(),
                    }
                }
            }
        }
    }
}

/// A breakdown of totals by territory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breakdown {
    /// By région.
    Region,
    /// By département.
    Departement,
}

impl Breakdown {
    fn parse(by: &str) -> Option<Self> {
        match by {
            "region" => Some(Self::Region),
            "departement" => Some(Self::Departement),
            _ => None,
        }
    }

    /// `CODE Name` of the territory of a commune, or `inconnu`.
    fn territory_of(self, commune: Option<&str>) -> String {
        let cog = maillage_protocol::Cog::get();
        let Some(c) = commune.and_then(|c| cog.commune(c).ok()) else {
            return "inconnu".into();
        };
        match self {
            Self::Region => match cog.region(c.region) {
                Ok(r) => format!("{} {}", r.code, r.name),
                Err(_) => c.region.to_owned(),
            },
            Self::Departement => match cog.departement(c.departement) {
                Ok(d) => format!("{} {}", d.code, d.name),
                Err(_) => c.departement.to_owned(),
            },
        }
    }
}

fn error(message: impl Into<String>) -> Response {
    Response::Error {
        message: message.into(),
    }
}

fn row(
    territory: String,
    cell: &maillage_protocol::aggregate::AggregateCell,
    contributors: u64,
    members: u64,
) -> TotalsRow {
    TotalsRow {
        territory,
        category: cell.category.clone(),
        estimate: cell.sum as f64,
        variance: cell.variance,
        ci95_low: cell.sum as f64 - cell.ci95_half_width,
        ci95_high: cell.sum as f64 + cell.ci95_half_width,
        contributors,
        members,
    }
}

/// Totals of one indicator for one period from the node's latest aggregate, overall or by
/// territory. A hub breaks its total down by the communes of its members (from the releases
/// the aggregate sums, so every territory's figures are sums of signed releases).
pub fn query(hub: &Hub<'_>, indicator: &str, period: &str, by: Option<String>) -> Response {
    use maillage_protocol::vocab::Vocabulary as _;
    let breakdown = match by.as_deref().map(|b| (b, Breakdown::parse(b))) {
        None => None,
        Some((_, Some(b))) => Some(b),
        Some((other, None)) => {
            return error(format!(
                "unknown breakdown {other:?}: expected region or departement"
            ));
        }
    };
    let Some(indicator) = Indicator::from_code(indicator) else {
        return error(format!(
            "unknown indicator {indicator:?}: expected one of {}",
            Indicator::ALL
                .iter()
                .map(|i| i.code())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    let Ok(period) = period.parse::<Period>() else {
        return error(format!("invalid period {period:?}: expected YYYY-MM"));
    };
    let aggregate = match hub.latest_aggregate(period) {
        Ok(Some(a)) => a,
        Ok(None) => return error(format!("no aggregate of {period} yet")),
        Err(e) => return error(e.to_string()),
    };
    let a = aggregate.aggregate();
    let members = (a.contributed.len() + a.missing.len()) as u64;
    let rows = match breakdown {
        None => a
            .cells
            .iter()
            .filter(|c| c.indicator == indicator)
            .map(|c| {
                row(
                    hub.node().config.node.name.clone(),
                    c,
                    a.contributed.len() as u64,
                    members,
                )
            })
            .collect(),
        Some(breakdown) => match territory_rows(hub, a, indicator, breakdown) {
            Ok(rows) => rows,
            Err(e) => return e,
        },
    };
    Response::Totals {
        totals: Totals {
            indicator: indicator.code().into(),
            period: period.to_string(),
            by,
            rows,
        },
    }
}

fn territory_rows(
    hub: &Hub<'_>,
    a: &maillage_protocol::aggregate::Aggregate,
    indicator: Indicator,
    breakdown: Breakdown,
) -> Result<Vec<TotalsRow>, Response> {
    use std::collections::BTreeMap;
    if hub.node().config.node.role != Role::Hub {
        return Err(error(
            "the national node serves national totals; breakdowns by territory are served by the hubs (maillage query --peer <hub> --by …)",
        ));
    }
    // Members per territory, and the releases the aggregate sums, grouped by territory.
    let mut member_count: BTreeMap<String, u64> = BTreeMap::new();
    for m in hub.members().iter().filter(|m| m.role == Role::Structure) {
        *member_count
            .entry(breakdown.territory_of(m.code_insee.as_deref()))
            .or_default() += 1;
    }
    let mut groups: BTreeMap<String, Vec<maillage_protocol::Release>> = BTreeMap::new();
    for c in &a.contributions {
        let (release, _) = hub
            .contribution(c.index)
            .map_err(|e| error(e.to_string()))?;
        let commune = hub
            .members()
            .get(&c.signer)
            .and_then(|m| m.code_insee.clone());
        groups
            .entry(breakdown.territory_of(commune.as_deref()))
            .or_default()
            .push(release.release().clone());
    }
    let mut rows = Vec::new();
    for (territory, releases) in &groups {
        let cells = crate::hub::sum_cells(releases.iter()).map_err(|e| error(e.to_string()))?;
        let members = member_count.get(territory).copied().unwrap_or(0);
        rows.extend(
            cells
                .iter()
                .filter(|c| c.indicator == indicator)
                .map(|c| row(territory.clone(), c, releases.len() as u64, members)),
        );
    }
    Ok(rows)
}
