//! The embedded broker `sluice bench` starts when no `--bootstrap` is given.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::server::{Broker, BrokerConfig};

/// A Sluice broker on a temporary data directory, removed on stop.
pub struct EmbeddedBroker {
    broker: Broker,
    data_dir: PathBuf,
}

impl EmbeddedBroker {
    /// Starts a broker on 127.0.0.1 with an ephemeral port, with durable defaults
    /// (acks=all waits for fdatasync).
    pub fn start(cores: Option<usize>) -> anyhow::Result<EmbeddedBroker> {
        let data_dir = std::env::temp_dir().join(format!("sluice-bench-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&data_dir)?;
        let config = BrokerConfig { data_dir: data_dir.clone(), cores: cores.unwrap_or(0), ..BrokerConfig::default() };
        match Broker::start(config) {
            Ok(broker) => Ok(EmbeddedBroker { broker, data_dir }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&data_dir);
                Err(e)
            }
        }
    }

    /// The address clients connect to.
    pub fn bootstrap(&self) -> SocketAddr {
        self.broker.bootstrap()
    }

    /// Shuts the broker down and removes its data directory.
    pub fn stop(self) -> anyhow::Result<()> {
        let r = self.broker.shutdown();
        std::fs::remove_dir_all(&self.data_dir)?;
        r
    }
}
