//! Policy replication inside the daemon: Automerge sync of the policy document over
//! request-response, and gossip of new adoptions.
//!
//! The daemon holds the node's [`PolicyDoc`] and [`AdoptionChain`] (loaded from `<node>/policy/`
//! at start) and keeps them in step with:
//! - **the files**, which `maillage policy propose|adopt|import` write while the daemon runs:
//!   on every tick a changed document file is *merged* into the daemon's copy (never replaced,
//!   so a proposal written beside a sync loses nothing), and a changed chain file that extends
//!   the daemon's chain is taken, its new adoptions announced on gossip;
//! - **its peers** (members it admits, the node it reports to, and any key of the adopted
//!   registry): on connection, on every change of the document and every
//!   [`RESYNC_EVERY`], the daemon runs a sync session with each connected peer
//!   ([`Request::PolicySync`] rounds, one [`SyncState`] per peer and direction) until neither
//!   side has anything to send, and asks for the adoption records it lacks
//!   ([`Request::FetchAdoptions`]);
//! - **gossip** on [`POLICY_TOPIC`]: a record is accepted (and relayed) only when it is the
//!   next step of the chain, names the current version as previous, and carries a quorum of
//!   valid signatures of the current committee ([`AdoptionChain::check_record`]); anything
//!   else is rejected, logged and counted (`maillage_policy_adoptions_rejected`). A record
//!   whose version the document does not hold yet waits until a sync brings it.
//!
//! Every merged change and every adoption is written to the files at once (atomically, see
//! [`crate::policy::write_atomically`]), so a hub's enforcement — which re-reads the chain
//! when its file changes — follows it, and a node restarted later starts from it. A node that
//! was offline catches up on reconnection. The genesis is never taken from a peer: a node
//! without an adopted policy syncs the document but adopts nothing until its genesis is
//! adopted locally (`maillage policy adopt` or `import`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use libp2p::request_response::OutboundRequestId;
use libp2p::{PeerId, Swarm, gossipsub};
use maillage_policy::{AdoptionChain, AdoptionRecord, PolicyDoc, SyncState};
use maillage_protocol::network::{
    ByteString, MAX_ADOPTIONS_PER_RESPONSE, MAX_POLICY_SYNC_MESSAGE, MaillageBehaviour, Request,
    Response, peer_id_of, policy_topic,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::policy::PolicyFiles;

/// How often a connected peer is synced even when nothing changed here (it may have missed a
/// gossip message, or changed without telling).
pub const RESYNC_EVERY: Duration = Duration::from_secs(10);

/// Rounds of one sync session before it is abandoned (a healthy session takes a handful).
const MAX_ROUNDS: u32 = 64;

use crate::node::{FileStamp as Stamp, file_stamp as stamp};

/// The policy counters on `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct PolicyMetrics {
    /// Adoptions taken from peers (gossip or fetch).
    pub adoptions_received: Counter,
    /// Gossiped or fetched adoption records refused.
    pub adoptions_rejected: Counter,
    /// Sync messages received that changed the document.
    pub sync_changes: Counter,
    /// Sync messages refused (malformed, too large, not admitted).
    pub sync_errors: Counter,
    /// The sequence of the adopted version.
    pub sequence: Gauge,
}

impl PolicyMetrics {
    /// Registers the counters.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "policy_adoptions_received",
            "Policy adoptions taken from peers",
            self.adoptions_received.clone(),
        );
        registry.register(
            "policy_adoptions_rejected",
            "Policy adoption records from peers refused (forged, replayed, out of sequence)",
            self.adoptions_rejected.clone(),
        );
        registry.register(
            "policy_sync_changes",
            "Policy sync messages that brought changes",
            self.sync_changes.clone(),
        );
        registry.register(
            "policy_sync_errors",
            "Policy sync messages refused",
            self.sync_errors.clone(),
        );
        registry.register(
            "policy_sequence",
            "Sequence of the adopted policy version",
            self.sequence.clone(),
        );
    }
}

/// Our side of a sync session we started with one peer.
#[derive(Debug, Default)]
struct Session {
    state: SyncState,
    in_flight: bool,
    /// Something changed while a round was in flight: run another session after it.
    again: bool,
    /// The peer's last answer carried nothing.
    peer_done: bool,
    rounds: u32,
}

#[derive(Debug, Clone, Copy)]
enum Outgoing {
    Sync(PeerId),
    Adoptions(PeerId),
}

/// The policy state of a running daemon; see the module documentation.
pub struct PolicySync {
    files: PolicyFiles,
    doc_path: PathBuf,
    chain_path: PathBuf,
    doc: PolicyDoc,
    chain: AdoptionChain,
    doc_stamp: Stamp,
    chain_stamp: Stamp,
    /// Peers admitted by the daemon (members, the upstream node).
    known: HashSet<PeerId>,
    /// Peers of the adopted registry.
    registry: HashSet<PeerId>,
    /// Connected peers.
    connected: HashSet<PeerId>,
    /// Sessions this node started, by peer.
    sessions: HashMap<PeerId, Session>,
    /// Sessions peers started with this node, by peer.
    serving: HashMap<PeerId, SyncState>,
    in_flight: HashMap<OutboundRequestId, Outgoing>,
    /// Valid records waiting for their version to arrive by sync, by sequence.
    waiting: BTreeMap<u64, AdoptionRecord>,
    last_resync: Instant,
    chain_changed: bool,
    /// The document holds changes the file lacks.
    dirty_doc: bool,
    /// The chain holds adoptions the file lacks.
    dirty_chain: bool,
    /// The files could not be reconciled (lock busy): try again on the next tick.
    recheck: bool,
    /// The counters.
    pub metrics: PolicyMetrics,
}

impl std::fmt::Debug for PolicySync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySync")
            .field("heads", &self.doc.heads().to_hex_list())
            .field("adopted", &self.chain.entries().len())
            .finish_non_exhaustive()
    }
}

fn refused(reason: String) -> Response {
    Response::Refused { reason }
}

impl PolicySync {
    /// Loads the policy files of the node directory `node_dir`.
    pub fn load(node_dir: &Path) -> Result<Self> {
        let files = PolicyFiles::of_node(node_dir);
        let doc_path = files.document_path();
        let chain_path = files.chain_path();
        let doc_stamp = stamp(&doc_path);
        let chain_stamp = stamp(&chain_path);
        let doc = files.document()?.unwrap_or_else(PolicyDoc::empty);
        let chain = files.chain()?;
        let mut this = Self {
            files,
            doc_path,
            chain_path,
            doc,
            chain,
            doc_stamp,
            chain_stamp,
            known: HashSet::new(),
            registry: HashSet::new(),
            connected: HashSet::new(),
            sessions: HashMap::new(),
            serving: HashMap::new(),
            in_flight: HashMap::new(),
            waiting: BTreeMap::new(),
            last_resync: Instant::now(),
            chain_changed: false,
            dirty_doc: false,
            dirty_chain: false,
            recheck: false,
            metrics: PolicyMetrics::default(),
        };
        this.registry_changed();
        Ok(this)
    }

    /// Whether the chain changed since the last call (the daemon then refreshes admissions).
    pub fn take_chain_changed(&mut self) -> bool {
        std::mem::take(&mut self.chain_changed)
    }

    /// The peers the daemon admits besides the registry (its members and upstream node).
    pub fn set_known_peers(&mut self, known: HashSet<PeerId>) {
        self.known = known;
    }

    fn registry_changed(&mut self) {
        self.registry = self
            .chain
            .current()
            .map(|c| {
                c.policy
                    .members
                    .keys()
                    .filter_map(|k| k.verifying_key().ok())
                    .map(|k| peer_id_of(&k))
                    .collect()
            })
            .unwrap_or_default();
        self.metrics
            .sequence
            .set(self.chain.current().map_or(0, |c| c.sequence() as i64));
    }

    /// The connected peers that may sync the policy with this node (admissions change with
    /// adoptions).
    fn sync_peers(&self) -> Vec<PeerId> {
        self.connected
            .iter()
            .filter(|p| self.admits(p))
            .copied()
            .collect()
    }

    /// Whether `peer` may sync the policy with this node.
    pub fn admits(&self, peer: &PeerId) -> bool {
        self.known.contains(peer) || self.registry.contains(peer)
    }

    /// A connection to `peer` is up: sync with it and ask for missing adoptions.
    pub fn on_connected(&mut self, swarm: &mut Swarm<MaillageBehaviour>, peer: PeerId) {
        self.connected.insert(peer);
        if !self.admits(&peer) {
            return;
        }
        self.start(swarm, peer);
        self.fetch_adoptions(swarm, peer);
    }

    /// The last connection to `peer` closed: its sync states are forgotten.
    pub fn on_disconnected(&mut self, peer: &PeerId) {
        self.connected.remove(peer);
        self.sessions.remove(peer);
        self.serving.remove(peer);
    }

    fn fetch_adoptions(&mut self, swarm: &mut Swarm<MaillageBehaviour>, peer: PeerId) {
        if self.chain.current().is_none() {
            return;
        }
        let after = self.chain.current().map_or(0, |c| c.sequence());
        let id = swarm
            .behaviour_mut()
            .request_response
            .send_request(&peer, Request::FetchAdoptions { after });
        self.in_flight.insert(id, Outgoing::Adoptions(peer));
    }

    /// Starts (or restarts after the current round) a sync session with `peer`.
    fn start(&mut self, swarm: &mut Swarm<MaillageBehaviour>, peer: PeerId) {
        let session = self.sessions.entry(peer).or_default();
        if session.in_flight {
            session.again = true;
            return;
        }
        session.peer_done = false;
        session.rounds = 0;
        self.step(swarm, peer);
    }

    /// Sends the next round of the session with `peer`, or ends it when neither side has
    /// anything left to send.
    fn step(&mut self, swarm: &mut Swarm<MaillageBehaviour>, peer: PeerId) {
        let Some(session) = self.sessions.get_mut(&peer) else {
            return;
        };
        let message = self.doc.generate_sync_message(&mut session.state);
        if message.is_none() && session.peer_done {
            if std::mem::take(&mut session.again) {
                session.peer_done = false;
                session.rounds = 0;
            } else {
                tracing::debug!(%peer, rounds = session.rounds, "policy in sync");
                return;
            }
        }
        if session.rounds >= MAX_ROUNDS {
            tracing::warn!(%peer, "policy sync abandoned after {MAX_ROUNDS} rounds");
            *session = Session::default();
            return;
        }
        if let Some(m) = &message
            && m.len() > MAX_POLICY_SYNC_MESSAGE
        {
            tracing::error!(%peer, bytes = m.len(), "policy sync message too large to send; the peer must import the policy (maillage policy import)");
            *session = Session::default();
            return;
        }
        session.rounds += 1;
        session.in_flight = true;
        let id = swarm
            .behaviour_mut()
            .request_response
            .send_request(&peer, Request::PolicySync { message });
        self.in_flight.insert(id, Outgoing::Sync(peer));
    }

    /// Answers a policy request of `peer` (None when `request` is not a policy request).
    pub fn answer(
        &mut self,
        swarm: &mut Swarm<MaillageBehaviour>,
        peer: PeerId,
        request: &Request,
    ) -> Option<Response> {
        let response = match request {
            Request::PolicySync { .. } | Request::FetchAdoptions { .. } if !self.admits(&peer) => {
                self.metrics.sync_errors.inc();
                tracing::warn!(%peer, "policy request from a peer neither admitted nor in the adopted registry refused");
                refused(format!(
                    "peer {peer} is neither a member of this node nor in its adopted policy's registry"
                ))
            }
            Request::PolicySync { message } => {
                let before = self.doc.heads();
                let state = self.serving.entry(peer).or_default();
                if let Some(m) = message
                    && let Err(e) = self.doc.receive_sync_message(state, m)
                {
                    self.metrics.sync_errors.inc();
                    tracing::warn!(%peer, error = %e, "policy sync message refused");
                    // Whatever the peer believed, start over with it.
                    *state = SyncState::new();
                    return Some(refused(e.to_string()));
                }
                let reply = self.doc.generate_sync_message(state);
                let reply = match reply {
                    Some(r) if r.len() > MAX_POLICY_SYNC_MESSAGE => {
                        *state = SyncState::new();
                        return Some(Response::Error {
                            message: format!(
                                "the policy changes for this peer take {} bytes, more than one message carries ({MAX_POLICY_SYNC_MESSAGE}); import the policy instead (maillage policy export / import)",
                                r.len()
                            ),
                        });
                    }
                    other => other,
                };
                if self.doc.heads() != before {
                    self.doc_changed(swarm, Some(peer));
                }
                Response::PolicySync { message: reply }
            }
            Request::FetchAdoptions { after } => Response::PolicyAdoptions {
                records: self
                    .chain
                    .records_after(*after)
                    .take(MAX_ADOPTIONS_PER_RESPONSE)
                    .map(|r| ByteString(r.to_bytes()))
                    .collect(),
            },
            _ => return None,
        };
        Some(response)
    }

    /// A response to a request this module sent; `false` if the request was not its own.
    pub fn on_response(
        &mut self,
        swarm: &mut Swarm<MaillageBehaviour>,
        id: OutboundRequestId,
        response: Result<Response, String>,
    ) -> bool {
        let Some(outgoing) = self.in_flight.remove(&id) else {
            return false;
        };
        match (outgoing, response) {
            (Outgoing::Sync(peer), Ok(Response::PolicySync { message })) => {
                let before = self.doc.heads();
                let Some(session) = self.sessions.get_mut(&peer) else {
                    return true;
                };
                session.in_flight = false;
                session.peer_done = message.is_none();
                if let Some(m) = message
                    && let Err(e) = self.doc.receive_sync_message(&mut session.state, &m)
                {
                    self.metrics.sync_errors.inc();
                    tracing::warn!(%peer, error = %e, "policy sync answer refused");
                    *session = Session::default();
                    return true;
                }
                if self.doc.heads() != before {
                    self.doc_changed(swarm, Some(peer));
                }
                self.step(swarm, peer);
            }
            (Outgoing::Sync(peer), other) => {
                let why = match other {
                    Ok(Response::Refused { reason }) => format!("refused: {reason}"),
                    Ok(Response::Error { message }) => format!("failed: {message}"),
                    Ok(r) => format!("unexpected answer {r:?}"),
                    Err(e) => {
                        // A short-lived client (maillage submit, query) leaves without answering.
                        tracing::debug!(%peer, error = %e, "policy sync: no answer");
                        self.sessions.insert(peer, Session::default());
                        return true;
                    }
                };
                tracing::warn!(%peer, %why, "policy sync with a peer did not complete");
                // Start over next time: the state may believe messages arrived.
                self.sessions.insert(peer, Session::default());
            }
            (Outgoing::Adoptions(peer), Ok(Response::PolicyAdoptions { records })) => {
                let full = records.len() >= MAX_ADOPTIONS_PER_RESPONSE;
                for bytes in records {
                    match AdoptionRecord::from_bytes(&bytes.0) {
                        Ok(record) => {
                            if let Err(e) = self.consider(swarm, record, peer, false) {
                                self.metrics.adoptions_rejected.inc();
                                tracing::warn!(%peer, error = %e, "fetched adoption refused");
                                break;
                            }
                        }
                        Err(e) => {
                            self.metrics.adoptions_rejected.inc();
                            tracing::warn!(%peer, error = %e, "fetched adoption record malformed");
                            break;
                        }
                    }
                }
                if full {
                    self.fetch_adoptions(swarm, peer);
                }
            }
            (Outgoing::Adoptions(peer), other) => {
                tracing::debug!(%peer, answer = ?other.map(|r| format!("{r:?}").chars().take(200).collect::<String>()), "adoptions not fetched");
            }
        }
        true
    }

    /// A gossiped adoption record from `source`: verified, then adopted now or once its
    /// version arrives.
    pub fn on_gossip(
        &mut self,
        swarm: &mut Swarm<MaillageBehaviour>,
        source: PeerId,
        data: &[u8],
    ) -> gossipsub::MessageAcceptance {
        let record = match AdoptionRecord::from_bytes(data) {
            Ok(r) => r,
            Err(e) => {
                self.metrics.adoptions_rejected.inc();
                tracing::warn!(%source, error = %e, "gossiped adoption rejected");
                return gossipsub::MessageAcceptance::Reject;
            }
        };
        let sequence = record.target.sequence;
        let next = self.chain.next_sequence();
        if sequence > next && self.chain.current().is_some() {
            // Further ahead than this node can check: fetch the steps in between.
            tracing::info!(%source, sequence, next, "adoption ahead of this node's chain; fetching the missing ones");
            if self.admits(&source) {
                self.fetch_adoptions(swarm, source);
                self.start(swarm, source);
            }
            return gossipsub::MessageAcceptance::Ignore;
        }
        match self.consider(swarm, record, source, true) {
            Ok(()) => gossipsub::MessageAcceptance::Accept,
            Err(e) => {
                self.metrics.adoptions_rejected.inc();
                tracing::warn!(%source, sequence, error = %e, "gossiped adoption rejected");
                gossipsub::MessageAcceptance::Reject
            }
        }
    }

    /// Takes a record from `peer` if it is the next valid step (an identical record already
    /// held is fine when fetched, a replay when `gossiped`).
    fn consider(
        &mut self,
        swarm: &mut Swarm<MaillageBehaviour>,
        record: AdoptionRecord,
        peer: PeerId,
        gossiped: bool,
    ) -> Result<(), String> {
        let sequence = record.target.sequence;
        if let Some(held) = self
            .chain
            .entries()
            .iter()
            .find(|e| e.sequence() == sequence)
        {
            return if held.record == record {
                // Fetched again after a reconnection: nothing new, nothing wrong — but on
                // gossip (where honest peers only announce what they just adopted, and relays
                // of one message are one message), an adopted record coming round is a replay.
                if gossiped {
                    Err(format!(
                        "replayed adoption n°{sequence}: already adopted here"
                    ))
                } else {
                    Ok(())
                }
            } else {
                Err(format!(
                    "adoption n°{sequence} differs from the one this node adopted ({}): forged, or the network forked",
                    held.hash()
                ))
            };
        }
        if let Some(w) = self.waiting.get(&sequence) {
            return if *w == record {
                Ok(())
            } else {
                Err(format!(
                    "a second, different adoption n°{sequence} while the first waits for its version"
                ))
            };
        }
        self.chain
            .check_record(&record)
            .map_err(|e| e.to_string())?;
        self.waiting.insert(sequence, record);
        if self.apply_waiting() {
            self.sync_files(swarm);
        } else {
            tracing::info!(%peer, sequence, "adoption verified; syncing its version");
            for p in self.sync_peers() {
                self.start(swarm, p);
            }
        }
        Ok(())
    }

    /// Adopts the waiting records whose version the document holds; whether any was adopted.
    fn apply_waiting(&mut self) -> bool {
        let mut adopted = false;
        while let Some(entry) = self.waiting.first_entry() {
            let next = self.chain.next_sequence();
            if *entry.key() < next {
                entry.remove();
                continue;
            }
            if *entry.key() > next || !self.doc.has_heads(&entry.get().heads) {
                break;
            }
            let record = entry.remove();
            let target = record.target;
            match self.chain.append_from_document(record, &self.doc) {
                Ok(_) => {
                    adopted = true;
                    self.metrics.adoptions_received.inc();
                    tracing::info!(sequence = target.sequence, hash = %target.policy, "policy adoption received from the network");
                }
                Err(e) => {
                    self.metrics.adoptions_rejected.inc();
                    tracing::error!(sequence = target.sequence, error = %e, "a signed adoption whose version does not check out: refused");
                }
            }
        }
        if adopted {
            self.chain_changed = true;
            self.dirty_chain = true;
            self.registry_changed();
        }
        adopted
    }

    /// The document gained changes (from `from`, or locally): adopt what waited for them, save
    /// them, and pass them on to the other peers.
    fn doc_changed(&mut self, swarm: &mut Swarm<MaillageBehaviour>, from: Option<PeerId>) {
        self.metrics.sync_changes.inc();
        self.dirty_doc = true;
        self.apply_waiting();
        self.sync_files(swarm);
        let peers: Vec<PeerId> = self
            .sync_peers()
            .into_iter()
            .filter(|p| Some(*p) != from)
            .collect();
        for peer in peers {
            self.start(swarm, peer);
        }
    }

    /// Reconciles the daemon's document and chain with the files, under the folder's lock:
    /// what `maillage policy …` wrote is merged in (document) or taken if it extends the
    /// daemon's chain (new adoptions are then announced); what the daemon holds beyond the
    /// files is written. When the lock is busy, this is retried on the next tick.
    fn sync_files(&mut self, swarm: &mut Swarm<MaillageBehaviour>) {
        let _lock = match self.files.try_lock() {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                self.recheck = true;
                return;
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "the policy folder cannot be locked");
                self.recheck = true;
                return;
            }
        };
        self.recheck = false;
        let mut merged = false;
        if stamp(&self.doc_path) != self.doc_stamp {
            match self.files.document() {
                Ok(Some(theirs)) => {
                    let before = self.doc.heads();
                    match self.doc.merge(&theirs) {
                        Ok(()) => {
                            merged = self.doc.heads() != before;
                            if theirs.heads() != self.doc.heads() {
                                self.dirty_doc = true;
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "merging the policy document from disk")
                        }
                    }
                }
                Ok(None) => self.dirty_doc = true,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "reading the policy document")
                }
            }
            self.doc_stamp = stamp(&self.doc_path);
        }
        if merged {
            tracing::info!("policy document changed on disk; merged");
            self.apply_waiting();
        }
        if self.dirty_doc && !self.doc.is_empty() {
            match self.files.save_document(&self.doc) {
                Ok(()) => {
                    self.dirty_doc = false;
                    self.doc_stamp = stamp(&self.doc_path);
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "the policy document could not be saved")
                }
            }
        }
        if stamp(&self.chain_path) != self.chain_stamp {
            self.reload_chain(swarm);
            self.chain_stamp = stamp(&self.chain_path);
        }
        if self.dirty_chain {
            // The document is saved first: the chain names heads read from it.
            match self.files.save_chain(&self.chain) {
                Ok(()) => {
                    self.dirty_chain = false;
                    self.chain_stamp = stamp(&self.chain_path);
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "the adoption chain could not be saved")
                }
            }
        }
        if merged {
            self.metrics.sync_changes.inc();
            let peers: Vec<PeerId> = self.sync_peers();
            for peer in peers {
                self.start(swarm, peer);
            }
        }
    }

    /// Looks at the files (written by `maillage policy …` beside the daemon) and resyncs
    /// connected peers now and then.
    pub fn on_tick(&mut self, swarm: &mut Swarm<MaillageBehaviour>) {
        if self.recheck
            || stamp(&self.doc_path) != self.doc_stamp
            || stamp(&self.chain_path) != self.chain_stamp
        {
            self.sync_files(swarm);
        }
        if self.last_resync.elapsed() >= RESYNC_EVERY {
            self.last_resync = Instant::now();
            let peers: Vec<PeerId> = self.sync_peers();
            for peer in peers {
                self.start(swarm, peer);
                self.fetch_adoptions(swarm, peer);
            }
        }
    }

    /// The chain file changed (the caller holds the lock): take it if it extends the daemon's
    /// chain, announcing the new adoptions; rewrite it if it is behind; refuse a fork.
    fn reload_chain(&mut self, swarm: &mut Swarm<MaillageBehaviour>) {
        let theirs = match self.files.chain() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "the adoption chain on disk does not verify; keeping the daemon's");
                self.dirty_chain = true;
                return;
            }
        };
        let mine = self.chain.entries();
        let common = mine.len().min(theirs.entries().len());
        if mine[..common] != theirs.entries()[..common] {
            tracing::error!(
                "the adoption chain on disk forks from the daemon's; keeping the daemon's"
            );
            self.dirty_chain = true;
            return;
        }
        if theirs.entries().len() <= mine.len() {
            if theirs.entries().len() < mine.len() {
                self.dirty_chain = true;
            }
            return;
        }
        let known = mine.len();
        self.chain = theirs;
        self.chain_changed = true;
        self.registry_changed();
        let new: Vec<AdoptionRecord> = self.chain.entries()[known..]
            .iter()
            .map(|e| e.record.clone())
            .collect();
        for record in new {
            self.waiting.remove(&record.target.sequence);
            tracing::info!(sequence = record.target.sequence, hash = %record.target.policy, "policy adopted here; announcing it");
            if let Err(e) = swarm
                .behaviour_mut()
                .gossipsub
                .publish(policy_topic(), record.to_bytes())
            {
                // No peer subscribed yet: they fetch it when they (re)connect.
                tracing::debug!(error = %e, "adoption not announced on gossip");
            }
        }
        // Peers that missed the gossip fetch it on their next resync; push the document now.
        let peers: Vec<PeerId> = self.sync_peers();
        for peer in peers {
            self.start(swarm, peer);
        }
    }
}
