//! Shards: one OS thread per core, pinned, each running its own compio (io_uring) executor.
//!
//! Architecture invariant: state inside a shard (its partition logs, its connections) is plain
//! single-threaded data (`Rc`/`RefCell`); the only things shared between shards are immutable
//! or atomic ([`Shared`]: config, catalog snapshots, counters) and the bounded job queues.
//!
//! Cross-shard work is a [`Job`]: a `Send` closure run on the target shard's executor. Each shard
//! has one bounded inbox (`async_channel`, capacity [`limits::CROSS_SHARD_QUEUE_JOBS_MAX`]); a
//! full inbox makes the sender wait, which is back-pressure and never an unbounded queue.
//!
//! Architecture invariant: a shard thread never wakes a task of another shard, except that
//! shard's inbox loop (one task). The result of [`Shard::run_on`] comes back as a job in the
//! caller's own inbox (so the caller's task is woken locally), and a sender that finds an inbox
//! full waits in its own shard's FIFO per target ([`Shard`]'s `waiting`), retried on a local
//! timer, not as a waker registered in the channel. Why: compio's executor queues cross-thread
//! wakes in a fixed ring of 64 and a waking thread *spins* while it is full. Waking more than 64
//! tasks of a busy shard stalled the waker's whole shard until the busy one drained, and two
//! shards doing that to each other (both inboxes full, each draining its inbox wakes the other's
//! suspended senders) spun forever: a deadlock (`server::cross_shard_tests`).
//!
//! Layer (ARCHITECTURE.md "Layers", kept by tests/it/layers.rs): `runtime` uses the bottom rows only (`limits`, `config`, `recorder`, `budget`, `storage`, `catalog`): it holds services in typed slots and knows none of them.

use std::any::{Any, TypeId};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::channel::oneshot;
use uuid::Uuid;

use crate::catalog::{Catalog, TopicMeta};
use crate::config::BrokerConfig;
use crate::limits;
use crate::storage::{Fs, LogConfig, PartitionLog, StorageError};

pub type Job = Box<dyn FnOnce(Rc<Shard>) + Send>;

/// The target shard is gone (the broker is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("shard {0} is not running")]
pub struct ShardGone(pub usize);

/// State every shard can read. Everything here is immutable, atomic or behind a lock taken
/// only off the hot path (admin requests).
pub struct Shared {
    pub config: BrokerConfig,
    pub catalog: Arc<Catalog>,
    pub inboxes: Vec<async_channel::Sender<Job>>,
    pub shutdown: AtomicBool,
    /// Shards that finished opening (recovering) their partitions.
    pub shards_ready: AtomicUsize,
    pub connections_open: AtomicUsize,
    pub connections_rejected_total: AtomicU64,
    /// Producer ids handed out: [next, limit) reserved durably in the catalog.
    producer_ids: Mutex<(i64, i64)>,
    pub started_at: std::time::Instant,
    /// Node-wide services (one instance per broker, shared by its shards), by type: the
    /// runtime holds them and knows nothing of what they are (`cluster::ClusterState` in
    /// cluster mode). Set before the shards start.
    pub node_services: NodeServices,
    /// The Kafka listener's bound port (known once listening).
    pub listen_port: AtomicUsize,
}

/// Producer ids reserved in the catalog at a time.
const PRODUCER_ID_BLOCK: i64 = 1000;

impl Shared {
    pub fn new(
        config: BrokerConfig,
        catalog: Arc<Catalog>,
        inboxes: Vec<async_channel::Sender<Job>>,
    ) -> Self {
        Shared {
            config,
            catalog,
            inboxes,
            shutdown: AtomicBool::new(false),
            shards_ready: AtomicUsize::new(0),
            connections_open: AtomicUsize::new(0),
            connections_rejected_total: AtomicU64::new(0),
            producer_ids: Mutex::new((0, 0)),
            started_at: std::time::Instant::now(),
            node_services: NodeServices::default(),
            listen_port: AtomicUsize::new(0),
        }
    }

    pub fn listen_port(&self) -> u16 {
        self.listen_port.load(Ordering::Acquire) as u16
    }

    pub fn shard_count(&self) -> usize {
        self.inboxes.len()
    }

    pub fn is_ready(&self) -> bool {
        self.shards_ready.load(Ordering::Acquire) == self.shard_count()
    }

    /// A producer id never handed out before, across restarts: ids are reserved in blocks,
    /// durably in the catalog, before any of the block is used.
    pub async fn allocate_producer_id(
        self: &Arc<Self>,
    ) -> Result<i64, crate::catalog::CatalogError> {
        {
            let mut ids = self.producer_ids.lock().unwrap_or_else(|p| p.into_inner());
            if ids.0 < ids.1 {
                ids.0 += 1;
                return Ok(self.node_producer_id(ids.0 - 1));
            }
        }
        let block: Result<i64, ()> = self
            .catalog
            .update(|d| {
                let start = d.producer_id_next;
                d.producer_id_next += PRODUCER_ID_BLOCK;
                Ok(start)
            })
            .await?;
        let start = block.unwrap_or(0);
        let mut ids = self.producer_ids.lock().unwrap_or_else(|p| p.into_inner());
        // Another task may have reserved a block meanwhile; take ours.
        *ids = (start + 1, start + PRODUCER_ID_BLOCK);
        Ok(self.node_producer_id(start))
    }

    /// In a cluster every node hands out ids from its own range (node id in the high bits),
    /// so two nodes never give the same id to different producers.
    fn node_producer_id(&self, local: i64) -> i64 {
        if self.config.clustered() {
            (i64::from(self.config.node_id) << 40) | (local & ((1 << 40) - 1))
        } else {
            local
        }
    }
}

/// Which shard owns a partition: a pure function of (topic id, partition) that spreads the
/// partitions of one topic evenly over the shards.
pub fn owner_shard(topic_id: &Uuid, partition: i32, shards: usize) -> usize {
    let (hi, _) = topic_id.as_u64_pair();
    ((hi % shards as u64 + partition.max(0) as u64) % shards as u64) as usize
}

pub type PartitionKey = (String, i32);

/// Shard-local services by type, one instance per shard (Seastar's `sharded<Service>`): the
/// runtime owns the slots and knows nothing of what is in them. A service module reaches its
/// instance through [`Services::get_or_init`] (made on first use on that shard).
#[derive(Default)]
pub struct Services {
    slots: RefCell<Vec<(TypeId, Rc<dyn Any>)>>,
}

impl Services {
    /// This shard's instance of `T`, made by `init` the first time it is asked for.
    pub fn get_or_init<T: 'static>(&self, init: impl FnOnce() -> T) -> Rc<T> {
        if let Some(v) = self.get::<T>() {
            return v;
        }
        let v = Rc::new(init());
        self.slots.borrow_mut().push((TypeId::of::<T>(), v.clone()));
        v
    }

    /// This shard's instance of `T`, if it has one.
    pub fn get<T: 'static>(&self) -> Option<Rc<T>> {
        let slots = self.slots.borrow();
        let (_, v) = slots.iter().find(|(t, _)| *t == TypeId::of::<T>())?;
        v.clone().downcast::<T>().ok()
    }
}

/// Node-wide services by type (Send + Sync, shared by every shard), set before the shards
/// start and read-only afterwards.
#[derive(Default)]
pub struct NodeServices {
    slots: Vec<(TypeId, Box<dyn Any + Send + Sync>)>,
}

impl NodeServices {
    pub fn provide<T: Send + Sync + 'static>(&mut self, v: Arc<T>) {
        self.slots.retain(|(t, _)| *t != TypeId::of::<T>());
        self.slots.push((TypeId::of::<T>(), Box::new(v)));
    }

    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&Arc<T>> {
        self.slots.iter().find(|(t, _)| *t == TypeId::of::<T>())?.1.downcast_ref::<Arc<T>>()
    }
}

/// One shard: the partitions it owns and the means to reach the others.
pub struct Shard {
    pub id: usize,
    pub shared: Arc<Shared>,
    pub fs: Fs,
    logs: RefCell<HashMap<PartitionKey, (Uuid, PartitionLog)>>,
    opening: futures::lock::Mutex<()>,
    /// Request bytes this shard's connections may hold unanswered.
    pub budget: Rc<crate::budget::Budget>,
    /// This shard's instances of the services (consumer groups, replicas, ...).
    pub services: Services,
    /// Per target shard: jobs whose sender found the target's inbox full, in send order, and
    /// whether a pump task is moving them. Each entry belongs to a caller suspended in
    /// `run_on`, so the length is bounded by this shard's tasks, like a channel's waiter list.
    waiting: Vec<RefCell<VecDeque<Job>>>,
    pumping: Vec<Cell<bool>>,
}

impl Shard {
    pub fn new(id: usize, shared: Arc<Shared>, fs: Fs) -> Self {
        let budget = crate::budget::Budget::new(shared.config.queued_max_request_bytes);
        let n = shared.shard_count();
        let waiting = (0..n).map(|_| RefCell::new(VecDeque::new())).collect();
        let pumping = (0..n).map(|_| Cell::new(false)).collect();
        Shard {
            id,
            shared,
            fs,
            logs: RefCell::new(HashMap::new()),
            opening: futures::lock::Mutex::new(()),
            budget,
            services: Services::default(),
            waiting,
            pumping,
        }
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.shared.config
    }

    /// Runs `f` on shard `target` and returns its result. Local when `target` is this shard.
    /// The result comes back through this shard's inbox (see the module doc).
    pub async fn run_on<R, F, Fut>(self: &Rc<Self>, target: usize, f: F) -> Result<R, ShardGone>
    where
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
        R: Send + 'static,
    {
        if target == self.id {
            return Ok(f(self.clone()).await);
        }
        let (tx, rx) = oneshot::channel();
        let origin = self.id;
        let job: Job = Box::new(move |shard: Rc<Shard>| {
            compio::runtime::spawn(async move {
                let r = f(shard.clone()).await;
                let reply: Job = Box::new(move |_| {
                    let _ = tx.send(r);
                });
                // If the caller's shard is gone, `tx` is dropped with the job and the caller
                // (if still there) sees ShardGone.
                let _ = shard.send_job(origin, reply);
            })
            .detach();
        });
        self.send_job(target, job)?;
        rx.await.map_err(|_| ShardGone(target))
    }

    /// Runs `f` on shard `target` without waiting for it; dropped if that shard's inbox is
    /// full (for messages that may be lost, such as Raft's).
    pub fn post<F>(self: &Rc<Self>, target: usize, f: F)
    where
        F: FnOnce(Rc<Shard>) + Send + 'static,
    {
        if target == self.id {
            f(self.clone());
            return;
        }
        let job: Job = Box::new(f);
        if let Some(inbox) = self.shared.inboxes.get(target) {
            if inbox.try_send(job).is_err() {
                crate::recorder::inbox_full();
            }
        }
    }

    /// The topic id of an open log, if this shard has it open.
    pub fn log_topic_id(&self, topic: &str, partition: i32) -> Option<Uuid> {
        self.logs.borrow().get(&(topic.to_string(), partition)).map(|(id, _)| *id)
    }

    /// Replaces the handle of an open log (a replica truncated its log and reopened it).
    pub fn replace_log(&self, topic: &str, topic_id: Uuid, partition: i32, log: PartitionLog) {
        let mut logs = self.logs.borrow_mut();
        if let Some(entry) = logs.get_mut(&(topic.to_string(), partition)) {
            if entry.0 == topic_id {
                entry.1 = log;
            }
        }
    }

    /// Queues `job` for shard `target`: straight into its inbox when there is room and no
    /// earlier job of this shard waits for it; else at the end of this shard's FIFO for that
    /// target, moved by a pump task (local timer retries) in order. Never blocks.
    fn send_job(self: &Rc<Self>, target: usize, job: Job) -> Result<(), ShardGone> {
        let inbox = self.shared.inboxes.get(target).ok_or(ShardGone(target))?;
        let waiting = self.waiting.get(target).ok_or(ShardGone(target))?;
        let job = if waiting.borrow().is_empty() {
            match inbox.try_send(job) {
                Ok(()) => return Ok(()),
                Err(async_channel::TrySendError::Closed(_)) => return Err(ShardGone(target)),
                Err(async_channel::TrySendError::Full(job)) => job,
            }
        } else {
            job
        };
        // A full inbox is back-pressure: counted, then the sender waits.
        crate::recorder::inbox_full();
        waiting.borrow_mut().push_back(job);
        if !self.pumping[target].replace(true) {
            let me = self.clone();
            compio::runtime::spawn(async move { me.pump(target).await }).detach();
        }
        Ok(())
    }

    /// Moves this shard's waiting jobs for `target` into its inbox, oldest first, retrying on
    /// a local timer while the inbox is full. Ends when none wait (or the target is gone: the
    /// jobs are dropped, so their callers get ShardGone).
    async fn pump(self: Rc<Self>, target: usize) {
        let inbox = &self.shared.inboxes[target];
        let waiting = &self.waiting[target];
        loop {
            let Some(job) = waiting.borrow_mut().pop_front() else {
                self.pumping[target].set(false);
                return;
            };
            match inbox.try_send(job) {
                Ok(()) => {}
                Err(async_channel::TrySendError::Full(job)) => {
                    waiting.borrow_mut().push_front(job);
                    compio::time::sleep(std::time::Duration::from_micros(limits::CROSS_SHARD_FULL_RETRY_US)).await;
                }
                Err(async_channel::TrySendError::Closed(_)) => {
                    let dropped = std::mem::take(&mut *waiting.borrow_mut());
                    drop(dropped);
                    self.pumping[target].set(false);
                    return;
                }
            }
        }
    }

    /// The open log of a partition this shard owns, if the partition exists.
    pub fn log(&self, topic: &str, partition: i32) -> Option<PartitionLog> {
        self.logs
            .borrow()
            .get(&(topic.to_string(), partition))
            .map(|(_, l)| l.clone())
    }

    pub fn logs(&self) -> Vec<(PartitionKey, PartitionLog)> {
        self.logs
            .borrow()
            .iter()
            .map(|(k, (_, l))| (k.clone(), l.clone()))
            .collect()
    }

    pub fn partition_dir(&self, topic: &str, partition: i32) -> std::path::PathBuf {
        self.shared
            .config
            .data_dir
            .join(format!("{topic}-{partition}"))
    }

    /// Opens (recovering if needed) the log of a partition this shard owns. Idempotent.
    pub async fn open_log(
        &self,
        topic: &TopicMeta,
        partition: i32,
    ) -> Result<PartitionLog, StorageError> {
        let key = (topic.name.clone(), partition);
        let _guard = self.opening.lock().await;
        if let Some((id, log)) = self.logs.borrow().get(&key) {
            if *id == topic.id {
                return Ok(log.clone());
            }
        }
        let dir = self.partition_dir(&topic.name, partition);
        claim_partition_dir(&dir, &topic.id).await?;
        let log = PartitionLog::open(self.fs.clone(), dir, log_config(&self.shared.config, topic))
            .await?;
        self.logs.borrow_mut().insert(key, (topic.id, log.clone()));
        Ok(log)
    }

    /// Closes and deletes the log of a partition (topic deletion). Whatever drives the log (a
    /// replica) must have been stopped first.
    pub async fn remove_log(&self, topic: &str, partition: i32) -> Result<(), StorageError> {
        let removed = self
            .logs
            .borrow_mut()
            .remove(&(topic.to_string(), partition));
        if let Some((_, log)) = removed {
            log.remove().await?;
        }
        Ok(())
    }

    /// Opens every partition of the catalog that this shard owns (one-node broker; in a
    /// cluster `cluster::open_owned_replicas` opens those this node holds, with their replicas).
    pub async fn open_owned_logs(self: &Rc<Self>) {
        let snap = self.shared.catalog.snapshot();
        let n = self.shared.shard_count();
        for topic in snap.topics() {
            for p in 0..topic.partitions {
                if owner_shard(&topic.id, p, n) != self.id {
                    continue;
                }
                {
                    if let Err(e) = self.open_log(topic, p).await {
                        tracing::error!(topic = %topic.name, partition = p, error = %e, "partition failed to open; it stays offline");
                    }
                }
            }
        }
    }

    /// Applies retention and time-based rolling to every owned log.
    pub async fn housekeeping(&self) {
        let now_ms = now_ms();
        for ((topic, p), log) in self.logs() {
            if let Err(e) = log.housekeeping(now_ms).await {
                tracing::warn!(topic = %topic, partition = p, error = %e, "housekeeping failed");
            }
        }
    }

    /// Flushes and closes every owned log (clean shutdown); whatever drives them (replicas)
    /// must have been stopped first.
    pub async fn close_logs(&self) {
        for ((topic, p), log) in self.logs() {
            if let Err(e) = log.close().await {
                tracing::error!(topic = %topic, partition = p, error = %e, "close failed; next start recovers this log");
            }
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The partition's `partition.metadata` file (Kafka's format) records the topic id the directory
/// belongs to. A directory left by a deleted topic of the same name is removed before reuse.
async fn claim_partition_dir(dir: &std::path::Path, topic_id: &Uuid) -> Result<(), StorageError> {
    let dir = dir.to_path_buf();
    let id = *topic_id;
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| StorageError::Io { path, source }
    };
    let r = compio::runtime::spawn_blocking(move || -> Result<(), StorageError> {
        let meta = dir.join("partition.metadata");
        let want = format!("version: 0\ntopic_id: {}\n", id.as_simple());
        match std::fs::read_to_string(&meta) {
            Ok(have) if have == want => return Ok(()),
            Ok(_) => {
                tracing::warn!(dir = %dir.display(), "partition directory belongs to a deleted topic of the same name; removing it");
                std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::Io { path: meta, source: e }),
        }
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let tmp = dir.join("partition.metadata.tmp");
        std::fs::write(&tmp, want.as_bytes()).map_err(io(&tmp))?;
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &meta).map_err(io(&meta))?;
        std::fs::File::open(&dir).and_then(|f| f.sync_all()).map_err(io(&dir))?;
        Ok(())
    })
    .await;
    match r {
        Ok(r) => r,
        Err(_) => Err(StorageError::Io {
            path: std::path::PathBuf::new(),
            source: std::io::Error::other("blocking task panicked"),
        }),
    }
}

/// The storage config of a topic: broker defaults overridden by the topic's own configs.
pub fn log_config(broker: &BrokerConfig, topic: &TopicMeta) -> LogConfig {
    let mut c = LogConfig {
        segment_bytes: broker.log_segment_bytes,
        retention_ms: broker.log_retention_ms,
        retention_bytes: broker.log_retention_bytes,
        flush_messages: broker.log_flush_interval_messages,
        flush_ms: broker.log_flush_interval_ms,
        message_max_bytes: broker.message_max_bytes,
        replicated: broker.clustered(),
        ..LogConfig::default()
    };
    for (k, v) in &topic.configs {
        // Values were validated when the config was set (crate::kafka::configs).
        match k.as_str() {
            "segment.bytes" => c.segment_bytes = v.parse().unwrap_or(c.segment_bytes),
            "segment.ms" => c.segment_ms = v.parse().unwrap_or(c.segment_ms),
            "index.interval.bytes" => {
                c.index_interval_bytes = v.parse().unwrap_or(c.index_interval_bytes)
            }
            "retention.ms" => c.retention_ms = v.parse().unwrap_or(c.retention_ms),
            "retention.bytes" => c.retention_bytes = v.parse().unwrap_or(c.retention_bytes),
            "flush.messages" => c.flush_messages = v.parse().ok(),
            "flush.ms" => c.flush_ms = v.parse().ok(),
            "max.message.bytes" => c.message_max_bytes = v.parse().unwrap_or(c.message_max_bytes),
            _ => {}
        }
    }
    c
}

/// A shard's inbox loop: runs the jobs other shards send it, in order, until the channel
/// closes or the broker shuts down (checked after each job; shutdown sends one to wake it).
pub async fn serve_inbox(shard: Rc<Shard>, inbox: async_channel::Receiver<Job>) {
    while let Ok(job) = inbox.recv().await {
        job(shard.clone());
        if shard.shared.shutdown.load(Ordering::Acquire) {
            break;
        }
    }
}

pub fn inbox_pair() -> (async_channel::Sender<Job>, async_channel::Receiver<Job>) {
    async_channel::bounded(limits::CROSS_SHARD_QUEUE_JOBS_MAX)
}
