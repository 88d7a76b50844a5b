//! Small seeded runs of every scenario through the real code.

use maillage_sim::scenarios::{Scenario, Silent, SimConfig, simulate};

fn config(structures: usize, seed: u64, scenarios: Vec<Scenario>) -> SimConfig {
    let mut c = SimConfig::new(structures, seed);
    c.scenarios = scenarios;
    c.sweep_epsilons = vec![0.5, 2.0];
    c
}

#[test]
fn every_attack_is_detected_and_nothing_else_is_flagged() -> anyhow::Result<()> {
    for seed in [1, 2] {
        let scratch = tempfile::tempdir()?;
        let report = simulate(
            &config(120, seed, vec![Scenario::Adversaries]),
            scratch.path(),
            &mut Silent,
        )?;
        let a = report
            .adversaries
            .ok_or_else(|| anyhow::anyhow!("no adversary report"))?;
        let names: Vec<&str> = a.detections.iter().map(|d| d.attack.name).collect();
        assert_eq!(
            names,
            [
                "forged_signature",
                "equivocation",
                "budget_overspend",
                "wrong_mechanism",
                "non_member",
                "hub_drops_release",
                "hub_alters_release",
                "hub_inflates_total",
                "hub_equivocates"
            ]
        );
        // The equivocating hub is caught by the national node itself.
        let fork = a
            .detections
            .iter()
            .find(|d| d.attack.name == "hub_equivocates")
            .ok_or_else(|| anyhow::anyhow!("no hub equivocation"))?;
        assert_eq!(
            fork.hub_refusal.as_deref(),
            Some("equivocation"),
            "{fork:?}"
        );
        for d in &a.detections {
            assert!(
                d.detected,
                "seed {seed}: {} not detected: {:?}",
                d.attack.name, d
            );
        }
        assert!(a.all_detected);
        assert!(
            a.unexplained.is_empty(),
            "false alarms: {:?}",
            a.unexplained
        );
    }
    Ok(())
}

#[test]
fn baseline_totals_are_the_sum_of_releases_and_audits_pass() -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let report = simulate(
        &config(150, 3, vec![Scenario::Baseline]),
        scratch.path(),
        &mut Silent,
    )?;
    let b = report
        .baseline
        .ok_or_else(|| anyhow::anyhow!("no baseline"))?;
    assert!(
        b.totals_match,
        "a hub or the national total is not the sum of its releases"
    );
    assert!(b.audits_ok && b.findings == 0 && b.refusals == 0);
    // The central exact database is the truth.
    for a in b.accuracy.iter().filter(|a| a.method == "central_exact") {
        assert_eq!(a.median_rel_error, 0.0);
        assert_eq!(a.p95_rel_error, 0.0);
    }
    assert!(b.costs.bytes_per_structure > 1_000.0 && b.costs.time_to_national_s > 0.0);
    Ok(())
}

/// The stated 95% intervals hold: over the sweep's releases, the fraction of territory cells
/// whose bounded total lies inside the interval is at least 95% up to sampling error.
/// Cells are not independent across levels, so the check is on départements (101 territories
/// × 60 cells per run, independent noise between départements). With p = 0.95 and n ≈ 6,000,
/// σ ≈ 0.0028; the tolerance 0.93 is 7σ below 0.95 (false-failure rate < 1e-9 even allowing
/// for correlation inside a département), and a scale understated by 20% gives about 0.90.
#[test]
fn intervals_cover_the_bounded_totals() -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let report = simulate(
        &config(400, 4, vec![Scenario::PrivacySweep]),
        scratch.path(),
        &mut Silent,
    )?;
    assert_eq!(report.sweep.len(), 4);
    for row in &report.sweep {
        for a in row.accuracy.iter().filter(|a| a.level == "departement") {
            assert!(
                a.coverage_bounded >= 0.93,
                "{} ε={} {}: coverage {}",
                row.mechanism,
                row.epsilon,
                a.method,
                a.coverage_bounded
            );
        }
    }
    // More budget, less error.
    let err = |m: &str, e: f64| {
        report
            .sweep
            .iter()
            .find(|r| r.mechanism == m && r.epsilon == e)
            .and_then(|r| {
                r.accuracy
                    .iter()
                    .find(|a| a.level == "national" && a.method == "federated")
            })
            .map(|a| a.median_rel_error)
            .unwrap_or(f64::NAN)
    };
    assert!(err("laplace", 2.0) < err("laplace", 0.5));
    Ok(())
}

#[test]
fn churn_recovers_coverage_and_resends_are_idempotent() -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let mut c = config(200, 5, vec![Scenario::Churn]);
    c.resend_share = 0.1;
    let report = simulate(&c, scratch.path(), &mut Silent)?;
    let churn = report
        .churn
        .ok_or_else(|| anyhow::anyhow!("no churn report"))?;
    assert!(
        churn.coverage_deadline < 0.95,
        "{}",
        churn.coverage_deadline
    );
    assert_eq!(churn.coverage_final, 1.0);
    assert_eq!(churn.hubs_final, 16);
    assert!(churn.hubs_deadline < 16);
    assert!(churn.resends > 0 && churn.resends_idempotent);
    // Hubs re-aggregated after late releases: the national node logged their revisions and
    // summed the latest ones, and refused none of them as an equivocation.
    assert!(churn.national_revisions > 0, "{}", churn.national_revisions);
    assert!(
        churn.national_refusals.is_empty(),
        "{:?}",
        churn.national_refusals
    );
    assert_eq!(
        churn.national_structures_final as f64,
        churn.coverage_final * churn.costs.structures as f64
    );
    assert!(churn.audits_ok);
    Ok(())
}

/// The small real-network mode: structures, 16 hubs and the national node as real libp2p peers
/// on loopback; every structure reaches the national total and the audit passes.
#[test]
fn the_libp2p_mode_runs_real_peers_and_its_audit_passes() {
    let out = tempfile::tempdir().expect("temp dir");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_maillage-sim"))
        .args([
            "--libp2p",
            "--structures",
            "20",
            "--seed",
            "3",
            "--json",
            "--out",
        ])
        .arg(out.path())
        .output()
        .expect("run maillage-sim");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&run.stdout).expect("JSON summary");
    assert_eq!(v["mode"], "libp2p");
    assert_eq!(v["hubs"], 16);
    assert_eq!(v["coverage"]["structures_contributed"], 20, "{v}");
    assert_eq!(v["audit"]["ok"], true, "{v}");
    // 20 releases and 16 hub aggregates, every signature checked.
    assert_eq!(v["audit"]["releases_verified"], 36, "{v}");
    assert!(out.path().join("libp2p.json").is_file());
}
