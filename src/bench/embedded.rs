//! The embedded broker `sluice bench` starts when no `--bootstrap` is given.

use std::net::SocketAddr;

/// A Sluice broker on a temporary data directory, removed on stop.
pub struct EmbeddedBroker {
    addr: SocketAddr,
}

impl EmbeddedBroker {
    /// Starts a broker on 127.0.0.1 with an ephemeral port.
    pub fn start(_cores: Option<usize>) -> anyhow::Result<EmbeddedBroker> {
        anyhow::bail!("this build has no embedded broker yet: pass --bootstrap HOST:PORT")
    }

    /// The address clients connect to.
    pub fn bootstrap(&self) -> SocketAddr {
        self.addr
    }

    /// Shuts the broker down and removes its data directory.
    pub fn stop(self) -> anyhow::Result<()> {
        Ok(())
    }
}
