//! `sluice bench`: an open-loop load generator speaking the Kafka protocol.
//!
//! - schedule.rs: intended send times at a fixed rate (no coordinated omission).
//! - stats.rs: HdrHistograms (ns) and per-interval counters, merging.
//! - workload.rs: defaults, OpenMessaging Benchmark YAML, validation.
//! - runner.rs: one compio runtime per thread; producers stamp each value with its
//!   intended send time, consumers compute end-to-end latency; 1 s intervals.
//! - report.rs: table, JSON, HdrHistogram interval log, SVG plots, compare.
//! - summary.rs: `--repeat N`: median, range and spread of each figure over the runs.
//! - usage.rs: CPU time and context switches of the generator and the broker per phase
//!   (getrusage, /proc).
//! - device.rs: the device probe (timed 2 KiB write+fdatasync) and the note it allows.
//! - cli.rs: `sluice bench` flags and the embedded-broker mode.
//!
//! Layer (ARCHITECTURE.md "Layers", kept by tests/it/layers.rs): `bench` uses `server` (the embedded broker), `client`, `storage` (batch building) and `limits`.

pub mod cli;
pub mod device;
pub mod embedded;
pub mod group;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod stages;
pub mod stats;
pub mod summary;
pub mod usage;
pub mod workload;
