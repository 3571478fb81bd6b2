//! The one integration-test binary: one module per area, compiled once.

mod broker;
mod client;
mod cluster;
mod config;
mod groups;
mod layers;
mod metrics;
mod fuzz;
mod sim;
mod simcluster;
mod storage;
mod versions;
mod wire;

/// Broker logs into the test output (shown for failing tests); RUST_LOG overrides the level.
pub fn init_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    });
}
