//! Import benchmark: a million generated rows imported into a fresh node, against parsing the
//! same file with the `csv` crate alone in the same run; then a month's exact indicators.
//!
//! Run: `cargo bench -p maillage-node --bench import` (add `-- --rows N` for another size).
//! Peak memory is the process's resident high-water mark (VmHWM), reset before each phase
//! through /proc/self/clear_refs, so each phase's figure is its own.

use std::io::BufReader;
use std::time::Instant;

use maillage_node::config::Role;
use maillage_node::node::{InitOptions, Node};
use maillage_node::synth::{self, SynthOptions};
use maillage_protocol::{Indicator, Period};

mod common;
use common::{median, process_cpu_seconds};

fn reset_peak() {
    // "5" resets the peak resident set size of this process (Linux ≥ 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// CPU time of the whole process so far, in seconds (NaN where it cannot be read).
fn cpu_s() -> f64 {
    process_cpu_seconds().unwrap_or(f64::NAN)
}

/// Rounds of (csv alone, import).
const ROUNDS: usize = 3;

/// The baseline: the csv crate alone reading every record of the file; the rows read.
fn csv_alone(path: &std::path::Path) -> u64 {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(BufReader::new(std::fs::File::open(path).expect("open")));
    let mut record = csv::ByteRecord::new();
    let mut parsed = 0u64;
    while reader.read_byte_record(&mut record).expect("csv") {
        parsed += 1;
    }
    parsed
}

fn main() {
    // MAILLAGE_BENCH_LOG=maillage_node=debug shows how long each step of the import takes.
    if std::env::var_os("MAILLAGE_BENCH_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env(
                "MAILLAGE_BENCH_LOG",
            ))
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().collect();
    let target_rows: u64 = args
        .iter()
        .position(|a| a == "--rows")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().expect("temp dir");
    let csv_path = tmp.path().join("activites.csv");

    // About 2.1 rows per activity in the generator (a fifth are workshops of 3 to 10 people);
    // eight months of equal size, so that at the default size every month holds more than
    // 100,000 rows.
    let months = 8;
    let per_month = u32::try_from(target_rows.div_ceil(2 * u64::from(months))).unwrap_or(u32::MAX);
    let options = SynthOptions {
        seed: 42,
        first: Period::new(2025, 1).expect("period"),
        months,
        activities_per_month: per_month,
        commune: "69385".into(),
        id_prefix: "bench".into(),
    };
    let started = Instant::now();
    let file = std::fs::File::create(&csv_path).expect("create csv");
    let generated = synth::generate(&options, std::io::BufWriter::new(file)).expect("generate");
    let size_mb = std::fs::metadata(&csv_path).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    println!(
        "generated {} rows ({} activities, {months} months, {size_mb:.1} MB) in {:.1} s",
        generated.rows,
        generated.activities,
        started.elapsed().as_secs_f64()
    );

    if args.iter().any(|a| a == "--phases") {
        // Reading and checking every cell alone (no hashing, staging or store), to see where
        // the import's time goes.
        let started = Instant::now();
        let cpu_started = cpu_s();
        let mut frames = 0u64;
        let reading = maillage_node::import::read_rows(
            BufReader::with_capacity(1 << 16, std::fs::File::open(&csv_path).expect("open")),
            &mut |_| {
                frames += 1;
                Ok(())
            },
            &mut (),
        )
        .expect("read");
        println!(
            "read_rows alone  : {frames} frames ({} rows) in {:.2} s (CPU {:.2} s)",
            reading.rows,
            started.elapsed().as_secs_f64(),
            cpu_s() - cpu_started
        );
        if args.iter().any(|a| a == "--phases-only") {
            return;
        }
    }

    // Three rounds, each the csv crate alone then the real import into a fresh node
    // (validation, staging, commit, apply, flush); the ratio is of the medians, so that a burst
    // of load from another process lands on both sides or on neither.
    let (mut parses, mut parse_cpus, mut imports, mut import_cpus) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut parse_peak, mut import_peak) = (0f64, 0f64);
    let mut node = None;
    for round in 1..=ROUNDS {
        reset_peak();
        let started = Instant::now();
        let cpu_started = cpu_s();
        let parsed = csv_alone(&csv_path);
        let parse_s = started.elapsed().as_secs_f64();
        let parse_cpu = cpu_s() - cpu_started;
        if round == 1 {
            parse_peak = peak_mb();
        }

        let fresh = Node::init(
            &tmp.path().join(format!("node{round}")),
            InitOptions {
                role: Role::Structure,
                name: "bench".into(),
                code_insee: None,
                pivot: None,
            },
        )
        .expect("init");
        reset_peak();
        let started = Instant::now();
        let cpu_started = cpu_s();
        let (summary, _) = fresh.import_file(&csv_path, &mut ()).expect("import");
        let import_s = started.elapsed().as_secs_f64();
        let import_cpu = cpu_s() - cpu_started;
        let peak = peak_mb();
        // Peak memory is that of the first round, in a fresh process: later rounds start with
        // what the allocator kept of the earlier ones.
        if round == 1 {
            import_peak = peak;
        }
        assert_eq!(summary.rows, parsed, "every row imported");
        println!(
            "  round {round}        : csv crate alone {parse_s:.2} s (CPU {parse_cpu:.2} s), maillage import {import_s:.2} s (CPU {import_cpu:.2} s, process peak {peak:.0} MB) = {:.1}×",
            import_s / parse_s
        );
        parses.push(parse_s);
        parse_cpus.push(parse_cpu);
        imports.push(import_s);
        import_cpus.push(import_cpu);
        // The last node is kept for the month's indicators; the others are removed.
        if round < ROUNDS {
            let dir = fresh.dir().to_path_buf();
            drop(fresh);
            let _ = std::fs::remove_dir_all(dir);
        } else {
            node = Some(fresh);
        }
    }
    let node = node.expect("a node");
    let (parse_s, parse_cpu) = (median(&mut parses), median(&mut parse_cpus));
    let (import_s, import_cpu) = (median(&mut imports), median(&mut import_cpus));
    let parsed = node.store.stats().map(|s| s.rows).unwrap_or(0);
    println!(
        "csv crate alone  : {parsed} rows in {parse_s:.2} s (median of {ROUNDS}; CPU {parse_cpu:.2} s) = {:.0} rows/s, peak {parse_peak:.0} MB (first round)",
        parsed as f64 / parse_s
    );
    let ratio = import_s / parse_s;
    let cpu_ratio = import_cpu / parse_cpu;
    println!(
        "maillage import  : {parsed} rows in {import_s:.2} s (median of {ROUNDS}; CPU {import_cpu:.2} s) = {:.0} rows/s, peak {import_peak:.0} MB (first round), {ratio:.1}× the parse-only time ({cpu_ratio:.1}× its CPU time) (target ≤ 3×, peak < 200 MB)",
        parsed as f64 / import_s
    );

    // A month's exact indicators, as `maillage indicators` computes them: the largest month.
    let stats = node.store.stats().expect("stats");
    let (period, month_rows) = stats
        .periods
        .iter()
        .map(|(p, (_, rows))| (*p, *rows))
        .max_by_key(|(_, rows)| *rows)
        .expect("a month");
    let mut times = Vec::new();
    let cpu_started = cpu_s();
    for _ in 0..5 {
        let started = Instant::now();
        let indicators = node
            .indicators(period, Indicator::COMMON_CORE)
            .expect("indicators");
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        std::hint::black_box(indicators);
    }
    let indicators_cpu_ms = (cpu_s() - cpu_started) * 1000.0 / 5.0;
    if args.iter().any(|a| a == "--phases") {
        let started = Instant::now();
        let activities = node.activities_in(period).expect("read");
        let read_ms = started.elapsed().as_secs_f64() * 1000.0;
        let started = Instant::now();
        let indicators =
            maillage_privacy::exact::compute(period, &activities, Indicator::COMMON_CORE);
        let compute_ms = started.elapsed().as_secs_f64() * 1000.0;
        std::hint::black_box(indicators);
        println!(
            "month via Activity values (the former path): read {read_ms:.0} ms, compute {compute_ms:.0} ms"
        );
    }
    times.sort_by(f64::total_cmp);
    let indicators_ms = times[times.len() / 2];
    let per_100k_ms = indicators_ms * 100_000.0 / month_rows.max(1) as f64;
    println!(
        "month indicators : {period}, {month_rows} rows read from the store and computed in {indicators_ms:.0} ms (median of 5; CPU {indicators_cpu_ms:.0} ms on average) = {per_100k_ms:.0} ms per 100,000 rows (target < 200 ms per 100,000 rows)"
    );
    println!(
        "{{\"rows\": {}, \"parse_s\": {parse_s:.3}, \"import_s\": {import_s:.3}, \"import_rows_per_s\": {:.0}, \"ratio_to_parse\": {ratio:.2}, \"cpu_ratio_to_parse\": {cpu_ratio:.2}, \"import_peak_mb\": {import_peak:.0}, \"parse_peak_mb\": {parse_peak:.0}, \"month_rows\": {month_rows}, \"month_indicators_ms\": {indicators_ms:.1}, \"month_indicators_ms_per_100k_rows\": {per_100k_ms:.1}}}",
        parsed,
        parsed as f64 / import_s
    );
}
