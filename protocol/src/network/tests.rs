//! Tests of the network layer: wire encoding through the real codec, keys, configuration, and
//! swarms talking over loopback TCP and QUIC in one process. Every swarm test is bounded by
//! [`LIMIT`] so that a lost event fails the test instead of hanging it.

use std::error::Error;
use std::io;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use libp2p::futures::executor::block_on;
use libp2p::futures::future::Either;
use libp2p::futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::request_response::{self, Codec as _, ProtocolSupport};
use libp2p::swarm::{ListenError, NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder, gossipsub, noise, tcp, yamux,
};
use proptest::prelude::*;
use tokio::time::timeout;

use super::*;
use crate::checkpoint::{contribution_leaf_hash, contributions_origin};
use crate::{
    Cell, Checkpoint, Indicator, Mechanism, MerkleLog, Period, Release, ReleaseId,
    SignedCheckpoint, SignedReceipt, SignedRelease,
};

type TestResult = Result<(), Box<dyn Error>>;

/// The most any swarm test may take; they take well under a second on loopback.
const LIMIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Fixtures

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn cells_of(indicator: Indicator) -> Vec<Cell> {
    let cell = |category: Option<&str>, value| Cell {
        indicator,
        category: category.map(str::to_owned),
        value,
        scale: 4.0,
        ci95_half_width: 11.98,
    };
    let categories = indicator.categories();
    if categories.is_empty() {
        vec![cell(None, 7)]
    } else {
        categories
            .iter()
            .zip(0..)
            .map(|(c, v)| cell(Some(c), v))
            .collect()
    }
}

/// A small valid release of `member`, signed.
fn signed_release(member: &SigningKey) -> Result<SignedRelease, Box<dyn Error>> {
    let mut cells = cells_of(Indicator::Accompagnements);
    cells.extend(cells_of(Indicator::Beneficiaires));
    let release = Release {
        signer: member.verifying_key(),
        period: Period::new(2026, 10).ok_or("period in range")?,
        params: "maillage-core-v1/eps=1.0/laplace".to_owned(),
        mechanism: Mechanism::Laplace { epsilon: 1.0 },
        created_at: 1_793_491_200,
        cells,
    };
    Ok(release.sign(member)?)
}

/// The receipt `hub` gives for `release`, as wire bytes.
fn receipt_bytes(hub: &SigningKey, release: ReleaseId) -> Result<Vec<u8>, Box<dyn Error>> {
    let mut log = MerkleLog::new();
    log.append_leaf_hash(contribution_leaf_hash(&release));
    let checkpoint = Checkpoint {
        origin: contributions_origin(&hub.verifying_key()),
        tree_size: 1,
        root: log.root(),
        timestamp: 1_793_491_300,
        signer: hub.verifying_key(),
    }
    .sign(hub)?;
    Ok(SignedReceipt::issue(&log, checkpoint, release, 0)?.to_bytes())
}

fn checkpoint_bytes(hub: &SigningKey) -> Result<Vec<u8>, Box<dyn Error>> {
    let checkpoint = Checkpoint {
        origin: contributions_origin(&hub.verifying_key()),
        tree_size: 1,
        root: [0x5a; 32],
        timestamp: 1_793_491_300,
        signer: hub.verifying_key(),
    };
    Ok(checkpoint.sign(hub)?.to_bytes())
}

/// Test bounds: short request timeout, everything else default.
fn test_config() -> NetworkConfig {
    NetworkConfig {
        request_timeout: Duration::from_secs(5),
        ..NetworkConfig::default()
    }
}

fn swarm(seed: u8, config: &NetworkConfig) -> Result<Swarm<MaillageBehaviour>, NetworkError> {
    build_swarm(keypair_from_ed25519_secret(key(seed).to_bytes()), config)
}

#[derive(Debug, Clone, Copy)]
enum Transport {
    Tcp,
    Quic,
}

impl Transport {
    fn listen_addr(self) -> Multiaddr {
        let text = match self {
            Transport::Tcp => "/ip4/127.0.0.1/tcp/0",
            Transport::Quic => "/ip4/127.0.0.1/udp/0/quic-v1",
        };
        // Expect safety: constant, valid multiaddrs.
        text.parse().expect("valid multiaddr")
    }
}

// ---------------------------------------------------------------------------------------------
// Driving swarms

/// Starts listening on `transport`'s loopback address and returns the address bound.
async fn listen<B: NetworkBehaviour>(
    swarm: &mut Swarm<B>,
    transport: Transport,
) -> Result<Multiaddr, Box<dyn Error>> {
    swarm.listen_on(transport.listen_addr())?;
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            return Ok(address);
        }
    }
}

/// The next event of either swarm.
async fn next2<A: NetworkBehaviour, B: NetworkBehaviour>(
    a: &mut Swarm<A>,
    b: &mut Swarm<B>,
) -> Either<SwarmEvent<A::ToSwarm>, SwarmEvent<B::ToSwarm>> {
    tokio::select! {
        e = a.select_next_some() => Either::Left(e),
        e = b.select_next_some() => Either::Right(e),
    }
}

/// A hub as the node's event loop would run it: answers submissions with a fixed receipt after
/// checking the release and the peer's rate, and counts what went wrong.
struct Hub {
    swarm: Swarm<MaillageBehaviour>,
    expected_release: ReleaseId,
    receipt: Vec<u8>,
    limiter: RateLimiter,
    requests_from: Vec<PeerId>,
    denied_connections: usize,
}

impl Hub {
    fn new(config: &NetworkConfig, expected: &SignedRelease) -> Result<Self, Box<dyn Error>> {
        Ok(Self {
            swarm: swarm(1, config)?,
            expected_release: expected.id(),
            receipt: receipt_bytes(&key(1), expected.id())?,
            limiter: RateLimiter::new(config.rate_limit),
            requests_from: Vec::new(),
            denied_connections: 0,
        })
    }

    fn answer(&mut self, peer: PeerId, request: Request) -> Response {
        if let Err(e) = self.limiter.check(&peer, Instant::now()) {
            return Response::Refused {
                reason: e.to_string(),
            };
        }
        match request {
            Request::SubmitRelease { release } => {
                match SignedRelease::decode_and_verify(&release) {
                    Ok(signed) if signed.id() == self.expected_release => Response::Receipt {
                        receipt: self.receipt.clone(),
                    },
                    Ok(signed) => Response::Refused {
                        reason: format!("release {} is not expected here", signed.id()),
                    },
                    Err(e) => Response::Refused {
                        reason: e.to_string(),
                    },
                }
            }
            other => Response::Error {
                message: format!("{} is not served by this test hub", other.kind()),
            },
        }
    }

    fn on_event(&mut self, event: SwarmEvent<MaillageBehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(MaillageBehaviourEvent::RequestResponse(
                request_response::Event::Message {
                    peer,
                    message:
                        request_response::Message::Request {
                            request, channel, ..
                        },
                    ..
                },
            )) => {
                self.requests_from.push(peer);
                let response = self.answer(peer, request);
                // The requester may be gone already; that is its problem, not the hub's.
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .request_response
                    .send_response(channel, response);
            }
            SwarmEvent::IncomingConnectionError {
                error: ListenError::Denied { .. },
                ..
            } => self.denied_connections += 1,
            _ => {}
        }
    }

    /// Drives the hub and `client` until `f` returns something for a client event.
    async fn run_until<C: NetworkBehaviour, T>(
        &mut self,
        client: &mut Swarm<C>,
        mut f: impl FnMut(&mut Swarm<C>, SwarmEvent<C::ToSwarm>) -> Option<T>,
    ) -> T {
        loop {
            match next2(&mut self.swarm, client).await {
                Either::Left(e) => self.on_event(e),
                Either::Right(e) => {
                    if let Some(t) = f(client, e) {
                        return t;
                    }
                }
            }
        }
    }

    /// `client` dials the hub at `addr`; returns once the client is connected.
    async fn connect<C: NetworkBehaviour>(
        &mut self,
        client: &mut Swarm<C>,
        addr: &Multiaddr,
    ) -> TestResult {
        let hub_id = *self.swarm.local_peer_id();
        client.add_peer_address(hub_id, addr.clone());
        client.dial(addr.clone())?;
        self.run_until(client, |_, e| match e {
            SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == hub_id => Some(Ok(())),
            SwarmEvent::OutgoingConnectionError { error, .. } => Some(Err(error.to_string())),
            _ => None,
        })
        .await?;
        Ok(())
    }
}

/// What became of one request of a [`MaillageBehaviour`] client.
fn outcome_of(
    id: request_response::OutboundRequestId,
    event: SwarmEvent<MaillageBehaviourEvent>,
) -> Option<Result<Response, request_response::OutboundFailure>> {
    match event {
        SwarmEvent::Behaviour(MaillageBehaviourEvent::RequestResponse(e)) => match e {
            request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } if request_id == id => Some(Ok(response)),
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } if request_id == id => Some(Err(error)),
            _ => None,
        },
        _ => None,
    }
}

/// Sends `request` to the hub and waits for its outcome.
async fn ask(
    hub: &mut Hub,
    client: &mut Swarm<MaillageBehaviour>,
    request: Request,
) -> Result<Response, request_response::OutboundFailure> {
    let hub_id = *hub.swarm.local_peer_id();
    let id = client
        .behaviour_mut()
        .request_response
        .send_request(&hub_id, request);
    hub.run_until(client, |_, e| outcome_of(id, e)).await
}

// ---------------------------------------------------------------------------------------------
// Request-response

async fn submit_release_gets_verified_receipt(transport: Transport) -> TestResult {
    let member = key(2);
    let release = signed_release(&member)?;
    let mut hub = Hub::new(&test_config(), &release)?;
    let mut client = swarm(2, &test_config())?;
    let addr = listen(&mut hub.swarm, transport).await?;
    hub.connect(&mut client, &addr).await?;

    let response = ask(
        &mut hub,
        &mut client,
        Request::SubmitRelease {
            release: release.to_bytes(),
        },
    )
    .await?;
    let Response::Receipt { receipt } = response else {
        return Err(format!("expected a receipt, got {response:?}").into());
    };
    let receipt = SignedReceipt::decode_and_verify(&receipt)?;
    assert_eq!(receipt.receipt().release_id, release.id());
    assert_eq!(receipt.receipt().hub, key(1).verifying_key());
    // The hub saw the request come from the member's key: admission by registry works.
    assert_eq!(hub.requests_from, vec![peer_id_of(&member.verifying_key())]);
    Ok(())
}

#[tokio::test]
async fn submit_release_gets_verified_receipt_over_tcp() -> TestResult {
    timeout(LIMIT, submit_release_gets_verified_receipt(Transport::Tcp)).await?
}

#[tokio::test]
async fn submit_release_gets_verified_receipt_over_quic() -> TestResult {
    timeout(LIMIT, submit_release_gets_verified_receipt(Transport::Quic)).await?
}

async fn oversized_request_is_refused_and_hub_stays_up(transport: Transport) -> TestResult {
    let member = key(2);
    let release = signed_release(&member)?;
    let hub_config = NetworkConfig {
        max_request_size: 16 * 1024,
        ..test_config()
    };
    let mut hub = Hub::new(&hub_config, &release)?;
    let mut client = swarm(2, &test_config())?;
    let addr = listen(&mut hub.swarm, transport).await?;
    hub.connect(&mut client, &addr).await?;

    let oversized = Request::SubmitRelease {
        release: vec![0xa5; 64 * 1024],
    };
    let outcome = ask(&mut hub, &mut client, oversized).await;
    assert!(
        outcome.is_err(),
        "an oversized request must fail, got {outcome:?}"
    );
    // The connection survives: only the stream was dropped.
    assert!(hub.swarm.is_connected(client.local_peer_id()));

    let response = ask(
        &mut hub,
        &mut client,
        Request::SubmitRelease {
            release: release.to_bytes(),
        },
    )
    .await?;
    assert!(
        matches!(response, Response::Receipt { .. }),
        "got {response:?}"
    );
    // Only the valid request reached the application: libp2p drops a request that fails to
    // decode without an event (a debug log only), so the event loop never sees it.
    assert_eq!(hub.requests_from.len(), 1);
    Ok(())
}

#[tokio::test]
async fn oversized_request_is_refused_and_hub_stays_up_over_tcp() -> TestResult {
    timeout(
        LIMIT,
        oversized_request_is_refused_and_hub_stays_up(Transport::Tcp),
    )
    .await?
}

#[tokio::test]
async fn oversized_request_is_refused_and_hub_stays_up_over_quic() -> TestResult {
    timeout(
        LIMIT,
        oversized_request_is_refused_and_hub_stays_up(Transport::Quic),
    )
    .await?
}

/// A codec that sends and receives raw bytes on [`REQUEST_PROTOCOL`]: a peer that does not
/// follow the protocol.
#[derive(Debug, Clone, Copy)]
struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: libp2p::futures::AsyncRead + Unpin + Send,
    {
        let mut out = Vec::new();
        io.take(1 << 20).read_to_end(&mut out).await?;
        Ok(out)
    }

    async fn read_response<T>(&mut self, p: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: libp2p::futures::AsyncRead + Unpin + Send,
    {
        let out = self.read_request(p, io).await?;
        if out.is_empty() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no response"));
        }
        Ok(out)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        r: Vec<u8>,
    ) -> io::Result<()>
    where
        T: libp2p::futures::AsyncWrite + Unpin + Send,
    {
        io.write_all(&r).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        r: Vec<u8>,
    ) -> io::Result<()>
    where
        T: libp2p::futures::AsyncWrite + Unpin + Send,
    {
        io.write_all(&r).await
    }
}

type RawBehaviour = request_response::Behaviour<RawCodec>;

fn raw_swarm() -> Result<Swarm<RawBehaviour>, Box<dyn Error>> {
    Ok(SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_quic()
        .with_behaviour(|_| {
            RawBehaviour::with_codec(
                RawCodec,
                [(
                    StreamProtocol::new(REQUEST_PROTOCOL),
                    ProtocolSupport::Outbound,
                )],
                request_response::Config::default().with_request_timeout(Duration::from_secs(5)),
            )
        })?
        .build())
}

fn protocol() -> StreamProtocol {
    StreamProtocol::new(REQUEST_PROTOCOL)
}

/// `request` as the real codec writes it.
fn encode_request(request: Request) -> io::Result<Vec<u8>> {
    let mut codec = request_response::cbor::codec::Codec::<Request, Response>::default();
    let mut out = libp2p::futures::io::Cursor::new(Vec::new());
    block_on(codec.write_request(&protocol(), &mut out, request))?;
    Ok(out.into_inner())
}

fn decode_request(bytes: &[u8]) -> io::Result<Request> {
    let mut codec = request_response::cbor::codec::Codec::<Request, Response>::default();
    block_on(codec.read_request(&protocol(), &mut libp2p::futures::io::Cursor::new(bytes)))
}

fn encode_response(response: Response) -> io::Result<Vec<u8>> {
    let mut codec = request_response::cbor::codec::Codec::<Request, Response>::default();
    let mut out = libp2p::futures::io::Cursor::new(Vec::new());
    block_on(codec.write_response(&protocol(), &mut out, response))?;
    Ok(out.into_inner())
}

fn decode_response(bytes: &[u8]) -> io::Result<Response> {
    let mut codec = request_response::cbor::codec::Codec::<Request, Response>::default();
    block_on(codec.read_response(&protocol(), &mut libp2p::futures::io::Cursor::new(bytes)))
}

async fn malformed_requests_do_not_hurt_the_hub(transport: Transport) -> TestResult {
    let release = signed_release(&key(2))?;
    let mut hub = Hub::new(&test_config(), &release)?;
    let mut raw = raw_swarm()?;
    let addr = listen(&mut hub.swarm, transport).await?;
    hub.connect(&mut raw, &addr).await?;
    let hub_id = *hub.swarm.local_peer_id();

    let mut deep = vec![0x81; 100_000]; // arrays nested 100,000 deep
    deep.push(0x00);
    let valid = encode_request(Request::SubmitRelease {
        release: release.to_bytes(),
    })?;
    let garbage: Vec<Vec<u8>> = vec![
        vec![0xff; 100],                          // a lone "break" code, repeated
        valid[..valid.len() / 2].to_vec(),        // truncated
        vec![0x63, b'a', b'b', b'c'],             // valid CBOR, wrong type
        vec![0xa1, 0x63, b'F', b'o', b'o', 0x00], // an unknown variant
        vec![0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // a 2^64-byte string
        deep,
        Vec::new(), // nothing at all
    ];
    for bytes in garbage {
        let id = raw.behaviour_mut().send_request(&hub_id, bytes);
        let outcome = hub
            .run_until(&mut raw, |_, e| match e {
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message:
                        request_response::Message::Response {
                            request_id,
                            response,
                        },
                    ..
                }) if request_id == id => Some(Ok(response)),
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                    request_id,
                    error,
                    ..
                }) if request_id == id => Some(Err(error)),
                _ => None,
            })
            .await;
        assert!(outcome.is_err(), "garbage got an answer: {outcome:?}");
    }
    // Nothing reached the application (libp2p drops undecodable requests without an event),
    // and the connection survived every one of them.
    assert!(hub.requests_from.is_empty());
    assert!(hub.swarm.is_connected(raw.local_peer_id()));

    // The same stream, well formed this time, is answered.
    let id = raw.behaviour_mut().send_request(&hub_id, valid);
    let bytes = hub
        .run_until(&mut raw, |_, e| match e {
            SwarmEvent::Behaviour(request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            }) if request_id == id => Some(Ok(response)),
            SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                request_id,
                error,
                ..
            }) if request_id == id => Some(Err(error)),
            _ => None,
        })
        .await?;
    let response = decode_response(&bytes)?;
    assert!(
        matches!(response, Response::Receipt { .. }),
        "got {response:?}"
    );
    Ok(())
}

#[tokio::test]
async fn malformed_requests_do_not_hurt_the_hub_over_tcp() -> TestResult {
    timeout(
        LIMIT,
        malformed_requests_do_not_hurt_the_hub(Transport::Tcp),
    )
    .await?
}

#[tokio::test]
async fn malformed_requests_do_not_hurt_the_hub_over_quic() -> TestResult {
    timeout(
        LIMIT,
        malformed_requests_do_not_hurt_the_hub(Transport::Quic),
    )
    .await?
}

#[tokio::test]
async fn requests_beyond_the_rate_are_refused_on_the_wire() -> TestResult {
    timeout(LIMIT, async {
        let release = signed_release(&key(2))?;
        let config = NetworkConfig {
            rate_limit: RateLimit {
                burst: 2,
                every: Duration::from_secs(3600),
                max_peers: 8,
            },
            ..test_config()
        };
        let mut hub = Hub::new(&config, &release)?;
        let mut client = swarm(2, &test_config())?;
        let addr = listen(&mut hub.swarm, Transport::Tcp).await?;
        hub.connect(&mut client, &addr).await?;
        let submit = || Request::SubmitRelease {
            release: release.to_bytes(),
        };
        for _ in 0..2 {
            let response = ask(&mut hub, &mut client, submit()).await?;
            assert!(
                matches!(response, Response::Receipt { .. }),
                "got {response:?}"
            );
        }
        let response = ask(&mut hub, &mut client, submit()).await?;
        let Response::Refused { reason } = response else {
            return Err(format!("expected a refusal, got {response:?}").into());
        };
        assert!(reason.contains("too many requests"), "reason: {reason}");
        Ok(())
    })
    .await?
}

#[tokio::test]
async fn connections_beyond_the_limit_are_denied() -> TestResult {
    timeout(LIMIT, async {
        let release = signed_release(&key(2))?;
        let config = NetworkConfig {
            max_connections: 1,
            ..test_config()
        };
        let mut hub = Hub::new(&config, &release)?;
        let addr = listen(&mut hub.swarm, Transport::Tcp).await?;
        let mut first = swarm(2, &test_config())?;
        hub.connect(&mut first, &addr).await?;
        let mut second = swarm(3, &test_config())?;
        second.dial(addr.clone())?;
        // Drive all three until the hub denies the second connection.
        while hub.denied_connections == 0 {
            tokio::select! {
                e = hub.swarm.select_next_some() => hub.on_event(e),
                _ = first.select_next_some() => {}
                _ = second.select_next_some() => {}
            }
        }
        assert_eq!(hub.swarm.connected_peers().count(), 1);
        assert!(hub.swarm.is_connected(first.local_peer_id()));
        Ok(())
    })
    .await?
}

// ---------------------------------------------------------------------------------------------
// Gossipsub

#[tokio::test]
async fn checkpoint_announcement_is_delivered_after_subscription() -> TestResult {
    timeout(LIMIT, async {
        let release = signed_release(&key(2))?;
        let mut hub = Hub::new(&test_config(), &release)?;
        let mut member = swarm(2, &test_config())?;
        let addr = listen(&mut hub.swarm, Transport::Tcp).await?;
        let topic = checkpoint_topic();
        let announcement = checkpoint_bytes(&key(1))?;

        // Before anyone subscribes, publishing fails (the pitfall the node must handle).
        let early = hub
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic.clone(), announcement.clone());
        assert!(
            matches!(
                early,
                Err(gossipsub::PublishError::NoPeersSubscribedToTopic)
            ),
            "got {early:?}"
        );

        // Topics outside the whitelist are refused locally.
        let stray = gossipsub::IdentTopic::new("maillage/other/1");
        assert!(member.behaviour_mut().gossipsub.subscribe(&stray).is_err());

        assert!(member.behaviour_mut().gossipsub.subscribe(&topic)?);
        hub.connect(&mut member, &addr).await?;

        // Wait on the hub's side for the member's subscription, then publish.
        let member_id = *member.local_peer_id();
        loop {
            match next2(&mut hub.swarm, &mut member).await {
                Either::Left(SwarmEvent::Behaviour(MaillageBehaviourEvent::Gossipsub(
                    gossipsub::Event::Subscribed { peer_id, topic: t },
                ))) if peer_id == member_id && t == topic.hash() => break,
                Either::Left(e) => hub.on_event(e),
                Either::Right(_) => {}
            }
        }
        hub.swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic.clone(), announcement.clone())?;

        let hub_id = *hub.swarm.local_peer_id();
        let (source, message_id, message) = hub
            .run_until(&mut member, |_, e| match e {
                SwarmEvent::Behaviour(MaillageBehaviourEvent::Gossipsub(
                    gossipsub::Event::Message {
                        propagation_source,
                        message_id,
                        message,
                    },
                )) => Some((propagation_source, message_id, message)),
                _ => None,
            })
            .await;
        assert_eq!(source, hub_id);
        assert_eq!(
            message.source,
            Some(hub_id),
            "messages are signed by their author"
        );
        assert_eq!(message.topic, topic.hash());
        let checkpoint = SignedCheckpoint::decode_and_verify(&message.data)?;
        assert_eq!(checkpoint.checkpoint().signer, key(1).verifying_key());
        // The event loop accepts what it verified, so gossipsub may forward it.
        assert!(
            member
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(
                    &message_id,
                    &hub_id,
                    gossipsub::MessageAcceptance::Accept,
                )
        );
        Ok(())
    })
    .await?
}

// ---------------------------------------------------------------------------------------------
// Wire encoding, through the codec the swarm uses

fn bytes_strategy() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..300)
}

fn request_strategy() -> impl Strategy<Value = Request> {
    prop_oneof![
        bytes_strategy().prop_map(|release| Request::SubmitRelease { release }),
        bytes_strategy().prop_map(|aggregate| Request::SubmitAggregate { aggregate }),
        (".{0,20}", ".{0,10}", proptest::option::of(".{0,12}")).prop_map(
            |(indicator, period, by)| Request::Query {
                indicator,
                period,
                by
            }
        ),
        proptest::option::of(any::<u64>()).prop_map(|size| Request::FetchCheckpoint { size }),
        any::<u64>().prop_map(|index| Request::FetchContribution { index }),
        (any::<u64>(), any::<u64>()).prop_map(|(index, size)| Request::FetchProof { index, size }),
        proptest::option::of(bytes_strategy()).prop_map(|message| Request::PolicySync { message }),
        any::<u64>().prop_map(|after| Request::FetchAdoptions { after }),
    ]
}

fn finite() -> impl Strategy<Value = f64> {
    -1e15f64..1e15
}

fn row_strategy() -> impl Strategy<Value = TotalsRow> {
    (
        ".{0,9}",
        proptest::option::of(".{0,9}"),
        finite(),
        finite(),
        (finite(), finite()),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(
                territory,
                category,
                estimate,
                variance,
                (ci95_low, ci95_high),
                contributors,
                members,
            )| TotalsRow {
                territory,
                category,
                estimate,
                variance,
                ci95_low,
                ci95_high,
                contributors,
                members,
            },
        )
}

fn response_strategy() -> impl Strategy<Value = Response> {
    prop_oneof![
        bytes_strategy().prop_map(|receipt| Response::Receipt { receipt }),
        ".{0,40}".prop_map(|reason| Response::Refused { reason }),
        (
            ".{0,20}",
            ".{0,10}",
            proptest::option::of(".{0,12}"),
            proptest::collection::vec(row_strategy(), 0..5)
        )
            .prop_map(|(indicator, period, by, rows)| Response::Totals {
                totals: Totals {
                    indicator,
                    period,
                    by,
                    rows
                }
            }),
        bytes_strategy().prop_map(|checkpoint| Response::Checkpoint { checkpoint }),
        (bytes_strategy(), bytes_strategy())
            .prop_map(|(release, receipt)| Response::Contribution { release, receipt }),
        proptest::collection::vec(any::<[u8; 32]>(), 0..40)
            .prop_map(|hashes| Response::Proof { hashes }),
        ".{0,40}".prop_map(|message| Response::Error { message }),
        proptest::option::of(bytes_strategy()).prop_map(|message| Response::PolicySync { message }),
        proptest::collection::vec(bytes_strategy().prop_map(ByteString), 0..5)
            .prop_map(|records| Response::PolicyAdoptions { records }),
    ]
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

proptest! {
    #[test]
    fn requests_round_trip_through_the_codec(request in request_strategy()) {
        let bytes = encode_request(request.clone()).map_err(fail)?;
        prop_assert_eq!(decode_request(&bytes).map_err(fail)?, request);
    }

    #[test]
    fn responses_round_trip_through_the_codec(response in response_strategy()) {
        let bytes = encode_response(response.clone()).map_err(fail)?;
        prop_assert_eq!(decode_response(&bytes).map_err(fail)?, response);
    }

    #[test]
    fn responses_round_trip_through_json(response in response_strategy()) {
        let text = serde_json::to_string(&response).map_err(fail)?;
        prop_assert_eq!(serde_json::from_str::<Response>(&text).map_err(fail)?, response);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode_request(&bytes);
        let _ = decode_response(&bytes);
    }

    #[test]
    fn damaged_requests_never_panic_the_decoder(
        request in request_strategy(),
        at in any::<proptest::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let mut bytes = encode_request(request).map_err(fail)?;
        if !bytes.is_empty() {
            let i = at.index(bytes.len());
            bytes[i] ^= mask;
        }
        let _ = decode_request(&bytes);
    }
}

/// Byte strings travel as CBOR byte strings (major type 2), not as arrays of integers.
#[test]
fn request_encoding_vector() -> TestResult {
    let bytes = encode_request(Request::SubmitRelease {
        release: vec![1, 2, 3],
    })?;
    let mut expected = vec![0xa1, 0x6d];
    expected.extend_from_slice(b"SubmitRelease");
    expected.extend_from_slice(&[0xa1, 0x67]);
    expected.extend_from_slice(b"release");
    expected.extend_from_slice(&[0x43, 1, 2, 3]);
    assert_eq!(hex::encode(&bytes), hex::encode(&expected));

    let bytes = encode_request(Request::FetchCheckpoint { size: None })?;
    let mut expected = vec![0xa1, 0x6f];
    expected.extend_from_slice(b"FetchCheckpoint");
    expected.extend_from_slice(&[0xa1, 0x64]);
    expected.extend_from_slice(b"size");
    expected.push(0xf6);
    assert_eq!(hex::encode(&bytes), hex::encode(&expected));
    Ok(())
}

#[test]
fn proof_encoding_vector() -> TestResult {
    let bytes = encode_response(Response::Proof {
        hashes: vec![[0x11; 32]],
    })?;
    let mut expected = vec![0xa1, 0x65];
    expected.extend_from_slice(b"Proof");
    expected.extend_from_slice(&[0xa1, 0x66]);
    expected.extend_from_slice(b"hashes");
    expected.extend_from_slice(&[0x81, 0x58, 0x20]);
    expected.extend_from_slice(&[0x11; 32]);
    assert_eq!(hex::encode(&bytes), hex::encode(&expected));

    // A hash of another length is refused.
    let mut short = expected.clone();
    short.truncate(short.len() - 32 - 2);
    short.extend_from_slice(&[0x58, 0x1f]);
    short.extend_from_slice(&[0x11; 31]);
    assert!(decode_response(&short).is_err());
    Ok(())
}

#[test]
fn oversized_payload_is_cut_by_the_codec() -> TestResult {
    let bytes = encode_request(Request::SubmitRelease {
        release: vec![0; 2000],
    })?;
    let mut codec = request_response::cbor::codec::Codec::<Request, Response>::default()
        .set_request_size_maximum(1000);
    let read =
        block_on(codec.read_request(&protocol(), &mut libp2p::futures::io::Cursor::new(&bytes)));
    assert!(read.is_err());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Keys and configuration

#[test]
fn peer_id_of_a_member_key_is_the_peer_id_of_its_node() {
    for seed in [1u8, 2, 42, 255] {
        let secret = key(seed);
        let keypair = keypair_from_ed25519_secret(secret.to_bytes());
        assert_eq!(
            keypair.public().to_peer_id(),
            peer_id_of(&secret.verifying_key())
        );
        // The libp2p key signs like the node's key: same seed, same key.
        let message = b"maillage";
        let signature = keypair.sign(message).map_err(|e| e.to_string());
        assert_eq!(
            signature.as_deref().ok(),
            Some(
                ed25519_dalek::Signer::sign(&secret, message)
                    .to_bytes()
                    .as_slice()
            )
        );
    }
    assert_ne!(
        peer_id_of(&key(1).verifying_key()),
        peer_id_of(&key(2).verifying_key())
    );
}

#[test]
fn config_default_is_valid_and_zero_bounds_are_named() {
    assert!(NetworkConfig::default().validate().is_ok());
    let config = NetworkConfig {
        max_request_size: 0,
        ..NetworkConfig::default()
    };
    let message = match build_swarm(keypair_from_ed25519_secret([3; 32]), &config) {
        Err(e) => e.to_string(),
        Ok(_) => String::from("accepted"),
    };
    assert!(message.contains("max_request_size = 0"), "{message}");
    let config = NetworkConfig {
        rate_limit: RateLimit {
            every: Duration::ZERO,
            ..RateLimit::default()
        },
        ..NetworkConfig::default()
    };
    let message = config.validate().map_err(|e| e.to_string()).err();
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("rate_limit.every")),
        "{message:?}"
    );
}
