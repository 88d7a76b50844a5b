//! The node on the network: `maillage serve` (a hub or national node answering its members over
//! libp2p) and `maillage submit` (a structure sending its stored release and keeping the
//! receipt).
//!
//! One task owns the swarm and runs the event loop; requests are answered in that loop, so the
//! hub's state is never shared between threads. Peers are admitted by their key's presence in
//! the member list (a libp2p peer id is derived from the same ed25519 key as the member's
//! identity), are rate-limited per peer, and may only submit their own releases.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use libp2p::futures::StreamExt;
use libp2p::request_response::{self, Message};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId};
use maillage_protocol::network::{
    MaillageBehaviourEvent, NetworkConfig, RateLimiter, Request, Response, Totals, TotalsRow,
    build_swarm, keypair_from_ed25519_secret, peer_id_of,
};
use maillage_protocol::{Indicator, Period, SignedReceipt, SignedRelease};

use crate::config::Role;
use crate::hub::Hub;
use crate::members::parse_key;
use crate::node::Node;

fn unix_now() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
}

/// The node's libp2p peer id (derived from its ed25519 key).
pub fn peer_id(node: &Node) -> PeerId {
    peer_id_of(&node.identity.public())
}

/// Waits for Ctrl-C or SIGTERM.
async fn shutdown_signal() {
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

/// Runs a hub (or national node) until Ctrl-C or SIGTERM. Prints each listening address, with
/// the node's peer id, on stdout as `listening <multiaddr>/p2p/<peer id>`.
pub fn serve(node: &Node, listen: &[Multiaddr]) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve_loop(node, listen))
}

async fn serve_loop(node: &Node, listen: &[Multiaddr]) -> Result<()> {
    let mut hub = Hub::open(node)?;
    let config = NetworkConfig::default();
    let keypair = keypair_from_ed25519_secret(node.identity.signing_key().to_bytes());
    let mut swarm = build_swarm(keypair, &config).map_err(|e| anyhow!("network: {e}"))?;
    for addr in listen {
        swarm
            .listen_on(addr.clone())
            .with_context(|| format!("listening on {addr}"))?;
    }
    // Members admitted by peer id.
    let mut admitted: HashMap<PeerId, ed25519_dalek::VerifyingKey> = HashMap::new();
    for m in hub.members().iter() {
        if let Ok(key) = parse_key(&m.key) {
            admitted.insert(peer_id_of(&key), key);
        }
    }
    let mut limiter = RateLimiter::new(config.rate_limit);
    let me = peer_id(node);
    tracing::info!(peer = %me, members = admitted.len(), "serving");
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            event = swarm.select_next_some() => match event {
                SwarmEvent::NewListenAddr { address, .. } => {
                    println!("listening {address}/p2p/{me}");
                }
                SwarmEvent::Behaviour(MaillageBehaviourEvent::RequestResponse(request_response::Event::Message {
                    peer,
                    message: Message::Request { request, channel, .. },
                    ..
                })) => {
                    let response = match limiter.check(&peer, Instant::now()) {
                        Err(limited) => Response::Refused { reason: limited.to_string() },
                        Ok(()) => match admitted.get(&peer) {
                            None => {
                                tracing::warn!(%peer, kind = request.kind(), "request from a non-member refused");
                                Response::Refused { reason: format!("peer {peer} is not a member of this hub; ask the hub to add your key (maillage members add)") }
                            }
                            Some(key) => answer(&mut hub, key, request),
                        },
                    };
                    if swarm.behaviour_mut().request_response.send_response(channel, response).is_err() {
                        tracing::debug!(%peer, "response not sent: the requester went away");
                    }
                }
                SwarmEvent::ConnectionEstablished { peer_id, .. } => tracing::debug!(peer = %peer_id, "connected"),
                other => tracing::trace!(?other, "swarm event"),
            },
        }
    }
    tracing::info!("shutting down");
    node.store.flush().context("flushing the store")?;
    Ok(())
}

/// Answers one request of an admitted member.
fn answer(hub: &mut Hub<'_>, member: &ed25519_dalek::VerifyingKey, request: Request) -> Response {
    match request {
        Request::SubmitRelease { release } => {
            match SignedRelease::decode(&release) {
                Ok(r) if r.release().signer != *member => {
                    return Response::Refused {
                        reason: "a member may only submit its own releases".into(),
                    };
                }
                Err(e) => {
                    return Response::Refused {
                        reason: format!("invalid release: {e}"),
                    };
                }
                Ok(_) => {}
            }
            match hub.accept_batch(&[release], unix_now()) {
                Ok(mut outcomes) => match outcomes.pop() {
                    Some(Ok(accepted)) => Response::Receipt {
                        receipt: accepted.receipt.to_bytes(),
                    },
                    Some(Err(refusal)) => Response::Refused {
                        reason: refusal.to_string(),
                    },
                    None => Response::Error {
                        message: "no outcome".into(),
                    },
                },
                Err(e) => {
                    tracing::error!(error = %e, "accepting a release failed");
                    Response::Error {
                        message: "the hub could not store the release; try again later".into(),
                    }
                }
            }
        }
        Request::FetchCheckpoint { size } => match hub.checkpoints() {
            Ok(all) => {
                let found = match size {
                    Some(size) => all.into_iter().find(|c| c.checkpoint().tree_size == size),
                    None => all.into_iter().last(),
                };
                match found {
                    Some(c) => Response::Checkpoint {
                        checkpoint: c.to_bytes(),
                    },
                    None => Response::Error {
                        message: "no such checkpoint".into(),
                    },
                }
            }
            Err(e) => Response::Error {
                message: e.to_string(),
            },
        },
        Request::FetchContribution { index } if index < hub.log_size() => {
            match hub.contribution(index) {
                Ok((release, receipt)) => Response::Contribution {
                    release: release.to_bytes(),
                    receipt: receipt.to_bytes(),
                },
                Err(e) => Response::Error {
                    message: e.to_string(),
                },
            }
        }
        Request::FetchContribution { index } => Response::Error {
            message: format!("no leaf {index}: the log has {} leaves", hub.log_size()),
        },
        Request::FetchProof { index, size } => match hub.log().inclusion_proof(index, size) {
            Ok(hashes) => Response::Proof { hashes },
            Err(e) => Response::Error {
                message: e.to_string(),
            },
        },
        Request::Query {
            indicator,
            period,
            by,
        } => query(hub, &indicator, &period, by),
        Request::SubmitAggregate { .. } => Response::Refused {
            reason: "this node does not take aggregates yet".into(),
        },
    }
}

/// Totals of one indicator for one period from the hub's latest aggregate.
fn query(hub: &Hub<'_>, indicator: &str, period: &str, by: Option<String>) -> Response {
    use maillage_protocol::vocab::Vocabulary as _;
    if by.is_some() {
        return Response::Error {
            message: "breakdowns by région or département are not served yet; ask without --by"
                .into(),
        };
    }
    let Some(indicator) = Indicator::from_code(indicator) else {
        return Response::Error {
            message: format!("unknown indicator {indicator:?}"),
        };
    };
    let Ok(period) = period.parse::<Period>() else {
        return Response::Error {
            message: format!("invalid period {period:?}: expected YYYY-MM"),
        };
    };
    let aggregate = match hub.latest_aggregate(period) {
        Ok(Some(a)) => a,
        Ok(None) => {
            return Response::Error {
                message: format!("no aggregate of {period} yet"),
            };
        }
        Err(e) => {
            return Response::Error {
                message: e.to_string(),
            };
        }
    };
    let a = aggregate.aggregate();
    let members = (a.contributed.len() + a.missing.len()) as u64;
    let rows = a
        .cells
        .iter()
        .filter(|c| c.indicator == indicator)
        .map(|c| TotalsRow {
            territory: c.category.clone().unwrap_or_else(|| "total".into()),
            estimate: c.sum as f64,
            ci95_low: c.sum as f64 - c.ci95_half_width,
            ci95_high: c.sum as f64 + c.ci95_half_width,
            contributors: a.contributions.len() as u64,
            members,
        })
        .collect();
    Response::Totals {
        totals: Totals {
            indicator: indicator.code().into(),
            period: period.to_string(),
            by: None,
            rows,
        },
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
    let hub_peer = hub_addr
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::P2p(id) => Some(id),
            _ => None,
        })
        .ok_or_else(|| anyhow!("{hub_addr} does not name the hub's peer id: expected an address ending with /p2p/<peer id>, as maillage serve prints it"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let response = runtime.block_on(async {
        let config = NetworkConfig::default();
        let keypair = keypair_from_ed25519_secret(node.identity.signing_key().to_bytes());
        let mut swarm = build_swarm(keypair, &config).map_err(|e| anyhow!("network: {e}"))?;
        swarm
            .dial(hub_addr.clone())
            .with_context(|| format!("dialling {hub_addr}"))?;
        swarm.behaviour_mut().request_response.send_request(
            &hub_peer,
            Request::SubmitRelease {
                release: bytes.clone(),
            },
        );
        let wait = async {
            loop {
                match swarm.select_next_some().await {
                    SwarmEvent::Behaviour(MaillageBehaviourEvent::RequestResponse(
                        request_response::Event::Message {
                            message: Message::Response { response, .. },
                            ..
                        },
                    )) => return Ok(response),
                    SwarmEvent::Behaviour(MaillageBehaviourEvent::RequestResponse(
                        request_response::Event::OutboundFailure { error, .. },
                    )) => return Err(anyhow!("the hub did not answer: {error}")),
                    SwarmEvent::OutgoingConnectionError { error, .. } => {
                        return Err(anyhow!("cannot reach the hub at {hub_addr}: {error}"));
                    }
                    _ => {}
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| {
            anyhow!(
                "no answer from the hub at {hub_addr} within {} s",
                timeout.as_secs()
            )
        })?
    })?;
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
                .tree("receipts")?
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
