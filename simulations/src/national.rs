//! The national level of the simulation: the node's own national role (through
//! [`crate::node_adapter::NationalNode`]: its sled store, its log of hub aggregates, revision
//! chains, equivocation proofs and the signed national aggregate over each hub's latest
//! revision), with what the simulator reports about it (revisions accepted, refusals, CPU).

use std::path::Path;

use ed25519_dalek::VerifyingKey;
use maillage_protocol::{Period, SignedAggregate};

use crate::node_adapter::{NationalNode, NationalOutcome};

/// The national node of the simulation, with its report counters.
#[derive(Debug)]
pub struct National {
    node: NationalNode,
    /// Hub aggregates accepted as revisions of an earlier one (late releases).
    pub revisions_accepted: usize,
    /// Hub aggregates accepted as the first of their period.
    pub firsts_accepted: usize,
}

/// What the national node made at one time.
#[derive(Debug, Clone)]
pub struct NationalTotal {
    /// The signed national aggregate (over the latest revision of each hub's aggregate).
    pub aggregate: SignedAggregate,
}

impl National {
    /// A national node in `dir` admitting these hubs (key, name).
    pub fn new(dir: &Path, hubs: &[(VerifyingKey, String)]) -> anyhow::Result<National> {
        Ok(National {
            node: NationalNode::create(dir, hubs)?,
            revisions_accepted: 0,
            firsts_accepted: 0,
        })
    }

    /// Submits a hub aggregate (wire bytes) at time `now`, counting what was accepted.
    pub fn submit(&mut self, bytes: &[u8], now: u64) -> anyhow::Result<NationalOutcome> {
        let outcome = self.node.submit(bytes, now)?;
        match &outcome {
            NationalOutcome::Accepted {
                new: true,
                revision: true,
            } => self.revisions_accepted += 1,
            NationalOutcome::Accepted { new: true, .. } => self.firsts_accepted += 1,
            _ => {}
        }
        Ok(outcome)
    }

    /// Signs the national aggregate of `period` (a revision of the previous one if any).
    pub fn aggregate(&self, period: Period, now: u64) -> anyhow::Result<NationalTotal> {
        Ok(NationalTotal {
            aggregate: self.node.aggregate(period, now)?,
        })
    }
}
