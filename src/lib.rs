//! Sluice: a Kafka-compatible, thread-per-core message broker on io_uring.
//!
//! Module map (see ARCHITECTURE.md for the invariants):
//! - [`limits`]: every bound, named, with units in the name.
//! - [`group`]: the consumer group coordinator (classic protocol) and the committed-offsets log.
//! - [`storage`]: partition logs in Kafka's on-disk layout (segments, indexes, recovery, retention).
//! - [`client`]: a small async Kafka client on compio (CLI tools and the load generator).
//! - [`cli`]: `sluice topic|produce|consume|bench` argument structs and their `run`.
//! - [`bench`]: the open-loop load generator, histograms, reports, plots.
//! - [`metrics`]: per-shard recorders, aggregated at scrape time into `/metrics`.
pub mod limits;
pub mod metrics;
pub mod recorder;
pub mod catalog;
pub mod config;
pub mod group;
pub mod kafka;
pub mod protocol;
pub mod runtime;
pub mod server;
pub mod storage;
pub mod budget;
pub mod bench;
pub mod cli;
pub mod client;
pub mod cluster;
