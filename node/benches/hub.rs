//! Hub benchmark: ingest (verify + append + receipt) of 20,000 signed releases and a full offline
//! audit of the exported bundle, each next to raw ed25519-dalek verification measured in the
//! same run (single `verify_strict`, and `verify_batch`).
//!
//! Run: `cargo bench -p maillage-node --bench hub` (`-- --releases N` for another size).
//! Single-threaded throughout: the figures are for one core.

use std::time::Instant;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use maillage_node::config::Role;
use maillage_node::hub::Hub;
use maillage_node::members::{Member, Members};
use maillage_node::node::{InitOptions, Node};
use maillage_protocol::release::{Cell, Mechanism, Release, SIGNING_DOMAIN};
use maillage_protocol::{Indicator, Period, SignedRelease};

fn key(i: u64) -> SigningKey {
    let mut seed = [7u8; 32];
    seed[..8].copy_from_slice(&i.to_le_bytes());
    SigningKey::from_bytes(&seed)
}

/// A release with every common-core cell, as a structure would send.
fn release(signer: &SigningKey, period: Period, salt: i64) -> SignedRelease {
    let mut cells = Vec::new();
    for indicator in Indicator::COMMON_CORE {
        let categories = indicator.categories();
        let cats: Vec<Option<String>> = if categories.is_empty() {
            vec![None]
        } else {
            categories.iter().map(|c| Some((*c).to_owned())).collect()
        };
        for (j, category) in cats.into_iter().enumerate() {
            cells.push(Cell {
                indicator: *indicator,
                category,
                value: (salt * 7 + j as i64) % 500 - 100,
                scale: 100.0,
                ci95_half_width: 300.0,
            });
        }
    }
    Release {
        signer: signer.verifying_key(),
        period,
        params: "bench/laplace/budget=1".into(),
        mechanism: Mechanism::Laplace {
            epsilon: 0.999_999_999,
        },
        created_at: 1_790_000_000,
        cells,
    }
    .sign(signer)
    .expect("sign")
}

/// CPU time this thread has run, in seconds (Linux `schedstat`; `None` elsewhere): on a loaded
/// machine the audit's wall time includes waiting for a core, its CPU time does not.
fn thread_cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}

/// CPU time of the whole process (every thread: sled's flusher included), in seconds, from
/// `/proc/self/stat` (user + system, in USER_HZ = 100 ticks a second); `None` elsewhere.
fn process_cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which ends with the last ')'): state is field 3, utime 14.
    let rest = text.get(text.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn per_second(n: usize, seconds: f64) -> f64 {
    n as f64 / seconds
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .iter()
        .position(|a| a == "--releases")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let members = 1_000usize.min(n);
    let periods = n.div_ceil(members);
    let tmp = tempfile::tempdir().expect("temp dir");
    let node = Node::init(
        &tmp.path().join("hub"),
        InitOptions {
            role: Role::Hub,
            name: "bench hub".into(),
            code_insee: None,
            pivot: None,
        },
    )
    .expect("init");
    let keys: Vec<SigningKey> = (0..members as u64).map(key).collect();
    let mut list = Members::load(node.dir()).expect("members");
    for (i, k) in keys.iter().enumerate() {
        list.add(Member {
            key: hex::encode(k.verifying_key().as_bytes()),
            name: format!("s{i}"),
            role: Role::Structure,
            code_insee: None,
        })
        .expect("add member");
    }

    let started = Instant::now();
    let mut wires = Vec::with_capacity(n);
    let mut period = Period::new(2024, 1).expect("period");
    'outer: for p in 0..periods {
        for (i, k) in keys.iter().enumerate() {
            if wires.len() == n {
                break 'outer;
            }
            wires.push(release(k, period, (p * members + i) as i64).to_bytes());
        }
        period = period.next();
    }
    println!(
        "prepared {} signed releases ({} members × {periods} months, {} bytes each) in {:.1} s",
        wires.len(),
        members,
        wires[0].len(),
        started.elapsed().as_secs_f64()
    );

    // Raw ed25519-dalek on the very messages the hub verifies.
    let decoded: Vec<SignedRelease> = wires
        .iter()
        .map(|w| SignedRelease::decode(w).expect("decode"))
        .collect();
    let messages: Vec<Vec<u8>> = decoded
        .iter()
        .map(|r| [SIGNING_DOMAIN, r.canonical_release().as_slice()].concat())
        .collect();
    let sigs: Vec<Signature> = decoded.iter().map(|r| *r.signature()).collect();
    let vks: Vec<VerifyingKey> = decoded.iter().map(|r| r.release().signer).collect();
    let started = Instant::now();
    for ((m, s), k) in messages.iter().zip(&sigs).zip(&vks) {
        k.verify_strict(m, s).expect("verify");
    }
    let raw_single = per_second(n, started.elapsed().as_secs_f64());
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(512) {
        let ms: Vec<&[u8]> = chunk.iter().map(|&i| messages[i].as_slice()).collect();
        let ss: Vec<Signature> = chunk.iter().map(|&i| sigs[i]).collect();
        let ks: Vec<VerifyingKey> = chunk.iter().map(|&i| vks[i]).collect();
        ed25519_dalek::verify_batch(&ms, &ss, &ks).expect("batch");
    }
    let raw_batch = per_second(n, started.elapsed().as_secs_f64());
    let raw_batch_cpu = cpu_before
        .zip(process_cpu_seconds())
        .map(|(before, after)| after - before);
    let started = Instant::now();
    for m in messages.iter().take(n) {
        std::hint::black_box(keys[0].sign(m));
    }
    let raw_sign = per_second(n, started.elapsed().as_secs_f64());
    println!(
        "raw ed25519-dalek: verify_strict {raw_single:.0}/s, verify_batch(512) {raw_batch:.0}/s, sign {raw_sign:.0}/s"
    );

    // Hub ingest: decode, batch-verify, membership/budget/equivocation checks, append, one
    // signed checkpoint, one transaction and one flush (fsync) per batch, then a receipt per
    // release (the checkpoint, its index and inclusion proof). A hub batches the submissions
    // that arrive while the previous batch is being made durable; INGEST_BATCH is that window.
    const INGEST_BATCH: usize = 2048;
    let mut hub = Hub::open(&node).expect("hub");
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    let mut accepted = 0;
    for batch in wires.chunks(INGEST_BATCH) {
        let outcomes = hub.accept_batch(batch, 1_790_000_100).expect("accept");
        accepted += outcomes.iter().filter(|o| o.is_ok()).count();
    }
    let ingest_s = started.elapsed().as_secs_f64();
    let ingest_cpu = cpu_before
        .zip(process_cpu_seconds())
        .map(|(before, after)| after - before);
    assert_eq!(accepted, n, "every release accepted");
    let ingest = per_second(n, ingest_s);
    println!(
        "hub ingest       : {n} releases in {ingest_s:.2} s = {ingest:.0}/s in batches of {INGEST_BATCH} ({:.0}% of raw batch verify {raw_batch:.0}/s; raw single {raw_single:.0}/s; target ≥ 50%)",
        100.0 * ingest / raw_batch
    );
    // On a loaded machine wall times depend on the share of a core each phase got; CPU times
    // (all threads of the process) do not.
    if let (Some(batch_cpu), Some(ingest_cpu)) = (raw_batch_cpu, ingest_cpu)
        && batch_cpu > 0.0
        && ingest_cpu > 0.0
    {
        println!(
            "  by CPU time    : raw verify_batch {:.0}/s ({batch_cpu:.2} s CPU), hub ingest {:.0}/s ({ingest_cpu:.2} s CPU, all threads) = {:.0}% of raw batch",
            per_second(n, batch_cpu),
            per_second(n, ingest_cpu),
            100.0 * batch_cpu / ingest_cpu
        );
    }

    // Aggregate and export the last period, then audit the bundle (all log leaves).
    let last = Period::new(2024, 1).map(|mut p| {
        for _ in 1..periods {
            p = p.next();
        }
        p
    });
    let last = last.expect("period");
    let started = Instant::now();
    let aggregate = hub.aggregate(last, 1_790_000_200).expect("aggregate");
    println!(
        "aggregate        : {} contributions summed and signed in {:.2} s",
        aggregate.aggregate().contributions.len(),
        started.elapsed().as_secs_f64()
    );
    let bundle = tmp.path().join("bundle");
    let started = Instant::now();
    maillage_node::bundle::export(
        &hub,
        last,
        Some(aggregate.to_json_pretty()),
        &bundle,
        1_790_000_300,
    )
    .expect("export");
    println!(
        "export           : bundle written in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let cpu_before = thread_cpu_seconds();
    let started = Instant::now();
    let report = maillage_node::audit::audit(&bundle);
    let audit_s = started.elapsed().as_secs_f64();
    let audit_cpu_s = cpu_before
        .zip(thread_cpu_seconds())
        .map(|(before, after)| after - before);
    assert!(
        report.ok,
        "the audit of an untouched bundle passes: {:?}",
        report.findings.first()
    );
    let audit = per_second(report.releases_verified as usize, audit_s);
    println!(
        "full audit       : {} releases in {audit_s:.2} s wall, {} = {audit:.0}/s ({:.0}% of raw batch verify {raw_batch:.0}/s, {:.0}% of raw single {raw_single:.0}/s; target: 20,000 in < 2 s on one core)",
        report.releases_verified,
        audit_cpu_s.map_or_else(
            || "CPU time unknown".to_owned(),
            |s| format!("{s:.2} s CPU (one thread)")
        ),
        100.0 * audit / raw_batch,
        100.0 * audit / raw_single
    );
    println!(
        "{{\"releases\": {n}, \"raw_verify_per_s\": {raw_single:.0}, \"raw_batch_verify_per_s\": {raw_batch:.0}, \"raw_sign_per_s\": {raw_sign:.0}, \"ingest_per_s\": {ingest:.0}, \"ingest_vs_batch\": {:.2}, \"audit_s\": {audit_s:.3}, \"audit_cpu_s\": {}, \"audit_per_s\": {audit:.0}}}",
        ingest / raw_batch,
        audit_cpu_s.map_or_else(|| "null".to_owned(), |s| format!("{s:.3}"))
    );
}
