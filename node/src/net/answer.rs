//! How a hub or national node answers the requests of its admitted members.

use maillage_protocol::network::{Request, Response, Totals, TotalsRow};
use maillage_protocol::{Indicator, Period, SignedRelease};

use crate::config::Role;
use crate::hub::Hub;

fn unix_now() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
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
        Request::SubmitRelease { release } => {
            match SignedRelease::decode(&release) {
                Ok(r) if r.release().signer != *member => {
                    return Response::Refused {
                        reason: "a member may only submit its own releases".into(),
                    };
                }
                Err(e) => {
                    return Response::Refused {
                        reason: format!("invalid release: {e}"),
                    };
                }
                Ok(_) => {}
            }
            match hub.accept_batch(&[release], unix_now()) {
                Ok(mut outcomes) => match outcomes.pop() {
                    Some(Ok(accepted)) => Response::Receipt {
                        receipt: accepted.receipt.to_bytes(),
                    },
                    Some(Err(refusal)) => Response::Refused {
                        reason: refusal.to_string(),
                    },
                    None => Response::Error {
                        message: "no outcome".into(),
                    },
                },
                Err(e) => {
                    tracing::error!(error = %e, "accepting a release failed");
                    Response::Error {
                        message: "the hub could not store the release; try again later".into(),
                    }
                }
            }
        }
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
        Request::SubmitAggregate { .. } => Response::Refused {
            reason: "this node does not take aggregates yet".into(),
        },
    }
}

/// Totals of one indicator for one period from the hub's latest aggregate.
pub fn query(hub: &Hub<'_>, indicator: &str, period: &str, by: Option<String>) -> Response {
    use maillage_protocol::vocab::Vocabulary as _;
    if by.is_some() {
        return Response::Error {
            message: "breakdowns by région or département are not served yet; ask without --by"
                .into(),
        };
    }
    let Some(indicator) = Indicator::from_code(indicator) else {
        return Response::Error {
            message: format!("unknown indicator {indicator:?}"),
        };
    };
    let Ok(period) = period.parse::<Period>() else {
        return Response::Error {
            message: format!("invalid period {period:?}: expected YYYY-MM"),
        };
    };
    let aggregate = match hub.latest_aggregate(period) {
        Ok(Some(a)) => a,
        Ok(None) => {
            return Response::Error {
                message: format!("no aggregate of {period} yet"),
            };
        }
        Err(e) => {
            return Response::Error {
                message: e.to_string(),
            };
        }
    };
    let a = aggregate.aggregate();
    let members = (a.contributed.len() + a.missing.len()) as u64;
    let rows = a
        .cells
        .iter()
        .filter(|c| c.indicator == indicator)
        .map(|c| TotalsRow {
            territory: c.category.clone().unwrap_or_else(|| "total".into()),
            estimate: c.sum as f64,
            ci95_low: c.sum as f64 - c.ci95_half_width,
            ci95_high: c.sum as f64 + c.ci95_half_width,
            contributors: a.contributions.len() as u64,
            members,
        })
        .collect();
    Response::Totals {
        totals: Totals {
            indicator: indicator.code().into(),
            period: period.to_string(),
            by: None,
            rows,
        },
    }
}
