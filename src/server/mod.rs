//! The broker process: shard threads, listeners, connections, and the admin HTTP endpoint.
//!
//! [`Broker::start`] binds one SO_REUSEPORT listener per shard (the kernel spreads new
//! connections over them), then starts one thread per shard, pinned to a core, each running
//! its own compio runtime: it recovers the partitions it owns, then serves its connections,
//! its cross-shard inbox and its housekeeping timer until shutdown.

pub mod admin;
pub mod connection;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use futures::FutureExt;

pub use crate::config::BrokerConfig;
use crate::catalog::Catalog;
use crate::limits;
use crate::runtime::{inbox_pair, Job, Shard, Shared};
use crate::storage::Fs;

/// A running broker. Dropping it without [`Broker::shutdown`] leaves its threads running.
pub struct Broker {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
}

/// Waits (bounded by `limits::LISTEN_ADDRESS_WAIT_MS_MAX`) until nobody listens on `addr`.
///
/// After a kill -9 the dead process' listening sockets outlive it for some milliseconds (more on
/// a loaded machine): io_uring releases the files of its rings asynchronously. Binding the admin
/// port then failed with EADDRINUSE, and the SO_REUSEPORT Kafka listeners joined the dead
/// sockets' group, so the kernel handed some new connections to a socket nobody would ever
/// accept on (found by tests/clients/test_crash.py). A plain bind (SO_REUSEADDR, no
/// SO_REUSEPORT) succeeds only once no socket listens on the address.
fn wait_for_free_address(addr: SocketAddr) -> std::io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let deadline = std::time::Instant::now() + Duration::from_millis(limits::LISTEN_ADDRESS_WAIT_MS_MAX);
    let mut waited = false;
    loop {
        let domain = socket2::Domain::for_address(addr);
        let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
        s.set_reuse_address(true)?;
        match s.bind(&addr.into()) {
            Ok(()) => {
                if waited {
                    tracing::info!(%addr, "listen address free again");
                }
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && std::time::Instant::now() < deadline => {
                if !waited {
                    tracing::info!(%addr, "listen address still in use (a previous process' sockets?): waiting");
                    waited = true;
                }
                std::thread::sleep(Duration::from_millis(limits::LISTEN_ADDRESS_RETRY_MS));
            }
            Err(e) => return Err(e),
        }
    }
}

fn listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// Checks that io_uring can be set up here, with an error that says what to change.
fn probe_io_uring() -> anyhow::Result<()> {
    let rt = compio::runtime::Runtime::new();
    match rt {
        Ok(_) => Ok(()),
        Err(e) => anyhow::bail!(
            "cannot start the io_uring runtime: {e}. Sluice needs Linux 5.11+ with io_uring enabled \
             (check /proc/sys/kernel/io_uring_disabled is 0, that seccomp allows io_uring_setup — \
             e.g. docker run --security-opt seccomp=unconfined — and that the locked-memory limit \
             is large enough: ulimit -l 65536)"
        ),
    }
}

impl Broker {
    /// Starts the broker; returns once every shard listens and has recovered its partitions.
    pub fn start(config: BrokerConfig) -> anyhow::Result<Broker> {
        probe_io_uring()?;
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
        let catalog = Arc::new(Catalog::open(&config.data_dir)?);
        let n = config.shard_count();
        let mut listeners = Vec::with_capacity(n);
        wait_for_free_address(config.listen).with_context(|| format!("cannot listen on {}", config.listen))?;
        if let Some(a) = config.admin_listen {
            wait_for_free_address(a).with_context(|| format!("cannot listen on admin address {a}"))?;
        }
        let first = listener(config.listen).with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = first.local_addr()?;
        listeners.push(first);
        for _ in 1..n {
            listeners.push(listener(addr).with_context(|| format!("cannot listen on {addr} (SO_REUSEPORT)"))?);
        }
        let admin = match config.admin_listen {
            Some(a) => Some(std::net::TcpListener::bind(a).with_context(|| format!("cannot listen on admin address {a}"))?),
            None => None,
        };
        let admin_addr = admin.as_ref().map(|l| l.local_addr()).transpose()?;
        if let Some(l) = &admin {
            l.set_nonblocking(true)?;
        }
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..n).map(|_| inbox_pair()).unzip();
        let shared = Arc::new(Shared::new(config, catalog, senders));
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let mut threads = Vec::with_capacity(n);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let mut admin = admin;
        for (id, (listener, inbox)) in listeners.into_iter().zip(receivers).enumerate() {
            let shared = shared.clone();
            let core = if cores.is_empty() { None } else { Some(cores[id % cores.len()]) };
            let ready = ready_tx.clone();
            let admin = if id == 0 { admin.take() } else { None };
            let t = std::thread::Builder::new().name(format!("sluice-shard-{id}")).spawn(move || {
                if let Some(core) = core {
                    if !core_affinity::set_for_current(core) {
                        tracing::warn!(shard = id, "could not pin thread to core {}", core.id);
                    }
                }
                let rt = match compio::runtime::Runtime::new() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready.send(Err(format!("shard {id}: io_uring runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(shard_main(id, shared, listener, inbox, admin, ready));
            })?;
            threads.push(t);
        }
        drop(ready_tx);
        for _ in 0..n {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => anyhow::bail!(e),
                Err(_) => anyhow::bail!("a shard thread died while starting"),
            }
        }
        tracing::info!(%addr, shards = n, "sluice broker listening");
        Ok(Broker { shared, threads, addr, admin_addr })
    }

    /// The address clients connect to (the bound one, so port 0 resolves).
    pub fn bootstrap(&self) -> SocketAddr {
        self.addr
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Stops accepting, flushes and closes every log (clean-shutdown marker), joins the shards.
    pub fn shutdown(self) -> anyhow::Result<()> {
        self.shared.shutdown.store(true, Ordering::Release);
        for inbox in &self.shared.inboxes {
            // Wake each shard's inbox loop so it notices the flag.
            let job: Job = Box::new(|_| {});
            let _ = inbox.send_blocking(job);
        }
        for t in self.threads {
            t.join().map_err(|_| anyhow::anyhow!("a shard thread panicked"))?;
        }
        tracing::info!("sluice broker stopped");
        Ok(())
    }
}

async fn shard_main(
    id: usize,
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    inbox: async_channel::Receiver<Job>,
    admin: Option<std::net::TcpListener>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let shard = Rc::new(Shard::new(id, shared.clone(), Fs::real()));
    let listener = match compio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(format!("shard {id}: listener: {e}")));
            return;
        }
    };
    // Inbox first: recovery of other shards' partitions may already need us.
    let inbox_task = {
        let shard = shard.clone();
        compio::runtime::spawn(async move {
            while let Ok(job) = inbox.recv().await {
                job(shard.clone());
                if shard.shared.shutdown.load(Ordering::Acquire) {
                    break;
                }
            }
        })
    };
    shard.open_owned_logs().await;
    shared.shards_ready.fetch_add(1, Ordering::AcqRel);
    let _ = ready.send(Ok(()));
    let housekeeping = {
        let shard = shard.clone();
        compio::runtime::spawn(async move {
            loop {
                compio::time::sleep(Duration::from_millis(limits::HOUSEKEEPING_INTERVAL_MS)).await;
                shard.housekeeping().await;
            }
        })
    };
    if let Some(admin) = admin {
        match compio::net::TcpListener::from_std(admin) {
            Ok(l) => compio::runtime::spawn(admin::serve(l, shared.clone())).detach(),
            Err(e) => tracing::error!(error = %e, "admin listener failed"),
        }
    }
    let mut stopped = Box::pin(inbox_task.fuse());
    loop {
        let accept = Box::pin(listener.accept().fuse());
        futures::select! {
            r = { accept } => match r {
                Ok((stream, peer)) => {
                    let open = shared.connections_open.load(Ordering::Relaxed);
                    if open >= shared.config.max_connections {
                        shared.connections_rejected_total.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%peer, open, "connection refused: max.connections reached");
                        drop(stream);
                        continue;
                    }
                    compio::runtime::spawn(connection::serve(shard.clone(), stream, peer)).detach();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    compio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = stopped => break,
        }
    }
    drop(housekeeping);
    shard.close_logs().await;
    tracing::debug!(shard = id, "shard stopped");
}
