//! The shared language of the Maillage network.
//!
//! This crate owns what every peer must agree on byte for byte: the sector's vocabularies
//! (the codes of the national activity-report model), the indicator catalogue, reporting
//! periods and the official geographic code (COG) that totals are aggregated by. Later it also
//! holds wire types, canonical encodings, signatures and the Merkle log.
//!
//! It does no I/O and spawns no tasks, and its dependencies stay light: every other crate, and
//! every peer, links it.

pub mod indicator;
pub mod period;
pub mod territory;
pub mod vocab;

pub use indicator::{Indicator, IndicatorKind};
pub use period::Period;
pub use territory::{Cog, Commune, TerritoryError};
