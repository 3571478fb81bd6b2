//! Command-line tools speaking the Kafka protocol through [`crate::client`]:
//! `sluice topic`, `sluice group`, `sluice cluster`, `sluice produce`, `sluice consume`, `sluice bench`.
//!
//! Each submodule exposes a clap `Args` struct and a blocking `run(args)` that
//! starts its own compio runtime; errors come back as `anyhow::Error` and the
//! binary prints them as one line.
//!
//! Layer (ARCHITECTURE.md "Layers", kept by tests/it/layers.rs): `cli` uses `bench`, `client` and the rows below.

pub mod bench;
pub mod cluster;
pub mod consume;
pub mod group;
pub mod partition;
pub mod produce;
pub mod topic;

/// Default `--bootstrap` of every tool.
pub const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";

/// Client id the CLI tools announce to the broker.
pub const CLIENT_ID: &str = "sluice-cli";

pub use crate::client::block_on;
pub use crate::client::partitioner::{murmur2, partition_for_key};
