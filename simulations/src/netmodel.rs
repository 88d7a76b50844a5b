//! A network model for timings: each link has a round-trip time and a bandwidth; message sizes
//! are the real encoded bytes (plus a fixed per-message transport overhead); processing times
//! are the CPU times measured on the real code.
//!
//! Model of one period's close (all structures release at t = 0, the worst-case burst):
//! a structure's release reaches its hub after a connection set-up (`handshake_rtts` round
//! trips: TCP, then Noise), half a round trip and its transfer time at the structure's uplink;
//! the hub's downlink then serves arrivals first come, first served. The hub processes its
//! batch (measured), signs its aggregate (measured) and sends it to the national node (set-up,
//! half a round trip, transfer at the hub's uplink). The national total is ready when the last
//! hub aggregate has arrived and the national node has verified and summed them (measured).

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

use crate::france::standard_normal;

/// Link parameters.
#[derive(Debug, Clone, Serialize)]
pub struct NetParams {
    /// Structure–hub round trip, drawn uniformly in this range (ms), metropolitan hubs.
    pub rtt_ms: (f64, f64),
    /// Added to round trips that cross the sea (overseas hub to the national node), ms.
    pub overseas_extra_rtt_ms: f64,
    /// Median structure uplink (Mbit/s); log-normal with σ = 1 across structures.
    pub structure_uplink_mbps: f64,
    /// Hub downlink and uplink (Mbit/s).
    pub hub_mbps: f64,
    /// Round trips to open a connection (TCP + Noise handshake).
    pub handshake_rtts: f64,
    /// Transport bytes per message (Noise, Yamux and request-response framing, estimate).
    pub overhead_bytes: u64,
}

impl Default for NetParams {
    fn default() -> Self {
        Self {
            rtt_ms: (10.0, 80.0),
            overseas_extra_rtt_ms: 150.0,
            structure_uplink_mbps: 5.0,
            hub_mbps: 100.0,
            handshake_rtts: 2.0,
            overhead_bytes: 150,
        }
    }
}

/// One structure's link.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    /// Round trip to its hub, seconds.
    pub rtt_s: f64,
    /// Uplink, bytes per second.
    pub up_bps: f64,
}

impl NetParams {
    /// The seeded link of every structure.
    pub fn links(&self, n: usize, seed: u64) -> Vec<Link> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6e65_7477_6f72_6b00);
        (0..n)
            .map(|_| {
                let rtt_ms = rng.random_range(self.rtt_ms.0..=self.rtt_ms.1);
                let mbps = self.structure_uplink_mbps * standard_normal(&mut rng).exp();
                Link {
                    rtt_s: rtt_ms / 1e3,
                    up_bps: mbps.max(0.25) * 1e6 / 8.0,
                }
            })
            .collect()
    }

    /// When a hub holds its whole batch: `arrivals` are (link, message bytes) of its structures.
    pub fn batch_received(&self, arrivals: &[(Link, u64)]) -> f64 {
        let mut times: Vec<(f64, u64)> = arrivals
            .iter()
            .map(|(l, bytes)| {
                let b = (bytes + self.overhead_bytes) as f64;
                (
                    l.rtt_s * (self.handshake_rtts + 0.5) + b / l.up_bps,
                    bytes + self.overhead_bytes,
                )
            })
            .collect();
        times.sort_by(|a, b| a.0.total_cmp(&b.0));
        let hub_bps = self.hub_mbps * 1e6 / 8.0;
        let mut free = 0.0f64;
        for (arrival, bytes) in times {
            free = free.max(arrival) + bytes as f64 / hub_bps;
        }
        free
    }

    /// Time for a hub aggregate of `bytes` to reach the national node.
    pub fn hub_to_national(&self, bytes: u64, overseas: bool) -> f64 {
        let rtt = 0.03
            + if overseas {
                self.overseas_extra_rtt_ms / 1e3
            } else {
                0.0
            };
        rtt * (self.handshake_rtts + 0.5)
            + (bytes + self.overhead_bytes) as f64 / (self.hub_mbps * 1e6 / 8.0)
    }
}
