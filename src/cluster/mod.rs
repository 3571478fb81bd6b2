//! Cluster mode: replication with Raft (TiKV's `raft` crate, driven by each shard's event loop).
//!
//! Started with `--node-id N --cluster ID@HOST:PORT,...` (`controller.quorum.voters`); without
//! them a broker is one node and nothing here runs.
//!
//! - One Raft group per partition, whose members are the partition's replicas. The partition's
//!   segment log *is* the Raft log: entry i is the i-th batch of the log, the Raft term is the
//!   batch's partitionLeaderEpoch, entries without producer data are control batches
//!   ([`replica`]). The high watermark is the commit index.
//! - One more Raft group, `__cluster_metadata`, with every node as a voter, holds the cluster
//!   metadata: registered brokers, topics with their replica assignments, topic configs
//!   ([`metadata`]). Every node applies it to its catalog and opens the partitions it holds.
//! - Nodes talk over the replication listener (each voter's HOST:PORT) ([`transport`]):
//!   Raft messages, and leadership reports so that every node can answer Metadata for
//!   partitions it does not hold.
//!
//! Layer (ARCHITECTURE.md "Layers", kept by tests/it/layers.rs): `cluster` uses `group` (it implements `group::OffsetReplicator`), `runtime` and the bottom rows; never `kafka`: its errors are its own.

pub mod metadata;
pub mod replica;
pub mod transport;

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::catalog::TopicMeta;
use crate::runtime::{owner_shard, Shard, Shared};
use crate::storage::StorageError;

/// A Raft group: a partition (topic id, index), or the metadata group (nil id, 0).
pub type GroupKey = (Uuid, i32);

pub const METADATA_GROUP: GroupKey = (Uuid::nil(), 0);

pub use crate::catalog::broker_of;

/// The node's cluster state, if this broker runs in cluster mode: a node-wide service in the
/// runtime's slots ([`crate::runtime::NodeServices`]).
pub trait ClusterOf {
    fn cluster(&self) -> Option<&Arc<ClusterState>>;
    /// This node's registration is committed and applied (it is in the replicated broker
    /// list). Always true on a one-node broker.
    fn joined(&self) -> bool;
}

impl ClusterOf for Shared {
    fn cluster(&self) -> Option<&Arc<ClusterState>> {
        self.node_services.get::<ClusterState>()
    }

    fn joined(&self) -> bool {
        match self.cluster() {
            Some(c) => self.catalog.snapshot().data.brokers.contains_key(&c.node_id),
            None => true,
        }
    }
}

/// What cluster mode keeps per shard (a shard-local service): the Raft groups the shard
/// drives, its queues to the peers, and on shard 0 the metadata proposals in flight.
#[derive(Default)]
pub struct ShardCluster {
    /// The Raft groups this shard drives (its partitions' replicas; on shard 0 also the
    /// metadata group).
    pub replicas: RefCell<HashMap<GroupKey, Rc<replica::Replica>>>,
    /// This shard's outgoing queue to each peer node.
    pub peers: RefCell<HashMap<u64, async_channel::Sender<bytes::Bytes>>>,
    /// Shard 0: proposers of metadata operations waiting for them to apply.
    #[allow(clippy::type_complexity)]
    pub meta_waiters: RefCell<HashMap<u64, futures::channel::oneshot::Sender<Result<(), metadata::MetaError>>>>,
    /// Shard 0: request ids of the offset operations applied last (a retried proposal's
    /// duplicate is skipped).
    #[allow(clippy::type_complexity)]
    pub meta_applied_reqs: RefCell<(std::collections::HashSet<u64>, std::collections::VecDeque<u64>)>,
}

/// Cluster mode's view of a shard.
pub trait ClusterShard {
    /// This shard's cluster-mode state (made on first use).
    fn cl(&self) -> Rc<ShardCluster>;
    /// The replica of a Raft group on this shard.
    fn replica(&self, g: &GroupKey) -> Option<Rc<replica::Replica>>;
    /// The replica of a partition by topic name.
    fn replica_of(&self, topic: &str, partition: i32) -> Option<Rc<replica::Replica>>;
}

impl ClusterShard for Shard {
    fn cl(&self) -> Rc<ShardCluster> {
        self.services.get_or_init(ShardCluster::default)
    }

    fn replica(&self, g: &GroupKey) -> Option<Rc<replica::Replica>> {
        self.cl().replicas.borrow().get(g).cloned()
    }

    fn replica_of(&self, topic: &str, partition: i32) -> Option<Rc<replica::Replica>> {
        let id = self.log_topic_id(topic, partition)?;
        self.replica(&(id, partition))
    }
}

/// Opens a partition this node holds and starts its replica. Idempotent.
pub async fn open_replica(shard: &Rc<Shard>, topic: &TopicMeta, partition: i32, new: bool) -> Result<(), StorageError> {
    let g = (topic.id, partition);
    if shard.replica(&g).is_some() {
        return Ok(());
    }
    let log = shard.open_log(topic, partition).await?;
    let voters = topic.replicas.get(partition as usize).cloned().unwrap_or_default();
    let node = shard.shared.cluster().map_or(0, |c| c.node_id);
    // The preferred leader of a new partition stands at once: the partition is writable
    // without waiting for an election timeout.
    let campaign = new && voters.first() == Some(&node) && log.log_end_offset() == 0;
    let me = topic.raft_id(partition, node);
    let voters = voters.iter().map(|b| topic.raft_id(partition, *b)).collect();
    let r = replica::start(shard, g, topic.name.clone(), replica::Kind::Data, log, me, voters, campaign).await?;
    if shard.replica(&g).is_none() {
        shard.cl().replicas.borrow_mut().insert(g, r);
    } else {
        r.stop();
    }
    Ok(())
}

/// Stops the replica of a partition (if any) and deletes its log (the topic was deleted, or
/// the replica moved off this node).
pub async fn remove_replica(shard: &Rc<Shard>, topic: &str, partition: i32) -> Result<(), StorageError> {
    if let Some(id) = shard.log_topic_id(topic, partition) {
        if let Some(r) = shard.cl().replicas.borrow_mut().remove(&(id, partition)) {
            r.stop();
        }
    }
    shard.remove_log(topic, partition).await
}

/// Opens every partition of the catalog that this shard owns and this node holds, with their
/// replicas (a replica that fails to open stays offline, logged).
pub async fn open_owned_replicas(shard: &Rc<Shard>) {
    let snap = shard.shared.catalog.snapshot();
    let n = shard.shared.shard_count();
    let Some(node) = shard.shared.cluster().map(|c| c.node_id) else { return };
    for topic in snap.topics() {
        for p in 0..topic.partitions {
            if owner_shard(&topic.id, p, n) != shard.id || !topic.replicas.get(p as usize).is_some_and(|r| r.contains(&node)) {
                continue;
            }
            if let Err(e) = open_replica(shard, topic, p, false).await {
                tracing::error!(topic = %topic.name, partition = p, error = %e, "replica failed to open; it stays offline");
            }
        }
    }
}

/// Stops every replica of this shard (clean shutdown) and closes the metadata log; the
/// partition logs are closed by the runtime afterwards.
pub async fn stop_replicas(shard: &Shard) {
    let replicas: Vec<_> = shard.cl().replicas.borrow_mut().drain().collect();
    for (g, r) in replicas {
        r.stop();
        if g == METADATA_GROUP {
            let _ = r.log().close().await;
        }
    }
}

/// Directory name of the metadata log under the data directory.
pub const METADATA_DIR: &str = "__cluster_metadata-0";

/// Who leads a partition, as this node last heard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderInfo {
    /// 0 = no leader known.
    pub leader: u64,
    pub term: u64,
    /// In-sync replicas (as the leader reports them; else the assignment).
    pub isr: Vec<u64>,
}

/// Cluster state every shard reads (Send + Sync; locks taken briefly, off the produce path).
pub struct ClusterState {
    pub node_id: u64,
    pub voters: Vec<(u64, SocketAddr)>,
    /// Same on every node of the cluster: derived from the voter set.
    pub cluster_id: String,
    leaders: RwLock<HashMap<GroupKey, LeaderInfo>>,
    /// The metadata group's leader (the controller), 0 = unknown.
    controller: AtomicU64,
    /// The metadata term in which this node, as coordinator, last passed a read barrier
    /// (every committed offset applied here) ([`metadata::sync_offsets`]).
    offsets_synced_term: AtomicU64,
    /// Where this node listens for the others.
    pub own_raft: SocketAddr,
    /// Nodes that are not voters (brokers that joined later): id -> replication address, from
    /// the metadata log (`MetaOp::AddNode`) and from their join requests.
    extra_peers: RwLock<HashMap<u64, SocketAddr>>,
    /// Deterministic simulation only (`tests/it/simcluster.rs`): the harness owns the network
    /// and the clock. None in a real broker.
    pub sim: Option<Arc<SimHooks>>,
}

/// What a deterministic simulation replaces (VOPR idea, see docs/reliability.md): frames a node
/// sends go to `outbox` instead of a socket, and the harness decides which are delivered, when,
/// in what order, twice or never ([`transport::deliver`]); Raft ticks come from the harness
/// ([`replica::Replica::tick`]) instead of a timer, and the election timeouts Raft would draw
/// from its thread-local RNG are derived from `seed` and the replica's state instead. A
/// partition's driver then reads entries for lagging followers inline rather than in a
/// separate task, so one node's step is one sequence of I/O.
#[derive(Debug, Default)]
pub struct SimHooks {
    pub seed: u64,
    /// Frames sent and not yet taken by the harness: (from, to, frame).
    pub outbox: std::sync::Mutex<Vec<(u64, u64, bytes::Bytes)>>,
}

impl ClusterState {
    pub fn new(node_id: u64, voters: Vec<(u64, SocketAddr)>, own_raft: SocketAddr) -> ClusterState {
        let mut ids: Vec<String> = voters.iter().map(|(id, a)| format!("{id}@{a}")).collect();
        ids.sort();
        let digest = crc32c::crc32c(ids.join(",").as_bytes());
        let digest2 = crc32c::crc32c_append(digest, b"sluice");
        let cluster_id = Uuid::from_u64_pair(
            u64::from(digest) << 32 | u64::from(digest2),
            ids.len() as u64,
        )
        .simple()
        .to_string();
        ClusterState {
            node_id,
            voters,
            cluster_id,
            leaders: RwLock::new(HashMap::new()),
            controller: AtomicU64::new(0),
            offsets_synced_term: AtomicU64::new(0),
            own_raft,
            extra_peers: RwLock::new(HashMap::new()),
            sim: None,
        }
    }

    /// Runs this node under a deterministic simulation's network and clock.
    pub fn with_sim(mut self, hooks: Arc<SimHooks>) -> ClusterState {
        self.sim = Some(hooks);
        self
    }

    pub fn voter_ids(&self) -> Vec<u64> {
        self.voters.iter().map(|(id, _)| *id).collect()
    }

    pub fn peer_addr(&self, id: u64) -> Option<SocketAddr> {
        self.voters
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, a)| *a)
            .or_else(|| self.extra_peers.read().unwrap_or_else(|p| p.into_inner()).get(&id).copied())
    }

    /// True when this node votes in the metadata group (is in `--cluster`).
    pub fn is_voter(&self) -> bool {
        self.voters.iter().any(|(i, _)| *i == self.node_id)
    }

    /// Records the replication address of a node that is not a voter.
    pub fn add_peer(&self, id: u64, addr: SocketAddr) {
        if id != self.node_id && !self.voters.iter().any(|(i, _)| *i == id) {
            self.extra_peers.write().unwrap_or_else(|p| p.into_inner()).insert(id, addr);
        }
    }

    /// Every other node this node knows: voters and joined brokers.
    pub fn peer_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.voters.iter().map(|(i, _)| *i).collect();
        ids.extend(self.extra_peers.read().unwrap_or_else(|p| p.into_inner()).keys().copied());
        ids.retain(|i| *i != self.node_id);
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    pub fn own_addr(&self) -> Option<SocketAddr> {
        Some(self.own_raft)
    }

    pub fn controller(&self) -> u64 {
        self.controller.load(Ordering::Acquire)
    }

    pub fn set_controller(&self, id: u64) {
        self.controller.store(id, Ordering::Release);
    }

    pub fn offsets_synced_term(&self) -> u64 {
        self.offsets_synced_term.load(Ordering::Acquire)
    }

    pub fn set_offsets_synced_term(&self, term: u64) {
        self.offsets_synced_term.store(term, Ordering::Release);
    }

    pub fn leader(&self, g: &GroupKey) -> Option<LeaderInfo> {
        self.leaders
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(g)
            .cloned()
    }

    /// Records what a local replica knows (always wins for its term or later).
    pub fn set_leader(&self, g: GroupKey, info: LeaderInfo) {
        let mut m = self.leaders.write().unwrap_or_else(|p| p.into_inner());
        match m.get(&g) {
            Some(old) if old.term > info.term => {}
            _ => {
                m.insert(g, info);
            }
        }
    }

    pub fn forget(&self, g: &GroupKey) {
        self.leaders
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(g);
    }

    /// The partitions this node leads, for the periodic leadership report to peers.
    pub fn led_by_me(&self) -> Vec<(GroupKey, LeaderInfo)> {
        let m = self.leaders.read().unwrap_or_else(|p| p.into_inner());
        m.iter()
            .filter(|(g, i)| i.leader == self.node_id && **g != METADATA_GROUP)
            .map(|(g, i)| (*g, i.clone()))
            .collect()
    }
}
