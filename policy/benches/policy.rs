//! The policy document at the scale of the sector: 20,000 members and 50 indicators (the 16 of
//! the compiled catalogue — common core and its modules — and 34 module indicators declared in
//! the policy's `modules`).
//!
//! Prints the document's size on disk, load time (target < 1 s), the time to sync one change
//! between two peers by in-process message exchange (target < 100 ms; loopback request-response
//! adds about 2 ms per round trip, see NOTES-deps.md), and the time to verify an adoption.
//! Baseline measured in the same run: the canonical JSON snapshot of the same policy (its size,
//! and the time to parse it with serde_json), i.e. what a plain file without history would cost.
//!
//! Run: `cargo bench -p maillage-policy --bench policy` (`MEMBERS=2000` for a quicker run).

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use maillage_policy::{
    AdoptionChain, CommitteeMember, Edit, IndicatorEntry, Member, ModuleIndicator, Policy,
    PolicyDoc, PublicKey, Role, SyncState, sign_adoption,
};
use maillage_protocol::{Cog, Indicator};

type BenchResult = Result<(), Box<dyn std::error::Error>>;

fn key(i: u32) -> SigningKey {
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&i.to_le_bytes());
    seed[4] = 0x5a;
    SigningKey::from_bytes(&seed)
}

fn pk(i: u32) -> PublicKey {
    PublicKey::from(key(i).verifying_key())
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (T, Duration) {
    let (mut out, mut best) = timed(&mut f);
    for _ in 1..runs {
        let (o, d) = timed(&mut f);
        if d < best {
            best = d;
            out = o;
        }
    }
    (out, best)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn sync(
    a: &mut PolicyDoc,
    sa: &mut SyncState,
    b: &mut PolicyDoc,
    sb: &mut SyncState,
) -> Result<(usize, usize), Box<dyn std::error::Error>> {
    let (mut rounds, mut bytes) = (0, 0);
    loop {
        let m1 = a.generate_sync_message(sa);
        if let Some(m) = &m1 {
            bytes += m.len();
            b.receive_sync_message(sb, m)?;
        }
        let m2 = b.generate_sync_message(sb);
        if let Some(m) = &m2 {
            bytes += m.len();
            a.receive_sync_message(sa, m)?;
        }
        if m1.is_none() && m2.is_none() {
            return Ok((rounds, bytes));
        }
        rounds += 1;
    }
}

fn main() -> BenchResult {
    let members: u32 = std::env::var("MEMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    const HUBS: u32 = 16;
    const BATCH: u32 = 100;
    let communes: Vec<String> = Cog::get()
        .current_commune_codes()
        .map(str::to_owned)
        .collect();

    // Genesis: committee of 3 (quorum 2), the 16 hubs, every indicator of the catalogue.
    let mut genesis = Policy::default();
    for &i in Indicator::MODULES {
        genesis
            .indicators
            .insert(i, IndicatorEntry::from_catalogue(i, 1));
    }
    // 34 module indicators, as a steering committee could declare them: four modules, every
    // kind, categorical ones with 4 to 12 categories.
    const MODULE_INDICATORS: usize = 34;
    for n in 0..MODULE_INDICATORS {
        let kind = ["count", "count_by", "sum", "histogram"][n % 4];
        let categories = if matches!(kind, "count_by" | "histogram") {
            (0..4 + n % 9).map(|c| format!("categorie_{c}")).collect()
        } else {
            Vec::new()
        };
        genesis.modules.insert(
            format!("module_indicateur_{n:02}"),
            ModuleIndicator {
                module: [
                    "numerique_responsable",
                    "inclusion_financiere",
                    "emploi",
                    "sante",
                ][n % 4]
                    .to_owned(),
                kind: kind.to_owned(),
                categories,
                max_contribution: if kind == "sum" { 240 } else { 3 },
                weight: 1,
            },
        );
    }
    genesis.committee.quorum = 2;
    for c in 0..3 {
        genesis.committee.members.insert(
            pk(1_000_000 + c),
            CommitteeMember {
                name: format!("Comité {c}"),
            },
        );
    }
    for h in 0..HUBS {
        genesis.members.insert(
            pk(h),
            Member {
                name: format!("Hub territorial {h}"),
                role: Role::Hub,
                pivot: None,
                hub: None,
                commune: Some(communes[h as usize].clone()),
                place_id: None,
            },
        );
    }
    let (doc, build) = timed(|| -> Result<PolicyDoc, Box<dyn std::error::Error>> {
        let mut doc = PolicyDoc::genesis(&genesis)?;
        // Structures join in batches of 100, as hubs would add them, each batch one change.
        let mut next = HUBS;
        while next < members {
            let end = (next + BATCH).min(members);
            let edits: Vec<Edit> = (next..end)
                .map(|i| {
                    Edit::add_member(
                        pk(i),
                        Member {
                            name: format!("Lieu de médiation numérique n°{i}"),
                            role: Role::Structure,
                            pivot: Some("73282932000074".into()),
                            hub: Some(pk(i % HUBS)),
                            commune: Some(communes[i as usize % communes.len()].clone()),
                            place_id: Some(format!("lieu-{i:06}")),
                        },
                    )
                })
                .collect();
            doc.apply(&edits, "hub adds members")?;
            next = end;
        }
        Ok(doc)
    });
    let doc = doc?;
    let saved = doc.save();
    let indicators = genesis.indicators.len() + genesis.modules.len();
    println!(
        "policy document: {members} members, {indicators} indicators ({} of the catalogue, {} module indicators), {} changes (built in {})",
        genesis.indicators.len(),
        genesis.modules.len(),
        doc.change_count(),
        ms(build)
    );
    println!("  size on disk (Automerge save): {} bytes", saved.len());

    let policy = doc.policy()?;
    let snapshot = policy.canonical_bytes();
    let (_, parse) = best(5, || Policy::from_canonical_bytes(&snapshot));
    println!(
        "  baseline: canonical JSON snapshot {} bytes, parsed and checked in {}",
        snapshot.len(),
        ms(parse)
    );

    let (loaded, load) = best(5, || PolicyDoc::load(&saved));
    let loaded = loaded?;
    let (read, materialise) = best(5, || loaded.policy());
    let read = read?;
    assert_eq!(read.hash(), policy.hash());
    println!(
        "  load: {} (target < 1 s); load + read the whole policy: {}",
        ms(load),
        ms(load + materialise)
    );
    let (_, hash) = best(5, || policy.hash());
    let (_, validate) = best(3, || policy.validate());
    println!(
        "  snapshot hash: {}; validation: {}",
        ms(hash),
        ms(validate)
    );

    // Two peers that synced once keep their sync states for the connection; one change on A.
    let mut a = PolicyDoc::load(&saved)?;
    let mut b = PolicyDoc::load(&saved)?;
    let (mut sa, mut sb) = (SyncState::new(), SyncState::new());
    let (r, first) = timed(|| sync(&mut a, &mut sa, &mut b, &mut sb));
    let (rounds, bytes) = r?;
    println!(
        "  first sync of two peers holding the same document: {} ({} round(s), {} bytes)",
        ms(first),
        rounds,
        bytes
    );
    let mut worst = Duration::ZERO;
    let mut total = Duration::ZERO;
    let mut info = (0, 0);
    const CHANGES: u32 = 10;
    for i in 0..CHANGES {
        a.apply(
            &[Edit::SetBudget {
                budget: 0.5 + f64::from(i) / 10.0,
            }],
            "one change",
        )?;
        let (r, d) = timed(|| sync(&mut a, &mut sa, &mut b, &mut sb));
        info = r?;
        worst = worst.max(d);
        total += d;
    }
    assert_eq!(a.heads(), b.heads());
    println!(
        "  sync of one change (in-process messages): mean {}, worst {} of {CHANGES} ({} round(s), {} bytes) (target < 100 ms)",
        ms(total / CHANGES),
        ms(worst),
        info.0,
        info.1
    );
    let mut fresh_b = PolicyDoc::load(&saved)?;
    a.apply(&[Edit::SetBudget { budget: 0.25 }], "one more")?;
    let (r, fresh) = timed(|| {
        sync(
            &mut a,
            &mut SyncState::new(),
            &mut fresh_b,
            &mut SyncState::new(),
        )
    });
    let (r_rounds, r_bytes) = r?;
    println!(
        "  sync of one change on a new connection (fresh sync states): {} ({} round(s), {} bytes)",
        ms(fresh),
        r_rounds,
        r_bytes
    );
    let mut empty = PolicyDoc::empty();
    let (r, whole) = timed(|| {
        sync(
            &mut a,
            &mut SyncState::new(),
            &mut empty,
            &mut SyncState::new(),
        )
    });
    let (w_rounds, w_bytes) = r?;
    println!(
        "  sync of the whole document to an empty peer: {} ({} round(s), {} bytes; one network message carries at most 4 MiB)",
        ms(whole),
        w_rounds,
        w_bytes
    );

    // Adoption of the 20,000-member genesis by 2 of 3.
    let chain = AdoptionChain::new();
    let mut ballot = chain.ballot(&policy)?;
    let target = *ballot.target();
    for c in 0..2 {
        ballot.add(&sign_adoption(&key(1_000_000 + c), target))?;
    }
    let record = ballot.into_record(doc.heads())?;
    // A gossiped step 2 checked before its content: sequence, previous, 2 signatures.
    let mut adopted = AdoptionChain::new();
    adopted.append(record.clone(), policy.clone())?;
    let mut next = policy.clone();
    next.privacy.budget_micro = 500_000;
    let target2 = adopted.next_target(&next.hash());
    let mut ballot2 = adopted.ballot(&next)?;
    for c in 0..2 {
        ballot2.add(&sign_adoption(&key(1_000_000 + c), target2))?;
    }
    let record2 = ballot2.into_record(doc.heads())?;
    let (r, check) = best(5, || adopted.check_record(&record2));
    r?;
    println!(
        "  check a gossiped adoption before relaying it (sequence, previous, 2 signatures): {}",
        ms(check)
    );
    let (r, verify) = best(3, || {
        AdoptionChain::new()
            .append(record.clone(), policy.clone())
            .map(|_| ())
    });
    r?;
    println!(
        "  verify an adoption (hash + validation + 2 signatures), policy in hand: {}",
        ms(verify)
    );
    let (r, from_doc) = best(3, || {
        AdoptionChain::new()
            .append_from_document(record.clone(), &loaded)
            .map(|_| ())
    });
    r?;
    println!(
        "  verify an adoption received from a peer (read the version at its heads, then verify): {}",
        ms(from_doc)
    );
    Ok(())
}
