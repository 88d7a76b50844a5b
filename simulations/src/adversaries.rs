//! Attacks on the network and what detects them: structures that forge, equivocate, overspend,
//! use another mechanism or are not members (the hub refuses them), and hubs that drop, alter
//! or inflate (the auditor finds them). Detections are read from the node's hub refusals and
//! audit findings; nothing here decides whether an attack was caught except by looking there.

use std::path::Path;

use ed25519_dalek::SigningKey;
use maillage_privacy::release::Mechanism as PrivacyMechanism;
use maillage_protocol::aggregate::Aggregate;
use maillage_protocol::{ContributionRef, SignedAggregate, SignedRelease};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

use crate::federation::{HubCheat, Run, Schedule, Sender};
use crate::france::Structure;
use crate::node_adapter::{self, HubNode, NationalOutcome};
use crate::world::{Releases, World, params, signed_release};

/// One attack and who must detect it.
#[derive(Debug, Clone, Serialize)]
pub struct Attack {
    /// Its number.
    pub id: usize,
    /// What it is.
    pub name: &'static str,
    /// Who cheats: a structure's or a hub's key, hex.
    pub culprit: String,
    /// The hub concerned (its name).
    pub hub: String,
    /// `hub` or `audit` (or both), or `national` (the national node refuses a hub's aggregate).
    pub expected_by: &'static str,
    /// The refusal or finding kind expected.
    pub expected_kind: &'static str,
    #[serde(skip)]
    hub_index: usize,
    #[serde(skip)]
    audit_kind: Option<&'static str>,
}

/// What was detected of one attack.
#[derive(Debug, Clone, Serialize)]
pub struct Detection {
    /// The attack.
    #[serde(flatten)]
    pub attack: Attack,
    /// The hub's refusal kind, if it refused the attack's submission.
    pub hub_refusal: Option<String>,
    /// Whether the audit of the hub's bundle reported the expected kind.
    pub audit_found: bool,
    /// Whether everything expected was detected.
    pub detected: bool,
    /// The refusal message or the finding.
    pub detail: String,
}

/// Picks hubs with at least `k` members, in order of size.
fn hubs_with_members(world: &World, k: usize) -> Vec<(usize, Vec<usize>)> {
    let mut hubs: Vec<(usize, Vec<usize>)> = (0..world.france.hubs.len())
        .map(|h| {
            (
                h,
                world
                    .structures
                    .iter()
                    .filter(|s| s.hub == h)
                    .map(|s| s.index)
                    .collect(),
            )
        })
        .filter(|(_, m): &(usize, Vec<usize>)| m.len() >= k)
        .collect();
    hubs.sort_by_key(|(h, m)| (std::cmp::Reverse(m.len()), *h));
    hubs
}

fn key_hex(s: &Structure) -> String {
    hex::encode(s.key.verifying_key().as_bytes())
}

/// Builds the adversarial schedule over every structure: one attack of each kind, on seeded
/// victims spread over the largest hubs. Needs at least three hubs with three members.
pub fn schedule(
    world: &World,
    releases: &Releases,
    seed: u64,
) -> anyhow::Result<(Schedule, Vec<Attack>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6164_7665_7273_6172);
    let hubs = hubs_with_members(world, 3);
    anyhow::ensure!(
        hubs.len() >= 3,
        "the adversaries scenario needs 3 hubs with 3 structures each; give more --structures"
    );
    let mut schedule = Schedule {
        structures: (0..world.structures.len()).collect(),
        late: vec![false; world.structures.len()],
        ..Schedule::default()
    };
    let mut attacks = Vec::new();
    let period = world.period;
    let mut pick = |h: usize, used: &mut Vec<usize>| -> usize {
        let members = &hubs[h % hubs.len()].1;
        loop {
            let s = members[rng.random_range(0..members.len())];
            if !used.contains(&s) || used.len() >= members.len() {
                used.push(s);
                return s;
            }
        }
    };
    let mut used = Vec::new();
    let add = |attacks: &mut Vec<Attack>,
               name,
               culprit: String,
               h: usize,
               expected_by,
               expected_kind,
               audit_kind| {
        let id = attacks.len();
        attacks.push(Attack {
            id,
            name,
            culprit,
            hub: world.france.hubs[h].name.clone(),
            expected_by,
            expected_kind,
            hub_index: h,
            audit_kind,
        });
        id
    };

    // A structure's release with a changed figure under its original signature.
    let s = pick(0, &mut used);
    let h = world.structures[s].hub;
    let (mut release, signature) = SignedRelease::decode(&releases.bytes[s])?.into_parts();
    release.cells[0].value += 500;
    let forged = SignedRelease::from_parts(release, signature)?.to_bytes();
    let id = add(
        &mut attacks,
        "forged_signature",
        key_hex(&world.structures[s]),
        h,
        "hub",
        "invalid",
        None,
    );
    schedule.extra.push((h, forged, id));

    // A second, differently noised release of the same month, validly signed.
    let s = pick(1, &mut used);
    let h = world.structures[s].hub;
    let activities = crate::activities::month(&world.structures[s], period);
    let second = signed_release(&releases.params, &world.structures[s], period, &activities)?;
    let id = add(
        &mut attacks,
        "equivocation",
        key_hex(&world.structures[s]),
        h,
        "hub+audit",
        "equivocation",
        Some("equivocation"),
    );
    schedule.extra.push((h, second.to_bytes(), id));

    // A release spending twice the period's budget, instead of the genuine one.
    let s = pick(2, &mut used);
    let h = world.structures[s].hub;
    let mut greedy = releases.params.clone();
    greedy.budget *= 2.0;
    let over = signed_release(
        &greedy,
        &world.structures[s],
        period,
        &activities_of(world, s),
    )?;
    let id = add(
        &mut attacks,
        "budget_overspend",
        key_hex(&world.structures[s]),
        h,
        "hub",
        "over_budget",
        None,
    );
    schedule.withheld.push(s);
    schedule.extra.push((h, over.to_bytes(), id));

    // A release under another mechanism than the policy's, instead of the genuine one.
    let s = pick(0, &mut used);
    let h = world.structures[s].hub;
    let other = match releases.mechanism() {
        PrivacyMechanism::DiscreteLaplace => PrivacyMechanism::DiscreteGaussian,
        PrivacyMechanism::DiscreteGaussian => PrivacyMechanism::DiscreteLaplace,
    };
    let wrong = signed_release(
        &params(other, 1.0),
        &world.structures[s],
        period,
        &activities_of(world, s),
    )?;
    let id = add(
        &mut attacks,
        "wrong_mechanism",
        key_hex(&world.structures[s]),
        h,
        "hub",
        "wrong_mechanism",
        None,
    );
    schedule.withheld.push(s);
    schedule.extra.push((h, wrong.to_bytes(), id));

    // A key that is no member of the hub, with a valid release.
    let h = hubs[1].0;
    let mut secret = [0u8; 32];
    rng.fill(&mut secret[..]);
    let outsider = Structure {
        index: usize::MAX,
        key: SigningKey::from_bytes(&secret),
        ..world.structures[hubs[1].1[0]].clone()
    };
    let intruder = signed_release(
        &releases.params,
        &outsider,
        period,
        &activities_of(world, hubs[1].1[0]),
    )?;
    let id = add(
        &mut attacks,
        "non_member",
        key_hex(&outsider),
        h,
        "hub",
        "not_member",
        None,
    );
    schedule.extra.push((h, intruder.to_bytes(), id));

    // Cheating hubs, one per cheat, on the three largest hubs.
    let cheats: [(&'static str, &'static str, usize); 3] = [
        ("hub_drops_release", "omitted_contribution", 0),
        ("hub_alters_release", "bad_signature", 1),
        ("hub_inflates_total", "sum_mismatch", 2),
    ];
    for (name, kind, k) in cheats {
        let (h, members) = &hubs[k];
        let victim = members
            .iter()
            .copied()
            .find(|s| !schedule.withheld.contains(s) && !used.contains(s))
            .unwrap_or(members[0]);
        used.push(victim);
        let cheat = match name {
            "hub_drops_release" => HubCheat::DropRelease(victim),
            "hub_alters_release" => HubCheat::AlterRelease(victim),
            _ => HubCheat::InflateTotal,
        };
        add(
            &mut attacks,
            name,
            format!("hub {}", world.france.hubs[*h].name),
            *h,
            "audit",
            kind,
            Some(kind),
        );
        schedule.cheats.push((*h, cheat));
    }
    // A hub that signs a second, different aggregate for the period (naming no predecessor: a
    // fork of its revision chain) and sends it to the national node after its own.
    let (h, _) = &hubs[hubs.len() - 1];
    let id = add(
        &mut attacks,
        "hub_equivocates",
        format!("hub {}", world.france.hubs[*h].name),
        *h,
        "national",
        "equivocation",
        None,
    );
    schedule.hub_forks.push((*h, id));
    Ok((schedule, attacks))
}

/// A second first aggregate of the period, with one figure changed, signed by the hub: what an
/// equivocating hub shows the national node besides its honest aggregate.
pub fn fork_aggregate(
    hub: &HubNode,
    honest: &SignedAggregate,
    now: u64,
) -> anyhow::Result<SignedAggregate> {
    let mut forked: Aggregate = honest.aggregate().clone();
    forked.supersedes = None;
    forked.created_at = now;
    if let Some(cell) = forked.cells.first_mut() {
        cell.sum += 1;
    }
    Ok(forked.sign(hub.signing_key())?)
}

fn activities_of(world: &World, s: usize) -> Vec<maillage_privacy::Activity> {
    crate::activities::month(&world.structures[s], world.period)
}

/// What a cheating hub publishes instead of its honest aggregate.
pub fn cheat_aggregate(
    hub: &HubNode,
    world: &World,
    releases: &Releases,
    honest: &SignedAggregate,
    cheat: HubCheat,
    now: u64,
) -> anyhow::Result<SignedAggregate> {
    let a = honest.aggregate();
    let mut forged: Aggregate = a.clone();
    forged.created_at = now;
    match cheat {
        HubCheat::DropRelease(victim) => {
            let key = world.structures[victim].key.verifying_key();
            let kept: Vec<ContributionRef> = a
                .contributions
                .iter()
                .copied()
                .filter(|c| c.signer != key)
                .collect();
            let mut decoded = Vec::new();
            for c in &kept {
                let s = world
                    .structures
                    .iter()
                    .position(|s| s.key.verifying_key() == c.signer)
                    .ok_or_else(|| anyhow::anyhow!("unknown signer in the aggregate"))?;
                decoded.push(SignedRelease::decode(&releases.bytes[s])?);
            }
            forged.cells = node_adapter::sum_releases(decoded.iter().map(|r| r.release()))?;
            forged.contributions = kept;
            forged.contributed.retain(|k| *k != key);
            forged.missing.push(key);
            forged.missing.sort_by_key(|k| k.to_bytes());
            forged.structures = forged.structures.map(|_| forged.contributed.len() as u64);
        }
        HubCheat::InflateTotal => {
            if let Some(cell) = forged.cells.first_mut() {
                cell.sum += 1_000;
            }
        }
        HubCheat::AlterRelease(_) => return Ok(honest.clone()),
    }
    Ok(forged.sign(hub.signing_key())?)
}

/// A cheating hub changes one figure of `victim`'s release in its exported log.
pub fn alter_release_in_bundle(dir: &Path, world: &World, victim: usize) -> anyhow::Result<()> {
    let path = dir.join(node_adapter::BUNDLE_RELEASES);
    let text = std::fs::read_to_string(&path)?;
    let key = hex::encode(world.structures[victim].key.verifying_key().as_bytes());
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    for line in text.lines() {
        let mut value: serde_json::Value = serde_json::from_str(line)?;
        if value["release"]["signer"].as_str() == Some(key.as_str())
            && let Some(v) = value["release"]["cells"][0]["value"].as_i64()
        {
            value["release"]["cells"][0]["value"] = serde_json::json!(v + 1_000);
            changed = true;
        }
        out.push_str(&serde_json::to_string(&value)?);
        out.push('\n');
    }
    anyhow::ensure!(changed, "the victim's release is not in the bundle");
    std::fs::write(&path, out)?;
    Ok(())
}

/// Reads the run's refusals and findings for each attack.
pub fn detections(attacks: &[Attack], run: &Run) -> Vec<Detection> {
    attacks
        .iter()
        .map(|a| {
            let refusal = run
                .answers
                .iter()
                .find_map(|(_, sender, answer)| match sender {
                    Sender::Attack(id) if *id == a.id => Some(answer.outcome.clone()),
                    _ => None,
                });
            let national = run
                .national_attack_answers
                .iter()
                .find(|(id, _)| *id == a.id)
                .map(|(_, answer)| answer);
            let (hub_refusal, hub_detail) = match (&refusal, national) {
                (Some(Err((kind, message))), _) => {
                    (Some(kind.as_str().to_owned()), message.clone())
                }
                (Some(Ok(_)), _) => (None, "accepted by the hub".to_owned()),
                (None, Some(NationalOutcome::Refused(kind, message))) => (
                    Some(kind.as_str().to_owned()),
                    format!("national node: {message}"),
                ),
                (None, Some(NationalOutcome::Accepted { .. })) => {
                    (None, "accepted by the national node".to_owned())
                }
                (None, None) => (None, String::new()),
            };
            let finding = a.audit_kind.and_then(|kind| {
                run.audits
                    .get(a.hub_index)
                    .and_then(|audit| audit.findings.iter().find(|f| f.kind == kind))
            });
            let hub_ok = !(a.expected_by.contains("hub") || a.expected_by.contains("national"))
                || hub_refusal.as_deref() == Some(a.expected_kind);
            let audit_ok = a.audit_kind.is_none() || finding.is_some();
            let detail = match finding {
                Some(f) if hub_detail.is_empty() => {
                    format!("[{}] {}: {}", f.kind, f.location, f.what)
                }
                Some(f) => format!("{hub_detail}; audit: [{}] {}", f.kind, f.location),
                None => hub_detail,
            };
            Detection {
                attack: a.clone(),
                hub_refusal,
                audit_found: finding.is_some(),
                detected: hub_ok && audit_ok,
                detail,
            }
        })
        .collect()
}

/// Refusals and findings no attack explains (false alarms).
pub fn unexplained(attacks: &[Attack], run: &Run) -> Vec<String> {
    let mut out = Vec::new();
    for (h, sender, answer) in &run.answers {
        if let (Sender::Structure(s) | Sender::Resend(s), Err((kind, message))) =
            (sender, &answer.outcome)
        {
            out.push(format!(
                "hub {h} refused structure {s}: {} {message}",
                kind.as_str()
            ));
        }
    }
    for (h, audit) in run.audits.iter().enumerate() {
        for f in &audit.findings {
            let explained = attacks.iter().any(|a| {
                a.hub_index == h
                    && (a.audit_kind == Some(f.kind.as_str())
                        // A changed release also no longer matches its receipt, checkpoints and
                        // inclusion proof: consequences of the same alteration.
                        // Dropping a release from the sums also changes the sums and the
                        // coverage lists the auditor recomputes.
                        || (a.name == "hub_drops_release"
                            && matches!(f.kind.as_str(), "sum_mismatch" | "coverage_mismatch"))
                        || (a.name == "hub_alters_release"
                            && matches!(
                                f.kind.as_str(),
                                "receipt_mismatch" | "checkpoint_mismatch" | "bad_inclusion_proof" | "sum_mismatch" | "omitted_contribution" | "extra_contribution"
                            )))
            });
            if !explained {
                out.push(format!(
                    "audit of hub {h}: [{}] {}: {}",
                    f.kind, f.location, f.what
                ));
            }
        }
    }
    for (h, e) in &run.national_refusals {
        out.push(format!("national refused hub {h}: {e}"));
    }
    out
}
