//! The simulated data: structures, their exact and bounded figures, and their releases.

use maillage_privacy::bounded::{bounded_values, cell_labels};
use maillage_privacy::exact;
use maillage_privacy::release::{Mechanism as PrivacyMechanism, NoisyRelease, Plan, PrivacyParams};
use maillage_privacy::{Activity, Bounds, IndicatorWeight};
use maillage_protocol::release::{Cell, Mechanism, Release, SignedRelease};
use maillage_protocol::vocab::Vocabulary as _;
use maillage_protocol::{Indicator, Period};

use crate::cpu::{Spent, Timer};
use crate::france::{France, HubLayout, Structure};
use crate::node_adapter;

/// Every released cell, in catalogue order.
pub fn cell_space(which: &[Indicator]) -> Vec<(Indicator, Option<&'static str>)> {
    let mut which = which.to_vec();
    which.sort_by_key(|i| i.index());
    which
        .into_iter()
        .flat_map(|i| cell_labels(i).into_iter().map(move |l| (i, l)))
        .collect()
}

/// The release parameters for a mechanism and a per-period ε. Laplace spends ε; Gaussian
/// spends ρ = ε²/2, the zCDP level that pure ε-DP itself implies (Bun and Steinke 2016), so
/// both rows of a sweep give at least the same zCDP guarantee.
pub fn params(mechanism: PrivacyMechanism, epsilon: f64) -> PrivacyParams {
    PrivacyParams {
        mechanism,
        budget: match mechanism {
            PrivacyMechanism::DiscreteLaplace => epsilon,
            PrivacyMechanism::DiscreteGaussian => epsilon * epsilon / 2.0,
        },
        bounds: Bounds::default(),
        indicators: Indicator::COMMON_CORE
            .iter()
            .map(|&indicator| IndicatorWeight {
                indicator,
                weight: 1.0,
            })
            .collect(),
    }
}

/// The simulated country and its structures' data for one period.
#[derive(Debug)]
pub struct World {
    /// The territory.
    pub france: France,
    /// The structures.
    pub structures: Vec<Structure>,
    /// The period.
    pub period: Period,
    /// The cells of a release.
    pub cells: Vec<(Indicator, Option<&'static str>)>,
    /// Per structure, each cell's exact value.
    pub exact: Vec<Vec<u64>>,
    /// Per structure, each cell's value after contribution bounding.
    pub bounded: Vec<Vec<i64>>,
    /// Per structure, the number of activities and rows.
    pub sizes: Vec<(usize, usize)>,
}

/// One structure's releases under one set of parameters.
#[derive(Debug)]
pub struct Releases {
    /// The parameters.
    pub params: PrivacyParams,
    /// Per structure: the noisy values, in cell order.
    pub values: Vec<Vec<i64>>,
    /// Per cell: the noise scale (the same for every structure).
    pub scales: Vec<f64>,
    /// Per cell: the 95% half-width of one release's cell.
    pub half_widths: Vec<f64>,
    /// Per structure: the signed release's wire bytes (empty when not signed).
    pub bytes: Vec<Vec<u8>>,
    /// Per structure: CPU spent releasing (bounding, noise) and signing.
    pub cpu: Vec<Spent>,
}

impl Releases {
    /// An empty set for `params`.
    pub fn new(params: PrivacyParams, n: usize) -> Releases {
        Releases {
            params,
            values: Vec::with_capacity(n),
            scales: Vec::new(),
            half_widths: Vec::new(),
            bytes: Vec::with_capacity(n),
            cpu: Vec::with_capacity(n),
        }
    }

    /// The privacy crate's mechanism.
    pub fn mechanism(&self) -> PrivacyMechanism {
        self.params.mechanism
    }

    /// Adds one structure's release (structures in order).
    pub fn add(&mut self, one: OneRelease) {
        if self.scales.is_empty() {
            self.scales = one.scales;
            self.half_widths = one.half_widths;
        }
        self.values.push(one.values);
        self.bytes.push(one.bytes);
        self.cpu.push(one.cpu);
    }
}

/// One structure's release under one plan.
#[derive(Debug)]
pub struct OneRelease {
    values: Vec<i64>,
    scales: Vec<f64>,
    half_widths: Vec<f64>,
    bytes: Vec<u8>,
    cpu: Spent,
}

/// Releases one structure's month with `plan`; signs it when `sign`. The CPU time is this
/// thread's.
pub fn release_one(
    plan: &Plan,
    params: &PrivacyParams,
    s: &Structure,
    period: Period,
    activities: &[Activity],
    sign: bool,
) -> anyhow::Result<OneRelease> {
    let timer = Timer::start();
    let noisy = plan.release(period, activities)?;
    let bytes = if sign {
        to_wire(&noisy, params, s, 0).sign(&s.key)?.to_bytes()
    } else {
        Vec::new()
    };
    let cpu = timer.stop();
    Ok(OneRelease {
        values: noisy.cells.iter().map(|c| c.value).collect(),
        scales: noisy.cells.iter().map(|c| c.scale).collect(),
        half_widths: noisy.cells.iter().map(|c| c.ci95_half_width).collect(),
        bytes,
        cpu,
    })
}

/// The wire form of a noisy release, as the node makes it.
pub fn to_wire(noisy: &NoisyRelease, params: &PrivacyParams, s: &Structure, now: u64) -> Release {
    let mechanism = match noisy.mechanism {
        PrivacyMechanism::DiscreteLaplace => Mechanism::Laplace {
            epsilon: noisy.privacy_loss,
        },
        PrivacyMechanism::DiscreteGaussian => Mechanism::Gaussian {
            rho: noisy.privacy_loss,
        },
    };
    Release {
        signer: s.key.verifying_key(),
        period: noisy.period,
        params: node_adapter::params_id(params),
        mechanism,
        created_at: now,
        cells: noisy
            .cells
            .iter()
            .map(|c| Cell {
                indicator: c.indicator,
                category: c.category.map(str::to_owned),
                value: c.value,
                scale: c.scale,
                ci95_half_width: c.ci95_half_width,
            })
            .collect(),
    }
}

/// A signed release of `activities` by `s` under `params` (for attacks and tests).
pub fn signed_release(
    params: &PrivacyParams,
    s: &Structure,
    period: Period,
    activities: &[Activity],
) -> anyhow::Result<SignedRelease> {
    let noisy = params.plan()?.release(period, activities)?;
    Ok(to_wire(&noisy, params, s, 0).sign(&s.key)?)
}

/// What to build.
#[derive(Debug, Clone)]
pub struct WorldOptions {
    /// Number of structures.
    pub structures: usize,
    /// Seed of everything synthetic.
    pub seed: u64,
    /// Hub layout.
    pub layout: HubLayout,
    /// The period.
    pub period: Period,
    /// Median activities per structure and month.
    pub median_activities: f64,
    /// σ of the log-normal size distribution.
    pub size_sigma: f64,
}

impl World {
    /// Places the structures; their data is computed by [`World::compute`].
    pub fn new(o: &WorldOptions) -> World {
        let france = France::new(o.layout);
        let structures = france.place(o.structures, o.seed, o.median_activities, o.size_sigma);
        World {
            france,
            structures,
            period: o.period,
            cells: cell_space(Indicator::COMMON_CORE),
            exact: Vec::new(),
            bounded: Vec::new(),
            sizes: Vec::new(),
        }
    }

    /// Generates each structure's month (in memory), its exact and bounded figures and its
    /// releases under each plan (`sets[k]` with `plans[k]`; signed when `sign[k]`), on up to
    /// `threads` threads; results are stored in structure order whatever the threads.
    pub fn compute(
        &mut self,
        plans: &[Plan],
        sets: &mut [Releases],
        sign: &[bool],
        threads: usize,
        mut progress: impl FnMut(u64),
    ) -> anyhow::Result<()> {
        const CHUNK: usize = 64;
        let threads = threads.max(1);
        let params: Vec<PrivacyParams> = sets.iter().map(|s| s.params.clone()).collect();
        let (period, cells) = (self.period, &self.cells);
        let one = |s: &Structure| -> anyhow::Result<PerStructure> {
            let activities = crate::activities::month(s, period);
            let rows = activities.iter().map(|a| a.participants.len()).sum();
            let ex = exact::compute(period, &activities, Indicator::COMMON_CORE);
            let exact_cells = cells
                .iter()
                .map(|(i, c)| ex.get(*i).and_then(|v| v.get(*c)).unwrap_or(0))
                .collect();
            let bounded = bounded_values(
                period,
                &activities,
                &Bounds::default(),
                Indicator::COMMON_CORE,
            );
            let bounded_cells = cells
                .iter()
                .map(|(i, c)| {
                    bounded
                        .iter()
                        .find(|b| b.indicator == *i)
                        .and_then(|b| b.cells.iter().find(|x| x.0 == *c))
                        .map(|x| x.1)
                        .unwrap_or(0)
                })
                .collect();
            let releases = plans
                .iter()
                .zip(&params)
                .zip(sign)
                .map(|((plan, p), &sign)| release_one(plan, p, s, period, &activities, sign))
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok(PerStructure {
                size: (activities.len(), rows),
                exact: exact_cells,
                bounded: bounded_cells,
                releases,
            })
        };
        for chunk in self.structures.chunks(CHUNK * threads) {
            let parts: Vec<&[Structure]> = chunk.chunks(CHUNK).collect();
            let results: Vec<anyhow::Result<Vec<PerStructure>>> = std::thread::scope(|scope| {
                let handles: Vec<_> = parts
                    .iter()
                    .map(|part| scope.spawn(|| part.iter().map(one).collect()))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err(anyhow::anyhow!("a release thread panicked")))
                    })
                    .collect()
            });
            for part in results {
                for p in part? {
                    self.sizes.push(p.size);
                    self.exact.push(p.exact);
                    self.bounded.push(p.bounded);
                    for (set, r) in sets.iter_mut().zip(p.releases) {
                        set.add(r);
                    }
                }
            }
            progress(chunk.len() as u64);
        }
        Ok(())
    }
}

/// What one structure yields.
struct PerStructure {
    size: (usize, usize),
    exact: Vec<u64>,
    bounded: Vec<i64>,
    releases: Vec<OneRelease>,
}
