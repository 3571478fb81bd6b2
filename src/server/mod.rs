//! The broker process: shard threads, listeners, connections, and the admin HTTP endpoint.
//!
//! [`Broker::start`] binds one SO_REUSEPORT listener per shard (the kernel spreads new
//! connections over them), then starts one thread per shard, pinned to a core, each running
//! its own compio runtime: it recovers the partitions it owns, then serves its connections,
//! its cross-shard inbox and its housekeeping timer until shutdown.
//!
//! Layer (ARCHITECTURE.md "Layers", kept by tests/it/layers.rs): `server` uses everything below it.

pub mod admin;
pub mod connection;
#[cfg(test)]
mod cross_shard_tests;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use futures::FutureExt;

use crate::catalog::Catalog;
pub use crate::config::BrokerConfig;
use crate::limits;
use crate::runtime::{inbox_pair, Job, Shard, Shared};
use crate::storage::Fs;
use crate::cluster::ClusterOf;
use crate::group::GroupShard;

/// A running broker. Dropping it without [`Broker::shutdown`] leaves its threads running.
pub struct Broker {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
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

/// How long a restarted broker waits for its ports: right after a kill -9 the old process's
/// sockets linger a moment (its io_uring is torn down asynchronously).
const PORT_WAIT_MS: u64 = 5_000;

/// Binds `addr` without SO_REUSEPORT, retrying while it is in use for up to [`PORT_WAIT_MS`].
fn bind_exclusive(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let deadline = std::time::Instant::now() + Duration::from_millis(PORT_WAIT_MS);
    loop {
        match std::net::TcpListener::bind(addr) {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            r => return r,
        }
    }
}

/// What an operator must change for io_uring to work here.
const IO_URING_HELP: &str = "Sluice wants Linux 5.11+ with io_uring enabled: check that \
/proc/sys/kernel/io_uring_disabled is 0, that seccomp allows io_uring_setup (containers: e.g. \
docker run --security-opt seccomp=unconfined), and that the locked-memory limit is large enough \
(ulimit -l 65536)";

/// Checks that the runtime can start. compio falls back to epoll when io_uring cannot be set
/// up; that still works (slower), so it is said loudly rather than refused.
fn probe_io_uring() -> anyhow::Result<()> {
    match compio::runtime::Runtime::new() {
        Ok(rt) if rt.driver_type().is_iouring() => Ok(()),
        Ok(rt) => {
            tracing::warn!(driver = ?rt.driver_type(), "io_uring is unavailable, running on the epoll fallback. {IO_URING_HELP}");
            Ok(())
        }
        Err(e) => anyhow::bail!("cannot start the I/O runtime: {e}. {IO_URING_HELP}"),
    }
}

impl Broker {
    /// Starts the broker; returns once every shard listens and has recovered its partitions.
    pub fn start(config: BrokerConfig) -> anyhow::Result<Broker> {
        probe_io_uring()?;
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!("cannot create data directory {}", config.data_dir.display())
        })?;
        let catalog = Arc::new(Catalog::open(&config.data_dir)?);
        let fs = segment_fs(&config.data_dir, config.log_write_inline);
        let n = config.shard_count();
        let mut listeners = Vec::with_capacity(n);
        // SO_REUSEPORT would let a second broker share the port unnoticed: first make sure
        // nobody else holds it.
        if config.listen.port() != 0 {
            drop(
                bind_exclusive(config.listen)
                    .with_context(|| format!("cannot listen on {}", config.listen))?,
            );
        }
        let first = listener(config.listen)
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = first.local_addr()?;
        listeners.push(first);
        for _ in 1..n {
            listeners.push(
                listener(addr)
                    .with_context(|| format!("cannot listen on {addr} (SO_REUSEPORT)"))?,
            );
        }
        let admin = match config.admin_listen {
            Some(a) => {
                let l = bind_exclusive(a)
                    .with_context(|| format!("cannot listen on admin address {a}"))?;
                l.set_nonblocking(true)?;
                Some(l)
            }
            None => None,
        };
        let admin_addr = admin.as_ref().map(|l| l.local_addr()).transpose()?;
        // Cluster mode: this node's replication listener (one SO_REUSEPORT socket per shard).
        let mut repl_listeners: Vec<Option<std::net::TcpListener>> = (0..n).map(|_| None).collect();
        let cluster = if config.clustered() {
            let node = u64::try_from(config.node_id).unwrap_or(0);
            let own = config.cluster_voters.iter().find(|(id, _)| *id == node).map(|(_, a)| *a);
            // A voter listens on its own entry; a broker joining a running cluster (not a
            // voter) needs --replication-listen.
            let Some(raddr) = config.replication_listen.or(own) else {
                anyhow::bail!(
                    "node.id {} is not one of the cluster voters ({}): give each voter --node-id matching its entry in --cluster, or give a broker joining the cluster --replication-listen HOST:PORT",
                    config.node_id,
                    config.cluster_voters.iter().map(|(id, a)| format!("{id}@{a}")).collect::<Vec<_>>().join(",")
                );
            };
            if node == 0 {
                anyhow::bail!("node.id must be 1 or more in a cluster (Raft reserves 0)");
            }
            drop(
                bind_exclusive(raddr)
                    .with_context(|| format!("cannot listen on the replication address {raddr}"))?,
            );
            for slot in repl_listeners.iter_mut() {
                *slot = Some(listener(raddr).with_context(|| {
                    format!("cannot listen on the replication address {raddr}")
                })?);
            }
            let state = crate::cluster::ClusterState::new(node, config.cluster_voters.clone(), raddr);
            // Joined brokers known from the replicated metadata (their replication addresses).
            for (id, addr) in &catalog.snapshot().data.nodes {
                if let Ok(a) = addr.parse() {
                    state.add_peer(*id, a);
                }
            }
            Some(Arc::new(state))
        } else {
            None
        };
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..n).map(|_| inbox_pair()).unzip();
        let mut shared = Shared::new(config, catalog, senders);
        if let Some(c) = cluster {
            shared.node_services.provide(c);
        }
        shared
            .listen_port
            .store(usize::from(addr.port()), Ordering::Release);
        let shared = Arc::new(shared);
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let mut threads = Vec::with_capacity(n);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let mut admin = admin;
        for (id, ((listener, inbox), repl)) in listeners
            .into_iter()
            .zip(receivers)
            .zip(repl_listeners)
            .enumerate()
        {
            let shared = shared.clone();
            let core = if cores.is_empty() {
                None
            } else {
                Some(cores[id % cores.len()])
            };
            let ready = ready_tx.clone();
            let admin = if id == 0 { admin.take() } else { None };
            let fs = fs.clone();
            let t = std::thread::Builder::new()
                .name(format!("sluice-shard-{id}"))
                .spawn(move || {
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
                    rt.block_on(shard_main(id, shared, fs, listener, inbox, admin, repl, ready));
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
        Ok(Broker {
            shared,
            threads,
            addr,
            admin_addr,
        })
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
            t.join()
                .map_err(|_| anyhow::anyhow!("a shard thread panicked"))?;
        }
        tracing::info!("sluice broker stopped");
        Ok(())
    }
}

/// The I/O seam of the shards: segment writes inline where io_uring would hand each one to a
/// worker thread (`storage::buffered_writes_punt`; ext4), io_uring elsewhere.
fn segment_fs(data_dir: &std::path::Path, configured: Option<bool>) -> Fs {
    let inline = configured.unwrap_or_else(|| match crate::storage::buffered_writes_punt(data_dir) {
        Ok(punt) => punt,
        Err(e) => {
            tracing::warn!(error = %e, "could not probe non-blocking buffered writes; segment writes go through io_uring");
            false
        }
    });
    if inline {
        tracing::info!(dir = %data_dir.display(), "segment writes: pwrite on the shard thread (log.write.inline; with `auto`: this file system has no non-blocking buffered writes, so io_uring would hand each write to a worker thread)");
    }
    Fs::real().with_inline_writes(inline)
}

#[allow(clippy::too_many_arguments)]
async fn shard_main(
    id: usize,
    shared: Arc<Shared>,
    fs: Fs,
    listener: std::net::TcpListener,
    inbox: async_channel::Receiver<Job>,
    admin: Option<std::net::TcpListener>,
    repl: Option<std::net::TcpListener>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let shard = Rc::new(Shard::new(id, shared.clone(), fs));
    if shared.cluster().is_some() {
        // Cluster mode: committed offsets go through the metadata log (every node holds them).
        shard
            .groups()
            .set_replicator(Rc::new(crate::cluster::metadata::OffsetsViaMetadata {
                shard: Rc::downgrade(&shard),
            }));
    }
    let listener = match compio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(format!("shard {id}: listener: {e}")));
            return;
        }
    };
    // Inbox first: recovery of other shards' partitions may already need us.
    let inbox_task = compio::runtime::spawn(crate::runtime::serve_inbox(shard.clone(), inbox));
    if shared.cluster().is_some() {
        crate::cluster::open_owned_replicas(&shard).await;
    } else {
        shard.open_owned_logs().await;
    }
    let mut cluster_tasks = Vec::new();
    if let Some(repl) = repl {
        match compio::net::TcpListener::from_std(repl) {
            Ok(l) => cluster_tasks.push(compio::runtime::spawn(crate::cluster::transport::serve(
                shard.clone(),
                l,
            ))),
            Err(e) => {
                let _ = ready.send(Err(format!("shard {id}: replication listener: {e}")));
                return;
            }
        }
        if id == 0 {
            if let Err(e) = crate::cluster::metadata::start(&shard).await {
                let _ = ready.send(Err(format!("cluster metadata log: {e}")));
                return;
            }
            cluster_tasks.push(compio::runtime::spawn(
                crate::cluster::metadata::register_loop(shard.clone()),
            ));
            cluster_tasks.push(compio::runtime::spawn(
                crate::cluster::transport::report_leaders(
                    shard.clone(),
                    Duration::from_millis(limits::CLUSTER_LEADER_REPORT_MS),
                ),
            ));
        }
    }
    if let Err(e) = shard
        .groups()
        .open(&shared.config.data_dir, id, shared.shard_count())
        .await
    {
        let _ = ready.send(Err(format!("shard {id}: consumer offsets: {e}")));
        return;
    }
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
    let group_timer = {
        let shard = shard.clone();
        compio::runtime::spawn(async move {
            loop {
                compio::time::sleep(Duration::from_millis(limits::GROUP_TICK_INTERVAL_MS)).await;
                shard
                    .groups()
                    .tick(crate::runtime::now_ms(), shard.shared.is_ready())
                    .await;
            }
        })
    };
    compio::runtime::spawn(crate::recorder::stall_ticker(id)).detach();
    if let Some(admin) = admin {
        match compio::net::TcpListener::from_std(admin) {
            Ok(l) => compio::runtime::spawn(admin::serve(l, shard.clone())).detach(),
            Err(e) => tracing::error!(error = %e, "admin listener failed"),
        }
    }
    let mut stopped = Box::pin(inbox_task.fuse());
    // A cluster node serves clients only once its registration is committed, as a Kafka
    // broker does: before that its Metadata would name no broker and a CreateTopics would
    // see none. Clients that connect meanwhile wait in the listen backlog.
    let mut serving = shared.joined();
    while !serving {
        futures::select! {
            _ = Box::pin(compio::time::sleep(Duration::from_millis(limits::JOIN_POLL_INTERVAL_MS)).fuse()) => {
                serving = shared.joined();
            }
            _ = stopped => break,
        }
    }
    if serving {
        loop {
            let accept = Box::pin(listener.accept().fuse());
            futures::select! {
                r = { accept } => match r {
                    Ok((stream, peer)) => {
                        let open = shared.connections_open.load(Ordering::Relaxed);
                        if open >= shared.config.max_connections {
                            shared.connections_rejected_total.fetch_add(1, Ordering::Relaxed);
                            if crate::recorder::log_allowed("accept.max_connections") {
                                tracing::warn!(%peer, open, "connection refused: max.connections reached");
                            }
                            drop(stream);
                            continue;
                        }
                        crate::recorder::connection_accepted();
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
    }
    drop(housekeeping);
    drop(group_timer);
    drop(cluster_tasks);
    crate::cluster::stop_replicas(&shard).await;
    shard.close_logs().await;
    tracing::debug!(shard = id, "shard stopped");
}
