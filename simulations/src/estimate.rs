//! Territorial totals: the network's estimates (sums of the structures' noisy releases, as the
//! hubs and the national node sum them), and the central-database comparisons.

use maillage_privacy::accuracy::{Summand, combine};
use maillage_privacy::release::Plan;
use maillage_protocol::aggregate::AggregateCell;
use serde::Serialize;

use crate::metrics::{Accuracy, CellEstimate, accuracy};
use crate::world::{Releases, World};

/// A territory level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// France.
    National,
    /// A région.
    Region,
    /// A département.
    Departement,
}

impl Level {
    /// Its name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::National => "national",
            Self::Region => "region",
            Self::Departement => "departement",
        }
    }
}

/// The cells of one territory.
#[derive(Debug, Clone)]
pub struct Territory {
    /// Its level.
    pub level: Level,
    /// Its code (`FR` for France).
    pub code: String,
    /// Structures located in it.
    pub structures: Vec<usize>,
    /// One estimate per cell.
    pub cells: Vec<CellEstimate>,
}

/// Every territory with its structures: France, the régions, the départements.
pub fn territories(world: &World) -> Vec<(Level, String, Vec<usize>)> {
    let mut out = vec![(
        Level::National,
        "FR".to_owned(),
        (0..world.structures.len()).collect(),
    )];
    for (r, code) in world.france.regions.iter().enumerate() {
        let members = world
            .structures
            .iter()
            .filter(|s| s.region == r)
            .map(|s| s.index)
            .collect();
        out.push((Level::Region, code.clone(), members));
    }
    for (d, code) in world.france.departements.iter().enumerate() {
        let members = world
            .structures
            .iter()
            .filter(|s| s.departement == d)
            .map(|s| s.index)
            .collect();
        out.push((Level::Departement, code.clone(), members));
    }
    out
}

fn truths(world: &World, members: &[usize]) -> (Vec<f64>, Vec<f64>) {
    let n = world.cells.len();
    let (mut t, mut b) = (vec![0.0; n], vec![0.0; n]);
    for &s in members {
        for c in 0..n {
            t[c] += world.exact[s][c] as f64;
            b[c] += world.bounded[s][c] as f64;
        }
    }
    (t, b)
}

/// The network's estimates: in each territory, the sum of the releases of the structures
/// whose release was accepted (`accepted[s]`), with `combine`'s interval; the national level
/// from the national aggregate's cells when given.
pub fn federated(
    world: &World,
    releases: &Releases,
    accepted: &[bool],
    national: Option<&[AggregateCell]>,
) -> anyhow::Result<Vec<Territory>> {
    let mechanism = releases.mechanism();
    let mut out = Vec::new();
    for (level, code, members) in territories(world) {
        let (truth, bounded) = truths(world, &members);
        let mut cells = Vec::with_capacity(world.cells.len());
        for c in 0..world.cells.len() {
            let (value, half_width) = match (level, national) {
                (Level::National, Some(agg)) => {
                    let a = agg
                        .get(c)
                        .ok_or_else(|| anyhow::anyhow!("national aggregate lacks cell {c}"))?;
                    (a.sum as f64, a.ci95_half_width)
                }
                _ => {
                    let e = combine(members.iter().filter(|&&s| accepted[s]).map(|&s| Summand {
                        value: releases.values[s][c],
                        mechanism,
                        scale: releases.scales[c],
                    }))?;
                    (e.value as f64, e.ci95_half_width)
                }
            };
            cells.push(CellEstimate {
                value,
                half_width,
                truth: truth[c],
                bounded: bounded[c],
            });
        }
        out.push(Territory {
            level,
            code,
            structures: members,
            cells,
        });
    }
    Ok(out)
}

/// A central database's figures: `exact` (error 0 by definition, holding everyone's records),
/// `bounded` (contribution bounding only), or `dp` (one noise draw per territory and cell at
/// the same per-person budget: the accuracy secure aggregation would give, see DESIGN.md's
/// roadmap). The noise of `dp` comes from `plan` releasing an empty month, i.e. from the real
/// OpenDP measurement with nothing to count.
pub fn central(world: &World, plan: Option<&Plan>) -> anyhow::Result<Vec<Territory>> {
    let mut out = Vec::new();
    for (level, code, members) in territories(world) {
        let (truth, bounded) = truths(world, &members);
        let noise = match plan {
            Some(p) => Some(p.release(world.period, &[])?),
            None => None,
        };
        let cells = (0..world.cells.len())
            .map(|c| {
                let (value, half_width) = match &noise {
                    Some(n) => (
                        bounded[c] + n.cells[c].value as f64,
                        n.cells[c].ci95_half_width,
                    ),
                    None => (bounded[c], 0.0),
                };
                CellEstimate {
                    value,
                    half_width,
                    truth: truth[c],
                    bounded: bounded[c],
                }
            })
            .collect();
        out.push(Territory {
            level,
            code,
            structures: members,
            cells,
        });
    }
    Ok(out)
}

/// The exact central database: the truth itself.
pub fn central_exact(world: &World) -> Vec<Territory> {
    territories(world)
        .into_iter()
        .map(|(level, code, members)| {
            let (truth, bounded) = truths(world, &members);
            let cells = truth
                .iter()
                .zip(&bounded)
                .map(|(&t, &b)| CellEstimate {
                    value: t,
                    half_width: 0.0,
                    truth: t,
                    bounded: b,
                })
                .collect();
            Territory {
                level,
                code,
                structures: members,
                cells,
            }
        })
        .collect()
}

/// Accuracy per level of a set of territories.
pub fn by_level(method: &str, territories: &[Territory]) -> Vec<Accuracy> {
    [Level::National, Level::Region, Level::Departement]
        .iter()
        .map(|&level| {
            let cells: Vec<CellEstimate> = territories
                .iter()
                .filter(|t| t.level == level)
                .flat_map(|t| t.cells.iter().copied())
                .collect();
            accuracy(level.as_str(), method, &cells)
        })
        .collect()
}
