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

pub mod metadata;
pub mod replica;
pub mod transport;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A Raft group: a partition (topic id, index), or the metadata group (nil id, 0).
pub type GroupKey = (Uuid, i32);

pub const METADATA_GROUP: GroupKey = (Uuid::nil(), 0);

pub use crate::catalog::broker_of;

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
