//! Per-peer request rate limiting, with the clock injected.
//!
//! The node's event loop asks [`RateLimiter::check`] before answering a request and answers
//! [`super::Response::Refused`] when it says no. The limiter is a GCRA (generic cell rate
//! algorithm), i.e. a token bucket kept as one instant per peer: a peer may make `burst`
//! requests at once, then one per `every`. Memory is bounded by [`RateLimit::max_peers`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// How fast one peer may send requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests a peer may send at once after being quiet; at least 1.
    pub burst: u32,
    /// One more request is allowed per `every`; greater than zero.
    pub every: Duration,
    /// Peers tracked at most; beyond that, requests of untracked peers are refused until
    /// a tracked peer's bucket is full again. Match it to the connection limit.
    pub max_peers: usize,
}

impl Default for RateLimit {
    /// 20 at once, then 10 per second, for up to 256 peers.
    fn default() -> Self {
        Self {
            burst: 20,
            every: Duration::from_millis(100),
            max_peers: 256,
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimited {
    /// The peer sent more than its burst; it may try again after `retry_after`.
    #[error("too many requests: retry in {} ms", retry_after.as_millis())]
    TooFast {
        /// The wait before the next request would be accepted.
        retry_after: Duration,
    },
    /// The limiter tracks `max_peers` busy peers already.
    #[error("too many peers sending requests ({max_peers}); retry later")]
    TooManyPeers {
        /// [`RateLimit::max_peers`].
        max_peers: usize,
    },
}

/// Per-peer token buckets; see the module documentation.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    every: Duration,
    /// How far ahead of `now` a peer's theoretical arrival time may be: `every × (burst − 1)`.
    tolerance: Duration,
    max_peers: usize,
    /// Per peer, the theoretical arrival time of its next request: the bucket is full when it
    /// is not after `now`.
    next: HashMap<PeerId, Instant>,
}

impl RateLimiter {
    /// A limiter with `limit`; a zero `burst` counts as 1 and a zero `every` as 1 ns.
    pub fn new(limit: RateLimit) -> Self {
        let every = limit.every.max(Duration::from_nanos(1));
        let tolerance = every.saturating_mul(limit.burst.max(1) - 1);
        Self {
            every,
            tolerance,
            max_peers: limit.max_peers,
            next: HashMap::new(),
        }
    }

    /// Takes one request of `peer` at `now` into account, or says why it must be refused (a
    /// refused request costs nothing).
    pub fn check(&mut self, peer: &PeerId, now: Instant) -> Result<(), RateLimited> {
        if !self.next.contains_key(peer) && self.next.len() >= self.max_peers {
            self.prune(now);
            if self.next.len() >= self.max_peers {
                return Err(RateLimited::TooManyPeers {
                    max_peers: self.max_peers,
                });
            }
        }
        let tat = self.next.get(peer).map_or(now, |&t| t.max(now));
        // `checked_add`: a configured burst × interval beyond the range of `Instant` means
        // "unlimited", not a panic.
        if let Some(allowed_until) = now.checked_add(self.tolerance)
            && tat > allowed_until
        {
            return Err(RateLimited::TooFast {
                retry_after: tat - allowed_until,
            });
        }
        self.next
            .insert(*peer, tat.checked_add(self.every).unwrap_or(tat));
        Ok(())
    }

    /// Drops what is known about `peer` (call it when its last connection closes).
    pub fn forget(&mut self, peer: &PeerId) {
        self.next.remove(peer);
    }

    /// Drops the peers whose bucket is full at `now`: they are as if never seen.
    pub fn prune(&mut self, now: Instant) {
        self.next.retain(|_, tat| *tat > now);
    }

    /// How many peers are tracked.
    pub fn tracked(&self) -> usize {
        self.next.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(burst: u32, every_ms: u64, max_peers: usize) -> RateLimiter {
        RateLimiter::new(RateLimit {
            burst,
            every: Duration::from_millis(every_ms),
            max_peers,
        })
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn burst_then_refill_rate() {
        let mut rl = limiter(3, 100, 8);
        let peer = PeerId::random();
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(rl.check(&peer, t0), Ok(()), "request {i} of the burst");
        }
        assert_eq!(
            rl.check(&peer, t0),
            Err(RateLimited::TooFast {
                retry_after: ms(100)
            })
        );
        // A refusal costs nothing: 40 ms later the wait is 60 ms, not more.
        assert_eq!(
            rl.check(&peer, t0 + ms(40)),
            Err(RateLimited::TooFast {
                retry_after: ms(60)
            })
        );
        assert_eq!(rl.check(&peer, t0 + ms(100)), Ok(()));
        assert!(rl.check(&peer, t0 + ms(100)).is_err());
        // Sustained: exactly one per 100 ms.
        for k in 2..20u64 {
            assert_eq!(rl.check(&peer, t0 + ms(100 * k)), Ok(()), "tick {k}");
            assert!(rl.check(&peer, t0 + ms(100 * k + 99)).is_err(), "tick {k}");
        }
    }

    #[test]
    fn quiet_peer_gets_its_whole_burst_back_and_no_more() {
        let mut rl = limiter(5, 10, 8);
        let peer = PeerId::random();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(rl.check(&peer, t0).is_ok());
        }
        assert!(rl.check(&peer, t0).is_err());
        // After a long silence, the burst is 5 again, not 5 + credit for the silence.
        let later = t0 + Duration::from_secs(3600);
        let accepted = (0..50).filter(|_| rl.check(&peer, later).is_ok()).count();
        assert_eq!(accepted, 5);
    }

    #[test]
    fn peers_are_limited_independently() {
        let mut rl = limiter(1, 1000, 8);
        let (a, b) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        assert!(rl.check(&a, t0).is_ok());
        assert!(rl.check(&a, t0).is_err());
        assert!(rl.check(&b, t0).is_ok());
        assert!(rl.check(&b, t0 + ms(1)).is_err());
    }

    #[test]
    fn peer_table_is_bounded_and_pruned() {
        let mut rl = limiter(2, 100, 2);
        let peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        let t0 = Instant::now();
        assert!(rl.check(&peers[0], t0).is_ok());
        assert!(rl.check(&peers[1], t0).is_ok());
        assert_eq!(
            rl.check(&peers[2], t0 + ms(50)),
            Err(RateLimited::TooManyPeers { max_peers: 2 })
        );
        // Tracked peers still get through while the table is full.
        assert!(rl.check(&peers[0], t0 + ms(50)).is_ok());
        // Once peer 1's bucket is full again it is pruned and peer 2 gets its place.
        assert!(rl.check(&peers[2], t0 + ms(100)).is_ok());
        assert_eq!(rl.tracked(), 2);
        rl.forget(&peers[0]);
        assert_eq!(rl.tracked(), 1);
    }

    #[test]
    fn degenerate_limits_are_clamped() {
        let mut rl = limiter(0, 0, 1);
        let peer = PeerId::random();
        let t0 = Instant::now();
        assert!(rl.check(&peer, t0).is_ok());
        assert!(rl.check(&peer, t0).is_err());
        assert!(rl.check(&peer, t0 + Duration::from_nanos(1)).is_ok());
    }

    #[test]
    fn clock_going_backwards_does_not_panic_or_refill() {
        let mut rl = limiter(1, 100, 4);
        let peer = PeerId::random();
        let t1 = Instant::now() + Duration::from_secs(10);
        assert!(rl.check(&peer, t1).is_ok());
        assert!(rl.check(&peer, t1 - Duration::from_secs(5)).is_err());
    }
}
