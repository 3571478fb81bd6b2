//! Sluice: a Kafka-compatible, thread-per-core message broker on io_uring.
//!
//! Module map (see ARCHITECTURE.md for the invariants):
//! - [`limits`]: every bound, named, with units in the name.
//! - [`client`]: a small async Kafka client on compio (CLI tools and the load generator).
pub mod client;
pub mod limits;
