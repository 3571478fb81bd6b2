//! The embedded broker `sluice bench` starts when no `--bootstrap` is given.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

use crate::server::{Broker, BrokerConfig};

/// A Sluice broker on a fresh temporary data directory, removed on stop.
pub struct EmbeddedBroker {
    broker: Broker,
    data_dir: PathBuf,
}

impl EmbeddedBroker {
    /// Starts a broker on 127.0.0.1 with an ephemeral port; `cores` shards (default all).
    pub fn start(cores: Option<usize>) -> anyhow::Result<EmbeddedBroker> {
        let data_dir =
            std::env::temp_dir().join(format!("sluice-bench-{}", uuid::Uuid::new_v4().simple()));
        let cfg = BrokerConfig {
            data_dir: data_dir.clone(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            // Its /metrics gives the bench the broker's produce stages (stages.rs).
            admin_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            cores: cores.unwrap_or(0),
            ..BrokerConfig::default()
        };
        match Broker::start(cfg) {
            Ok(broker) => Ok(EmbeddedBroker { broker, data_dir }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&data_dir);
                Err(e).context("cannot start the embedded broker")
            }
        }
    }

    /// The address clients connect to.
    pub fn bootstrap(&self) -> SocketAddr {
        self.broker.bootstrap()
    }

    /// Its admin listener (/metrics).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.broker.admin_addr()
    }

    /// The temporary data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// Shuts the broker down and removes its data directory.
    pub fn stop(self) -> anyhow::Result<()> {
        let shut = self.broker.shutdown();
        let removed = std::fs::remove_dir_all(&self.data_dir)
            .with_context(|| format!("cannot remove {}", self.data_dir.display()));
        shut?;
        removed
    }
}
