//! What a node still has to deliver upstream, and when it tries again.
//!
//! The outbox is derived from the store, so it survives restarts without a queue of its own: a
//! structure's pending deliveries are its stored releases that have no receipt yet; a hub's are
//! the aggregates it queued in the `outbox` tree and whose receipt has not come back. A retry
//! always sends the stored bytes, so noise is never redrawn.
//!
//! A hub that signs a period again (late releases arrived) queues the revision behind the
//! aggregates of that period still undelivered, keyed `YYYY-MM/<checkpoint size, 20 digits>`:
//! the national node accepts a revision only after the aggregate it supersedes, so a period's
//! aggregates are delivered one at a time, oldest first ([`next_queued`]), each removed when its
//! receipt comes back. (A bare `YYYY-MM` key, written before revisions existed, sorts first and
//! is delivered the same way.)

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use maillage_protocol::Period;
use serde::Serialize;

/// The tree of a structure's receipts from its hub, keyed by period (`YYYY-MM`).
pub const RECEIPTS_TREE: &str = "receipts";

/// The tree of a hub's aggregates waiting to be delivered to the national node, keyed by period.
pub const OUTBOX_TREE: &str = "outbox";

/// The tree of a hub's receipts from the national node, keyed by period.
pub const UPSTREAM_RECEIPTS_TREE: &str = "upstream_receipts";

/// The outbox key of a hub's aggregate of `period` at `checkpoint_size`.
pub fn queued_key(period: Period, checkpoint_size: u64) -> String {
    format!("{period}/{checkpoint_size:020}")
}

/// Queues a hub's signed aggregate behind the undelivered ones of its period.
pub fn queue_aggregate(
    outbox: &sled::Tree,
    aggregate: &maillage_protocol::SignedAggregate,
) -> sled::Result<()> {
    let a = aggregate.aggregate();
    outbox
        .insert(
            queued_key(a.period, a.checkpoint_size).as_bytes(),
            aggregate.to_bytes(),
        )
        .map(|_| ())
}

/// The oldest undelivered aggregate of `period`: its key and wire bytes.
pub fn next_queued(
    outbox: &sled::Tree,
    period: Period,
) -> sled::Result<Option<(sled::IVec, sled::IVec)>> {
    outbox
        .scan_prefix(period.to_string().as_bytes())
        .next()
        .transpose()
}

/// The periods with an undelivered aggregate, each once.
pub fn queued_periods(outbox: &sled::Tree) -> Vec<Period> {
    let mut periods: Vec<Period> = outbox
        .iter()
        .keys()
        .filter_map(|k| k.ok())
        .filter_map(|k| std::str::from_utf8(k.get(..7)?).ok()?.parse().ok())
        .collect();
    periods.dedup();
    periods
}

/// One thing to deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// A structure's release of a period, to its hub.
    Release(Period),
    /// A hub's aggregate of a period, to the national node.
    Aggregate(Period),
}

impl Delivery {
    /// `release` or `aggregate`.
    pub fn kind(self) -> &'static str {
        match self {
            Self::Release(_) => "release",
            Self::Aggregate(_) => "aggregate",
        }
    }

    /// The period delivered.
    pub fn period(self) -> Period {
        match self {
            Self::Release(p) | Self::Aggregate(p) => p,
        }
    }
}

/// Exponential backoff between attempts: 1 s, 2 s, 4 s… up to [`Backoff::MAX`].
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    /// Failed attempts so far.
    pub attempts: u32,
    /// When the next attempt may start (`None`: now).
    pub next: Option<Instant>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

impl Backoff {
    /// The longest wait between two attempts.
    pub const MAX: Duration = Duration::from_secs(300);

    /// The wait after `attempts` failures.
    pub fn delay(attempts: u32) -> Duration {
        let secs = 1u64 << attempts.saturating_sub(1).min(16);
        Duration::from_secs(secs).min(Self::MAX)
    }

    /// Records a failure at `now`.
    pub fn failed(&mut self, now: Instant, error: String) {
        self.attempts = self.attempts.saturating_add(1);
        self.next = Some(now + Self::delay(self.attempts));
        self.last_error = Some(error);
    }

    /// Whether an attempt may start at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.next.is_none_or(|next| now >= next)
    }
}

/// The pending deliveries with their backoff state, and those in flight.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Backoff per pending delivery.
    pub state: BTreeMap<Delivery, Backoff>,
}

/// One pending delivery, as the status shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PendingView {
    /// `release` or `aggregate`.
    pub kind: &'static str,
    /// The period.
    pub period: String,
    /// Failed attempts.
    pub attempts: u32,
    /// Seconds until the next attempt.
    pub next_attempt_in_s: u64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

impl Outbox {
    /// Brings the state in line with what the store says is pending: new deliveries start
    /// due now, delivered ones are forgotten.
    pub fn sync(&mut self, pending: &[Delivery]) {
        self.state.retain(|d, _| pending.contains(d));
        for d in pending {
            self.state.entry(*d).or_default();
        }
    }

    /// The status view at `now`.
    pub fn view(&self, now: Instant) -> Vec<PendingView> {
        self.state
            .iter()
            .map(|(d, b)| PendingView {
                kind: d.kind(),
                period: d.period().to_string(),
                attempts: b.attempts,
                next_attempt_in_s: b
                    .next
                    .map(|n| n.saturating_duration_since(now).as_secs())
                    .unwrap_or(0),
                last_error: b.last_error.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_periods_revisions_are_delivered_oldest_first() -> Result<(), Box<dyn std::error::Error>> {
        let db = sled::Config::new().temporary(true).open()?;
        let outbox = db.open_tree(OUTBOX_TREE)?;
        let october: Period = "2026-10".parse()?;
        let november: Period = "2026-11".parse()?;
        // A key from before revisions, then two revisions; another period in between.
        outbox.insert(october.to_string().as_bytes(), b"v0".as_slice())?;
        outbox.insert(queued_key(october, 12).as_bytes(), b"v2".as_slice())?;
        outbox.insert(queued_key(october, 9).as_bytes(), b"v1".as_slice())?;
        outbox.insert(queued_key(november, 3).as_bytes(), b"n1".as_slice())?;
        assert_eq!(queued_periods(&outbox), vec![october, november]);
        let mut delivered = Vec::new();
        while let Some((key, bytes)) = next_queued(&outbox, october)? {
            delivered.push(bytes.to_vec());
            outbox.remove(key)?;
        }
        assert_eq!(
            delivered,
            vec![b"v0".to_vec(), b"v1".to_vec(), b"v2".to_vec()]
        );
        assert_eq!(queued_periods(&outbox), vec![november]);
        Ok(())
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(Backoff::delay(1), Duration::from_secs(1));
        assert_eq!(Backoff::delay(2), Duration::from_secs(2));
        assert_eq!(Backoff::delay(5), Duration::from_secs(16));
        assert_eq!(Backoff::delay(40), Backoff::MAX);
        let now = Instant::now();
        let mut b = Backoff::default();
        assert!(b.due(now));
        b.failed(now, "unreachable".into());
        assert!(!b.due(now));
        assert!(b.due(now + Duration::from_secs(1)));
    }

    #[test]
    fn sync_keeps_backoff_of_still_pending_deliveries() -> Result<(), Box<dyn std::error::Error>> {
        let p1: Period = "2026-09".parse()?;
        let p2: Period = "2026-10".parse()?;
        let mut outbox = Outbox::default();
        outbox.sync(&[Delivery::Release(p1), Delivery::Release(p2)]);
        let now = Instant::now();
        if let Some(b) = outbox.state.get_mut(&Delivery::Release(p2)) {
            b.failed(now, "down".into());
        }
        outbox.sync(&[Delivery::Release(p2)]);
        assert_eq!(outbox.state.len(), 1);
        assert_eq!(outbox.state[&Delivery::Release(p2)].attempts, 1);
        Ok(())
    }
}
