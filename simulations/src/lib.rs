//! Many-node simulations of the Maillage network: accuracy, cost, failures and adversaries.
//!
//! This crate owns a model of France (the COG's régions, départements and communes, weighted
//! by population), synthetic activity data with heavy-tailed structure sizes, a network model,
//! the scenarios (baseline, churn, adversaries, privacy sweep, scaling) and their reports and
//! plots. It runs the real code: contribution bounding and OpenDP noise from
//! `maillage-privacy`, signed releases and aggregates from `maillage-protocol`, and hubs,
//! audit bundles and audits from `maillage-node` (through [`node_adapter`] only). It is not
//! used by any node; its seeds drive synthetic data, never the privacy noise, which always
//! comes from OpenDP's secure sampler.

pub mod activities;
pub mod adversaries;
pub mod cpu;
pub mod estimate;
pub mod federation;
pub mod france;
pub mod metrics;
pub mod national;
pub mod netmodel;
pub mod node_adapter;
pub mod output;
pub mod scenarios;
pub mod world;

pub use scenarios::{Report, Scenario, SimConfig, simulate};
