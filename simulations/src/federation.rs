//! One period of the federation through the real code: structures submit their signed
//! releases to their hub (a real node: sled store, Merkle log, receipts), hubs sign aggregates,
//! the national node sums them, and an auditor checks every hub's bundle.

use std::collections::HashMap;
use std::path::Path;

use maillage_protocol::{SignedAggregate, SignedRelease};
use serde::Serialize;

use crate::cpu::{Spent, Timer};
use crate::national::{National, NationalTotal};
use crate::netmodel::{Link, NetParams};
use crate::node_adapter::{self, Answer, AuditOutcome, HubNode, MemberInfo, NationalOutcome};
use crate::world::{Releases, World};

/// What was submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sender {
    /// A structure's release.
    Structure(usize),
    /// A structure resending its stored release (a lost receipt).
    Resend(usize),
    /// An attack's submission.
    Attack(usize),
}

/// How a hub cheats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubCheat {
    /// Leaves a logged release out of its aggregate.
    DropRelease(usize),
    /// Changes a logged release in its exported log.
    AlterRelease(usize),
    /// Adds to one total of its aggregate.
    InflateTotal,
}

/// The plan of one period.
#[derive(Debug, Clone, Default)]
pub struct Schedule {
    /// Structures taking part (others do not exist in this run).
    pub structures: Vec<usize>,
    /// Structures offline during the submission window (they submit late).
    pub late: Vec<bool>,
    /// A hub offline during the window (its structures submit when it is back).
    pub hub_offline: Option<usize>,
    /// Structures that resend their release after the deadline.
    pub resend: Vec<usize>,
    /// Structures whose genuine release is not submitted (an attack replaces it).
    pub withheld: Vec<usize>,
    /// Extra submissions: (hub, bytes, attack id), sent in the deadline window after the
    /// genuine releases.
    pub extra: Vec<(usize, Vec<u8>, usize)>,
    /// Cheating hubs: (hub, how).
    pub cheats: Vec<(usize, HubCheat)>,
    /// Hubs that also send the national node a second, different aggregate for the period
    /// (a fork of their revision chain): (hub, attack id).
    pub hub_forks: Vec<(usize, usize)>,
}

/// Costs of one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Costs {
    /// Structures taking part.
    pub structures: usize,
    /// Hubs.
    pub hubs: usize,
    /// Mean bytes a structure sends and receives (release, receipt, transport overhead).
    pub bytes_per_structure: f64,
    /// Largest of the same.
    pub bytes_per_structure_max: u64,
    /// Mean bytes a hub receives and sends (releases, receipts, checkpoint and aggregate).
    pub bytes_per_hub: f64,
    /// Largest of the same.
    pub bytes_per_hub_max: u64,
    /// Mean size of a hub's audit bundle (what an auditor downloads).
    pub audit_bundle_bytes_per_hub: f64,
    /// Bytes the national node receives (hub aggregates).
    pub national_bytes: u64,
    /// CPU seconds per structure for one release (bounding, noise, signature): mean.
    pub structure_cpu_s_mean: f64,
    /// The same, 95th percentile.
    pub structure_cpu_s_p95: f64,
    /// CPU seconds per hub (ingest, receipts, log, checkpoints, aggregate, bundle export): mean.
    pub hub_cpu_s_mean: f64,
    /// The same, largest hub.
    pub hub_cpu_s_max: f64,
    /// CPU seconds of the national node (verifying and summing hub aggregates).
    pub national_cpu_s: f64,
    /// CPU seconds of the auditor, all hubs' bundles.
    pub auditor_cpu_s: f64,
    /// Modelled seconds from the period's close to the national total.
    pub time_to_national_s: f64,
    /// Of which: the slowest hub's batch fully received.
    pub slowest_hub_received_s: f64,
}

/// The outcome of one run.
#[derive(Debug)]
pub struct Run {
    /// Accepted at the deadline, per structure.
    pub accepted_deadline: Vec<bool>,
    /// Accepted in the end, per structure.
    pub accepted_final: Vec<bool>,
    /// National total at the deadline.
    pub national_deadline: NationalTotal,
    /// National total after late releases.
    pub national_final: NationalTotal,
    /// Each hub's final aggregate (as it published it).
    pub hub_aggregates: Vec<Option<SignedAggregate>>,
    /// Every answer: (hub, sender, answer).
    pub answers: Vec<(usize, Sender, Answer)>,
    /// National refusals of hub aggregates.
    pub national_refusals: Vec<(usize, String)>,
    /// Hub aggregates the national node accepted as revisions of an earlier one.
    pub national_revisions: usize,
    /// The national node's answers to attacks: (attack id, answer).
    pub national_attack_answers: Vec<(usize, NationalOutcome)>,
    /// Each hub's audit.
    pub audits: Vec<AuditOutcome>,
    /// Costs.
    pub costs: Costs,
}

/// Runs one period. `root` holds the hubs' node directories and bundles.
pub fn run(
    world: &World,
    releases: &Releases,
    schedule: &Schedule,
    net: &NetParams,
    links: &[Link],
    root: &Path,
    seed: u64,
) -> anyhow::Result<Run> {
    let period = world.period;
    let n = world.structures.len();
    let hub_count = world.france.hubs.len();
    let now = period
        .last_day()
        .midnight()
        .assume_utc()
        .unix_timestamp()
        .max(0) as u64
        + 86_400;
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); hub_count];
    for &s in &schedule.structures {
        members[world.structures[s].hub].push(s);
    }
    let mut hubs = Vec::with_capacity(hub_count);
    let mut hub_cpu = vec![Spent::default(); hub_count];
    for (h, area) in world.france.hubs.iter().enumerate() {
        let infos: Vec<MemberInfo> = members[h]
            .iter()
            .map(|&s| MemberInfo {
                key: world.structures[s].key.verifying_key(),
                name: format!("Structure {s}"),
                commune: world.structures[s].commune.clone(),
            })
            .collect();
        let timer = Timer::start();
        hubs.push(HubNode::create(
            &root.join(format!("hub-{h:03}")),
            &area.name,
            &area.seat,
            &releases.params,
            &infos,
        )?);
        hub_cpu[h] += timer.stop();
    }
    // The national node makes its own key (as `maillage init` does); the seed fixes the rest.
    let _ = seed;
    let hub_list: Vec<_> = hubs
        .iter()
        .zip(&world.france.hubs)
        .map(|(hub, area)| (hub.public(), area.name.clone()))
        .collect();
    let mut national = National::new(&root.join("national"), &hub_list)?;
    let mut national_attack_answers = Vec::new();
    let mut national_cpu = Spent::default();
    let mut national_bytes = 0u64;
    let mut national_refusals = Vec::new();

    let mut answers = Vec::new();
    let mut accepted = vec![false; n];
    let mut structure_bytes = vec![0u64; n];
    let mut hub_bytes = vec![0u64; hub_count];
    let mut aggregates: Vec<Option<SignedAggregate>> = vec![None; hub_count];
    let mut received_at = vec![0.0f64; hub_count];
    let mut hub_ready = vec![0.0f64; hub_count];
    let overhead = net.overhead_bytes;

    // Phase 1: the submission window; phase 2: after it (late structures, an offline hub back).
    let mut national_deadline = None;
    for phase in 0..2 {
        for h in 0..hub_count {
            let hub_down = schedule.hub_offline == Some(h);
            let mut batch: Vec<(Sender, Vec<u8>)> = Vec::new();
            for &s in &members[h] {
                if schedule.withheld.contains(&s) {
                    continue;
                }
                let late = schedule.late.get(s).copied().unwrap_or(false) || hub_down;
                if (phase == 0) != late {
                    batch.push((Sender::Structure(s), releases.bytes[s].clone()));
                }
            }
            if phase == 0 && !hub_down {
                for (hub, bytes, id) in &schedule.extra {
                    if *hub == h {
                        batch.push((Sender::Attack(*id), bytes.clone()));
                    }
                }
            }
            if phase == 1 {
                for &s in &schedule.resend {
                    if world.structures[s].hub == h && accepted[s] {
                        batch.push((Sender::Resend(s), releases.bytes[s].clone()));
                    }
                }
            }
            if (phase == 0 && hub_down) || (phase == 1 && batch.is_empty() && !hub_down) {
                continue;
            }
            let arrivals: Vec<(Link, u64)> = batch
                .iter()
                .map(|(sender, bytes)| {
                    let s = match sender {
                        Sender::Structure(s) | Sender::Resend(s) => *s,
                        Sender::Attack(_) => 0,
                    };
                    (links[s.min(links.len() - 1)], bytes.len() as u64)
                })
                .collect();
            let wire: Vec<Vec<u8>> = batch.iter().map(|(_, b)| b.clone()).collect();
            let timer = Timer::start();
            let outcome = hubs[h].submit(&wire, now + phase as u64 * 86_400)?;
            let (mut aggregate, checkpoint_bytes) =
                hubs[h].aggregate(period, now + phase as u64 * 86_400)?;
            let spent = timer.stop();
            hub_cpu[h] += spent;
            for ((sender, bytes), answer) in batch.into_iter().zip(outcome) {
                let down = match &answer.outcome {
                    Ok((receipt, _)) => *receipt as u64,
                    Err((_, message)) => message.len() as u64,
                };
                if let Sender::Structure(s) | Sender::Resend(s) = sender {
                    structure_bytes[s] += bytes.len() as u64 + down + 2 * overhead;
                    if answer.outcome.is_ok() && matches!(sender, Sender::Structure(_)) {
                        accepted[s] = true;
                    }
                }
                hub_bytes[h] += bytes.len() as u64 + down + 2 * overhead;
                answers.push((h, sender, answer));
            }
            for (cheat_hub, cheat) in &schedule.cheats {
                if *cheat_hub == h {
                    aggregate = crate::adversaries::cheat_aggregate(
                        &hubs[h], world, releases, &aggregate, *cheat, now,
                    )?;
                }
            }
            let bytes = aggregate.to_bytes();
            hub_bytes[h] += (bytes.len() + checkpoint_bytes) as u64 + 2 * overhead;
            national_bytes += bytes.len() as u64 + overhead;
            if phase == 0 {
                received_at[h] = net.batch_received(&arrivals);
                hub_ready[h] = received_at[h]
                    + spent.cpu_s
                    + net.hub_to_national(bytes.len() as u64, world.france.hubs[h].overseas);
            }
            let at = now + phase as u64 * 86_400;
            let timer = Timer::start();
            if let NationalOutcome::Refused(kind, e) = national.submit(&bytes, at)? {
                national_refusals.push((h, format!("{}: {e}", kind.as_str())));
            }
            national_cpu += timer.stop();
            if phase == 0 {
                for &(fork_hub, attack) in &schedule.hub_forks {
                    if fork_hub == h {
                        let fork =
                            crate::adversaries::fork_aggregate(&hubs[h], &aggregate, at + 1)?;
                        let answer = national.submit(&fork.to_bytes(), at + 1)?;
                        national_attack_answers.push((attack, answer));
                    }
                }
            }
            aggregates[h] = Some(aggregate);
        }
        let timer = Timer::start();
        let total = national.aggregate(period, now + phase as u64 * 86_400)?;
        national_cpu += timer.stop();
        if phase == 0 {
            national_deadline = Some((total, accepted.clone(), national_cpu.cpu_s));
        } else {
            let (deadline_total, accepted_deadline, national_deadline_cpu) = national_deadline
                .take()
                .ok_or_else(|| anyhow::anyhow!("no deadline total"))?;
            // Audits of every hub's final state.
            let mut audits = Vec::with_capacity(hub_count);
            let mut auditor_cpu = Spent::default();
            let mut bundle_bytes = 0u64;
            for h in 0..hub_count {
                let dir = root.join(format!("bundle-{h:03}"));
                let timer = Timer::start();
                hubs[h].export(period, aggregates[h].as_ref(), &dir, now + 2 * 86_400)?;
                hub_cpu[h] += timer.stop();
                for (cheat_hub, cheat) in &schedule.cheats {
                    if let (true, HubCheat::AlterRelease(s)) = (*cheat_hub == h, cheat) {
                        crate::adversaries::alter_release_in_bundle(&dir, world, *s)?;
                    }
                }
                let timer = Timer::start();
                let outcome = node_adapter::audit(&dir)?;
                auditor_cpu += timer.stop();
                bundle_bytes += outcome.bundle_bytes;
                audits.push(outcome);
            }
            let slowest = hub_ready.iter().copied().fold(0.0, f64::max);
            let participants: Vec<usize> = schedule.structures.clone();
            let mut cpu: Vec<f64> = participants
                .iter()
                .map(|&s| releases.cpu[s].cpu_s)
                .collect();
            let cpu_mean = cpu.iter().sum::<f64>() / cpu.len().max(1) as f64;
            let p95 = crate::metrics::quantile(&mut cpu, 0.95);
            let sb: Vec<u64> = participants.iter().map(|&s| structure_bytes[s]).collect();
            let costs = Costs {
                structures: participants.len(),
                hubs: hub_count,
                bytes_per_structure: sb.iter().sum::<u64>() as f64 / sb.len().max(1) as f64,
                bytes_per_structure_max: sb.iter().copied().max().unwrap_or(0),
                bytes_per_hub: hub_bytes.iter().sum::<u64>() as f64 / hub_count.max(1) as f64,
                bytes_per_hub_max: hub_bytes.iter().copied().max().unwrap_or(0),
                audit_bundle_bytes_per_hub: bundle_bytes as f64 / hub_count.max(1) as f64,
                national_bytes,
                structure_cpu_s_mean: cpu_mean,
                structure_cpu_s_p95: p95,
                hub_cpu_s_mean: hub_cpu.iter().map(|c| c.cpu_s).sum::<f64>()
                    / hub_count.max(1) as f64,
                hub_cpu_s_max: hub_cpu.iter().map(|c| c.cpu_s).fold(0.0, f64::max),
                national_cpu_s: national_cpu.cpu_s,
                auditor_cpu_s: auditor_cpu.cpu_s,
                time_to_national_s: slowest + national_deadline_cpu,
                slowest_hub_received_s: received_at.iter().copied().fold(0.0, f64::max),
            };
            return Ok(Run {
                accepted_deadline,
                accepted_final: accepted,
                national_deadline: deadline_total,
                national_final: total,
                hub_aggregates: aggregates,
                answers,
                national_refusals,
                national_revisions: national.revisions_accepted,
                national_attack_answers,
                audits,
                costs,
            });
        }
    }
    anyhow::bail!("the run ended without its second phase")
}

/// Decodes the releases of `structures` (for recomputing sums).
pub fn decode_releases(
    releases: &Releases,
    structures: impl IntoIterator<Item = usize>,
) -> anyhow::Result<Vec<SignedRelease>> {
    structures
        .into_iter()
        .map(|s| Ok(SignedRelease::decode(&releases.bytes[s])?))
        .collect()
}

/// Structures by hub.
pub fn by_hub(world: &World, structures: &[usize]) -> HashMap<usize, Vec<usize>> {
    let mut out: HashMap<usize, Vec<usize>> = HashMap::new();
    for &s in structures {
        out.entry(world.structures[s].hub).or_default().push(s);
    }
    out
}
