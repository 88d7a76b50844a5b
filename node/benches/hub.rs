//! Hub benchmark: ingest (verify + append + receipt) of 20,000 signed releases and a full offline
//! audit of the exported bundle, each next to raw ed25519-dalek verification measured in the
//! same run (single `verify_strict`, and `verify_batch`).
//!
//! Run: `cargo bench -p maillage-node --bench hub` (`-- --releases N` for another size,
//! `-- --ingest-only` to stop after ingest, e.g. under `perf record`).
//! The hub's own work is single-threaded (sled and the kernel flush in the background).
//!
//! Ingest is measured in three rounds, each into a fresh hub right after raw `verify_batch` over
//! the same messages in batches of the hub's window: the ratio is of the medians, so that a
//! burst of load from another process lands on both sides or on neither.

use std::time::Instant;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use maillage_node::config::Role;
use maillage_node::hub::Hub;
use maillage_node::members::{Member, Members};
use maillage_node::node::{InitOptions, Node};
use maillage_protocol::release::{Cell, Mechanism, Release, SIGNING_DOMAIN};
use maillage_protocol::{Indicator, Period, SignedRelease};

mod common;
use common::{median, process_cpu_seconds};

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

fn per_second(n: usize, seconds: f64) -> f64 {
    n as f64 / seconds
}

/// Ingest rounds (each into a fresh hub).
const ROUNDS: usize = 3;

/// Hub ingest batches the submissions that arrive while the previous batch is being made
/// durable; this is that window.
const INGEST_BATCH: usize = 2048;

/// A new hub node whose members hold `keys`.
fn hub_node(dir: &std::path::Path, keys: &[SigningKey]) -> Node {
    let node = Node::init(
        dir,
        InitOptions {
            role: Role::Hub,
            name: "bench hub".into(),
            code_insee: None,
            pivot: None,
        },
    )
    .expect("init");
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
    node
}

/// `verify_batch` over every message in chunks of `chunk`: (per second, process CPU seconds).
fn raw_batch_verify(
    messages: &[Vec<u8>],
    sigs: &[Signature],
    vks: &[VerifyingKey],
    chunk: usize,
) -> (f64, Option<f64>) {
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    for start in (0..messages.len()).step_by(chunk) {
        let end = (start + chunk).min(messages.len());
        let ms: Vec<&[u8]> = messages[start..end].iter().map(Vec::as_slice).collect();
        ed25519_dalek::verify_batch(&ms, &sigs[start..end], &vks[start..end]).expect("batch");
    }
    let rate = per_second(messages.len(), started.elapsed().as_secs_f64());
    let cpu = cpu_before
        .zip(process_cpu_seconds())
        .map(|(before, after)| after - before);
    (rate, cpu)
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
    let ingest_only = args.iter().any(|a| a == "--ingest-only");
    let tmp = tempfile::tempdir().expect("temp dir");
    let keys: Vec<SigningKey> = (0..members as u64).map(key).collect();
    let nodes: Vec<Node> = (0..ROUNDS)
        .map(|round| hub_node(&tmp.path().join(format!("hub{round}")), &keys))
        .collect();

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
    let (raw_batch_512, _) = raw_batch_verify(&messages, &sigs, &vks, 512);
    let started = Instant::now();
    for m in messages.iter().take(n) {
        std::hint::black_box(keys[0].sign(m));
    }
    let raw_sign = per_second(n, started.elapsed().as_secs_f64());
    println!(
        "raw ed25519-dalek: verify_strict {raw_single:.0}/s, verify_batch(512) {raw_batch_512:.0}/s, sign {raw_sign:.0}/s"
    );

    // Hub ingest: decode, batch-verify, membership/budget/equivocation checks, append, one
    // signed checkpoint, the batch's bytes written and synced, one sled batch and one flush per
    // batch, then a receipt per release (the checkpoint, its index and inclusion proof).
    let (mut raw_rates, mut raw_cpus, mut ingest_rates, mut ingest_cpus) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut hubs = Vec::new();
    for (round, node) in nodes.iter().enumerate() {
        let (raw, raw_cpu) = raw_batch_verify(&messages, &sigs, &vks, INGEST_BATCH);
        let mut hub = Hub::open(node).expect("hub");
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
            "  round {}        : raw verify_batch({INGEST_BATCH}) {raw:.0}/s, hub ingest {ingest:.0}/s ({:.0}%){}",
            round + 1,
            100.0 * ingest / raw,
            match (raw_cpu, ingest_cpu) {
                (Some(r), Some(i)) if r > 0.0 && i > 0.0 => {
                    raw_cpus.push(n as f64 / r);
                    ingest_cpus.push(n as f64 / i);
                    format!(
                        "; by CPU time {:.0}/s vs {:.0}/s ({:.0}%)",
                        n as f64 / r,
                        n as f64 / i,
                        100.0 * r / i
                    )
                }
                _ => String::new(),
            }
        );
        raw_rates.push(raw);
        ingest_rates.push(ingest);
        hubs.push(hub);
    }
    let raw_batch = median(&mut raw_rates).max(raw_batch_512);
    let ingest = median(&mut ingest_rates);
    println!(
        "hub ingest       : {n} releases, median of {ROUNDS} rounds {ingest:.0}/s in batches of {INGEST_BATCH} = {:.0}% of raw batch verify {raw_batch:.0}/s (the better of verify_batch({INGEST_BATCH}), median, and verify_batch(512)); raw single {raw_single:.0}/s; target ≥ 50%",
        100.0 * ingest / raw_batch
    );
    // On a loaded machine wall times depend on the share of a core each phase got; CPU times
    // (all threads of the process) do not.
    if !raw_cpus.is_empty() {
        let (raw_cpu, ingest_cpu) = (median(&mut raw_cpus), median(&mut ingest_cpus));
        println!(
            "  by CPU time    : raw verify_batch({INGEST_BATCH}) {raw_cpu:.0}/s, hub ingest {ingest_cpu:.0}/s (all threads) = {:.0}% of raw batch",
            100.0 * ingest_cpu / raw_cpu
        );
    }
    if ingest_only {
        return;
    }
    let mut hub = hubs.pop().expect("a hub");

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
