//! `maillage-sim`: simulates the Maillage network at national scale and writes its report.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use maillage_privacy::release::Mechanism;
use maillage_sim::france::HubLayout;
use maillage_sim::scenarios::{Progress, Scenario, SimConfig, simulate};

/// Simule le réseau Maillage à l'échelle nationale : précision, coûts, pannes et fraudes.
#[derive(Debug, Parser)]
#[command(name = "maillage-sim", version)]
struct Cli {
    /// Nombre de structures (1 à 20 000).
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    structures: u32,
    /// Scénario(s) à simuler.
    #[arg(long, value_enum, default_values_t = [Scenario::All])]
    scenario: Vec<Scenario>,
    /// Graine des données fictives (le bruit d'OpenDP n'est jamais tiré d'une graine).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Découpage des hubs : 16 hubs régionaux ou un par département.
    #[arg(long, value_enum, default_value_t = HubLayout::Regional)]
    hubs: HubLayout,
    /// ε par mois de la politique (gaussien : ρ = ε²/2).
    #[arg(long, default_value_t = 1.0)]
    epsilon: f64,
    /// Mécanisme de la politique.
    #[arg(long, value_parser = ["laplace", "gaussian"], default_value = "laplace")]
    mechanism: String,
    /// Part des structures hors ligne pendant la fenêtre de dépôt (scénario churn).
    #[arg(long, default_value_t = 0.1)]
    churn: f64,
    /// Dossier des résultats (CSV, JSON, SVG).
    #[arg(long, default_value = "sim-out")]
    out: PathBuf,
    /// Imprime le résumé JSON sur la sortie standard.
    #[arg(long)]
    json: bool,
    /// Pairs libp2p réels sur la boucle locale : le national, 16 hubs et les structures
    /// (au plus 1 000) font tourner leur vrai service dans ce processus.
    #[arg(long)]
    libp2p: bool,
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn start(&mut self, what: &str, total: u64) {
        self.0.set_length(total);
        self.0.set_position(0);
        self.0.set_message(what.to_owned());
    }
    fn tick(&mut self) {
        self.0.inc(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.libp2p {
        return run_libp2p(&cli);
    }
    anyhow::ensure!(
        cli.epsilon > 0.0 && cli.epsilon <= 4.0,
        "--epsilon {}: expected a value in (0, 4]",
        cli.epsilon
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&cli.churn),
        "--churn {}: expected a share between 0 and 1",
        cli.churn
    );
    let mut config = SimConfig::new(cli.structures as usize, cli.seed);
    config.layout = cli.hubs;
    config.epsilon = cli.epsilon;
    config.churn_share = cli.churn;
    config.mechanism = if cli.mechanism == "gaussian" {
        Mechanism::DiscreteGaussian
    } else {
        Mechanism::DiscreteLaplace
    };
    config.scenarios = cli.scenario.clone();
    let bar = ProgressBar::new(0);
    if std::io::stderr().is_terminal() {
        bar.set_style(
            ProgressStyle::with_template("{msg:24} [{bar:40}] {pos}/{len} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let mut progress = Bar(bar);
    let report = simulate(&config, scratch.path(), &mut progress)?;
    progress.0.finish_and_clear();
    let written = maillage_sim::output::write_all(&report, &cli.out)?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&brief(&report))?);
    } else {
        println!("{}", text(&report));
        println!(
            "Résultats dans {} : {}",
            cli.out.display(),
            written.join(", ")
        );
    }
    if let Some(a) = &report.adversaries
        && !a.all_detected
    {
        anyhow::bail!("some attacks went undetected; see detections.csv");
    }
    Ok(())
}

/// The small real-network mode: the national node, 16 hubs and the structures as real libp2p
/// peers on loopback, each running the node's own daemon (`maillage_node::demo`), with the
/// same heavy-tailed synthetic data; writes `libp2p.json` in `--out`.
fn run_libp2p(cli: &Cli) -> anyhow::Result<()> {
    anyhow::ensure!(
        cli.structures <= 1_000,
        "--libp2p runs every peer in this process: at most 1,000 structures (got {})",
        cli.structures
    );
    anyhow::ensure!(
        cli.hubs == HubLayout::Regional,
        "--libp2p uses regional hubs only"
    );
    let started = std::time::Instant::now();
    let report = maillage_node::demo::run(&maillage_node::demo::DemoOptions {
        structures: cli.structures,
        hubs: 16,
        seed: cli.seed,
        out: None,
        program: None,
    })?;
    let cells: Vec<(f64, f64, f64)> = report
        .totals
        .iter()
        .map(|t| (t.ci95[0], t.ci95[1], t.truth as f64))
        .chain(
            report
                .by_region
                .iter()
                .map(|r| (r.ci95[0], r.ci95[1], r.truth as f64)),
        )
        .collect();
    let inside = cells
        .iter()
        .filter(|(lo, hi, truth)| lo <= truth && truth <= hi)
        .count();
    let summary = serde_json::json!({
        "mode": "libp2p",
        "structures": report.structures,
        "hubs": report.hubs,
        "period": report.period,
        "coverage": report.coverage,
        "interval_coverage": inside as f64 / cells.len().max(1) as f64,
        "cells": cells.len(),
        "audit": report.audit,
        "metrics": report.metrics,
        "wall_ms": started.elapsed().as_millis() as u64,
    });
    std::fs::create_dir_all(&cli.out).with_context(|| format!("creating {}", cli.out.display()))?;
    let path = cli.out.join("libp2p.json");
    std::fs::write(&path, serde_json::to_string_pretty(&summary)?)
        .with_context(|| format!("writing {}", path.display()))?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "Maillage — {} structures et {} hubs en libp2p réel (boucle locale) : total national en {} ms après les diffusions, {} octets envoyés par structure, audit {}, {:.1} % des intervalles contiennent la vérité ; résultats dans {}",
            report.structures,
            report.hubs,
            report.metrics.release_to_national_total_ms,
            report.metrics.bytes_sent_per_structure_mean,
            if report.audit.ok {
                "conforme"
            } else {
                "NON CONFORME"
            },
            100.0 * inside as f64 / cells.len().max(1) as f64,
            path.display()
        );
    }
    anyhow::ensure!(
        report.audit.ok,
        "the audit failed: {:?}",
        report.audit.first_finding
    );
    Ok(())
}

/// The summary printed by `--json`: everything but the per-territory and per-cell lists.
fn brief(report: &maillage_sim::Report) -> serde_json::Value {
    let mut v = serde_json::to_value(report).unwrap_or_default();
    if let Some(b) = v.get_mut("baseline").and_then(|b| b.as_object_mut()) {
        b.remove("territories");
        b.remove("national_cells");
    }
    v
}

fn text(report: &maillage_sim::Report) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Maillage — simulation de {} structures, {} hubs, mois {} (données fictives, graine {})",
        report.config.structures,
        match report.config.layout {
            HubLayout::Regional => 16,
            HubLayout::Departement => 101,
        },
        report.config.period,
        report.config.seed
    );
    if let Some(b) = &report.baseline {
        let _ = writeln!(
            s,
            "\nPrécision (erreur relative médiane / 95e centile, couverture des intervalles) :"
        );
        for a in &b.accuracy {
            let _ = writeln!(
                s,
                "  {:<12} {:<16} {:>8.4} / {:>8.4}   couverture {:>5.1} % (bornée) {:>5.1} % (réelle)",
                a.level,
                a.method,
                a.median_rel_error,
                a.p95_rel_error,
                100.0 * a.coverage_bounded,
                100.0 * a.coverage_truth
            );
        }
        let c = &b.costs;
        let _ = writeln!(
            s,
            "\nCoûts : {:.0} octets par structure, {:.0} octets par hub, {:.2} ms CPU par diffusion, {:.2} s CPU par hub, {:.2} s CPU auditeur, total national en {:.2} s (modèle réseau)",
            c.bytes_per_structure,
            c.bytes_per_hub,
            1e3 * c.structure_cpu_s_mean,
            c.hub_cpu_s_mean,
            c.auditor_cpu_s,
            c.time_to_national_s
        );
        let _ = writeln!(
            s,
            "Audits : {}",
            if b.audits_ok {
                "conformes"
            } else {
                "NON CONFORMES"
            }
        );
    }
    if let Some(c) = &report.churn {
        let _ = writeln!(
            s,
            "\nChurn : couverture {:.1} % à l'échéance ({} hubs), {:.1} % après les retards ({} hubs)",
            100.0 * c.coverage_deadline,
            c.hubs_deadline,
            100.0 * c.coverage_final,
            c.hubs_final
        );
    }
    if let Some(a) = &report.adversaries {
        let _ = writeln!(s, "\nFraudes (attendu → détecté) :");
        for d in &a.detections {
            let _ = writeln!(
                s,
                "  {:<20} par {:<10} {:<22} {}",
                d.attack.name,
                d.attack.expected_by,
                d.attack.expected_kind,
                if d.detected {
                    "détectée"
                } else {
                    "NON DÉTECTÉE"
                }
            );
        }
    }
    let _ = write!(s, "\nDurée : {:.1} s", report.timings.total_s);
    s
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("maillage-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}
