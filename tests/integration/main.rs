//! Maillage's integration tests: one binary, one module per capability.

mod serve;
mod support;

mod cli;
mod crash;
mod hub;
mod import_semantics;
mod netns;
mod network;
mod policy;
mod policy_net;
mod release;
