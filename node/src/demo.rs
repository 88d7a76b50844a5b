//! `maillage demo`: the whole federation on one machine, as real libp2p peers on loopback.
//!
//! In temporary directories (or under `--out`), it creates a national node, H hubs named after
//! real régions and N structures placed in real communes of those régions, with synthetic
//! activity data of heavy-tailed sizes. Every structure imports its data and stores its signed,
//! noisy release of one month; then every node runs its real daemon ([`crate::net::run`]) in one
//! process: structures deliver their releases to their hub through the outbox, hubs sign their
//! aggregates and deliver them to the national node, which signs the national aggregate. A
//! committee peer then queries the national node over the network (national totals and totals
//! by région), the national audit bundle is exported and audited offline, and the idle memory
//! of a structure daemon is measured in a child process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use libp2p::futures::StreamExt;
use libp2p::futures::stream::FuturesUnordered;
use maillage_privacy::IndicatorValue;
use maillage_protocol::network::{NetworkConfig, Request, Response, Totals};
use maillage_protocol::vocab::Vocabulary as _;
use maillage_protocol::{Cog, Indicator, Period, SignedAggregate};
use serde::Serialize;
use tokio::sync::{oneshot, watch};

use crate::config::Role;
use crate::hub::Hub;
use crate::members::{Member, Members};
use crate::net::{DaemonHandle, Ready, ServeOptions};
use crate::node::{InitOptions, Node};
use crate::synth::{self, SynthOptions};

/// Régions the demo's hubs are named after, in the order they are used.
const REGIONS: &[&str] = &[
    "84", "53", "76", "32", "75", "44", "11", "93", "28", "52", "24", "27", "94", "01", "02", "03",
    "04", "06",
];

/// The most hubs a demo can have (one per région).
pub const MAX_HUBS: u32 = REGIONS.len() as u32;

/// What the demo is asked to do.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Structures.
    pub structures: u32,
    /// Hubs (1 to [`MAX_HUBS`]).
    pub hubs: u32,
    /// Seed of the synthetic data.
    pub seed: u64,
    /// Keep the nodes and the bundle here.
    pub out: Option<PathBuf>,
    /// The `maillage` program, to measure an idle structure daemon's memory (skipped if `None`).
    pub program: Option<PathBuf>,
}

/// One national total, with the truth the demo knows because it generated the data.
#[derive(Debug, Clone, Serialize)]
pub struct DemoTotal {
    /// Indicator code.
    pub indicator: String,
    /// Category, or `None` for a single count.
    pub category: Option<String>,
    /// The published estimate.
    pub estimate: i64,
    /// Its 95% interval.
    pub ci95: [f64; 2],
    /// The exact total over every structure's records.
    pub truth: u64,
}

/// Totals of one territory, as queried over the network.
#[derive(Debug, Clone, Serialize)]
pub struct DemoTerritory {
    /// Territory code and name.
    pub territory: String,
    /// Category of the indicator.
    pub category: Option<String>,
    /// The estimate.
    pub estimate: f64,
    /// Its 95% interval.
    pub ci95: [f64; 2],
    /// The exact total.
    pub truth: u64,
    /// Contributors over members.
    pub coverage: String,
}

/// What the demo measured.
#[derive(Debug, Clone, Serialize)]
pub struct DemoMetrics {
    /// From the daemons' start (releases already stored) to the national aggregate, in ms.
    pub release_to_national_total_ms: u64,
    /// Request bytes each structure sent for the period (its release), mean and max.
    pub bytes_sent_per_structure_mean: u64,
    /// The largest.
    pub bytes_sent_per_structure_max: u64,
    /// Resident memory of an idle structure daemon (`maillage serve`), in KiB.
    pub idle_structure_daemon_rss_kib: Option<u64>,
    /// Wall time of the whole demo, in ms.
    pub total_ms: u64,
}

/// The demo's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    /// Structures.
    pub structures: u32,
    /// Hubs.
    pub hubs: u32,
    /// The month released.
    pub period: String,
    /// The adopted policy every release follows (its hash), adopted by 2 of the 3 committee keys.
    pub policy: String,
    /// Structures whose release reached the national total, over all structures.
    pub coverage: Coverage,
    /// National totals.
    pub totals: Vec<DemoTotal>,
    /// Activities by région (each hub's totals), queried over the network.
    pub by_region: Vec<DemoTerritory>,
    /// The offline audit of the national bundle.
    pub audit: DemoAudit,
    /// Measurements.
    pub metrics: DemoMetrics,
    /// Where the nodes and bundle are, if kept.
    pub out: Option<String>,
}

/// Coverage of the national total.
#[derive(Debug, Clone, Serialize)]
pub struct Coverage {
    /// Hubs whose aggregate is in the national total.
    pub hubs_contributed: usize,
    /// Structures whose release is in the national total.
    pub structures_contributed: usize,
    /// Structures in the demo.
    pub structures: usize,
}

/// The audit verdict.
#[derive(Debug, Clone, Serialize)]
pub struct DemoAudit {
    /// Whether every check held.
    pub ok: bool,
    /// Releases verified.
    pub releases_verified: u64,
    /// Findings.
    pub findings: usize,
    /// The first finding, if any.
    pub first_finding: Option<String>,
}

/// Adopts the demo's genesis policy (committee of 3, quorum 2: two of them sign) and gives the
/// document and its adoption to every node.
fn adopt_policy(
    national: &Node,
    committee: &Node,
    hubs: &[Node],
    structures: &[(u32, usize, String, Node)],
) -> Result<String> {
    use maillage_policy as mp;
    let mut policy = mp::Policy::default();
    let members: Vec<crate::Identity> = (0..3)
        .map(|_| crate::Identity::generate())
        .collect::<Result<_, _>>()?;
    policy.committee.quorum = 2;
    for (k, m) in members.iter().enumerate() {
        policy.committee.members.insert(
            mp::PublicKey::from(m.public()),
            mp::CommitteeMember {
                name: format!("Comité de pilotage, membre {}", k + 1),
            },
        );
    }
    let member = |node: &Node, role: mp::Role, hub: Option<&Node>| mp::Member {
        name: node.config.node.name.clone(),
        role,
        pivot: None,
        hub: hub.map(|h| mp::PublicKey::from(h.identity.public())),
        commune: node.config.node.code_insee.clone(),
        place_id: None,
    };
    policy.members.insert(
        mp::PublicKey::from(national.identity.public()),
        member(national, mp::Role::National, None),
    );
    policy.members.insert(
        mp::PublicKey::from(committee.identity.public()),
        member(committee, mp::Role::Auditor, None),
    );
    for hub in hubs {
        policy.members.insert(
            mp::PublicKey::from(hub.identity.public()),
            member(hub, mp::Role::Hub, None),
        );
    }
    for (_, h, _, node) in structures {
        policy.members.insert(
            mp::PublicKey::from(node.identity.public()),
            member(node, mp::Role::Structure, hubs.get(*h)),
        );
    }
    let doc = mp::PolicyDoc::genesis(&policy).map_err(|e| anyhow!("the demo's policy: {e}"))?;
    let mut chain = mp::AdoptionChain::new();
    let mut ballot = chain
        .ballot(&policy)
        .map_err(|e| anyhow!("the demo's policy: {e}"))?;
    let target = *ballot.target();
    for m in members.iter().take(2) {
        ballot
            .add(&mp::sign_adoption(m.signing_key(), target))
            .map_err(|e| anyhow!("a committee signature: {e}"))?;
    }
    let record = ballot
        .into_record(doc.heads())
        .map_err(|e| anyhow!("the adoption: {e}"))?;
    let hash = chain
        .append(record, policy)
        .map_err(|e| anyhow!("the adoption: {e}"))?
        .hash()
        .to_string();
    let dirs = std::iter::once(national.dir())
        .chain(std::iter::once(committee.dir()))
        .chain(hubs.iter().map(|h| h.dir()))
        .chain(structures.iter().map(|(_, _, _, n)| n.dir()));
    for dir in dirs {
        let files = crate::policy::PolicyFiles::of_node(dir);
        files.save_document(&doc)?;
        files.save_chain(&chain)?;
    }
    Ok(hash)
}

struct Site {
    node: Node,
    region: usize,
}

fn region_communes(region: &str) -> Vec<&'static str> {
    let cog = Cog::get();
    cog.current_commune_codes()
        .filter(|code| {
            cog.commune(code)
                .map(|c| c.region == region)
                .unwrap_or(false)
        })
        .collect()
}

fn new_root(out: &Option<PathBuf>) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    match out {
        Some(dir) => {
            if dir.exists()
                && std::fs::read_dir(dir)
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(true)
            {
                bail!(
                    "{} exists and is not empty; give --out a new directory",
                    dir.display()
                );
            }
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            Ok((dir.clone(), None))
        }
        None => {
            let tmp = tempfile::tempdir().context("creating a temporary directory")?;
            Ok((tmp.path().to_path_buf(), Some(tmp)))
        }
    }
}

fn unix_now() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
}

/// Runs the demo.
pub fn run(options: &DemoOptions) -> Result<DemoReport> {
    let started = Instant::now();
    if !(1..=MAX_HUBS).contains(&options.hubs) {
        bail!("--hubs {}: expected 1 to {MAX_HUBS}", options.hubs);
    }
    let (root, _guard) = new_root(&options.out)?;
    let nodes_dir = root.join("nodes");
    let period = Period::of_date(time::OffsetDateTime::now_utc().date())
        .previous()
        .previous();
    let now = unix_now();
    let today = time::OffsetDateTime::now_utc().date();
    let cog = Cog::get();

    let national = Node::init(
        &nodes_dir.join("national"),
        InitOptions {
            role: Role::National,
            name: "Comité national de pilotage".into(),
            code_insee: Some("75056".into()),
            pivot: None,
        },
    )?;
    let committee = Node::init(
        &nodes_dir.join("committee"),
        InitOptions {
            role: Role::Auditor,
            name: "Poste du comité".into(),
            code_insee: None,
            pivot: None,
        },
    )?;
    let mut national_members = Members::load(national.dir())?;
    national_members.add(Member {
        key: committee.identity.public_hex(),
        name: committee.config.node.name.clone(),
        role: Role::Auditor,
        code_insee: None,
    })?;
    let mut hubs = Vec::new();
    let mut hub_communes = Vec::new();
    for (h, region) in REGIONS.iter().take(options.hubs as usize).enumerate() {
        let name = cog
            .region(region)
            .map(|r| r.name.clone())
            .unwrap_or_else(|_| region.to_string());
        let communes = region_communes(region);
        let seat = communes
            .first()
            .copied()
            .ok_or_else(|| anyhow!("no commune in région {region}"))?;
        let node = Node::init(
            &nodes_dir.join(format!("hub-{h:02}")),
            InitOptions {
                role: Role::Hub,
                name: format!("Hub {name}"),
                code_insee: Some(seat.into()),
                pivot: None,
            },
        )?;
        national_members.add(Member {
            key: node.identity.public_hex(),
            name: node.config.node.name.clone(),
            role: Role::Hub,
            code_insee: Some(seat.into()),
        })?;
        hubs.push(node);
        hub_communes.push(communes);
    }

    // Structures: data, import, and the stored release (spent budget) before any network.
    let mut sites = Vec::new();
    let mut truth: BTreeMap<(usize, Option<String>), u64> = BTreeMap::new();
    let mut truth_by_region: BTreeMap<(usize, Option<String>), u64> = BTreeMap::new();
    let mut hub_members: Vec<Members> = hubs
        .iter()
        .map(|h| Members::load(h.dir()))
        .collect::<Result<_, _>>()?;
    let mut created = Vec::new();
    for i in 0..options.structures {
        let h = (i % options.hubs) as usize;
        let communes = &hub_communes[h];
        let pick = (options.seed.wrapping_mul(2_654_435_761) ^ u64::from(i).wrapping_mul(40_503))
            as usize
            % communes.len().max(1);
        let commune = communes[pick].to_owned();
        let dir = nodes_dir.join(format!("structure-{i:03}"));
        let node = Node::init(
            &dir,
            InitOptions {
                role: Role::Structure,
                name: format!("Structure {i:03}"),
                code_insee: Some(commune.clone()),
                pivot: None,
            },
        )?;
        created.push((i, h, commune, node));
    }
    // The sector's policy: a steering committee of 3 with quorum 2 adopts the genesis version
    // (the default catalogue and privacy parameters, and the registry of every node); every
    // node holds the document and the adoption, releases under it and names its hash, and hubs
    // refuse releases under any other policy.
    let policy_hash = adopt_policy(&national, &committee, &hubs, &created)?;
    for (i, h, commune, node) in created {
        // Heavy-tailed sizes: most structures small, a few large.
        let rank = (u64::from(i) * 7919 + options.seed) % 97;
        let size = 10 + (2_000.0 / (1.0 + rank as f64)) as u32;
        let csv = root.join(format!("structure-{i:03}.csv"));
        let synth_options = SynthOptions {
            seed: options.seed.wrapping_mul(1_000).wrapping_add(u64::from(i)),
            first: period,
            months: 1,
            activities_per_month: size,
            commune: commune.clone(),
            id_prefix: format!("s{i}"),
        };
        let file =
            std::fs::File::create(&csv).with_context(|| format!("creating {}", csv.display()))?;
        synth::generate(&synth_options, std::io::BufWriter::new(file))?;
        node.import_file(&csv, &mut ())?;
        for (indicator, value) in node.indicators(period, Indicator::COMMON_CORE)?.values {
            match value {
                IndicatorValue::Scalar(v) => {
                    *truth.entry((indicator.index(), None)).or_default() += v;
                }
                IndicatorValue::Categories(cells) => {
                    for (c, v) in cells {
                        *truth
                            .entry((indicator.index(), Some(c.to_owned())))
                            .or_default() += v;
                        if indicator == Indicator::Activites {
                            *truth_by_region.entry((h, Some(c.to_owned()))).or_default() += v;
                        }
                    }
                }
            }
        }
        crate::release::release_period(&node, period, false, today, now)?;
        hub_members[h].add(Member {
            key: node.identity.public_hex(),
            name: node.config.node.name.clone(),
            role: Role::Structure,
            code_insee: Some(commune.clone()),
        })?;
        sites.push(Site { node, region: h });
    }
    drop(hub_members);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let federation =
        runtime.block_on(run_federation(&national, &committee, &hubs, &sites, period))?;

    // The national bundle, audited offline. It carries the chain to every release: each
    // hub's bundle of the period, as an auditor gathers them (the national node keeps them
    // under their aggregate's id).
    let bundle = root.join("bundle");
    {
        let national_state = Hub::open(&national)?;
        for (h, hub) in hubs.iter().enumerate() {
            let hub_state = Hub::open(hub)?;
            let aggregate = hub_state
                .latest_aggregate(period)?
                .ok_or_else(|| anyhow!("hub {h} has no aggregate of {period}"))?;
            let dir = root.join("hub-bundles").join(format!("hub-{h:02}"));
            std::fs::create_dir_all(root.join("hub-bundles"))
                .with_context(|| format!("creating {}", root.join("hub-bundles").display()))?;
            crate::bundle::export(
                &hub_state,
                period,
                Some(aggregate.to_json_pretty()),
                &dir,
                unix_now(),
            )?;
            crate::bundle::keep_hub_bundle(&national_state, &aggregate, &dir)?;
        }
        drop(national_state);
        let hub_state = Hub::open(&national)?;
        crate::bundle::export(
            &hub_state,
            period,
            Some(federation.national.to_json_pretty()),
            &bundle,
            unix_now(),
        )?;
    }
    let report = crate::audit::audit(&bundle);

    // The idle daemon runs in its own process on the first structure's directory, whose store
    // this process must release first.
    let structure_count = sites.len();
    let first_dir = sites.first().map(|s| s.node.dir().to_path_buf());
    drop(sites);
    let idle_rss = match (&options.program, first_dir) {
        (Some(program), Some(dir)) => idle_daemon_rss(program, &dir).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "idle daemon memory not measured");
            None
        }),
        _ => None,
    };

    let a = federation.national.aggregate();
    let mut totals = Vec::new();
    for t in &federation.national_totals {
        let indicator = Indicator::from_code(&t.indicator)
            .ok_or_else(|| anyhow!("the national node answered for {:?}", t.indicator))?;
        for row in &t.rows {
            totals.push(DemoTotal {
                indicator: t.indicator.clone(),
                category: row.category.clone(),
                estimate: row.estimate.round() as i64,
                ci95: [row.ci95_low, row.ci95_high],
                truth: truth
                    .get(&(indicator.index(), row.category.clone()))
                    .copied()
                    .unwrap_or(0),
            });
        }
    }
    let by_region = federation
        .by_region
        .iter()
        .flat_map(|t| t.rows.iter())
        .map(|row| {
            let h = REGIONS
                .iter()
                .position(|r| row.territory.split(' ').next() == Some(*r));
            DemoTerritory {
                territory: row.territory.clone(),
                category: row.category.clone(),
                estimate: row.estimate,
                ci95: [row.ci95_low, row.ci95_high],
                truth: h
                    .and_then(|h| truth_by_region.get(&(h, row.category.clone())))
                    .copied()
                    .unwrap_or(0),
                coverage: format!("{}/{}", row.contributors, row.members),
            }
        })
        .collect();
    let bytes: Vec<u64> = federation.bytes_per_structure.clone();
    Ok(DemoReport {
        structures: options.structures,
        hubs: options.hubs,
        period: period.to_string(),
        policy: policy_hash,
        coverage: Coverage {
            hubs_contributed: a.contributed.len(),
            structures_contributed: federation.structures_contributed,
            structures: structure_count,
        },
        totals,
        by_region,
        audit: DemoAudit {
            ok: report.ok,
            releases_verified: report.releases_verified,
            findings: report.findings.len(),
            first_finding: report.findings.first().map(|f| f.what.clone()),
        },
        metrics: DemoMetrics {
            release_to_national_total_ms: federation.elapsed.as_millis() as u64,
            bytes_sent_per_structure_mean: bytes.iter().sum::<u64>() / bytes.len().max(1) as u64,
            bytes_sent_per_structure_max: bytes.iter().copied().max().unwrap_or(0),
            idle_structure_daemon_rss_kib: idle_rss,
            total_ms: started.elapsed().as_millis() as u64,
        },
        out: options.out.as_ref().map(|_| root.display().to_string()),
    })
}

struct Federation {
    national: SignedAggregate,
    national_totals: Vec<Totals>,
    by_region: Vec<Totals>,
    elapsed: Duration,
    bytes_per_structure: Vec<u64>,
    structures_contributed: usize,
}

fn local_options(peers: Vec<libp2p::Multiaddr>, listen: bool) -> ServeOptions {
    ServeOptions {
        listen: if listen {
            "/ip4/127.0.0.1/tcp/0"
                .parse()
                .map(|a| vec![a])
                .unwrap_or_default()
        } else {
            Vec::new()
        },
        peers,
        http: None,
        deadline_day: 28,
        // The demo's structures release when it says so.
        release_day: 0,
        network: NetworkConfig::default(),
        tick: Duration::from_millis(200),
    }
}

/// Polls `check` every 50 ms until it holds, for at most `limit`.
async fn until<F, Fut>(limit: Duration, what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what}: not done within {} s", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run_federation(
    national: &Node,
    committee: &Node,
    hubs: &[Node],
    sites: &[Site],
    period: Period,
) -> Result<Federation> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let daemons = FuturesUnordered::new();
    // Each daemon waits for its options (its upstream's address is known only once that one
    // listens), then runs until the stop signal.
    let mut launchers: Vec<(
        oneshot::Sender<ServeOptions>,
        DaemonHandle,
        oneshot::Receiver<Ready>,
    )> = Vec::new();
    let all: Vec<&Node> = std::iter::once(national)
        .chain(hubs.iter())
        .chain(sites.iter().map(|s| &s.node))
        .collect();
    for node in &all {
        let (options_tx, options_rx) = oneshot::channel::<ServeOptions>();
        let (ready_tx, ready_rx) = oneshot::channel::<Ready>();
        let (handle, control) = crate::net::channel();
        let mut stop = stop_rx.clone();
        let node: &Node = node;
        daemons.push(async move {
            let Ok(options) = options_rx.await else {
                return Ok(());
            };
            crate::net::run(node, options, control, Some(ready_tx), async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
            .with_context(|| format!("the daemon of {}", node.dir().display()))
        });
        launchers.push((options_tx, handle, ready_rx));
    }
    let orchestration = async {
        let mut launchers = launchers.into_iter();
        let mut next = || launchers.next().ok_or_else(|| anyhow!("missing daemon"));
        let started = Instant::now();
        let (tx, national_handle, ready) = next()?;
        let _ = tx.send(local_options(Vec::new(), true));
        let national_addr = first_address(ready.await?)?;
        let mut hub_handles = Vec::new();
        let mut hub_addrs = Vec::new();
        for _ in hubs {
            let (tx, handle, ready) = next()?;
            let _ = tx.send(local_options(vec![national_addr.clone()], true));
            hub_addrs.push(first_address(ready.await?)?);
            hub_handles.push(handle);
        }
        let mut structure_handles = Vec::new();
        for site in sites {
            let (tx, handle, _ready) = next()?;
            let _ = tx.send(local_options(vec![hub_addrs[site.region].clone()], false));
            structure_handles.push(handle);
        }
        // Releases reach the hubs through the structures' outboxes.
        for (h, handle) in hub_handles.iter().enumerate() {
            let expected = sites.iter().filter(|s| s.region == h).count() as u64;
            until(
                Duration::from_secs(60),
                "structures delivering to their hub",
                || async { Ok(handle.status().await?.log_size == Some(expected)) },
            )
            .await?;
        }
        let mut structures_contributed = 0;
        for handle in &hub_handles {
            let bytes = handle
                .aggregate(period)
                .await?
                .map_err(|e| anyhow!("a hub's aggregate: {e}"))?;
            structures_contributed += SignedAggregate::decode_and_verify(&bytes)
                .map_err(|e| anyhow!("a hub's aggregate: {e}"))?
                .aggregate()
                .contributions
                .len();
        }
        let hub_count = hubs.len() as u64;
        until(
            Duration::from_secs(60),
            "hubs delivering to the national node",
            || async { Ok(national_handle.status().await?.log_size == Some(hub_count)) },
        )
        .await?;
        let national_bytes = national_handle
            .aggregate(period)
            .await?
            .map_err(|e| anyhow!("the national aggregate: {e}"))?;
        let elapsed = started.elapsed();
        let national = SignedAggregate::decode_and_verify(&national_bytes)
            .map_err(|e| anyhow!("the national aggregate: {e}"))?;
        let mut bytes_per_structure = Vec::new();
        for handle in &structure_handles {
            let metrics = handle.metrics().await?;
            bytes_per_structure.push(metric_value(&metrics, "maillage_request_bytes_sent_total"));
        }
        // The committee asks the national node over the network for national totals, and
        // for activities by région (the national node relays that to its hubs).
        let mut requests: Vec<Request> = Indicator::COMMON_CORE
            .iter()
            .map(|i| Request::Query {
                indicator: i.code().into(),
                period: period.to_string(),
                by: None,
            })
            .collect();
        requests.push(Request::Query {
            indicator: Indicator::Activites.code().into(),
            period: period.to_string(),
            by: Some("region".into()),
        });
        let mut answers = crate::net::ask(
            &committee.identity,
            &national_addr,
            requests,
            Duration::from_secs(30),
        )
        .await?
        .into_iter()
        .map(|r| totals_of(r, "the national node"))
        .collect::<Result<Vec<_>>>()?;
        let by_region = answers.pop().into_iter().collect::<Vec<_>>();
        let national_totals = answers;
        Ok::<_, anyhow::Error>(Federation {
            national,
            national_totals,
            by_region,
            elapsed,
            bytes_per_structure,
            structures_contributed,
        })
    };
    let mut daemons = daemons;
    let result = tokio::select! {
        result = orchestration => result,
        Some(Err(e)) = daemons.next() => Err(e),
    };
    let _ = stop_tx.send(true);
    while let Some(done) = daemons.next().await {
        done?;
    }
    result
}

fn first_address(ready: Ready) -> Result<libp2p::Multiaddr> {
    ready
        .listen
        .first()
        .ok_or_else(|| anyhow!("a daemon listens nowhere"))?
        .parse()
        .map_err(|e| anyhow!("a daemon's address: {e}"))
}

fn metric_value(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}

fn totals_of(response: Response, asked: &str) -> Result<Totals> {
    match response {
        Response::Totals { totals } => Ok(totals),
        Response::Refused { reason } => bail!("{asked} refused the query: {reason}"),
        Response::Error { message } => bail!("{asked} could not answer: {message}"),
        other => bail!("unexpected answer from {asked}: {other:?}"),
    }
}

/// Starts `program serve` on a structure's directory, lets it settle, and reads its resident
/// memory (Linux `/proc`); `None` where `/proc` is missing.
fn idle_daemon_rss(program: &Path, dir: &Path) -> Result<Option<u64>> {
    let mut child = std::process::Command::new(program)
        .args(["serve", "--dir"])
        .arg(dir)
        .args(["--http", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("starting {} serve", program.display()))?;
    std::thread::sleep(Duration::from_secs(2));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()));
    let _ = child.kill();
    let _ = child.wait();
    Ok(status.ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }))
}
