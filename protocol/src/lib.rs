//! The shared language of the Maillage network.
//!
//! This crate owns what every peer must agree on byte for byte: the sector's vocabularies
//! (the codes of the national activity-report model), the indicator catalogue, reporting
//! periods and the official geographic code (COG) that totals are aggregated by, the signed
//! release (its canonical encoding, signature and JSON view), the hub's append-only Merkle
//! log of contributions with its signed checkpoints and receipts, the signed aggregates of hubs
//! and the national node, and proofs of equivocation; with the `network` feature, the libp2p
//! behaviour and request/response messages peers exchange.
//!
//! It does no I/O and spawns no tasks: the network module builds a swarm but never polls it;
//! the node drives it. Its default dependencies stay light (libp2p only with `network`): every
//! other crate, and every peer, links it.

pub mod aggregate;
pub mod checkpoint;
pub mod indicator;
pub mod merkle;
#[cfg(feature = "network")]
pub mod network;
pub mod period;
pub mod release;
pub mod territory;
pub mod vocab;

pub use aggregate::{
    Aggregate, AggregateCell, AggregateError, AggregateId, ContributionRef, EquivocationError,
    EquivocationProof, Level, SignedAggregate, Supersedes,
};
pub use checkpoint::{Checkpoint, CheckpointError, Receipt, SignedCheckpoint, SignedReceipt};
pub use indicator::{Indicator, IndicatorKind};
pub use merkle::{MerkleError, MerkleLog, verify_consistency, verify_inclusion};
pub use period::Period;
pub use release::{Cell, Mechanism, Release, ReleaseError, ReleaseHead, ReleaseId, SignedRelease};
pub use territory::{Cog, Commune, TerritoryError};
