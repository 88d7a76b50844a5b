//! The node on the network: `maillage serve` (a hub or national node answering its members over
//! libp2p) and `maillage submit` (a structure sending its stored release and keeping the
//! receipt).
//!
//! One task owns the swarm and runs the event loop; requests are answered in that loop, so the
//! hub's state is never shared between threads. Peers are admitted by their key's presence in
//! the member list (a libp2p peer id is derived from the same ed25519 key as the member's
//! identity), are rate-limited per peer, and may only submit their own releases.

mod answer;
mod daemon;
pub mod http;
mod metrics;
mod outbox;
mod policy_sync;

use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use libp2p::PeerId;
use libp2p::futures::StreamExt;
use libp2p::request_response::{self, Message};
use libp2p::swarm::SwarmEvent;
use maillage_protocol::network::{
    MaillageBehaviourEvent, NetworkConfig, Request, Response, Totals, build_swarm,
    keypair_from_ed25519_secret, peer_id_of,
};
use maillage_protocol::{Period, SignedReceipt, SignedRelease};

use crate::config::Role;
use crate::node::Node;

pub use daemon::{
    Control, DaemonGone, DaemonHandle, Ready, ServeOptions, StatusReport, channel, peer_of, run,
};
pub use libp2p::Multiaddr;
pub use outbox::{Delivery, OUTBOX_TREE, RECEIPTS_TREE, UPSTREAM_RECEIPTS_TREE};

/// The node's libp2p peer id (derived from its ed25519 key).
pub fn peer_id(node: &Node) -> PeerId {
    peer_id_of(&node.identity.public())
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the node's daemon until Ctrl-C or SIGTERM. Prints each listening address, with the
/// node's peer id, on stdout as `listening <multiaddr>/p2p/<peer id>`, and the HTTP API's
/// address as `http http://<addr>`.
pub fn serve(node: &Node, options: ServeOptions) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let (_handle, control) = daemon::channel();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Ready>();
        let printer = async {
            if let Ok(ready) = ready_rx.await {
                // Whoever started the daemon may stop reading its stdout once it has the
                // address (`maillage serve | head -1`, a supervisor, a test): a closed pipe must
                // not stop the daemon, so write errors are logged, never a panic.
                let mut lines: Vec<String> =
                    ready.listen.iter().map(|a| format!("listening {a}")).collect();
                if let Some(http) = ready.http {
                    lines.push(format!("http http://{http}"));
                }
                let mut out = std::io::stdout().lock();
                for line in lines {
                    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
                        tracing::warn!(error = %e, "could not print to stdout: {line}");
                    }
                }
            }
            std::future::pending::<()>().await
        };
        tokio::select! {
            result = daemon::run(node, options, control, Some(ready_tx), shutdown_signal()) => result,
            () = printer => Ok(()),
        }
    })
}

/// Sends one request to the peer at `addr` (which must end with `/p2p/<peer id>`) and waits for
/// its response.
pub fn request_once(
    identity: &crate::Identity,
    addr: &Multiaddr,
    request: Request,
    timeout: Duration,
) -> Result<Response> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut answers = runtime.block_on(ask(identity, addr, vec![request], timeout))?;
    answers
        .pop()
        .ok_or_else(|| anyhow!("{addr} gave no answer"))
}

/// Sends requests to the peer at `addr` over one connection, from a swarm of its own, inside
/// the caller's runtime; the responses in the order of the requests.
pub async fn ask(
    identity: &crate::Identity,
    addr: &Multiaddr,
    requests: Vec<Request>,
    timeout: Duration,
) -> Result<Vec<Response>> {
    let peer = peer_of(addr).ok_or_else(|| anyhow!("{addr} does not name the peer's id: expected an address ending with /p2p/<peer id>, as maillage serve prints it"))?;
    let keypair = keypair_from_ed25519_secret(identity.signing_key().to_bytes());
    let mut swarm =
        build_swarm(keypair, &NetworkConfig::default()).map_err(|e| anyhow!("network: {e}"))?;
    swarm
        .dial(addr.clone())
        .with_context(|| format!("dialling {addr}"))?;
    let ids: Vec<_> = requests
        .into_iter()
        .map(|r| {
            swarm
                .behaviour_mut()
                .request_response
                .send_request(&peer, r)
        })
        .collect();
    let mut answers: Vec<Option<Response>> = vec![None; ids.len()];
    let wait = async {
        while answers.iter().any(Option::is_none) {
            match swarm.select_next_some().await {
                SwarmEvent::Behaviour(MaillageBehaviourEvent::RequestResponse(
                    request_response::Event::Message {
                        message:
                            Message::Response {
                                request_id,
                                response,
                            },
                        ..
                    },
                )) => {
                    if let Some(i) = ids.iter().position(|id| *id == request_id) {
                        answers[i] = Some(response);
                    }
                }
                SwarmEvent::Behaviour(MaillageBehaviourEvent::RequestResponse(
                    request_response::Event::OutboundFailure { error, .. },
                )) => return Err(anyhow!("{addr} did not answer: {error}")),
                SwarmEvent::OutgoingConnectionError { error, .. } => {
                    return Err(anyhow!("cannot reach {addr}: {error}"));
                }
                _ => {}
            }
        }
        Ok(())
    };
    tokio::time::timeout(timeout, wait)
        .await
        .map_err(|_| anyhow!("no answer from {addr} within {} s", timeout.as_secs()))??;
    Ok(answers.into_iter().flatten().collect())
}

/// Asks the node at `addr` for the totals of one indicator and period.
pub fn query(
    identity: &crate::Identity,
    addr: &Multiaddr,
    indicator: &str,
    period: Period,
    by: Option<String>,
    timeout: Duration,
) -> Result<Totals> {
    let response = request_once(
        identity,
        addr,
        Request::Query {
            indicator: indicator.into(),
            period: period.to_string(),
            by,
        },
        timeout,
    )?;
    match response {
        Response::Totals { totals } => Ok(totals),
        Response::Refused { reason } => bail!("{addr} refused the query: {reason}"),
        Response::Error { message } => bail!("{addr} could not answer: {message}"),
        other => bail!("unexpected answer from {addr}: {other:?}"),
    }
}

/// Sends a structure's stored release of `period` to the hub at `hub_addr` (which must end with
/// `/p2p/<peer id>`), checks the signed receipt and stores it. Returns the receipt.
pub fn submit(
    node: &Node,
    period: Period,
    hub_addr: &Multiaddr,
    timeout: Duration,
) -> Result<SignedReceipt> {
    if node.config.node.role != Role::Structure {
        bail!(
            "only a structure submits releases; this node is a {}",
            node.config.node.role
        );
    }
    let Some(bytes) = node.stored_release(period)? else {
        bail!(
            "no release of {period} is stored yet: run maillage release --dir {} --period {period} first",
            node.dir().display()
        );
    };
    let release =
        SignedRelease::decode_and_verify(&bytes).context("the stored release does not verify")?;
    let hub_peer = peer_of(hub_addr)
        .ok_or_else(|| anyhow!("{hub_addr} does not name the hub's peer id: expected an address ending with /p2p/<peer id>, as maillage serve prints it"))?;
    let response = request_once(
        &node.identity,
        hub_addr,
        Request::SubmitRelease {
            release: bytes.clone(),
        },
        timeout,
    )
    .context("submitting to the hub")?;
    match response {
        Response::Receipt { receipt } => {
            let receipt = SignedReceipt::decode_and_verify(&receipt)
                .context("the hub's receipt does not verify")?;
            let r = receipt.receipt();
            if r.release_id != release.id() {
                bail!(
                    "the hub's receipt names release {} instead of {}",
                    r.release_id,
                    release.id()
                );
            }
            if peer_id_of(&r.hub) != hub_peer {
                bail!(
                    "the receipt is signed by {} but the hub at {hub_addr} is {hub_peer}",
                    hex::encode(r.hub.as_bytes())
                );
            }
            node.store
                .tree(outbox::RECEIPTS_TREE)?
                .insert(period.to_string().as_bytes(), receipt.to_bytes())
                .context("storing the receipt")?;
            node.store.flush()?;
            Ok(receipt)
        }
        Response::Refused { reason } => bail!("the hub refused the release: {reason}"),
        Response::Error { message } => bail!("the hub failed: {message}"),
        other => bail!("unexpected answer from the hub: {other:?}"),
    }
}
