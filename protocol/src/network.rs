//! The libp2p network layer (cargo feature `network`): the wire messages, the behaviour every
//! Maillage peer runs, the swarm constructor, key mapping and a per-peer rate limiter.
//!
//! Peers talk over TCP (Noise + Yamux) and QUIC and run:
//! - identify (protocol version [`IDENTIFY_PROTOCOL`]) and ping;
//! - request-response [`REQUEST_PROTOCOL`] with CBOR-encoded [`Request`]s and [`Response`]s,
//!   whose sizes are bounded by the codec ([`NetworkConfig::max_request_size`],
//!   [`NetworkConfig::max_response_size`]) and whose concurrent streams are bounded per
//!   connection;
//! - gossipsub on [`CHECKPOINT_TOPIC`] for checkpoint announcements, with signed messages,
//!   content-addressed message ids, a bounded message size and a whitelist of topics;
//! - connection limits, in total and per peer.
//!
//! This module builds the [`Swarm`] but never polls it: the node's single event loop owns it
//! (see STYLE.md, "Async and shutdown"). That loop admits peers by the membership registry
//! ([`peer_id_of`] maps a member's key to its `PeerId`), checks [`RateLimiter::check`] before
//! answering, and reports the validation result of every gossip message (see
//! [`MaillageBehaviour`]).

mod rate;
mod wire;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use libp2p::identity::{self, Keypair};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    PeerId, StreamProtocol, Swarm, SwarmBuilder, connection_limits, gossipsub, identify, noise,
    ping, tcp, yamux,
};
use sha2::{Digest, Sha256};

pub use rate::{RateLimit, RateLimited, RateLimiter};
pub use wire::{ByteString, Request, Response, Totals, TotalsRow};

/// The request-response protocol: [`Request`] and [`Response`] as CBOR.
pub const REQUEST_PROTOCOL: &str = "/maillage/req/1.0.0";

/// The protocol version peers announce with identify.
pub const IDENTIFY_PROTOCOL: &str = "/maillage/id/1.0.0";

/// The gossipsub topic of checkpoint announcements: each message is the wire bytes of a
/// [`crate::SignedCheckpoint`].
pub const CHECKPOINT_TOPIC: &str = "maillage/checkpoints/1";

/// The gossipsub topic of policy adoptions: each message is the JSON bytes of a
/// `maillage_policy::AdoptionRecord` that its publisher has just adopted.
pub const POLICY_TOPIC: &str = "maillage/policy-adoptions/1";

/// The largest policy sync message a peer sends or accepts in one [`Request::PolicySync`] or
/// [`Response::PolicySync`], in bytes (the request-response size bounds apply too).
pub const MAX_POLICY_SYNC_MESSAGE: usize = 4 * 1024 * 1024;

/// The most adoption records in one [`Response::PolicyAdoptions`]; a peer further behind asks
/// again after the last one it received.
pub const MAX_ADOPTIONS_PER_RESPONSE: usize = 64;

/// The gossipsub topic of policy adoptions, [`POLICY_TOPIC`].
pub fn policy_topic() -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(POLICY_TOPIC)
}

/// The gossipsub topic of checkpoint announcements, [`CHECKPOINT_TOPIC`].
pub fn checkpoint_topic() -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(CHECKPOINT_TOPIC)
}

/// The request-response behaviour of [`REQUEST_PROTOCOL`].
pub type RequestResponse = request_response::cbor::Behaviour<Request, Response>;

/// The gossipsub behaviour: no data transform, topics limited to the whitelist.
pub type Gossipsub =
    gossipsub::Behaviour<gossipsub::IdentityTransform, gossipsub::WhitelistSubscriptionFilter>;

/// The bounds and timeouts of the network layer. The default is a working local setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Largest request accepted, in bytes of CBOR (default 1 MiB: a release is a few KiB, an
    /// aggregate of a national node some hundreds). Larger requests are cut at this size and
    /// fail to decode: the sender gets an outbound failure, the receiver an inbound failure.
    pub max_request_size: u64,
    /// Largest response accepted, in bytes of CBOR (default 4 MiB).
    pub max_response_size: u64,
    /// Concurrent request-response streams per connection, inbound and outbound (default 32).
    pub max_concurrent_streams: usize,
    /// How long a request may take, from sending it to reading the response (default 30 s).
    pub request_timeout: Duration,
    /// A connection with no stream open for this long is closed (default 60 s).
    pub idle_connection_timeout: Duration,
    /// Established connections in total (default 256).
    pub max_connections: u32,
    /// Established connections per peer (default 2: a TCP and a QUIC one may cross).
    pub max_connections_per_peer: u32,
    /// Connections being set up, each way (default 64).
    pub max_pending_connections: u32,
    /// Largest gossipsub message, in bytes (default 64 KiB; a checkpoint is a few hundred).
    pub max_gossip_size: usize,
    /// The per-peer request rate, for the [`RateLimiter`] of the event loop.
    pub rate_limit: RateLimit,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            max_request_size: 1024 * 1024,
            max_response_size: 4 * 1024 * 1024,
            max_concurrent_streams: 32,
            request_timeout: Duration::from_secs(30),
            idle_connection_timeout: Duration::from_secs(60),
            max_connections: 256,
            max_connections_per_peer: 2,
            max_pending_connections: 64,
            max_gossip_size: 64 * 1024,
            rate_limit: RateLimit::default(),
        }
    }
}

impl NetworkConfig {
    /// Refuses bounds of zero, which would make the node unreachable or mute.
    pub fn validate(&self) -> Result<(), NetworkError> {
        let positive: [(&'static str, u64); 8] = [
            ("max_request_size", self.max_request_size),
            ("max_response_size", self.max_response_size),
            ("max_concurrent_streams", self.max_concurrent_streams as u64),
            ("max_connections", u64::from(self.max_connections)),
            (
                "max_connections_per_peer",
                u64::from(self.max_connections_per_peer),
            ),
            (
                "max_pending_connections",
                u64::from(self.max_pending_connections),
            ),
            ("max_gossip_size", self.max_gossip_size as u64),
            ("rate_limit.burst", u64::from(self.rate_limit.burst)),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(NetworkError::InvalidConfig {
                    field,
                    value: value.to_string(),
                    expected: "a number greater than 0",
                });
            }
        }
        let durations = [
            ("request_timeout", self.request_timeout),
            ("idle_connection_timeout", self.idle_connection_timeout),
            ("rate_limit.every", self.rate_limit.every),
        ];
        for (field, value) in durations {
            if value.is_zero() {
                return Err(NetworkError::InvalidConfig {
                    field,
                    value: format!("{value:?}"),
                    expected: "a duration greater than 0",
                });
            }
        }
        Ok(())
    }
}

/// Why the network layer could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    /// A [`NetworkConfig`] field is out of range.
    #[error("network configuration: {field} = {value}: expected {expected}")]
    InvalidConfig {
        /// The field, as named in [`NetworkConfig`].
        field: &'static str,
        /// Its value.
        value: String,
        /// What would be accepted.
        expected: &'static str,
    },
    /// The Noise handshake could not be configured with the node's key.
    #[error("network: Noise configuration: {0}")]
    Noise(#[from] noise::Error),
    /// Gossipsub refused its configuration.
    #[error("network: gossipsub configuration: {0}")]
    Gossipsub(String),
}

/// The behaviour every Maillage peer runs; see the module documentation.
///
/// Gossip messages are validated by the application before they are forwarded: for each
/// [`gossipsub::Event::Message`] the event loop must call
/// `gossipsub.report_message_validation_result` with `Accept` once the bytes decode and verify
/// as a [`crate::SignedCheckpoint`] of a known hub, `Reject` otherwise (a message never reported
/// is delivered locally but not relayed).
#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
pub struct MaillageBehaviour {
    /// Connection limits; first, so it refuses connections before the others see them.
    pub limits: connection_limits::Behaviour,
    /// Identify, announcing [`IDENTIFY_PROTOCOL`].
    pub identify: identify::Behaviour,
    /// Ping, to keep connections alive and measure round trips.
    pub ping: ping::Behaviour,
    /// [`REQUEST_PROTOCOL`].
    pub request_response: RequestResponse,
    /// Checkpoint announcements on [`CHECKPOINT_TOPIC`], policy adoptions on [`POLICY_TOPIC`].
    pub gossipsub: Gossipsub,
}

impl std::fmt::Debug for MaillageBehaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaillageBehaviour").finish_non_exhaustive()
    }
}

impl MaillageBehaviour {
    /// The behaviour of the peer with `keypair`, bounded by `config`.
    pub fn new(keypair: &Keypair, config: &NetworkConfig) -> Result<Self, NetworkError> {
        config.validate()?;
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_established(Some(config.max_connections))
            .with_max_established_per_peer(Some(config.max_connections_per_peer))
            .with_max_pending_incoming(Some(config.max_pending_connections))
            .with_max_pending_outgoing(Some(config.max_pending_connections));

        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), keypair.public())
                .with_agent_version(format!("maillage/{}", env!("CARGO_PKG_VERSION"))),
        );

        let codec = request_response::cbor::codec::Codec::default()
            .set_request_size_maximum(config.max_request_size)
            .set_response_size_maximum(config.max_response_size);
        let request_response = RequestResponse::with_codec(
            codec,
            [(StreamProtocol::new(REQUEST_PROTOCOL), ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(config.request_timeout)
                .with_max_concurrent_streams(config.max_concurrent_streams),
        );

        let gossip_config = gossipsub::ConfigBuilder::default()
            .max_transmit_size(config.max_gossip_size)
            // Only signed messages with author and sequence number are accepted.
            .validation_mode(gossipsub::ValidationMode::Strict)
            // The same checkpoint relayed by several peers is one message.
            .message_id_fn(|message: &gossipsub::Message| {
                gossipsub::MessageId::from(Sha256::digest(&message.data).to_vec())
            })
            // Forward only what the application has verified.
            .validate_messages()
            .build()
            .map_err(|e| NetworkError::Gossipsub(e.to_string()))?;
        let topics = HashSet::from([checkpoint_topic().hash(), policy_topic().hash()]);
        let gossipsub = Gossipsub::new_with_subscription_filter(
            gossipsub::MessageAuthenticity::Signed(keypair.clone()),
            gossip_config,
            gossipsub::WhitelistSubscriptionFilter(topics),
        )
        .map_err(|e| NetworkError::Gossipsub(e.to_owned()))?;

        Ok(Self {
            limits: connection_limits::Behaviour::new(limits),
            identify,
            ping: ping::Behaviour::default(),
            request_response,
            gossipsub,
        })
    }
}

/// The swarm of the peer with `keypair`: TCP (Noise, Yamux) and QUIC transports on tokio,
/// [`MaillageBehaviour`], and the idle timeout of `config`. It listens nowhere yet.
pub fn build_swarm(
    keypair: Keypair,
    config: &NetworkConfig,
) -> Result<Swarm<MaillageBehaviour>, NetworkError> {
    let behaviour = MaillageBehaviour::new(&keypair, config)?;
    let idle = config.idle_connection_timeout;
    let Ok(builder) = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_quic()
        .with_behaviour(|_| behaviour);
    Ok(builder
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build())
}

/// The libp2p keypair of a node whose ed25519 key has the 32-byte `secret` seed.
pub fn keypair_from_ed25519_secret(mut secret: [u8; 32]) -> Keypair {
    // Expect safety: an ed25519 secret key is any 32 bytes; only the length is checked.
    // (`ed25519_from_bytes` zeroes this copy of the secret.)
    Keypair::ed25519_from_bytes(&mut secret).expect("32 bytes are an ed25519 secret key")
}

/// The `PeerId` of the node whose ed25519 public key is `key`, so that a hub can recognise the
/// members of its registry among the peers that connect.
pub fn peer_id_of(key: &VerifyingKey) -> PeerId {
    // Expect safety: a `VerifyingKey` is a valid compressed point, which is all libp2p checks.
    let public = identity::ed25519::PublicKey::try_from_bytes(key.as_bytes())
        .expect("a VerifyingKey is a valid ed25519 public key");
    identity::PublicKey::from(public).to_peer_id()
}
