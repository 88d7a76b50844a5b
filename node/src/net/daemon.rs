//! The daemon's event loop: one task owns the swarm and the node's role state; the HTTP API,
//! the demo and the tests talk to it through a [`DaemonHandle`] (a bounded channel of
//! [`Control`] commands, each with a oneshot reply).
//!
//! Every role runs the same loop:
//! - a structure delivers its stored releases to its hub (the outbox), retrying with backoff
//!   until a signed receipt comes back, and keeps the receipts;
//! - a hub accepts its members' releases, signs aggregates on request or at the period's
//!   deadline, and delivers them to the national node the same way;
//! - the national node accepts hub aggregates and answers queries;
//! - hubs publish their checkpoints on gossipsub; every node checks the checkpoints it hears of.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use ed25519_dalek::VerifyingKey;
use libp2p::futures::{FutureExt, StreamExt};
use libp2p::request_response::{self, Message, OutboundRequestId};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub};
use maillage_protocol::network::{
    MaillageBehaviour, MaillageBehaviourEvent, NetworkConfig, RateLimiter, Request, Response,
    build_swarm, checkpoint_topic, keypair_from_ed25519_secret, peer_id_of, policy_topic,
};
use maillage_protocol::{Period, SignedCheckpoint, SignedReceipt, SignedRelease};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::metrics::Metrics;
use super::outbox::{
    Delivery, OUTBOX_TREE, Outbox, PendingView, RECEIPTS_TREE, UPSTREAM_RECEIPTS_TREE,
};
use super::policy_sync::PolicySync;
use crate::config::{Config, NetworkSettingError, Role};
use crate::hub::Hub;
use crate::members::parse_key;
use crate::node::Node;

/// How `maillage serve` runs: the `[network]` section of `maillage.toml` with the command
/// line's overrides.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// libp2p listen addresses.
    pub listen: Vec<Multiaddr>,
    /// The nodes this one reports to (each ends with `/p2p/<peer id>`).
    pub peers: Vec<Multiaddr>,
    /// The HTTP API's address (`None`: off).
    pub http: Option<SocketAddr>,
    /// Day of the month after a period when hubs sign its aggregate.
    pub deadline_day: u8,
    /// Day of the month after a period when a structure releases it (0: never).
    pub release_day: u8,
    /// Bounds and timeouts of the network layer.
    pub network: NetworkConfig,
    /// How often the outbox and the deadline are looked at.
    pub tick: Duration,
}

impl ServeOptions {
    /// The options `maillage.toml` gives.
    pub fn from_config(config: &Config) -> Result<Self, NetworkSettingError> {
        let n = &config.network;
        n.validate(config.node.role)?;
        Ok(Self {
            listen: n.listen_addresses(config.node.role)?,
            peers: n.peer_addresses()?,
            http: n.http_address()?,
            deadline_day: n.deadline_day,
            release_day: n.release_day,
            network: NetworkConfig::default(),
            tick: Duration::from_secs(1),
        })
    }
}

/// What the daemon reports once it listens.
#[derive(Debug, Clone, Serialize)]
pub struct Ready {
    /// The node's libp2p peer id.
    pub peer_id: String,
    /// Every listening address, ending with `/p2p/<peer id>`.
    pub listen: Vec<String>,
    /// The HTTP API's address, if on.
    pub http: Option<SocketAddr>,
}

/// The daemon's state, as `GET /status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// The node's role.
    pub role: Role,
    /// The organisation's name.
    pub name: String,
    /// The node's public key, hex.
    pub key: String,
    /// Its libp2p peer id.
    pub peer_id: String,
    /// Listening addresses.
    pub listen: Vec<String>,
    /// Connected peers.
    pub connected_peers: usize,
    /// The nodes this one reports to.
    pub upstream: Vec<String>,
    /// Deliveries waiting for a receipt.
    pub outbox: Vec<PendingView>,
    /// Periods delivered and acknowledged.
    pub delivered: Vec<String>,
    /// Leaves of the contribution log (hubs and national nodes).
    pub log_size: Option<u64>,
    /// Members admitted (hubs and national nodes).
    pub members: Option<usize>,
}

/// A command for the event loop.
#[derive(Debug)]
#[non_exhaustive]
pub enum Control {
    /// The daemon's state.
    Status(oneshot::Sender<StatusReport>),
    /// The node's own exact indicators of a period (stays on the machine).
    Indicators {
        /// The period.
        period: Period,
        /// The indicators as JSON, or why not.
        reply: oneshot::Sender<Result<serde_json::Value, String>>,
    },
    /// Published totals (hubs and national nodes).
    Totals {
        /// Indicator code.
        indicator: String,
        /// `YYYY-MM`.
        period: String,
        /// `region` or `departement`.
        by: Option<String>,
        /// The answer as it would go on the wire.
        reply: oneshot::Sender<Response>,
    },
    /// A structure makes (or finds) its release of a period and queues it for its hub.
    Release {
        /// The period.
        period: Period,
        /// Release the period even if it has not ended.
        force_open: bool,
        /// The release (and whether it was made now), or why not.
        reply: oneshot::Sender<Result<crate::release::Outcome, String>>,
    },
    /// A hub or national node signs its aggregate of a period now (a hub then delivers it
    /// to the national node).
    Aggregate {
        /// The period.
        period: Period,
        /// The signed aggregate's wire bytes, or why not.
        reply: oneshot::Sender<Result<Vec<u8>, String>>,
    },
    /// Imports an activity file received through the HTTP API (`maillage import` while this
    /// daemon holds the store).
    Import {
        /// The file, as received.
        path: std::path::PathBuf,
        /// Its name where it came from (recorded with the import).
        name: String,
        /// The report, as `maillage import --json` prints it ([`crate::node::import_report`]).
        reply: oneshot::Sender<serde_json::Value>,
    },
    /// The Prometheus text exposition.
    Metrics(oneshot::Sender<String>),
    /// Try every pending delivery now, whatever the backoff says.
    DeliverNow,
}

/// Talks to a running daemon.
#[derive(Debug, Clone)]
pub struct DaemonHandle {
    tx: mpsc::Sender<Control>,
}

/// The daemon stopped before answering.
#[derive(Debug, thiserror::Error)]
#[error("the node's daemon has stopped")]
pub struct DaemonGone;

/// A new command channel: the handle, and the receiver to give [`run`].
pub fn channel() -> (DaemonHandle, mpsc::Receiver<Control>) {
    let (tx, rx) = mpsc::channel(32);
    (DaemonHandle { tx }, rx)
}

impl DaemonHandle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Control,
    ) -> Result<T, DaemonGone> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| DaemonGone)?;
        answer.await.map_err(|_| DaemonGone)
    }

    /// The daemon's state.
    pub async fn status(&self) -> Result<StatusReport, DaemonGone> {
        self.ask(Control::Status).await
    }

    /// The node's own exact indicators.
    pub async fn indicators(
        &self,
        period: Period,
    ) -> Result<Result<serde_json::Value, String>, DaemonGone> {
        self.ask(|reply| Control::Indicators { period, reply })
            .await
    }

    /// Published totals.
    pub async fn totals(
        &self,
        indicator: String,
        period: String,
        by: Option<String>,
    ) -> Result<Response, DaemonGone> {
        self.ask(|reply| Control::Totals {
            indicator,
            period,
            by,
            reply,
        })
        .await
    }

    /// Makes and queues a structure's release.
    pub async fn release(
        &self,
        period: Period,
        force_open: bool,
    ) -> Result<Result<crate::release::Outcome, String>, DaemonGone> {
        self.ask(|reply| Control::Release {
            period,
            force_open,
            reply,
        })
        .await
    }

    /// Imports an activity file into the node's store.
    pub async fn import(
        &self,
        path: std::path::PathBuf,
        name: String,
    ) -> Result<serde_json::Value, DaemonGone> {
        self.ask(|reply| Control::Import { path, name, reply })
            .await
    }

    /// Signs a hub's or the national node's aggregate now.
    pub async fn aggregate(&self, period: Period) -> Result<Result<Vec<u8>, String>, DaemonGone> {
        self.ask(|reply| Control::Aggregate { period, reply }).await
    }

    /// The metrics.
    pub async fn metrics(&self) -> Result<String, DaemonGone> {
        self.ask(Control::Metrics).await
    }

    /// Retries every pending delivery now.
    pub async fn deliver_now(&self) -> Result<(), DaemonGone> {
        self.tx
            .send(Control::DeliverNow)
            .await
            .map_err(|_| DaemonGone)
    }
}

fn unix_now() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
}

/// The peer id at the end of an address.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

/// A request sent by the loop, waiting for its response.
#[derive(Debug)]
enum Outgoing {
    Delivery(Delivery, PeerId),
    /// A query relayed to a hub on behalf of a requester (see [`Relay`]).
    Relay(u64),
}

/// A query by territory that the national node relays to its hubs: their breakdowns are
/// gathered, and the requester gets them all in one answer.
struct Relay {
    channel: request_response::ResponseChannel<Response>,
    indicator: String,
    period: String,
    by: Option<String>,
    waiting: usize,
    rows: Vec<maillage_protocol::network::TotalsRow>,
    failures: Vec<String>,
}

/// The ed25519 key inside a peer id, if it carries one.
fn key_of_peer(peer: &PeerId) -> Option<VerifyingKey> {
    let public = libp2p::identity::PublicKey::try_decode_protobuf(peer.as_ref().digest()).ok()?;
    let bytes = public.try_into_ed25519().ok()?.to_bytes();
    VerifyingKey::from_bytes(&bytes).ok()
}

struct Daemon<'a> {
    node: &'a Node,
    role: Role,
    hub: Option<Hub<'a>>,
    swarm: Swarm<MaillageBehaviour>,
    me: PeerId,
    admitted: HashMap<PeerId, (VerifyingKey, Role)>,
    limiter: RateLimiter,
    upstream: Vec<(PeerId, Multiaddr)>,
    outbox: Outbox,
    in_flight: HashMap<OutboundRequestId, Outgoing>,
    listening: Vec<Multiaddr>,
    connected: HashSet<PeerId>,
    /// Checkpoints heard of, by (signer, size): their root, to catch a hub that shows two.
    seen_checkpoints: HashMap<([u8; 32], u64), [u8; 32]>,
    relays: HashMap<u64, Relay>,
    next_relay: u64,
    /// The last checkpoint published, not to publish it twice.
    announced: Option<Vec<u8>>,
    metrics: Metrics,
    deadline_day: u8,
    last_deadline_check: Option<Instant>,
    release_day: u8,
    last_release_check: Option<Instant>,
    /// Contributions logged since the daemon started, looked at for late ones: the log size up
    /// to which they were, and per period the last leaf index of one not yet in an aggregate.
    revision_scan: Option<u64>,
    late: BTreeMap<Period, u64>,
    /// When each period was last revised automatically.
    revised_at: HashMap<Period, Instant>,
    /// The policy document and adoption chain, kept in sync with peers.
    policy: PolicySync,
    last_upstream_dial: Instant,
    /// Members' releases received and checked, waiting to be accepted together with the others
    /// that arrived at the same time ([`Daemon::flush_submissions`]).
    submissions: Vec<Submission>,
}

/// A member's release waiting for its batch.
struct Submission {
    peer: PeerId,
    /// The member's key.
    member: VerifyingKey,
    channel: request_response::ResponseChannel<Response>,
    release: Vec<u8>,
}

/// A period's aggregate is revised automatically for late contributions at most this often.
const REVISION_EVERY: Duration = Duration::from_secs(600);

/// At most this many swarm events are handled before the releases they brought are accepted.
const MAX_BATCH_EVENTS: usize = 4096;

/// Runs the daemon of `node` until `shutdown` completes. Listening addresses are sent on
/// `ready` once every listener is up.
pub async fn run(
    node: &Node,
    options: ServeOptions,
    mut control: mpsc::Receiver<Control>,
    ready: Option<oneshot::Sender<Ready>>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let role = node.config.node.role;
    let hub = match role {
        Role::Hub | Role::National => Some(Hub::open(node)?),
        Role::Structure | Role::Auditor => None,
    };
    let keypair = keypair_from_ed25519_secret(node.identity.signing_key().to_bytes());
    let mut swarm = build_swarm(keypair, &options.network).map_err(|e| anyhow!("network: {e}"))?;
    let mut listeners = HashSet::new();
    for addr in &options.listen {
        let id = swarm
            .listen_on(addr.clone())
            .with_context(|| format!("listening on {addr}"))?;
        listeners.insert(id);
    }
    if let Err(e) = swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&checkpoint_topic())
    {
        tracing::warn!(error = %e, "not subscribed to checkpoint announcements");
    }
    if let Err(e) = swarm.behaviour_mut().gossipsub.subscribe(&policy_topic()) {
        tracing::warn!(error = %e, "not subscribed to policy adoptions");
    }
    let policy = PolicySync::load(node.dir()).context("loading the node's policy")?;
    let mut upstream = Vec::new();
    for addr in &options.peers {
        let peer = peer_of(addr).ok_or_else(|| {
            anyhow!("{addr} does not name a peer: expected an address ending with /p2p/<peer id>")
        })?;
        swarm.add_peer_address(peer, addr.clone());
        upstream.push((peer, addr.clone()));
    }
    let mut admitted = HashMap::new();
    if let Some(hub) = &hub {
        for m in hub.members().iter() {
            if let Ok(key) = parse_key(&m.key) {
                admitted.insert(peer_id_of(&key), (key, m.role));
            }
        }
    }
    // The node this one reports to may ask it for totals (the national node relays queries by
    // territory to its hubs); it submits nothing here.
    for (peer, _) in &upstream {
        if let Some(key) = key_of_peer(peer) {
            admitted.entry(*peer).or_insert((key, Role::National));
        }
    }
    let me = peer_id_of(&node.identity.public());

    // The HTTP API: bound before anything is reported, so that a port in use fails the start.
    let (http_stop, http_stopped) = oneshot::channel::<()>();
    let (handle_tx, handle_rx) = mpsc::channel(32);
    let api_handle = DaemonHandle { tx: handle_tx };
    // The address an earlier run left (it was killed) is not this run's.
    let _ = std::fs::remove_file(node.dir().join(super::http::ADDRESS_FILE));
    let http = match options.http {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the HTTP API to {addr} (set [network] http in maillage.toml, or --http off)"))?;
            let local = listener
                .local_addr()
                .context("reading the HTTP API's address")?;
            let token = super::http::new_token(node.dir()).with_context(|| {
                format!(
                    "writing the HTTP API's token to {}",
                    node.dir().join(super::http::TOKEN_FILE).display()
                )
            })?;
            let app = super::http::router(api_handle.clone(), node.dir().to_path_buf(), token);
            tokio::spawn(async move {
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = http_stopped.await;
                    })
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "the HTTP API stopped");
                }
            });
            tracing::info!(%local, "HTTP API listening");
            // Where `maillage import` finds this daemon while it holds the store.
            if let Err(e) = crate::policy::write_atomically(
                &node.dir().join(super::http::ADDRESS_FILE),
                format!("{local}\n").as_bytes(),
            ) {
                tracing::warn!(error = %e, "the HTTP API's address could not be written for maillage import");
            }
            Some(local)
        }
        None => None,
    };
    drop(api_handle);
    let mut api_control = handle_rx;

    let mut daemon = Daemon {
        node,
        role,
        hub,
        swarm,
        me,
        admitted,
        limiter: RateLimiter::new(options.network.rate_limit),
        upstream,
        outbox: Outbox::default(),
        in_flight: HashMap::new(),
        listening: Vec::new(),
        connected: HashSet::new(),
        seen_checkpoints: HashMap::new(),
        relays: HashMap::new(),
        next_relay: 0,
        announced: None,
        metrics: Metrics::default(),
        deadline_day: options.deadline_day,
        last_deadline_check: None,
        release_day: options.release_day,
        last_release_check: None,
        revision_scan: None,
        late: BTreeMap::new(),
        revised_at: HashMap::new(),
        policy,
        last_upstream_dial: Instant::now(),
        submissions: Vec::new(),
    };
    daemon
        .policy
        .metrics
        .register(daemon.metrics.registry_mut());
    daemon.refresh_admitted();
    // The upstream node is dialled at once: the policy is synced with it even when nothing
    // is to be delivered.
    daemon.dial_upstream();
    if let Some(hub) = &daemon.hub {
        daemon.metrics.log_size.set(hub.log_size() as i64);
    }
    tracing::info!(peer = %me, role = %role, members = daemon.admitted.len(), upstream = daemon.upstream.len(), "serving");

    let mut ready = ready;
    let mut reported = HashSet::new();
    if listeners.is_empty()
        && let Some(tx) = ready.take()
    {
        let _ = tx.send(Ready {
            peer_id: me.to_string(),
            listen: Vec::new(),
            http,
        });
    }
    let mut tick = tokio::time::interval(options.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(command) = control.recv() => daemon.on_control(command),
            Some(command) = api_control.recv() => daemon.on_control(command),
            _ = tick.tick() => daemon.on_tick(),
            event = daemon.swarm.select_next_some() => {
                let mut on_event = |daemon: &mut Daemon<'_>, event: SwarmEvent<_>| {
                    if let SwarmEvent::NewListenAddr { listener_id, address } = &event {
                        let full = address.clone().with(libp2p::multiaddr::Protocol::P2p(me));
                        daemon.listening.push(full);
                        reported.insert(*listener_id);
                        if reported.len() >= listeners.len()
                            && let Some(tx) = ready.take()
                        {
                            let _ = tx.send(Ready {
                                peer_id: me.to_string(),
                                listen: daemon.listening.iter().map(|a| a.to_string()).collect(),
                                http,
                            });
                        }
                    }
                    daemon.on_swarm_event(event);
                };
                on_event(&mut daemon, event);
                // Group commit: the releases that arrived while the previous batch was being
                // made durable are accepted together (one checkpoint, one sync for all).
                let mut handled = 1;
                while !daemon.submissions.is_empty() && handled < MAX_BATCH_EVENTS {
                    match daemon.swarm.select_next_some().now_or_never() {
                        Some(event) => on_event(&mut daemon, event),
                        None => break,
                    }
                    handled += 1;
                }
                daemon.flush_submissions();
            }
        }
    }
    tracing::info!("shutting down");
    let _ = http_stop.send(());
    if http.is_some() {
        let _ = std::fs::remove_file(node.dir().join(super::http::ADDRESS_FILE));
    }
    node.store.flush().context("flushing the store")?;
    Ok(())
}

impl<'a> Daemon<'a> {
    fn on_control(&mut self, command: Control) {
        match command {
            Control::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Control::Indicators { period, reply } => {
                let result = self
                    .node
                    .indicators(period, maillage_protocol::Indicator::COMMON_CORE)
                    .map_err(|e| e.to_string())
                    .and_then(|i| serde_json::to_value(&i).map_err(|e| e.to_string()));
                let _ = reply.send(result);
            }
            Control::Totals {
                indicator,
                period,
                by,
                reply,
            } => {
                let response = match &self.hub {
                    Some(hub) => super::answer::query(hub, &indicator, &period, by),
                    None => Response::Error {
                        message: format!(
                            "a {} has no totals; ask its hub or the national node",
                            self.role
                        ),
                    },
                };
                let _ = reply.send(response);
            }
            Control::Release {
                period,
                force_open,
                reply,
            } => {
                let _ = reply.send(self.release(period, force_open));
                self.on_tick();
            }
            Control::Aggregate { period, reply } => {
                let _ = reply.send(self.aggregate(period));
                self.on_tick();
            }
            Control::Import { path, name, reply } => {
                let result = self.node.import_file_as(&path, &name, &mut ());
                match &result {
                    Ok((summary, _)) => {
                        tracing::info!(file = %name, added = summary.added, replaced = summary.replaced, "import stored (through the HTTP API)")
                    }
                    Err(e) => tracing::warn!(file = %name, error = %e, "import refused"),
                }
                let _ = reply.send(crate::node::import_report(&name, &result));
                // New activities may make last month due for its release.
                self.last_release_check = None;
                self.on_tick();
            }
            Control::Metrics(reply) => {
                let _ = reply.send(self.metrics.encode());
            }
            Control::DeliverNow => {
                for b in self.outbox.state.values_mut() {
                    b.next = None;
                }
                self.on_tick();
            }
        }
    }

    /// Re-reads who is admitted (after an adoption: the registry may have changed).
    fn refresh_admitted(&mut self) {
        if let Some(hub) = self.hub.as_mut() {
            if let Err(e) = hub.reload_policy() {
                tracing::error!(error = %e, "reloading the adopted policy");
            }
            self.admitted.retain(|_, (_, role)| *role == Role::National);
            for m in hub.members().iter() {
                if let Ok(key) = parse_key(&m.key) {
                    self.admitted.insert(peer_id_of(&key), (key, m.role));
                }
            }
        }
        let mut known: HashSet<PeerId> = self.admitted.keys().copied().collect();
        known.extend(self.upstream.iter().map(|(p, _)| *p));
        self.policy.set_known_peers(known);
    }

    /// Dials the upstream nodes this one is not connected to.
    fn dial_upstream(&mut self) {
        self.last_upstream_dial = Instant::now();
        for (peer, addr) in self.upstream.clone() {
            if !self.connected.contains(&peer) {
                self.swarm.add_peer_address(peer, addr.clone());
                if let Err(e) = self.swarm.dial(addr) {
                    tracing::debug!(%peer, error = %e, "dial not started");
                }
            }
        }
    }

    fn status(&self) -> StatusReport {
        let delivered_tree = match self.role {
            Role::Structure => Some(RECEIPTS_TREE),
            Role::Hub => Some(UPSTREAM_RECEIPTS_TREE),
            _ => None,
        };
        let delivered = delivered_tree
            .and_then(|t| self.node.store.tree(t).ok())
            .map(|t| {
                t.iter()
                    .keys()
                    .filter_map(|k| k.ok())
                    .map(|k| String::from_utf8_lossy(&k).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        StatusReport {
            role: self.role,
            name: self.node.config.node.name.clone(),
            key: hex::encode(self.node.identity.public().as_bytes()),
            peer_id: self.me.to_string(),
            listen: self.listening.iter().map(|a| a.to_string()).collect(),
            connected_peers: self.connected.len(),
            upstream: self.upstream.iter().map(|(_, a)| a.to_string()).collect(),
            outbox: self.outbox.view(Instant::now()),
            delivered,
            log_size: self.hub.as_ref().map(|h| h.log_size()),
            members: self.hub.as_ref().map(|h| h.members().iter().count()),
        }
    }

    fn release(
        &mut self,
        period: Period,
        force_open: bool,
    ) -> Result<crate::release::Outcome, String> {
        if self.role != Role::Structure {
            return Err(format!(
                "only a structure releases; this node is a {}",
                self.role
            ));
        }
        let now = time::OffsetDateTime::now_utc();
        crate::release::release_period(
            self.node,
            period,
            force_open,
            now.date(),
            u64::try_from(now.unix_timestamp()).unwrap_or(0),
        )
        .map_err(|e| e.to_string())
    }

    fn aggregate(&mut self, period: Period) -> Result<Vec<u8>, String> {
        let Some(hub) = self.hub.as_mut() else {
            return Err(format!(
                "only hubs and the national node aggregate; this node is a {}",
                self.role
            ));
        };
        let aggregate = hub
            .aggregate(period, unix_now())
            .map_err(|e| e.to_string())?;
        let bytes = aggregate.to_bytes();
        if self.role == Role::Hub {
            // Queued before it is announced: the delivery survives a restart.
            let queued = self
                .node
                .store
                .tree(OUTBOX_TREE)
                .and_then(|t| {
                    super::outbox::queue_aggregate(&t, &aggregate)?;
                    Ok(())
                })
                .and_then(|()| self.node.store.flush());
            if let Err(e) = queued {
                return Err(format!(
                    "the aggregate is signed but could not be queued for the national node: {e}"
                ));
            }
        }
        self.announce_checkpoint();
        Ok(bytes)
    }

    /// Publishes the hub's latest checkpoint on gossipsub.
    fn announce_checkpoint(&mut self) {
        let Some(hub) = &self.hub else { return };
        let latest = match hub.checkpoints() {
            Ok(all) => all.into_iter().last(),
            Err(e) => {
                tracing::warn!(error = %e, "reading checkpoints");
                None
            }
        };
        let Some(bytes) = latest.map(|c| c.to_bytes()) else {
            return;
        };
        if self.announced.as_ref() == Some(&bytes) {
            return;
        }
        self.announced = Some(bytes.clone());
        if let Err(e) = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(checkpoint_topic(), bytes)
        {
            // No subscribed peer yet is normal: the checkpoint is also served on request.
            tracing::debug!(error = %e, "checkpoint not announced");
        }
    }

    /// What the store says is still to deliver.
    fn pending(&self) -> Vec<Delivery> {
        let result: Result<Vec<Delivery>, crate::store::StoreError> = (|| match self.role {
            Role::Structure => {
                let receipts = self.node.store.tree(RECEIPTS_TREE)?;
                let mut pending = Vec::new();
                for (period, _) in self.node.store.ledger()? {
                    if receipts.get(period.as_bytes())?.is_none()
                        && let Ok(p) = period.parse::<Period>()
                    {
                        pending.push(Delivery::Release(p));
                    }
                }
                Ok(pending)
            }
            Role::Hub => {
                let outbox = self.node.store.tree(OUTBOX_TREE)?;
                Ok(super::outbox::queued_periods(&outbox)
                    .into_iter()
                    .map(Delivery::Aggregate)
                    .collect())
            }
            Role::National | Role::Auditor => Ok(Vec::new()),
        })();
        result.unwrap_or_else(|e| {
            tracing::error!(error = %e, "reading the outbox");
            Vec::new()
        })
    }

    fn payload(&self, delivery: Delivery) -> Result<Option<Request>, crate::store::StoreError> {
        Ok(match delivery {
            Delivery::Release(p) => self
                .node
                .store
                .release(p)?
                .map(|release| Request::SubmitRelease { release }),
            Delivery::Aggregate(p) => {
                super::outbox::next_queued(&self.node.store.tree(OUTBOX_TREE)?, p)?.map(|(_, a)| {
                    Request::SubmitAggregate {
                        aggregate: a.to_vec(),
                    }
                })
            }
        })
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        let pending = self.pending();
        self.outbox.sync(&pending);
        self.metrics.outbox.set(pending.len() as i64);
        let busy: HashSet<Delivery> = self
            .in_flight
            .values()
            .filter_map(|o| match o {
                Outgoing::Delivery(d, _) => Some(*d),
                Outgoing::Relay(_) => None,
            })
            .collect();
        let due: Vec<Delivery> = self
            .outbox
            .state
            .iter()
            .filter(|(d, b)| b.due(now) && !busy.contains(d))
            .map(|(d, _)| *d)
            .collect();
        for delivery in due {
            let Some((peer, _)) = self.upstream.first().cloned() else {
                if let Some(b) = self.outbox.state.get_mut(&delivery) {
                    b.failed(
                        now,
                        "no upstream node configured: add its address to [network] peers in maillage.toml, or pass --peer".into(),
                    );
                }
                continue;
            };
            match self.payload(delivery) {
                Ok(Some(request)) => {
                    // Dial explicitly: after failed dials libp2p may hold no usable address for
                    // the peer, and a hub that came back must be reached on its known address.
                    if !self.connected.contains(&peer)
                        && let Some((_, addr)) = self.upstream.iter().find(|(p, _)| *p == peer)
                    {
                        let addr = addr.clone();
                        self.swarm.add_peer_address(peer, addr.clone());
                        if let Err(e) = self.swarm.dial(addr) {
                            tracing::debug!(%peer, error = %e, "dial not started");
                        }
                    }
                    let size = request_size(&request);
                    self.metrics.bytes_sent.inc_by(size);
                    tracing::info!(kind = delivery.kind(), period = %delivery.period(), %peer, bytes = size, "delivering");
                    let id = self
                        .swarm
                        .behaviour_mut()
                        .request_response
                        .send_request(&peer, request);
                    self.in_flight
                        .insert(id, Outgoing::Delivery(delivery, peer));
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "reading a delivery"),
            }
        }
        self.check_deadline(now);
        self.check_revisions(now);
        self.check_release(now);
        self.policy.on_tick(&mut self.swarm);
        if self.policy.take_chain_changed() {
            self.refresh_admitted();
        }
        if now.duration_since(self.last_upstream_dial) >= super::policy_sync::RESYNC_EVERY {
            self.dial_upstream();
        }
    }

    /// Hubs and the national node sign last month's aggregate on its deadline day if nobody
    /// asked before.
    fn check_deadline(&mut self, now: Instant) {
        if self.hub.is_none()
            || self
                .last_deadline_check
                .is_some_and(|t| now.duration_since(t) < Duration::from_secs(60))
        {
            return;
        }
        self.last_deadline_check = Some(now);
        let today = time::OffsetDateTime::now_utc().date();
        let previous = Period::of_date(today).previous();
        if today.day() < self.deadline_day {
            return;
        }
        let exists = self
            .hub
            .as_ref()
            .map(|h| h.latest_aggregate(previous).map(|a| a.is_some()));
        if let Some(Ok(false)) = exists {
            match self.aggregate(previous) {
                Ok(_) => tracing::info!(period = %previous, "deadline reached: aggregate signed"),
                Err(e) => {
                    tracing::error!(period = %previous, error = %e, "deadline aggregate failed")
                }
            }
        }
    }

    /// After a period's deadline, releases of it that arrive late (hub aggregates at the national
    /// node) are taken into a revision of its aggregate without anyone asking, at most one
    /// every [`REVISION_EVERY`] per period; a hub's revision then goes to the national node as
    /// the first aggregate did. Contributions logged while the daemon was stopped are not looked
    /// at (`POST /aggregate` takes them in).
    fn check_revisions(&mut self, now: Instant) {
        let Some(hub) = self.hub.as_ref() else {
            return;
        };
        let size = hub.log_size();
        let mut index = *self.revision_scan.get_or_insert(size);
        while index < size {
            match hub.contribution_period(index) {
                Ok(period) => {
                    self.late.insert(period, index);
                }
                Err(e) => tracing::error!(index, error = %e, "reading a logged contribution"),
            }
            index += 1;
        }
        self.revision_scan = Some(size);
        if self.late.is_empty() {
            return;
        }
        let today = time::OffsetDateTime::now_utc().date();
        let previous = Period::of_date(today).previous();
        let mut due = Vec::new();
        self.late.retain(|period, last| {
            let past_deadline =
                *period < previous || (*period == previous && today.day() >= self.deadline_day);
            if !past_deadline {
                // The deadline aggregate will take it in.
                return false;
            }
            // Revised a moment ago: looked at again once the wait is over (not at every tick:
            // reading an aggregate means decoding it).
            if self
                .revised_at
                .get(period)
                .is_some_and(|t| now.duration_since(*t) < REVISION_EVERY)
            {
                return true;
            }
            match hub.latest_aggregate(*period) {
                // Signed before this contribution: a revision is due.
                Ok(Some(a)) if a.aggregate().checkpoint_size <= *last => {
                    due.push(*period);
                    true
                }
                // Already in it, or not aggregated yet (the deadline check signs it).
                Ok(_) => false,
                Err(e) => {
                    tracing::error!(%period, error = %e, "reading the period's aggregate");
                    false
                }
            }
        });
        for period in due {
            self.revised_at.insert(period, now);
            match self.aggregate(period) {
                Ok(_) => {
                    self.late.remove(&period);
                    tracing::info!(%period, "late contributions: aggregate revised");
                }
                Err(e) => {
                    tracing::error!(%period, error = %e, "late contributions: the revision failed")
                }
            }
        }
    }

    /// A structure makes last month's release on its release day if the month has activities
    /// and was not released yet (by hand or through the HTTP API); the outbox then delivers
    /// it. A month without activities is not released: nothing was imported for it (yet).
    fn check_release(&mut self, now: Instant) {
        if self.role != Role::Structure
            || self.release_day == 0
            || self
                .last_release_check
                .is_some_and(|t| now < t || now.duration_since(t) < Duration::from_secs(60))
        {
            return;
        }
        self.last_release_check = Some(now);
        let today = time::OffsetDateTime::now_utc().date();
        if today.day() < self.release_day {
            return;
        }
        let previous = Period::of_date(today).previous();
        let due = match self.node.stored_release(previous) {
            Ok(Some(_)) => Ok(false),
            Ok(None) => self
                .node
                .store
                .stats()
                .map(|stats| {
                    stats
                        .periods
                        .get(&previous)
                        .is_some_and(|(activities, _)| *activities > 0)
                })
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match due {
            Ok(false) => {}
            Ok(true) => match self.release(previous, false).map(|o| o.release.id()) {
                Ok(id) => {
                    tracing::info!(period = %previous, %id, "release day: the month is released and queued for the hub")
                }
                Err(e) => {
                    tracing::error!(period = %previous, error = %e, "release day: the month could not be released; trying again in an hour");
                    self.last_release_check = now.checked_add(Duration::from_secs(3600));
                }
            },
            Err(e) => {
                tracing::error!(period = %previous, error = %e, "release day: the store could not be read")
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<MaillageBehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(MaillageBehaviourEvent::RequestResponse(event)) => {
                self.on_request_response(event)
            }
            SwarmEvent::Behaviour(MaillageBehaviourEvent::Gossipsub(
                gossipsub::Event::Message {
                    propagation_source,
                    message_id,
                    message,
                },
            )) => {
                let acceptance = if message.topic == policy_topic().hash() {
                    let acceptance =
                        self.policy
                            .on_gossip(&mut self.swarm, propagation_source, &message.data);
                    if self.policy.take_chain_changed() {
                        self.refresh_admitted();
                    }
                    acceptance
                } else {
                    self.check_gossiped_checkpoint(&message.data)
                };
                if acceptance == gossipsub::MessageAcceptance::Reject {
                    self.metrics.gossip_rejected.inc();
                }
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                ..
            } => {
                self.connected.insert(peer_id);
                if num_established.get() == 1 {
                    self.policy.on_connected(&mut self.swarm, peer_id);
                }
                self.metrics.connections.set(self.connected.len() as i64);
                tracing::debug!(peer = %peer_id, "connected");
                // A hub that comes back gets its pending deliveries at once.
                if self.upstream.iter().any(|(p, _)| *p == peer_id) {
                    for b in self.outbox.state.values_mut() {
                        b.next = None;
                    }
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                ..
            } => {
                if num_established == 0 {
                    self.connected.remove(&peer_id);
                    self.policy.on_disconnected(&peer_id);
                    self.metrics.connections.set(self.connected.len() as i64);
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(?peer_id, %error, "outgoing connection failed");
            }
            other => tracing::trace!(?other, "swarm event"),
        }
    }

    /// Checks a gossiped checkpoint: it must verify, and must not contradict a checkpoint of
    /// the same size heard before from the same hub.
    fn check_gossiped_checkpoint(&mut self, data: &[u8]) -> gossipsub::MessageAcceptance {
        let checkpoint = match SignedCheckpoint::decode_and_verify(data) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "gossiped checkpoint rejected");
                return gossipsub::MessageAcceptance::Reject;
            }
        };
        let c = checkpoint.checkpoint();
        let key = (c.signer.to_bytes(), c.tree_size);
        match self.seen_checkpoints.get(&key) {
            Some(root) if *root != c.root => {
                tracing::error!(
                    signer = %hex::encode(c.signer.as_bytes()),
                    size = c.tree_size,
                    "a hub announced two different checkpoints of the same size: its log forked"
                );
                gossipsub::MessageAcceptance::Reject
            }
            _ => {
                self.seen_checkpoints.insert(key, c.root);
                gossipsub::MessageAcceptance::Accept
            }
        }
    }

    /// A release from an admitted structure: refused at once over the rate limit, otherwise
    /// kept for [`Daemon::flush_submissions`].
    fn on_submission(
        &mut self,
        peer: PeerId,
        member: VerifyingKey,
        channel: request_response::ResponseChannel<Response>,
        release: Vec<u8>,
    ) {
        match self.limiter.check(&peer, Instant::now()) {
            Err(limited) => {
                let response = Response::Refused {
                    reason: limited.to_string(),
                };
                self.respond(peer, "submit_release", channel, response);
            }
            Ok(()) => self.submissions.push(Submission {
                peer,
                member,
                channel,
                release,
            }),
        }
    }

    /// Accepts the releases kept by [`Daemon::on_submission`] as one batch, and answers each.
    fn flush_submissions(&mut self) {
        if self.submissions.is_empty() {
            return;
        }
        let submissions = std::mem::take(&mut self.submissions);
        let Some(hub) = self.hub.as_mut() else {
            return;
        };
        let mut waiting = Vec::with_capacity(submissions.len());
        let mut releases = Vec::with_capacity(submissions.len());
        let mut senders = Vec::with_capacity(submissions.len());
        for s in submissions {
            waiting.push((s.peer, s.channel));
            releases.push(s.release);
            senders.push(s.member);
        }
        tracing::debug!(releases = releases.len(), "accepting a batch of releases");
        let responses = super::answer::submit_releases(hub, &releases, &senders);
        self.metrics.ingest_batches.inc();
        self.metrics.log_size.set(hub.log_size() as i64);
        for ((peer, channel), response) in waiting.into_iter().zip(responses) {
            self.respond(peer, "submit_release", channel, response);
        }
    }

    /// Sends a response to a request of `kind`, counting its outcome.
    fn respond(
        &mut self,
        peer: PeerId,
        kind: &'static str,
        channel: request_response::ResponseChannel<Response>,
        response: Response,
    ) {
        let outcome = match &response {
            Response::Refused { .. } => "refused",
            Response::Error { .. } => "error",
            _ => "answered",
        };
        self.metrics.request(kind, outcome);
        if self
            .swarm
            .behaviour_mut()
            .request_response
            .send_response(channel, response)
            .is_err()
        {
            tracing::debug!(%peer, "response not sent: the requester went away");
        }
    }

    fn on_request_response(&mut self, event: request_response::Event<Request, Response>) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let kind = request.kind();
                self.metrics.bytes_received.inc_by(request_size(&request));
                if matches!(
                    request,
                    Request::PolicySync { .. } | Request::FetchAdoptions { .. }
                ) {
                    let response = match self.limiter.check(&peer, Instant::now()) {
                        Err(limited) => Response::Refused {
                            reason: limited.to_string(),
                        },
                        Ok(()) => self
                            .policy
                            .answer(&mut self.swarm, peer, &request)
                            .unwrap_or(Response::Error {
                                message: "not a policy request".into(),
                            }),
                    };
                    if self.policy.take_chain_changed() {
                        self.refresh_admitted();
                    }
                    return self.respond(peer, kind, channel, response);
                }
                let relay = self.role == Role::National
                    && matches!(&request, Request::Query { by: Some(_), .. })
                    && self.admitted.contains_key(&peer)
                    && self.limiter.check(&peer, Instant::now()).is_ok();
                if relay
                    && let Request::Query {
                        indicator,
                        period,
                        by,
                    } = request
                {
                    self.metrics.request(kind, "relayed");
                    return self.start_relay(channel, indicator, period, by);
                }
                // A structure's release at its hub waits for the releases arriving with it.
                let structure = match (&request, self.admitted.get(&peer)) {
                    (Request::SubmitRelease { .. }, Some((key, Role::Structure)))
                        if self.role == Role::Hub =>
                    {
                        Some(*key)
                    }
                    _ => None,
                };
                if let Some(key) = structure
                    && let Request::SubmitRelease { release } = request
                {
                    return self.on_submission(peer, key, channel, release);
                }
                let response = match self.limiter.check(&peer, Instant::now()) {
                    Err(limited) => Response::Refused {
                        reason: limited.to_string(),
                    },
                    Ok(()) => match (self.admitted.get(&peer).copied(), self.hub.as_mut()) {
                        (_, None) => Response::Refused {
                            reason: format!("this node is a {} and serves no requests", self.role),
                        },
                        (None, Some(_)) => {
                            tracing::warn!(%peer, kind, "request from a non-member refused");
                            Response::Refused {
                                reason: format!(
                                    "peer {peer} is not a member of this node; ask its operator to add your key (maillage members add)"
                                ),
                            }
                        }
                        (Some((key, member_role)), Some(hub)) => {
                            super::answer::answer(hub, &key, member_role, request)
                        }
                    },
                };
                if let Some(hub) = &self.hub {
                    self.metrics.log_size.set(hub.log_size() as i64);
                }
                let announce =
                    kind == "submit_aggregate" && matches!(response, Response::Receipt { .. });
                self.respond(peer, kind, channel, response);
                if announce {
                    self.announce_checkpoint();
                }
            }
            request_response::Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => match self.in_flight.remove(&request_id) {
                Some(Outgoing::Delivery(delivery, peer)) => {
                    self.on_delivery_response(delivery, peer, response)
                }
                Some(Outgoing::Relay(id)) => self.relay_answered(id, Ok(response)),
                None => {
                    self.policy
                        .on_response(&mut self.swarm, request_id, Ok(response));
                    if self.policy.take_chain_changed() {
                        self.refresh_admitted();
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => match self.in_flight.remove(&request_id) {
                Some(Outgoing::Delivery(delivery, _)) => self.delivery_failed(
                    delivery,
                    format!("the upstream node did not answer: {error}"),
                ),
                Some(Outgoing::Relay(id)) => {
                    self.relay_answered(id, Err(format!("a hub did not answer: {error}")))
                }
                None => {
                    self.policy.on_response(
                        &mut self.swarm,
                        request_id,
                        Err(format!("no answer: {error}")),
                    );
                }
            },
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::warn!(%peer, %error, "a request could not be read or answered");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Asks every connected hub for its breakdown; answers once all have answered or failed.
    fn start_relay(
        &mut self,
        channel: request_response::ResponseChannel<Response>,
        indicator: String,
        period: String,
        by: Option<String>,
    ) {
        let hubs: Vec<PeerId> = self
            .admitted
            .iter()
            .filter(|(peer, (_, role))| *role == Role::Hub && self.swarm.is_connected(peer))
            .map(|(peer, _)| *peer)
            .collect();
        let id = self.next_relay;
        self.next_relay += 1;
        for hub in &hubs {
            let request = Request::Query {
                indicator: indicator.clone(),
                period: period.clone(),
                by: by.clone(),
            };
            let out = self
                .swarm
                .behaviour_mut()
                .request_response
                .send_request(hub, request);
            self.in_flight.insert(out, Outgoing::Relay(id));
        }
        let relay = Relay {
            channel,
            indicator,
            period,
            by,
            waiting: hubs.len(),
            rows: Vec::new(),
            failures: Vec::new(),
        };
        if hubs.is_empty() {
            let _ = self.swarm.behaviour_mut().request_response.send_response(
                relay.channel,
                Response::Error {
                    message: "no hub is connected to the national node right now; ask again later, or ask a hub directly".into(),
                },
            );
            return;
        }
        self.relays.insert(id, relay);
    }

    fn relay_answered(&mut self, id: u64, answer: Result<Response, String>) {
        let Some(relay) = self.relays.get_mut(&id) else {
            return;
        };
        relay.waiting = relay.waiting.saturating_sub(1);
        match answer {
            Ok(Response::Totals { totals }) => relay.rows.extend(totals.rows),
            Ok(Response::Error { message }) => relay.failures.push(message),
            Ok(Response::Refused { reason }) => relay.failures.push(reason),
            Ok(other) => relay.failures.push(format!("unexpected answer {other:?}")),
            Err(e) => relay.failures.push(e),
        }
        if relay.waiting > 0 {
            return;
        }
        let Some(relay) = self.relays.remove(&id) else {
            return;
        };
        let response = if relay.rows.is_empty() {
            Response::Error {
                message: format!("no hub could answer: {}", relay.failures.join("; ")),
            }
        } else {
            if !relay.failures.is_empty() {
                tracing::warn!(failures = ?relay.failures, "some hubs did not answer a relayed query");
            }
            let mut rows = relay.rows;
            rows.sort_by(|a, b| a.territory.cmp(&b.territory));
            Response::Totals {
                totals: maillage_protocol::network::Totals {
                    indicator: relay.indicator,
                    period: relay.period,
                    by: relay.by,
                    rows,
                },
            }
        };
        let _ = self
            .swarm
            .behaviour_mut()
            .request_response
            .send_response(relay.channel, response);
    }

    fn delivery_failed(&mut self, delivery: Delivery, error: String) {
        tracing::warn!(kind = delivery.kind(), period = %delivery.period(), %error, "delivery failed; will retry");
        self.metrics
            .delivery_failures
            .get_or_create(&super::metrics::DeliveryLabels {
                kind: delivery.kind().into(),
            })
            .inc();
        if let Some(b) = self.outbox.state.get_mut(&delivery) {
            b.failed(Instant::now(), error);
        }
    }

    fn on_delivery_response(&mut self, delivery: Delivery, peer: PeerId, response: Response) {
        let receipt = match response {
            Response::Receipt { receipt } => receipt,
            Response::Refused { reason } => {
                return self.delivery_failed(delivery, format!("refused: {reason}"));
            }
            Response::Error { message } => {
                return self.delivery_failed(delivery, format!("failed upstream: {message}"));
            }
            other => {
                return self.delivery_failed(delivery, format!("unexpected answer {other:?}"));
            }
        };
        match self.check_receipt(delivery, peer, &receipt) {
            Ok(()) => {}
            Err(e) => return self.delivery_failed(delivery, e),
        }
        let stored: Result<(), crate::store::StoreError> = (|| {
            let key = delivery.period().to_string();
            match delivery {
                Delivery::Release(_) => {
                    self.node
                        .store
                        .tree(RECEIPTS_TREE)?
                        .insert(key.as_bytes(), receipt.as_slice())?;
                }
                Delivery::Aggregate(_) => {
                    self.node
                        .store
                        .tree(UPSTREAM_RECEIPTS_TREE)?
                        .insert(key.as_bytes(), receipt.as_slice())?;
                    // The receipt names the oldest queued aggregate of the period (checked
                    // above): that one is delivered.
                    let outbox = self.node.store.tree(OUTBOX_TREE)?;
                    if let Some((queued, _)) =
                        super::outbox::next_queued(&outbox, delivery.period())?
                    {
                        outbox.remove(queued)?;
                    }
                }
            }
            self.node.store.flush()
        })();
        match stored {
            Ok(()) => {
                tracing::info!(kind = delivery.kind(), period = %delivery.period(), %peer, "delivered; receipt stored");
                self.metrics
                    .delivered
                    .get_or_create(&super::metrics::DeliveryLabels {
                        kind: delivery.kind().into(),
                    })
                    .inc();
                self.outbox.state.remove(&delivery);
                self.metrics.outbox.set(self.outbox.state.len() as i64);
            }
            Err(e) => self.delivery_failed(delivery, format!("storing the receipt: {e}")),
        }
    }

    /// A receipt must verify, be signed by the peer it came from, and name what was sent.
    fn check_receipt(&self, delivery: Delivery, peer: PeerId, bytes: &[u8]) -> Result<(), String> {
        let receipt = SignedReceipt::decode_and_verify(bytes)
            .map_err(|e| format!("the receipt does not verify: {e}"))?;
        let r = receipt.receipt();
        if peer_id_of(&r.hub) != peer {
            return Err(format!(
                "the receipt is signed by {} and not by the peer {peer} that sent it",
                hex::encode(r.hub.as_bytes())
            ));
        }
        let expected = match delivery {
            Delivery::Release(p) => self
                .node
                .store
                .release(p)
                .ok()
                .flatten()
                .and_then(|b| SignedRelease::decode(&b).ok())
                .map(|r| r.id()),
            // An aggregate's log id is SHA-256 of its signed message, as a release's is.
            Delivery::Aggregate(p) => self
                .node
                .store
                .tree(OUTBOX_TREE)
                .ok()
                .and_then(|t| super::outbox::next_queued(&t, p).ok().flatten())
                .and_then(|(_, b)| maillage_protocol::SignedAggregate::decode(&b).ok())
                .map(|a| maillage_protocol::ReleaseId::from_bytes(*a.id().as_bytes())),
        };
        if let Some(id) = expected
            && r.release_id != id
        {
            return Err(format!(
                "the receipt names {} instead of {id}",
                r.release_id
            ));
        }
        Ok(())
    }
}

/// The payload size of a request, as counted in the metrics.
fn request_size(request: &Request) -> u64 {
    match request {
        Request::SubmitRelease { release } => release.len() as u64,
        Request::SubmitAggregate { aggregate } => aggregate.len() as u64,
        _ => 64,
    }
}
