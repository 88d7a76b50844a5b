//! Policy sync over real libp2p on loopback: two peers holding the 20,000-member policy
//! document sync one change with `PolicySync` request-response rounds over TCP (Noise, Yamux),
//! as the daemon does. Baseline measured in the same run: the same rounds with the messages
//! handed over in process (no network), and one empty request-response round trip.
//!
//! Run: `cargo bench -p maillage-node --bench policy_sync` (`MEMBERS=2000` for a quicker run).

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use libp2p::futures::StreamExt;
use libp2p::request_response::{self, Message};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, Swarm};
use maillage_policy::{Edit, Member, Policy, PolicyDoc, PublicKey, Role, SyncState};
use maillage_protocol::network::{
    MaillageBehaviour, MaillageBehaviourEvent, NetworkConfig, Request, Response, build_swarm,
    keypair_from_ed25519_secret,
};

type BenchResult = Result<(), Box<dyn std::error::Error>>;

fn pk(i: u32) -> PublicKey {
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&i.to_le_bytes());
    seed[4] = 0x3c;
    PublicKey::from(SigningKey::from_bytes(&seed).verifying_key())
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn document(members: u32) -> Result<PolicyDoc, Box<dyn std::error::Error>> {
    const HUBS: u32 = 16;
    let mut genesis = Policy::default();
    genesis.committee.quorum = 1;
    for h in 0..HUBS {
        genesis.members.insert(
            pk(h),
            Member {
                name: format!("Hub {h}"),
                role: Role::Hub,
                pivot: None,
                hub: None,
                commune: Some("69123".into()),
                place_id: None,
            },
        );
    }
    let mut doc = PolicyDoc::genesis(&genesis)?;
    let mut next = HUBS;
    while next < members {
        let end = (next + 100).min(members);
        let edits: Vec<Edit> = (next..end)
            .map(|i| {
                Edit::add_member(
                    pk(i),
                    Member {
                        name: format!("Lieu de médiation numérique n°{i}"),
                        role: Role::Structure,
                        pivot: Some("73282932000074".into()),
                        hub: Some(pk(i % HUBS)),
                        commune: Some("69385".into()),
                        place_id: Some(format!("lieu-{i:06}")),
                    },
                )
            })
            .collect();
        doc.apply(&edits, "members")?;
        next = end;
    }
    Ok(doc)
}

/// Polls both swarms; `a` answers policy requests from its document.
async fn next_event(
    a: &mut Swarm<MaillageBehaviour>,
    b: &mut Swarm<MaillageBehaviour>,
    doc_a: &mut PolicyDoc,
    state_a: &mut SyncState,
) -> Option<Response> {
    loop {
        tokio::select! {
            event = a.select_next_some() => {
                if let SwarmEvent::Behaviour(MaillageBehaviourEvent::RequestResponse(
                    request_response::Event::Message {
                        message: Message::Request { request, channel, .. },
                        ..
                    },
                )) = event
                {
                    let response = match request {
                        Request::PolicySync { message } => {
                            if let Some(m) = message {
                                let _ = doc_a.receive_sync_message(state_a, &m);
                            }
                            Response::PolicySync {
                                message: doc_a.generate_sync_message(state_a),
                            }
                        }
                        _ => Response::Error { message: "no".into() },
                    };
                    let _ = a.behaviour_mut().request_response.send_response(channel, response);
                }
            }
            event = b.select_next_some() => match event {
                SwarmEvent::Behaviour(MaillageBehaviourEvent::RequestResponse(
                    request_response::Event::Message {
                        message: Message::Response { response, .. },
                        ..
                    },
                )) => return Some(response),
                SwarmEvent::Behaviour(MaillageBehaviourEvent::RequestResponse(
                    request_response::Event::OutboundFailure { error, .. },
                )) => {
                    eprintln!("request failed: {error}");
                    return None;
                }
                _ => {}
            },
        }
    }
}

/// One sync session started by `b`, as the daemon runs it: rounds until neither side has
/// anything to send. Returns the rounds.
async fn session(
    a: &mut Swarm<MaillageBehaviour>,
    b: &mut Swarm<MaillageBehaviour>,
    doc_a: &mut PolicyDoc,
    state_a: &mut SyncState,
    doc_b: &mut PolicyDoc,
    state_b: &mut SyncState,
) -> Result<u32, Box<dyn std::error::Error>> {
    let peer_a = *a.local_peer_id();
    let mut rounds = 0;
    let mut peer_done = false;
    loop {
        let message = doc_b.generate_sync_message(state_b);
        if message.is_none() && peer_done {
            return Ok(rounds);
        }
        rounds += 1;
        b.behaviour_mut()
            .request_response
            .send_request(&peer_a, Request::PolicySync { message });
        match next_event(a, b, doc_a, state_a).await {
            Some(Response::PolicySync { message }) => {
                peer_done = message.is_none();
                if let Some(m) = message {
                    doc_b.receive_sync_message(state_b, &m)?;
                }
            }
            other => return Err(format!("unexpected answer {other:?}").into()),
        }
    }
}

fn main() -> BenchResult {
    let members: u32 = std::env::var("MEMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let saved = document(members)?.save();
    println!(
        "policy document: {members} members, {} bytes saved",
        saved.len()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let config = NetworkConfig::default();
        let mut a = build_swarm(keypair_from_ed25519_secret([1; 32]), &config)?;
        let mut b = build_swarm(keypair_from_ed25519_secret([2; 32]), &config)?;
        a.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
        let addr: Multiaddr = loop {
            if let SwarmEvent::NewListenAddr { address, .. } = a.select_next_some().await {
                break address;
            }
        };
        b.add_peer_address(*a.local_peer_id(), addr.clone());
        b.dial(addr)?;
        let mut doc_a = PolicyDoc::load(&saved)?;
        let mut doc_b = PolicyDoc::load(&saved)?;
        let (mut state_a, mut state_b) = (SyncState::new(), SyncState::new());

        // Connection and first session of two peers holding the same document.
        let start = Instant::now();
        let rounds = session(
            &mut a,
            &mut b,
            &mut doc_a,
            &mut state_a,
            &mut doc_b,
            &mut state_b,
        )
        .await?;
        println!(
            "  connect + first session over loopback TCP: {} ({rounds} round(s))",
            ms(start.elapsed())
        );

        // Baseline: a session between two empty documents (its round trips carry a few bytes).
        let (mut rtt, mut empty_rounds) = (Duration::MAX, 0);
        for _ in 0..20 {
            let start = Instant::now();
            empty_rounds = session(
                &mut a,
                &mut b,
                &mut PolicyDoc::empty(),
                &mut SyncState::new(),
                &mut PolicyDoc::empty(),
                &mut SyncState::new(),
            )
            .await?;
            rtt = rtt.min(start.elapsed());
        }
        println!(
            "  baseline: a session between two empty documents: {} ({empty_rounds} round(s))",
            ms(rtt)
        );

        const CHANGES: u32 = 10;
        let (mut total, mut worst, mut last_rounds) = (Duration::ZERO, Duration::ZERO, 0);
        for i in 0..CHANGES {
            doc_b.apply(
                &[Edit::SetBudget {
                    budget: 0.5 + f64::from(i) / 10.0,
                }],
                "one change",
            )?;
            let start = Instant::now();
            last_rounds = session(
                &mut a,
                &mut b,
                &mut doc_a,
                &mut state_a,
                &mut doc_b,
                &mut state_b,
            )
            .await?;
            let d = start.elapsed();
            total += d;
            worst = worst.max(d);
        }
        if doc_a.heads() != doc_b.heads() {
            return Err("the peers did not converge".into());
        }
        println!(
            "  sync of one change over loopback libp2p: mean {}, worst {} of {CHANGES} ({last_rounds} round(s)) (target < 100 ms)",
            ms(total / CHANGES),
            ms(worst)
        );

        // The same in process, for comparison.
        let mut x = PolicyDoc::load(&saved)?;
        let mut y = PolicyDoc::load(&saved)?;
        let (mut sx, mut sy) = (SyncState::new(), SyncState::new());
        let in_process = |x: &mut PolicyDoc,
                          sx: &mut SyncState,
                          y: &mut PolicyDoc,
                          sy: &mut SyncState|
         -> Result<(), Box<dyn std::error::Error>> {
            loop {
                let m1 = x.generate_sync_message(sx);
                if let Some(m) = &m1 {
                    y.receive_sync_message(sy, m)?;
                }
                let m2 = y.generate_sync_message(sy);
                if let Some(m) = &m2 {
                    x.receive_sync_message(sx, m)?;
                }
                if m1.is_none() && m2.is_none() {
                    return Ok(());
                }
            }
        };
        in_process(&mut x, &mut sx, &mut y, &mut sy)?;
        let mut total = Duration::ZERO;
        for i in 0..CHANGES {
            x.apply(
                &[Edit::SetBudget {
                    budget: 0.5 + f64::from(i) / 10.0,
                }],
                "one change",
            )?;
            let start = Instant::now();
            in_process(&mut x, &mut sx, &mut y, &mut sy)?;
            total += start.elapsed();
        }
        println!(
            "  baseline: the same change synced in process: mean {}",
            ms(total / CHANGES)
        );
        let start = Instant::now();
        let _ = doc_a.save();
        println!(
            "  note: the daemon then saves the whole document to disk: save {}",
            ms(start.elapsed())
        );
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}
