//! The scenarios and the report they produce.

use std::path::Path;
use std::time::Instant;

use maillage_privacy::release::{Mechanism as PrivacyMechanism, Plan};
use maillage_protocol::Period;
use maillage_protocol::vocab::Vocabulary as _;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

use crate::adversaries::{self, Detection};
use crate::estimate::{self, Level, Territory};
use crate::federation::{self, Costs, Run, Schedule};
use crate::france::HubLayout;
use crate::metrics::{Accuracy, quantile};
use crate::netmodel::NetParams;
use crate::world::{Releases, World, WorldOptions, params};

/// A scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Everyone on time, nobody cheats.
    Baseline,
    /// Structures and a hub offline during the submission window.
    Churn,
    /// Cheating structures and hubs.
    Adversaries,
    /// ε from 0.1 to 4, Laplace and Gaussian.
    PrivacySweep,
    /// Costs at N/8, N/4, N/2 and N structures.
    Scaling,
    /// All of the above.
    All,
}

/// What to simulate.
#[derive(Debug, Clone, Serialize)]
pub struct SimConfig {
    /// Structures.
    pub structures: usize,
    /// Seed of every synthetic choice (OpenDP's noise is never seeded).
    pub seed: u64,
    /// Hub layout.
    pub layout: HubLayout,
    /// The period.
    pub period: Period,
    /// The policy's mechanism.
    pub mechanism: PrivacyMechanism,
    /// The policy's ε per month (ρ = ε²/2 for Gaussian).
    pub epsilon: f64,
    /// Share of structures offline during the window in the churn scenario.
    pub churn_share: f64,
    /// Share of on-time structures that resend after the window (lost receipts).
    pub resend_share: f64,
    /// ε values of the sweep.
    pub sweep_epsilons: Vec<f64>,
    /// Median activities per structure and month.
    pub median_activities: f64,
    /// σ of the log-normal of structure sizes.
    pub size_sigma: f64,
    /// Network model.
    pub net: NetParams,
    /// Scenarios to run.
    pub scenarios: Vec<Scenario>,
    /// Threads for generating data and releasing (the rest runs on one thread).
    pub threads: usize,
}

impl SimConfig {
    /// The defaults for `n` structures.
    pub fn new(structures: usize, seed: u64) -> SimConfig {
        SimConfig {
            structures,
            seed,
            layout: HubLayout::Regional,
            period: Period::new(2026, 9).unwrap_or_else(|| unreachable!("a valid constant")),
            mechanism: PrivacyMechanism::DiscreteLaplace,
            epsilon: 1.0,
            churn_share: 0.1,
            resend_share: 0.02,
            sweep_epsilons: vec![0.1, 0.25, 0.5, 1.0, 2.0, 4.0],
            median_activities: 25.0,
            size_sigma: 1.2,
            net: NetParams::default(),
            scenarios: vec![Scenario::All],
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        }
    }

    fn runs(&self, s: Scenario) -> bool {
        self.scenarios.contains(&s) || self.scenarios.contains(&Scenario::All)
    }
}

/// The synthetic data's shape.
#[derive(Debug, Clone, Serialize)]
pub struct DataSummary {
    /// Activities in the month, all structures.
    pub activities: usize,
    /// Rows (accompaniments).
    pub rows: usize,
    /// Activities per structure: median, 90th and 99th percentiles, largest.
    pub activities_per_structure: [f64; 4],
    /// Structures per hub: fewest, most.
    pub structures_per_hub: [usize; 2],
    /// Communes that could receive a structure.
    pub communes: usize,
    /// Communes that did.
    pub communes_with_structures: usize,
}

/// One territory's accuracy, for the error-against-size plot.
#[derive(Debug, Clone, Serialize)]
pub struct TerritoryPoint {
    /// Level.
    pub level: &'static str,
    /// Code.
    pub code: String,
    /// Structures in it.
    pub structures: usize,
    /// Its total of `accompagnements` (all types), exact.
    pub accompagnements: f64,
    /// Median relative error over its cells, network.
    pub federated: f64,
    /// The same, central DP.
    pub central_dp: f64,
    /// Relative error of its `beneficiaires` total, network.
    pub beneficiaires_federated: f64,
    /// Half-width of the `beneficiaires` interval relative to the truth.
    pub beneficiaires_rel_half_width: f64,
}

/// Baseline results.
#[derive(Debug, Clone, Serialize)]
pub struct BaselineReport {
    /// Accuracy per level and method.
    pub accuracy: Vec<Accuracy>,
    /// Costs.
    pub costs: Costs,
    /// Whether every audit passed.
    pub audits_ok: bool,
    /// Findings in all audits.
    pub findings: usize,
    /// Refusals by hubs.
    pub refusals: usize,
    /// Whether every hub aggregate equals the sum of its accepted releases and the national
    /// total the sum of all of them.
    pub totals_match: bool,
    /// Per-territory points.
    pub territories: Vec<TerritoryPoint>,
    /// National cells: indicator, category, truth, bounded, estimate, half-width.
    pub national_cells: Vec<(String, Option<String>, f64, f64, f64, f64)>,
}

/// Churn results.
#[derive(Debug, Clone, Serialize)]
pub struct ChurnReport {
    /// Structures offline during the window (share).
    pub offline_share: f64,
    /// The hub offline during the window.
    pub offline_hub: String,
    /// Structures of that hub.
    pub offline_hub_structures: usize,
    /// Share of structures in the national total at the deadline.
    pub coverage_deadline: f64,
    /// Hubs in the national total at the deadline.
    pub hubs_deadline: usize,
    /// Share after late releases.
    pub coverage_final: f64,
    /// Hubs after.
    pub hubs_final: usize,
    /// Accuracy at the deadline (missing structures bias totals down).
    pub accuracy_deadline: Vec<Accuracy>,
    /// Accuracy after late releases.
    pub accuracy_final: Vec<Accuracy>,
    /// Resent releases, and whether each got its original receipt back (not logged twice).
    pub resends: usize,
    /// Whether all resends were recognised as already logged.
    pub resends_idempotent: bool,
    /// Hub aggregates the national node accepted as revisions (hubs that re-aggregated after
    /// late releases), each logged next to the aggregate it supersedes.
    pub national_revisions: usize,
    /// What the national node refused of the hubs' aggregates (none expected: a revision is
    /// not an equivocation).
    pub national_refusals: Vec<String>,
    /// Structures the final national aggregate says it covers (signed `structures`).
    pub national_structures_final: u64,
    /// Whether every audit passed.
    pub audits_ok: bool,
    /// Costs.
    pub costs: Costs,
}

/// Adversary results.
#[derive(Debug, Clone, Serialize)]
pub struct AdversaryReport {
    /// Expected against detected.
    pub detections: Vec<Detection>,
    /// Whether every attack was detected by whom it should be.
    pub all_detected: bool,
    /// Refusals and findings no attack explains.
    pub unexplained: Vec<String>,
    /// National accuracy with the attacks (the hubs' refusals keep totals right; the cheating
    /// hubs' totals are wrong until the audit is acted upon).
    pub accuracy: Vec<Accuracy>,
}

/// One row of the sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepRow {
    /// `laplace` or `gaussian`.
    pub mechanism: String,
    /// ε per month (Laplace), or the ε whose ρ = ε²/2 is spent (Gaussian).
    pub epsilon: f64,
    /// The budget spent: ε or ρ.
    pub budget: f64,
    /// Accuracy per level, network and central DP.
    pub accuracy: Vec<Accuracy>,
}

/// Timings of the simulator itself.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    /// Generating data and releasing (all parameter sets).
    pub data_and_releases_s: f64,
    /// Per scenario.
    pub scenarios_s: Vec<(String, f64)>,
    /// Whole run.
    pub total_s: f64,
}

/// Everything a run reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The configuration.
    pub config: SimConfig,
    /// Where CPU times come from.
    pub cpu_source: &'static str,
    /// The COG year.
    pub cog_year: u16,
    /// Data shape.
    pub data: DataSummary,
    /// Baseline.
    pub baseline: Option<BaselineReport>,
    /// Churn.
    pub churn: Option<ChurnReport>,
    /// Adversaries.
    pub adversaries: Option<AdversaryReport>,
    /// Sweep.
    pub sweep: Vec<SweepRow>,
    /// Costs against N.
    pub scaling: Vec<Costs>,
    /// Timings.
    pub timings: Timings,
}

/// Progress callbacks.
pub trait Progress {
    /// The total number of steps is now known.
    fn start(&mut self, what: &str, total: u64);
    /// One step done.
    fn tick(&mut self);
}

/// No progress display.
#[derive(Debug)]
pub struct Silent;

impl Progress for Silent {
    fn start(&mut self, _: &str, _: u64) {}
    fn tick(&mut self) {}
}

fn mechanism_name(m: PrivacyMechanism) -> &'static str {
    match m {
        PrivacyMechanism::DiscreteLaplace => "laplace",
        PrivacyMechanism::DiscreteGaussian => "gaussian",
    }
}

/// Runs the configured scenarios; `scratch` holds the hub nodes and bundles.
pub fn simulate(
    config: &SimConfig,
    scratch: &Path,
    progress: &mut dyn Progress,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut timings = Timings::default();
    let mut world = World::new(&WorldOptions {
        structures: config.structures,
        seed: config.seed,
        layout: config.layout,
        period: config.period,
        median_activities: config.median_activities,
        size_sigma: config.size_sigma,
    });
    let base_params = params(config.mechanism, config.epsilon);
    let mut plans: Vec<Plan> = vec![base_params.plan()?];
    let mut sets = vec![Releases::new(base_params, config.structures)];
    let mut sign = vec![true];
    if config.runs(Scenario::PrivacySweep) {
        for m in [
            PrivacyMechanism::DiscreteLaplace,
            PrivacyMechanism::DiscreteGaussian,
        ] {
            for &e in &config.sweep_epsilons {
                let p = params(m, e);
                plans.push(p.plan()?);
                sets.push(Releases::new(p, config.structures));
                sign.push(false);
            }
        }
    }
    progress.start("données et diffusions", config.structures as u64);
    world.compute(&plans, &mut sets, &sign, config.threads, |k| {
        for _ in 0..k {
            progress.tick()
        }
    })?;
    timings.data_and_releases_s = started.elapsed().as_secs_f64();
    let data = summarize(&world);
    let mut sets = sets.into_iter();
    let base = sets
        .next()
        .ok_or_else(|| anyhow::anyhow!("no base releases"))?;
    let links = config.net.links(config.structures, config.seed);
    let everyone: Vec<usize> = (0..config.structures).collect();
    let mut report = Report {
        config: config.clone(),
        cpu_source: crate::cpu::source(),
        cog_year: maillage_protocol::Cog::get().year(),
        data,
        baseline: None,
        churn: None,
        adversaries: None,
        sweep: Vec::new(),
        scaling: Vec::new(),
        timings: Timings::default(),
    };
    let steps = [
        Scenario::Baseline,
        Scenario::Churn,
        Scenario::Adversaries,
        Scenario::PrivacySweep,
        Scenario::Scaling,
    ]
    .iter()
    .filter(|s| config.runs(**s))
    .count();
    progress.start("scénarios", steps as u64);
    let mut baseline_costs = None;

    if config.runs(Scenario::Baseline) || config.runs(Scenario::Scaling) {
        let t = Instant::now();
        let schedule = Schedule {
            structures: everyone.clone(),
            late: vec![false; config.structures],
            ..Schedule::default()
        };
        let run = federation::run(
            &world,
            &base,
            &schedule,
            &config.net,
            &links,
            &scratch.join("baseline"),
            config.seed,
        )?;
        let estimates = estimate::federated(
            &world,
            &base,
            &run.accepted_final,
            Some(&national_cells(&world, &run)?),
        )?;
        let central_dp = estimate::central(&world, Some(&plans[0]))?;
        let central_bounded = estimate::central(&world, None)?;
        let central_exact = estimate::central_exact(&world);
        let mut accuracy = estimate::by_level("federated", &estimates);
        accuracy.extend(estimate::by_level("central_dp", &central_dp));
        accuracy.extend(estimate::by_level("central_bounded", &central_bounded));
        accuracy.extend(estimate::by_level("central_exact", &central_exact));
        let territories = territory_points(&world, &estimates, &central_dp);
        let national_cells = estimates
            .iter()
            .find(|t| t.level == Level::National)
            .map(|t| {
                world
                    .cells
                    .iter()
                    .zip(&t.cells)
                    .map(|((i, c), e)| {
                        (
                            i.code().to_owned(),
                            c.map(str::to_owned),
                            e.truth,
                            e.bounded,
                            e.value,
                            e.half_width,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        baseline_costs = Some(run.costs.clone());
        report.baseline = Some(BaselineReport {
            accuracy,
            costs: run.costs.clone(),
            audits_ok: run.audits.iter().all(|a| a.ok),
            findings: run.audits.iter().map(|a| a.findings.len()).sum(),
            refusals: run.answers.iter().filter(|a| a.2.outcome.is_err()).count(),
            totals_match: totals_match(&world, &base, &run)?,
            territories,
            national_cells,
        });
        timings
            .scenarios_s
            .push(("baseline".into(), t.elapsed().as_secs_f64()));
        progress.tick();
    }

    if config.runs(Scenario::Churn) {
        let t = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x6368_7572_6e00);
        let late: Vec<bool> = (0..config.structures)
            .map(|_| rng.random_bool(config.churn_share))
            .collect();
        // The offline hub: a mid-sized one, seeded.
        let hub_count = world.france.hubs.len();
        let offline_hub = rng.random_range(0..hub_count);
        let resend: Vec<usize> = (0..config.structures)
            .filter(|&s| {
                !late[s]
                    && world.structures[s].hub != offline_hub
                    && rng.random_bool(config.resend_share)
            })
            .collect();
        let schedule = Schedule {
            structures: everyone.clone(),
            late: late.clone(),
            hub_offline: Some(offline_hub),
            resend: resend.clone(),
            ..Schedule::default()
        };
        let run = federation::run(
            &world,
            &base,
            &schedule,
            &config.net,
            &links,
            &scratch.join("churn"),
            config.seed,
        )?;
        let deadline_nat = cells_of(&world, &run.national_deadline.aggregate)?;
        let final_nat = national_cells(&world, &run)?;
        let at_deadline =
            estimate::federated(&world, &base, &run.accepted_deadline, Some(&deadline_nat))?;
        let after = estimate::federated(&world, &base, &run.accepted_final, Some(&final_nat))?;
        let resent: Vec<bool> = run
            .answers
            .iter()
            .filter(|a| matches!(a.1, federation::Sender::Resend(_)))
            .map(|a| matches!(a.2.outcome, Ok((_, false))))
            .collect();
        let share = |v: &[bool]| v.iter().filter(|x| **x).count() as f64 / v.len().max(1) as f64;
        report.churn = Some(ChurnReport {
            offline_share: share(&late),
            offline_hub: world.france.hubs[offline_hub].name.clone(),
            offline_hub_structures: world
                .structures
                .iter()
                .filter(|s| s.hub == offline_hub)
                .count(),
            coverage_deadline: share(&run.accepted_deadline),
            hubs_deadline: run
                .national_deadline
                .aggregate
                .aggregate()
                .contributed
                .len(),
            coverage_final: share(&run.accepted_final),
            hubs_final: run.national_final.aggregate.aggregate().contributed.len(),
            accuracy_deadline: estimate::by_level("federated", &at_deadline),
            accuracy_final: estimate::by_level("federated", &after),
            resends: resent.len(),
            resends_idempotent: resent.iter().all(|x| *x),
            national_revisions: run.national_revisions,
            national_refusals: run
                .national_refusals
                .iter()
                .map(|(h, e)| format!("hub {h}: {e}"))
                .collect(),
            national_structures_final: run
                .national_final
                .aggregate
                .aggregate()
                .structures
                .unwrap_or(0),
            audits_ok: run.audits.iter().all(|a| a.ok),
            costs: run.costs.clone(),
        });
        timings
            .scenarios_s
            .push(("churn".into(), t.elapsed().as_secs_f64()));
        progress.tick();
    }

    if config.runs(Scenario::Adversaries) {
        let t = Instant::now();
        let (schedule, attacks) = adversaries::schedule(&world, &base, config.seed)?;
        let run = federation::run(
            &world,
            &base,
            &schedule,
            &config.net,
            &links,
            &scratch.join("adversaries"),
            config.seed,
        )?;
        let detections = adversaries::detections(&attacks, &run);
        let unexplained = adversaries::unexplained(&attacks, &run);
        let estimates = estimate::federated(
            &world,
            &base,
            &run.accepted_final,
            Some(&national_cells(&world, &run)?),
        )?;
        report.adversaries = Some(AdversaryReport {
            all_detected: detections.iter().all(|d| d.detected),
            detections,
            unexplained,
            accuracy: estimate::by_level("federated", &estimates),
        });
        timings
            .scenarios_s
            .push(("adversaries".into(), t.elapsed().as_secs_f64()));
        progress.tick();
    }

    if config.runs(Scenario::PrivacySweep) {
        let t = Instant::now();
        let all = vec![true; config.structures];
        for (set, plan) in sets.zip(plans.iter().skip(1)) {
            let estimates = estimate::federated(&world, &set, &all, None)?;
            let central = estimate::central(&world, Some(plan))?;
            let mut accuracy = estimate::by_level("federated", &estimates);
            accuracy.extend(estimate::by_level("central_dp", &central));
            let epsilon = match set.mechanism() {
                PrivacyMechanism::DiscreteLaplace => set.params.budget,
                PrivacyMechanism::DiscreteGaussian => (2.0 * set.params.budget).sqrt(),
            };
            report.sweep.push(SweepRow {
                mechanism: mechanism_name(set.mechanism()).into(),
                epsilon,
                budget: set.params.budget,
                accuracy,
            });
        }
        timings
            .scenarios_s
            .push(("privacy-sweep".into(), t.elapsed().as_secs_f64()));
        progress.tick();
    }

    if config.runs(Scenario::Scaling) {
        let t = Instant::now();
        for divisor in [8, 4, 2] {
            let n = config.structures / divisor;
            if n < 20 {
                continue;
            }
            let schedule = Schedule {
                structures: (0..n).collect(),
                late: vec![false; config.structures],
                ..Schedule::default()
            };
            let run = federation::run(
                &world,
                &base,
                &schedule,
                &config.net,
                &links,
                &scratch.join(format!("scaling-{n}")),
                config.seed,
            )?;
            report.scaling.push(run.costs);
        }
        if let Some(c) = baseline_costs {
            report.scaling.push(c);
        }
        timings
            .scenarios_s
            .push(("scaling".into(), t.elapsed().as_secs_f64()));
        progress.tick();
    }
    timings.total_s = started.elapsed().as_secs_f64();
    report.timings = timings;
    Ok(report)
}

/// The national aggregate's cells, checked against the release cell order.
fn cells_of(
    world: &World,
    aggregate: &maillage_protocol::SignedAggregate,
) -> anyhow::Result<Vec<maillage_protocol::aggregate::AggregateCell>> {
    let cells = aggregate.aggregate().cells.clone();
    if cells.is_empty() {
        // Nobody contributed: every total is 0 with no noise.
        return Ok(world
            .cells
            .iter()
            .map(|(i, c)| maillage_protocol::aggregate::AggregateCell {
                indicator: *i,
                category: c.map(str::to_owned),
                sum: 0,
                variance: 0.0,
                ci95_half_width: 0.0,
            })
            .collect());
    }
    anyhow::ensure!(
        cells.len() == world.cells.len()
            && cells
                .iter()
                .zip(&world.cells)
                .all(|(a, (i, c))| a.indicator == *i && a.category.as_deref() == *c),
        "the national aggregate's cells are not the releases' cells"
    );
    Ok(cells)
}

fn national_cells(
    world: &World,
    run: &Run,
) -> anyhow::Result<Vec<maillage_protocol::aggregate::AggregateCell>> {
    cells_of(world, &run.national_final.aggregate)
}

/// Whether every hub aggregate equals the sum of its accepted members' release values, and the
/// national total the sum over all accepted structures.
pub fn totals_match(world: &World, releases: &Releases, run: &Run) -> anyhow::Result<bool> {
    let n = world.cells.len();
    let mut national = vec![0i64; n];
    let mut ok = true;
    for (h, agg) in run.hub_aggregates.iter().enumerate() {
        let mut sums = vec![0i64; n];
        let mut any = false;
        for s in world
            .structures
            .iter()
            .filter(|s| s.hub == h && run.accepted_final[s.index])
        {
            any = true;
            for (sum, value) in sums.iter_mut().zip(&releases.values[s.index]) {
                *sum += value;
            }
        }
        for c in 0..n {
            national[c] += sums[c];
        }
        match agg {
            Some(a) if any => {
                ok &= a
                    .aggregate()
                    .cells
                    .iter()
                    .map(|c| c.sum)
                    .eq(sums.iter().copied())
            }
            Some(a) => ok &= a.aggregate().cells.is_empty(),
            None => ok &= !any,
        }
    }
    let total = national_cells(world, run)?;
    Ok(ok && total.iter().map(|c| c.sum).eq(national.iter().copied()))
}

fn summarize(world: &World) -> DataSummary {
    let mut sizes: Vec<f64> = world.sizes.iter().map(|s| s.0 as f64).collect();
    let q = |v: &mut Vec<f64>, p| quantile(v, p);
    let mut per_hub = vec![0usize; world.france.hubs.len()];
    let mut communes = std::collections::HashSet::new();
    for s in &world.structures {
        per_hub[s.hub] += 1;
        communes.insert(s.commune.as_str());
    }
    DataSummary {
        activities: world.sizes.iter().map(|s| s.0).sum(),
        rows: world.sizes.iter().map(|s| s.1).sum(),
        activities_per_structure: [
            q(&mut sizes, 0.5),
            q(&mut sizes, 0.9),
            q(&mut sizes, 0.99),
            q(&mut sizes, 1.0),
        ],
        structures_per_hub: [
            per_hub.iter().copied().min().unwrap_or(0),
            per_hub.iter().copied().max().unwrap_or(0),
        ],
        communes: world.france.commune_count(),
        communes_with_structures: communes.len(),
    }
}

fn territory_points(
    world: &World,
    federated: &[Territory],
    central: &[Territory],
) -> Vec<TerritoryPoint> {
    let accompagnements: Vec<usize> = world
        .cells
        .iter()
        .enumerate()
        .filter(|(_, (i, _))| i.code() == "accompagnements")
        .map(|(k, _)| k)
        .collect();
    let beneficiaires = world
        .cells
        .iter()
        .position(|(i, _)| i.code() == "beneficiaires");
    federated
        .iter()
        .zip(central)
        .map(|(f, c)| {
            let median = |t: &Territory| {
                let mut rel: Vec<f64> = t
                    .cells
                    .iter()
                    .filter(|e| e.truth > 0.0)
                    .map(|e| (e.value - e.truth).abs() / e.truth)
                    .collect();
                quantile(&mut rel, 0.5)
            };
            let (b_err, b_hw) = match beneficiaires.map(|k| f.cells[k]) {
                Some(e) if e.truth > 0.0 => {
                    ((e.value - e.truth).abs() / e.truth, e.half_width / e.truth)
                }
                _ => (f64::NAN, f64::NAN),
            };
            TerritoryPoint {
                level: f.level.as_str(),
                code: f.code.clone(),
                structures: f.structures.len(),
                accompagnements: accompagnements.iter().map(|&k| f.cells[k].truth).sum(),
                federated: median(f),
                central_dp: median(c),
                beneficiaires_federated: b_err,
                beneficiaires_rel_half_width: b_hw,
            }
        })
        .collect()
}
