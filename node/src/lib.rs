//! The Maillage node: the `maillage` binary's library.
//!
//! This crate is the only one that touches the outside world: it owns the node directory
//! (configuration, key, embedded sled store), reads activity-report files, and (in later steps)
//! runs the daemon, the network and the HTTP API. It drives `maillage-protocol`,
//! `maillage-privacy` and `maillage-policy`, which stay free of I/O.

pub mod audit;
pub mod bundle;
pub mod cli;
pub mod config;
pub mod demo;
pub mod hub;
pub mod identity;
pub mod import;
pub mod members;
pub mod net;
pub mod node;
pub mod policy;
pub mod release;
pub mod store;
pub mod synth;

pub use config::{Config, Role};
pub use identity::Identity;
pub use node::{InitOptions, Node, NodeError};
pub use store::Store;
