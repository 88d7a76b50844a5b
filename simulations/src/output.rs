//! Writes a report: `summary.json`, CSV tables and SVG plots.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;

use crate::metrics::Accuracy;
use crate::scenarios::Report;

fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

fn accuracy_rows(out: &mut String, scenario: &str, extra: &str, rows: &[Accuracy]) {
    for a in rows {
        let _ = writeln!(
            out,
            "{scenario},{extra},{},{},{},{:.6},{:.6},{:.4},{:.4},{:.6}",
            a.level,
            a.method,
            a.cells,
            a.median_rel_error,
            a.p95_rel_error,
            a.coverage_bounded,
            a.coverage_truth,
            a.median_rel_half_width
        );
    }
}

/// Writes everything into `dir` (created if needed).
pub fn write_all(report: &Report, dir: &Path) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    write(dir, "summary.json", &serde_json::to_string_pretty(report)?)?;
    written.push("summary.json".to_owned());

    let mut acc = String::from(
        "scenario,variant,level,method,cells,median_rel_error,p95_rel_error,coverage_bounded,coverage_truth,median_rel_half_width\n",
    );
    if let Some(b) = &report.baseline {
        accuracy_rows(&mut acc, "baseline", "", &b.accuracy);
    }
    if let Some(c) = &report.churn {
        accuracy_rows(&mut acc, "churn", "deadline", &c.accuracy_deadline);
        accuracy_rows(&mut acc, "churn", "final", &c.accuracy_final);
    }
    if let Some(a) = &report.adversaries {
        accuracy_rows(&mut acc, "adversaries", "", &a.accuracy);
    }
    for row in &report.sweep {
        accuracy_rows(
            &mut acc,
            "privacy-sweep",
            &format!("{}/eps={}", row.mechanism, row.epsilon),
            &row.accuracy,
        );
    }
    write(dir, "accuracy.csv", &acc)?;
    written.push("accuracy.csv".to_owned());

    let mut costs = String::from(
        "scenario,structures,hubs,bytes_per_structure,bytes_per_structure_max,bytes_per_hub,bytes_per_hub_max,audit_bundle_bytes_per_hub,national_bytes,structure_cpu_s_mean,structure_cpu_s_p95,hub_cpu_s_mean,hub_cpu_s_max,national_cpu_s,auditor_cpu_s,time_to_national_s,slowest_hub_received_s\n",
    );
    let mut cost_row = |name: &str, c: &crate::federation::Costs| {
        let _ = writeln!(
            costs,
            "{name},{},{},{:.1},{},{:.1},{},{:.1},{},{:.6},{:.6},{:.4},{:.4},{:.4},{:.4},{:.3},{:.3}",
            c.structures,
            c.hubs,
            c.bytes_per_structure,
            c.bytes_per_structure_max,
            c.bytes_per_hub,
            c.bytes_per_hub_max,
            c.audit_bundle_bytes_per_hub,
            c.national_bytes,
            c.structure_cpu_s_mean,
            c.structure_cpu_s_p95,
            c.hub_cpu_s_mean,
            c.hub_cpu_s_max,
            c.national_cpu_s,
            c.auditor_cpu_s,
            c.time_to_national_s,
            c.slowest_hub_received_s
        );
    };
    if let Some(b) = &report.baseline {
        cost_row("baseline", &b.costs);
    }
    if let Some(c) = &report.churn {
        cost_row("churn", &c.costs);
    }
    for c in &report.scaling {
        cost_row("scaling", c);
    }
    write(dir, "costs.csv", &costs)?;
    written.push("costs.csv".to_owned());

    if let Some(a) = &report.adversaries {
        let mut det = String::from(
            "attack,culprit,hub,expected_by,expected_kind,hub_refusal,audit_found,detected,detail\n",
        );
        for d in &a.detections {
            let _ = writeln!(
                det,
                "{},{},{},{},{},{},{},{},\"{}\"",
                d.attack.name,
                d.attack.culprit,
                d.attack.hub,
                d.attack.expected_by,
                d.attack.expected_kind,
                d.hub_refusal.as_deref().unwrap_or(""),
                d.audit_found,
                d.detected,
                d.detail.replace('"', "'")
            );
        }
        write(dir, "detections.csv", &det)?;
        written.push("detections.csv".to_owned());
    }
    if let Some(b) = &report.baseline {
        let mut t = String::from(
            "level,code,structures,accompagnements,median_rel_error_federated,median_rel_error_central_dp,beneficiaires_rel_error,beneficiaires_rel_half_width\n",
        );
        for p in &b.territories {
            let _ = writeln!(
                t,
                "{},{},{},{},{:.6},{:.6},{:.6},{:.6}",
                p.level,
                p.code,
                p.structures,
                p.accompagnements,
                p.federated,
                p.central_dp,
                p.beneficiaires_federated,
                p.beneficiaires_rel_half_width
            );
        }
        write(dir, "territories.csv", &t)?;
        written.push("territories.csv".to_owned());
        let mut n = String::from("indicator,category,truth,bounded,estimate,ci95_half_width\n");
        for (i, c, truth, bounded, est, hw) in &b.national_cells {
            let _ = writeln!(
                n,
                "{i},{},{truth},{bounded},{est},{hw}",
                c.as_deref().unwrap_or("")
            );
        }
        write(dir, "national.csv", &n)?;
        written.push("national.csv".to_owned());
    }
    written.extend(plots(report, dir)?);
    Ok(written)
}

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(127, 127, 127),
];

type Series = (String, Vec<(f64, f64)>, bool);

/// A log–log (or log-x) chart of line series; `dashed` series are drawn as points only.
fn chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_y: bool,
    reference: Option<f64>,
) -> anyhow::Result<()> {
    let points: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite() && *x > 0.0 && (!log_y || *y > 0.0))
        .collect();
    if points.is_empty() {
        return Ok(());
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in &points {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    if let Some(r) = reference {
        y0 = y0.min(r);
        y1 = y1.max(r);
    }
    let (x0, x1) = (x0 / 1.3, x1 * 1.3);
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    macro_rules! draw {
        ($builder:expr) => {{
            let mut c = $builder;
            c.configure_mesh()
                .x_desc(x_label)
                .y_desc(y_label)
                .draw()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for (k, (name, data, points_only)) in series.iter().enumerate() {
                let colour = COLOURS[k % COLOURS.len()];
                let data: Vec<(f64, f64)> = data
                    .iter()
                    .copied()
                    .filter(|(x, y)| {
                        x.is_finite() && y.is_finite() && *x > 0.0 && (!log_y || *y > 0.0)
                    })
                    .collect();
                if *points_only {
                    c.draw_series(PointSeries::of_element(
                        data,
                        3,
                        colour.filled(),
                        &|p, s, st| Circle::new(p, s, st),
                    ))
                    .map_err(|e| anyhow::anyhow!("{e}"))?
                    .label(name.as_str())
                    .legend(move |(x, y)| Circle::new((x + 10, y), 3, colour.filled()));
                } else {
                    c.draw_series(LineSeries::new(data.clone(), colour.stroke_width(2)))
                        .map_err(|e| anyhow::anyhow!("{e}"))?
                        .label(name.as_str())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                        });
                    c.draw_series(PointSeries::of_element(
                        data,
                        3,
                        colour.filled(),
                        &|p, s, st| Circle::new(p, s, st),
                    ))
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                }
            }
            if let Some(r) = reference {
                c.draw_series(LineSeries::new(
                    vec![(x0, r), (x1, r)],
                    BLACK.stroke_width(1),
                ))
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .label(format!("{r}"))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
            }
            c.configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }};
    }
    if log_y {
        let (y0, y1) = (y0 / 1.5, y1 * 1.5);
        draw!(
            ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 20))
                .margin(15)
                .x_label_area_size(45)
                .y_label_area_size(70)
                .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
                .map_err(|e| anyhow::anyhow!("{e}"))?
        );
    } else {
        let pad = ((y1 - y0) * 0.1).max(0.01);
        draw!(
            ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 20))
                .margin(15)
                .x_label_area_size(45)
                .y_label_area_size(70)
                .build_cartesian_2d((x0..x1).log_scale(), (y0 - pad)..(y1 + pad))
                .map_err(|e| anyhow::anyhow!("{e}"))?
        );
    }
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

fn sweep_series(report: &Report, method: &str, pick: impl Fn(&Accuracy) -> f64) -> Vec<Series> {
    let mut out = Vec::new();
    for mechanism in ["laplace", "gaussian"] {
        for level in ["national", "region", "departement"] {
            let data: Vec<(f64, f64)> = report
                .sweep
                .iter()
                .filter(|r| r.mechanism == mechanism)
                .filter_map(|r| {
                    r.accuracy
                        .iter()
                        .find(|a| a.level == level && a.method == method)
                        .map(|a| (r.epsilon, pick(a)))
                })
                .collect();
            if !data.is_empty() {
                out.push((format!("{mechanism}, {level}"), data, false));
            }
        }
    }
    out
}

fn plots(report: &Report, dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut written = Vec::new();
    if !report.sweep.is_empty() {
        chart(
            &dir.join("error_vs_epsilon.svg"),
            "Erreur relative médiane selon ε (réseau fédéré)",
            "ε par mois (gaussien : ρ = ε²/2)",
            "erreur relative médiane",
            &sweep_series(report, "federated", |a| a.median_rel_error),
            true,
            None,
        )?;
        written.push("error_vs_epsilon.svg".to_owned());
        chart(
            &dir.join("coverage.svg"),
            "Couverture des intervalles à 95 % selon ε",
            "ε par mois (gaussien : ρ = ε²/2)",
            "part des cellules dont la valeur bornée est dans l'intervalle",
            &sweep_series(report, "federated", |a| a.coverage_bounded),
            false,
            Some(0.95),
        )?;
        written.push("coverage.svg".to_owned());
    }
    if let Some(b) = &report.baseline {
        let level =
            |l: &str, f: &dyn Fn(&crate::scenarios::TerritoryPoint) -> f64| -> Vec<(f64, f64)> {
                b.territories
                    .iter()
                    .filter(|p| p.level == l)
                    .map(|p| (p.structures as f64, f(p)))
                    .collect()
            };
        let mut series: Vec<Series> = Vec::new();
        for (l, name) in [
            ("departement", "départements"),
            ("region", "régions"),
            ("national", "France"),
        ] {
            series.push((format!("{name}, réseau"), level(l, &|p| p.federated), true));
        }
        let mut central: Vec<(f64, f64)> = b
            .territories
            .iter()
            .map(|p| (p.structures as f64, p.central_dp))
            .collect();
        central.sort_by(|a, b| a.0.total_cmp(&b.0));
        series.push((
            "toutes, base centrale + bruit unique".to_owned(),
            central,
            true,
        ));
        chart(
            &dir.join("error_vs_territory_size.svg"),
            "Erreur relative médiane par territoire selon sa taille",
            "structures dans le territoire",
            "erreur relative médiane (cellules)",
            &series,
            true,
            None,
        )?;
        written.push("error_vs_territory_size.svg".to_owned());
    }
    if report.scaling.len() >= 2 {
        let xs = |f: &dyn Fn(&crate::federation::Costs) -> f64| -> Vec<(f64, f64)> {
            report
                .scaling
                .iter()
                .map(|c| (c.structures as f64, f(c)))
                .collect()
        };
        let series: Vec<Series> = vec![
            (
                "octets par structure (÷1000)".into(),
                xs(&|c| c.bytes_per_structure / 1e3),
                false,
            ),
            (
                "octets par hub (÷10⁶)".into(),
                xs(&|c| c.bytes_per_hub / 1e6),
                false,
            ),
            ("CPU par hub, s".into(), xs(&|c| c.hub_cpu_s_mean), false),
            ("CPU auditeur, s".into(), xs(&|c| c.auditor_cpu_s), false),
            (
                "temps jusqu'au total national, s".into(),
                xs(&|c| c.time_to_national_s),
                false,
            ),
        ];
        chart(
            &dir.join("cost_vs_n.svg"),
            "Coûts selon le nombre de structures",
            "structures",
            "valeur",
            &series,
            true,
            None,
        )?;
        written.push("cost_vs_n.svg".to_owned());
    }
    Ok(written)
}
