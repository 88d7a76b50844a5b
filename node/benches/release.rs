//! What a signed release costs: closing a month of 100,000 rows, and signing and verifying
//! releases against raw ed25519-dalek measured in the same run.
//!
//! Acceptance of "Privacy: signed releases": a release of such a month takes under 100 ms
//! beyond computing the exact indicators. Run with
//! `cargo bench -p maillage-node --bench release`; it prints readable lines, then one line of
//! JSON for scripts.
//!
//! Month-sized steps report the median and the fastest of repeated runs (on a busy machine the
//! fastest is the better estimate of the work); throughputs alternate batches of the wrapped
//! and the raw operation so that both see the same machine load, and report the median batch.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use maillage_node::import;
use maillage_node::release::params_id;
use maillage_node::synth::{self, SynthOptions};
use maillage_privacy::release::{Mechanism as PrivacyMechanism, NoisyRelease, PrivacyParams};
use maillage_privacy::{bounded, exact};
use maillage_protocol::release::{Cell, Mechanism, Release, SIGNING_DOMAIN, SignedRelease};
use maillage_protocol::vocab::Vocabulary as _;
use maillage_protocol::{Indicator, Period};

/// With this seed, this mean gives a month of 100,572 rows (47,602 activities). The generator
/// draws each month's activity count up to 20% either side of the mean, so a change of seed or
/// mean moves the row count a lot; the count is printed.
const ACTIVITIES_PER_MONTH: u32 = 52_000;
const SEED: u64 = 2026;
/// Runs of each month-sized step; the median is reported.
const RUNS: usize = 11;
/// Alternated batches per throughput measurement; the median batch is reported.
const BATCHES: usize = 5;
/// Wall time aimed at per batch, within [`MIN_ITERS`, `MAX_ITERS`] iterations.
const BATCH_TARGET: Duration = Duration::from_millis(250);
const MIN_ITERS: usize = 2_000;
const MAX_ITERS: usize = 20_000;
const MONTH_TARGET_MS: f64 = 100.0;
/// A fixed `created_at` (2026-09-20), so that every release signed here has the same size.
const CREATED_AT: u64 = 1_790_000_000;

fn main() {
    let period = Period::new(2026, 9).expect("2026-09 is a valid period");
    let identity_key = SigningKey::from_bytes(&[7u8; 32]);
    let params = PrivacyParams::default();

    // --- A month of synthetic activity, parsed in memory. ---
    let options = SynthOptions {
        seed: SEED,
        first: period,
        months: 1,
        activities_per_month: ACTIVITIES_PER_MONTH,
        ..SynthOptions::default()
    };
    let mut csv = Vec::new();
    let stats = synth::generate(&options, &mut csv).expect("writing to memory cannot fail");
    let parse_start = Instant::now();
    let parsed = import::parse(&csv, 1, &mut ()).expect("the synthetic file imports");
    let parse_time = parse_start.elapsed();
    let activities = parsed.activities;
    // Timings only mean something on an idle machine; say how idle it was.
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        let cores = std::thread::available_parallelism().map_or(0, usize::from);
        println!(
            "load average {} on {cores} core(s)",
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    println!(
        "month {period}: {} rows, {} activities, {:.1} MB of CSV (parsed once in {:.0} ms, not counted below)",
        parsed.rows,
        activities.len(),
        csv.len() as f64 / 1e6,
        ms(parse_time)
    );
    assert_eq!(parsed.rows, stats.rows, "every generated row was parsed");

    // --- The month-sized steps. ---
    let exact = time_runs(|| exact::compute(period, &activities, Indicator::COMMON_CORE));
    let noise = time_runs(|| {
        maillage_privacy::release::release(&params, period, &activities)
            .expect("the default parameters release")
    });
    // Two parts of `release` that can be timed from outside: the plan (parameters → scales,
    // OpenDP privacy map) and bounding each person's contribution; the rest is building and
    // invoking the composed OpenDP measurement.
    let plan = time_runs(|| params.plan().expect("the default parameters plan"));
    let bound = time_runs(|| bounded::bound(period, &activities, &params.bounds));
    let full = time_runs(|| {
        let noisy = maillage_privacy::release::release(&params, period, &activities)
            .expect("the default parameters release");
        to_wire(&noisy, &params, identity_key.verifying_key(), CREATED_AT)
            .sign(&identity_key)
            .expect("the release is valid and the key is its signer")
    });
    let beyond = Timing {
        median: full.median - exact.median,
        best: full.best - exact.best,
    };
    println!("{RUNS} runs each:");
    exact.print(&format!(
        "exact common-core indicators ({})",
        Indicator::COMMON_CORE.len()
    ));
    noise.print("release (bounds + OpenDP noise)");
    plan.print("  of which plan (scales, privacy map)");
    bound.print("  of which bounding contributions");
    full.print("release + wire Release + sign");
    let verdict = |x: f64| {
        if x < MONTH_TARGET_MS {
            "OK"
        } else {
            "OVER TARGET"
        }
    };
    println!(
        "release beyond exact indicators: {:.2} ms (target < {MONTH_TARGET_MS:.0} ms) {}; best runs: {:.2} ms {}",
        beyond.median,
        verdict(beyond.median),
        beyond.best,
        verdict(beyond.best)
    );

    // --- Signing and verifying one typical release. ---
    let noisy = maillage_privacy::release::release(&params, period, &activities)
        .expect("the default parameters release");
    let release = to_wire(&noisy, &params, identity_key.verifying_key(), CREATED_AT);
    let signed = release
        .clone()
        .sign(&identity_key)
        .expect("the release is valid and the key is its signer");
    let wire = signed.to_bytes();
    let mut message = SIGNING_DOMAIN.to_vec();
    message.extend_from_slice(&signed.canonical_release());
    let raw_signature = identity_key.sign(&message);
    let raw_key: VerifyingKey = identity_key.verifying_key();
    assert_eq!(
        &raw_signature,
        signed.signature(),
        "the release signs exactly domain ‖ canonical bytes"
    );
    println!(
        "typical release: {} cells, {} canonical bytes, signed message {} bytes, wire {} bytes",
        release.cells.len(),
        signed.canonical_release().len(),
        message.len(),
        wire.len()
    );

    let sign = compare(
        |n| {
            let inputs: Vec<Release> = (0..n).map(|_| release.clone()).collect();
            let mut out = Vec::with_capacity(n);
            let start = Instant::now();
            for r in inputs {
                out.push(black_box(r.sign(&identity_key)));
            }
            let elapsed = start.elapsed();
            assert!(out.iter().all(Result::is_ok), "every signature succeeds");
            elapsed
        },
        |n| {
            let start = Instant::now();
            for _ in 0..n {
                black_box(identity_key.sign(black_box(&message)));
            }
            start.elapsed()
        },
    );
    let raw_verify = |n: usize| {
        let start = Instant::now();
        let mut failures = 0usize;
        for _ in 0..n {
            failures += usize::from(
                raw_key
                    .verify_strict(black_box(&message), black_box(&raw_signature))
                    .is_err(),
            );
        }
        let elapsed = start.elapsed();
        assert_eq!(failures, 0, "every raw signature verifies");
        elapsed
    };
    let verify = compare(
        |n| {
            let start = Instant::now();
            let mut failures = 0usize;
            for _ in 0..n {
                failures += usize::from(black_box(&signed).verify().is_err());
            }
            let elapsed = start.elapsed();
            assert_eq!(failures, 0, "every release verifies");
            elapsed
        },
        raw_verify,
    );
    let decode_verify = compare(
        |n| {
            let start = Instant::now();
            let mut failures = 0usize;
            for _ in 0..n {
                failures +=
                    usize::from(SignedRelease::decode_and_verify(black_box(&wire)).is_err());
            }
            let elapsed = start.elapsed();
            assert_eq!(failures, 0, "every wire release decodes and verifies");
            elapsed
        },
        raw_verify,
    );
    println!("throughput (median of {BATCHES} alternated batches, one core):");
    sign.print("Release::sign", "SigningKey::sign");
    verify.print("SignedRelease::verify", "VerifyingKey::verify_strict");
    decode_verify.print(
        "SignedRelease::decode_and_verify",
        "VerifyingKey::verify_strict",
    );

    let summary = serde_json::json!({
        "rows": parsed.rows,
        "activities": activities.len(),
        "cells": release.cells.len(),
        "exact_ms": round(exact.median),
        "release_ms": round(noise.median),
        "plan_ms": round(plan.median),
        "bound_ms": round(bound.median),
        "release_sign_ms": round(full.median),
        "release_beyond_exact_ms": round(beyond.median),
        "release_beyond_exact_best_ms": round(beyond.best),
        "sign_per_s": sign.ours.round(),
        "raw_sign_per_s": sign.raw.round(),
        "verify_per_s": verify.ours.round(),
        "decode_verify_per_s": decode_verify.ours.round(),
        "raw_verify_per_s": verify.raw.round(),
    });
    println!("{summary}");
}

/// The node's `NoisyRelease` → wire `Release` conversion (`node/src/release.rs`, `to_wire`),
/// with the signer's key in place of the node.
fn to_wire(
    noisy: &NoisyRelease,
    params: &PrivacyParams,
    signer: VerifyingKey,
    now: u64,
) -> Release {
    let mechanism = match noisy.mechanism {
        PrivacyMechanism::DiscreteLaplace => Mechanism::Laplace {
            epsilon: noisy.privacy_loss,
        },
        PrivacyMechanism::DiscreteGaussian => Mechanism::Gaussian {
            rho: noisy.privacy_loss,
        },
    };
    let mut cells: Vec<Cell> = noisy
        .cells
        .iter()
        .map(|c| Cell {
            indicator: c.indicator,
            category: c.category.map(str::to_owned),
            value: c.value,
            scale: c.scale,
            ci95_half_width: c.ci95_half_width,
        })
        .collect();
    cells.sort_by_key(|c| c.indicator.index());
    Release {
        signer,
        period: noisy.period,
        params: params_id(params),
        mechanism,
        created_at: now,
        cells,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The median and the fastest wall time of [`RUNS`] calls of `f`, after one warm-up call. On
/// a busy machine the fastest run is the better estimate of the work itself.
fn time_runs<T>(mut f: impl FnMut() -> T) -> Timing {
    black_box(f());
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            black_box(f());
            start.elapsed()
        })
        .collect();
    times.sort_unstable();
    Timing {
        median: ms(times[RUNS / 2]),
        best: ms(times[0]),
    }
}

/// Milliseconds.
#[derive(Debug, Clone, Copy)]
struct Timing {
    median: f64,
    best: f64,
}

impl Timing {
    fn print(&self, what: &str) {
        println!(
            "  {what:<46} {:8.2} ms   (best {:8.2} ms)",
            self.median, self.best
        );
    }
}

/// Operations per second of an operation and of its raw counterpart.
#[derive(Debug, Clone, Copy)]
struct Rates {
    ours: f64,
    raw: f64,
}

impl Rates {
    fn print(&self, ours: &str, raw: &str) {
        println!(
            "  {ours:<33} {:>9.0}/s   raw {raw:<28} {:>9.0}/s   ratio {:.3}",
            self.ours,
            self.raw,
            self.ours / self.raw
        );
    }
}

/// Times `ours(n)` and `raw(n)` (each returns the wall time of `n` operations) in alternated
/// batches sized to about [`BATCH_TARGET`]; returns each one's median rate.
fn compare(
    mut ours: impl FnMut(usize) -> Duration,
    mut raw: impl FnMut(usize) -> Duration,
) -> Rates {
    let n = batch_size(ours(MIN_ITERS / 4), MIN_ITERS / 4);
    raw(n / 4);
    let mut rates = (Vec::new(), Vec::new());
    for _ in 0..BATCHES {
        rates.0.push(n as f64 / ours(n).as_secs_f64());
        rates.1.push(n as f64 / raw(n).as_secs_f64());
    }
    Rates {
        ours: median(rates.0),
        raw: median(rates.1),
    }
}

fn batch_size(trial: Duration, trial_iters: usize) -> usize {
    let per_op = trial.as_secs_f64() / trial_iters as f64;
    let n = if per_op > 0.0 {
        (BATCH_TARGET.as_secs_f64() / per_op) as usize
    } else {
        MAX_ITERS
    };
    n.clamp(MIN_ITERS, MAX_ITERS)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_unstable_by(f64::total_cmp);
    xs[xs.len() / 2]
}
