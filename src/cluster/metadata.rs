//! The replicated cluster metadata: one Raft group (every node a voter) whose log
//! (`__cluster_metadata-0`, like KRaft's) holds metadata operations, one JSON record per entry.
//! Every node applies every committed operation, in order, to its own catalog and opens or
//! removes the partitions it holds; so every node answers Metadata from the same state.
//!
//! Any node may propose: a follower forwards the proposal to the leader (raft-rs does), and
//! the proposer waits until the operation is applied locally, by request id. Operations are
//! idempotent (a proposal retried after a lost reply applies as a no-op).

use std::collections::BTreeMap;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use futures::future::LocalBoxFuture;
use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::replica::{self, Kind};
use super::{METADATA_DIR, METADATA_GROUP};
use crate::catalog::{BrokerMeta, TopicMeta};
use crate::group::offsets::{Committed, OffsetRecord};
use crate::group::OffsetReplicator;
use super::{ClusterOf, ClusterShard};
use crate::runtime::{owner_shard, Shard};
use crate::storage::{batch, LogConfig, PartitionLog, StorageError};
use crate::group::GroupShard;

/// How long a proposer waits for its operation to be applied.
/// Why a metadata operation failed; `kafka::error` maps the kind to Kafka's error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct MetaError {
    pub kind: MetaErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaErrorKind {
    /// The broker does not run in cluster mode.
    NotACluster,
    /// This node cannot take metadata changes now (its metadata log is not open).
    NotController,
    /// Not committed within the proposal timeout (no quorum?).
    Timeout,
    /// The catalog or a log could not be written.
    Storage,
    TopicExists,
    UnknownTopic,
    Internal,
}

impl MetaError {
    pub fn new(kind: MetaErrorKind, message: impl Into<String>) -> MetaError {
        MetaError { kind, message: message.into() }
    }
}

const PROPOSE_TIMEOUT_MS: u64 = 15_000;
const PROPOSE_RETRY_MS: u64 = 1_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MetaOp {
    RegisterBroker {
        id: u64,
        host: String,
        port: u16,
        #[serde(default)]
        rack: Option<String>,
    },
    /// A node that is not a voter joins: its replication address. The metadata leader then
    /// adds it to the metadata group as a learner (it receives the log, does not vote).
    AddNode {
        id: u64,
        addr: String,
    },
    CreateTopic {
        topic: TopicMeta,
    },
    DeleteTopic {
        name: String,
        id: Uuid,
    },
    /// Grows a topic to `replicas.len()` partitions.
    AddPartitions {
        name: String,
        id: Uuid,
        replicas: Vec<Vec<u64>>,
    },
    SetConfigs {
        name: String,
        id: Uuid,
        configs: BTreeMap<String, String>,
    },
    /// Starts moving a partition to `target` replicas (None cancels a reassignment not yet
    /// completed). The partition's Raft leader changes the group's voters (joint consensus:
    /// new replicas are added and catch up from the log first, then old ones are removed) and
    /// proposes [`MetaOp::ReassignDone`].
    Reassign { name: String, id: Uuid, partition: i32, target: Option<Vec<u64>> },
    /// The partition's voters are now `replicas`: the assignment changes, removed replicas
    /// delete their copy.
    ReassignDone { name: String, id: Uuid, partition: i32, replicas: Vec<u64> },
    /// An OffsetCommit (validated by the coordinator): every node stores the offsets in its
    /// group coordinator, as a local commit does.
    CommitOffsets {
        group: String,
        offsets: Vec<ReplicatedOffset>,
    },
    /// Offsets deleted (OffsetDelete, DeleteGroups, expiry): every node deletes them.
    DeleteOffsets {
        group: String,
        partitions: Vec<(String, i32)>,
        delete_ts: i64,
    },
    /// Changes nothing: once applied, everything committed before it is applied here too
    /// (a new coordinator's read barrier before it serves committed offsets).
    Barrier,
}

/// One committed offset of [`MetaOp::CommitOffsets`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicatedOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_ts: i64,
}

/// How many applied offset operations are remembered to drop a retried proposal's duplicate
/// (a commit applied twice could otherwise undo a later commit).
const APPLIED_REQS_MAX: usize = 65_536;

#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    req: u64,
    node: u64,
    op: MetaOp,
}

/// Opens the metadata log and starts its replica on shard 0.
pub async fn start(shard: &Rc<Shard>) -> Result<(), StorageError> {
    let Some(cluster) = shard.shared.cluster().cloned() else {
        return Ok(());
    };
    let dir = shard.shared.config.data_dir.join(METADATA_DIR);
    let config = LogConfig {
        replicated: true,
        segment_bytes: 64 << 20,
        ..LogConfig::default()
    };
    let log = PartitionLog::open(shard.fs.clone(), dir, config).await?;
    let r = replica::start(
        shard,
        METADATA_GROUP,
        METADATA_DIR.to_string(),
        Kind::Metadata,
        log,
        cluster.node_id,
        cluster.voter_ids(),
        false,
    )
    .await?;
    shard.cl().replicas.borrow_mut().insert(METADATA_GROUP, r);
    Ok(())
}

/// Proposes `op` and waits until it is applied on this node (from any shard).
pub async fn propose(shard: &Rc<Shard>, op: MetaOp) -> Result<(), MetaError> {
    let r = shard
        .run_on(0, move |s| async move {
            let Some(cluster) = s.shared.cluster().cloned() else {
                return Err(MetaError::new(
                    MetaErrorKind::NotACluster,
                    "not a cluster",
                ));
            };
            let Some(meta) = s.replica(&METADATA_GROUP) else {
                return Err(MetaError::new(
                    MetaErrorKind::NotController,
                    "the metadata log is not open",
                ));
            };
            let req = rand::random::<u64>();
            let env = Envelope {
                req,
                node: cluster.node_id,
                op,
            };
            let value = serde_json::to_vec(&env)
                .map_err(|e| MetaError::new(MetaErrorKind::Internal, e.to_string()))?;
            let data = batch::BatchBuilder::new(crate::runtime::now_ms())
                .record(None, Some(&value))
                .build();
            let (tx, mut rx) = oneshot::channel();
            s.cl().meta_waiters.borrow_mut().insert(req, tx);
            let deadline = Instant::now() + Duration::from_millis(PROPOSE_TIMEOUT_MS);
            loop {
                // The reply of propose only says whether this node could append it; the
                // operation's own result comes from applying it.
                let m = meta.clone();
                let d = data.clone();
                compio::runtime::spawn(async move {
                    let _ = m.propose(d).await;
                })
                .detach();
                let wait =
                    compio::time::timeout(Duration::from_millis(PROPOSE_RETRY_MS), &mut rx).await;
                match wait {
                    Ok(Ok(res)) => return res,
                    Ok(Err(_)) => break,
                    Err(_) if Instant::now() < deadline => continue,
                    Err(_) => break,
                }
            }
            s.cl().meta_waiters.borrow_mut().remove(&req);
            Err(MetaError::new(
                MetaErrorKind::Timeout,
                "the cluster metadata change was not committed in time (no quorum?)",
            ))
        })
        .await;
    r.unwrap_or_else(|e| {
        Err(MetaError::new(
            MetaErrorKind::Internal,
            e.to_string(),
        ))
    })
}

/// Applies one committed metadata entry (on shard 0, in log order).
pub async fn apply_entry(shard: &Rc<Shard>, data: &[u8], index: u64) {
    let Some((h, records)) = batch::decode_records(data) else {
        tracing::error!("undecodable metadata entry skipped");
        return;
    };
    if h.attributes & batch::ATTR_CONTROL != 0 {
        return;
    }
    for rec in records {
        let Some(v) = rec.value else { continue };
        let env: Envelope = match serde_json::from_slice(&v) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "undecodable metadata operation skipped");
                continue;
            }
        };
        let offsets_op = matches!(
            env.op,
            MetaOp::CommitOffsets { .. } | MetaOp::DeleteOffsets { .. }
        );
        if offsets_op {
            // The same on every node: every node applies the same entries in the same order.
            let cl = shard.cl();
            let mut seen = cl.meta_applied_reqs.borrow_mut();
            if seen.0.contains(&env.req) {
                tracing::debug!(req = env.req, "duplicate offsets operation skipped");
                continue;
            }
            seen.0.insert(env.req);
            seen.1.push_back(env.req);
            if seen.1.len() > APPLIED_REQS_MAX {
                if let Some(old) = seen.1.pop_front() {
                    seen.0.remove(&old);
                }
            }
        }
        let res = apply_op(shard, env.op, index).await;
        if let Some(tx) = shard.cl().meta_waiters.borrow_mut().remove(&env.req) {
            let _ = tx.send(res);
        }
    }
}

/// `index`: the metadata log index of the entry (new replicas' Raft ids are made from it).
async fn apply_op(shard: &Rc<Shard>, op: MetaOp, index: u64) -> Result<(), MetaError> {
    let catalog = shard.shared.catalog.clone();
    let storage = |e: crate::catalog::CatalogError| {
        MetaError::new(MetaErrorKind::Storage, e.to_string())
    };
    match op {
        MetaOp::AddNode { id, addr } => {
            if let (Some(c), Ok(a)) = (shard.shared.cluster(), addr.parse()) {
                c.add_peer(id, a);
            }
            catalog
                .update(move |d| {
                    d.nodes.insert(id, addr);
                    Ok::<(), MetaError>(())
                })
                .await
                .map_err(storage)??;
            Ok(())
        }
        MetaOp::RegisterBroker { id, host, port, rack } => {
            catalog
                .update(move |d| {
                    d.brokers.insert(id, BrokerMeta { host, port, rack });
                    Ok::<(), MetaError>(())
                })
                .await
                .map_err(storage)??;
            Ok(())
        }
        MetaOp::CreateTopic { topic } => {
            let t = topic.clone();
            let created = catalog
                .update(move |d| match d.topics.get(&t.name) {
                    Some(old) if old.id == t.id => Ok(false),
                    Some(_) => Err(MetaError::new(
                        MetaErrorKind::TopicExists,
                        format!("Topic '{}' already exists.", t.name),
                    )),
                    None => {
                        d.topics.insert(t.name.clone(), t);
                        Ok(true)
                    }
                })
                .await
                .map_err(storage)??;
            if created {
                tracing::info!(topic = %topic.name, partitions = topic.partitions, id = %topic.id, "topic created (replicated)");
            }
            open_held(shard, &topic, 0..topic.partitions).await;
            Ok(())
        }
        MetaOp::DeleteTopic { name, id } => {
            let n = name.clone();
            let removed = catalog
                .update(move |d| match d.topics.get(&n) {
                    Some(t) if t.id == id => Ok(d.topics.remove(&n)),
                    _ => Ok::<_, MetaError>(None),
                })
                .await
                .map_err(storage)??;
            if let Some(meta) = removed {
                let n = shard.shared.shard_count();
                for p in 0..meta.partitions {
                    let topic = meta.name.clone();
                    let _ = shard
                        .run_on(owner_shard(&meta.id, p, n), move |s| async move {
                            crate::cluster::remove_replica(&s, &topic, p).await
                        })
                        .await;
                }
                tracing::info!(topic = %name, "topic deleted (replicated)");
            }
            Ok(())
        }
        MetaOp::AddPartitions { name, id, replicas } => {
            let meta = update_topic(shard, &name, id, move |t| {
                if (t.partitions as usize) < replicas.len() {
                    let old = t.partitions as usize;
                    t.replicas.extend(replicas[old..].iter().cloned());
                    t.partitions = replicas.len() as i32;
                }
            })
            .await?;
            open_held(shard, &meta, 0..meta.partitions).await;
            Ok(())
        }
        MetaOp::Reassign { name, id, partition, target } => {
            let meta = update_partition(shard, &name, id, partition, move |t| match target {
                Some(target) if t.replicas.get(partition as usize) != Some(&target) => {
                    // Each replica this reassignment adds is a new Raft member, under an id no
                    // earlier copy on that broker had (TopicMeta::raft_id).
                    let current = t.replicas.get(partition as usize).cloned().unwrap_or_default();
                    let ids = t.raft_ids.entry(partition).or_default();
                    for b in target.iter().filter(|b| !current.contains(b)) {
                        ids.insert(*b, b | (index << 32));
                    }
                    t.targets.insert(partition, target);
                }
                _ => {
                    t.targets.remove(&partition);
                }
            })
            .await?;
            if let Some(target) = meta.targets.get(&partition) {
                tracing::info!(topic = %name, partition, ?target, "reassignment started");
                // New replicas start with the current voters; the log tells them the rest.
                open_partition_if(shard, &meta, partition, target).await;
            }
            Ok(())
        }
        MetaOp::ReassignDone { name, id, partition, replicas } => {
            let r = replicas.clone();
            let meta = update_partition(shard, &name, id, partition, move |t| {
                if let Some(slot) = t.replicas.get_mut(partition as usize) {
                    *slot = r;
                }
                t.targets.remove(&partition);
            })
            .await?;
            tracing::info!(topic = %name, partition, ?replicas, "reassignment done");
            if let Some(cluster) = shard.shared.cluster().cloned() {
                if !replicas.contains(&cluster.node_id) {
                    let topic = meta.name.clone();
                    let owner = owner_shard(&meta.id, partition, shard.shared.shard_count());
                    let _ = shard.run_on(owner, move |s| async move { crate::cluster::remove_replica(&s, &topic, partition).await }).await;
                }
            }
            Ok(())
        }
        MetaOp::SetConfigs { name, id, configs } => {
            let meta = update_topic(shard, &name, id, move |t| t.configs = configs).await?;
            let n = shard.shared.shard_count();
            for p in 0..meta.partitions {
                let m = meta.clone();
                let _ = shard
                    .run_on(owner_shard(&meta.id, p, n), move |s| async move {
                        if let Some(log) = s.log(&m.name, p) {
                            log.set_config(crate::runtime::log_config(&s.shared.config, &m));
                        }
                    })
                    .await;
            }
            Ok(())
        }
        MetaOp::CommitOffsets { group, offsets } => {
            let records = offsets
                .into_iter()
                .map(|o| OffsetRecord {
                    group: group.clone(),
                    topic: o.topic,
                    partition: o.partition,
                    value: Some(Committed {
                        offset: o.offset,
                        leader_epoch: o.leader_epoch,
                        metadata: o.metadata,
                        commit_ms: o.commit_ts,
                    }),
                    write_ms: o.commit_ts,
                })
                .collect();
            apply_offsets(shard, group, records).await
        }
        MetaOp::DeleteOffsets {
            group,
            partitions,
            delete_ts,
        } => {
            let records = partitions
                .into_iter()
                .map(|(topic, partition)| OffsetRecord {
                    group: group.clone(),
                    topic,
                    partition,
                    value: None,
                    write_ms: delete_ts,
                })
                .collect();
            apply_offsets(shard, group, records).await
        }
        MetaOp::Barrier => Ok(()),
    }
}

/// Changes topic `name` (if it is still the topic with `id`) in the catalog; its new state.
async fn update_topic(
    shard: &Rc<Shard>,
    name: &str,
    id: Uuid,
    change: impl FnOnce(&mut TopicMeta) + Send + 'static,
) -> Result<TopicMeta, MetaError> {
    let n = name.to_string();
    shard
        .shared
        .catalog
        .update(move |d| match d.topics.get_mut(&n) {
            Some(t) if t.id == id => {
                change(t);
                Ok(t.clone())
            }
            _ => Err(MetaError::new(MetaErrorKind::UnknownTopic, format!("Topic '{n}' does not exist."))),
        })
        .await
        .map_err(|e| MetaError::new(MetaErrorKind::Storage, e.to_string()))?
}

/// [`update_topic`] for an existing partition of the topic.
async fn update_partition(
    shard: &Rc<Shard>,
    name: &str,
    id: Uuid,
    partition: i32,
    change: impl FnOnce(&mut TopicMeta) + Send + 'static,
) -> Result<TopicMeta, MetaError> {
    let exists = shard.shared.catalog.snapshot().topic(name).is_some_and(|t| partition >= 0 && partition < t.partitions);
    if !exists {
        return Err(MetaError::new(MetaErrorKind::UnknownTopic, format!("{name}-{partition} does not exist.")));
    }
    update_topic(shard, name, id, change).await
}

/// Opens partition `p` of `meta` on this node if `members` includes it.
async fn open_partition_if(shard: &Rc<Shard>, meta: &TopicMeta, p: i32, members: &[u64]) {
    let Some(cluster) = shard.shared.cluster().cloned() else { return };
    if !members.contains(&cluster.node_id) {
        return;
    }
    let m = meta.clone();
    let owner = owner_shard(&meta.id, p, shard.shared.shard_count());
    match shard.run_on(owner, move |s| async move { crate::cluster::open_replica(&s, &m, p, false).await }).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(topic = %meta.name, partition = p, error = %e, "replica failed to open"),
        Err(e) => tracing::error!(topic = %meta.name, partition = p, error = %e, "replica failed to open"),
    }
}

/// Stores replicated offsets (or tombstones) in the coordinator shard of `group`.
async fn apply_offsets(
    shard: &Rc<Shard>,
    group: String,
    records: Vec<OffsetRecord>,
) -> Result<(), MetaError> {
    let owner = crate::group::owner_shard_for_group(&group, shard.shared.shard_count());
    let r = shard
        .run_on(owner, move |s| async move {
            s.groups().apply_replicated(records).await
        })
        .await;
    r.map_err(|e| {
        tracing::error!(group = %group, error = %e, "replicated offsets not stored");
        MetaError::new(MetaErrorKind::Storage, e.to_string())
    })
}

/// Cluster mode: the group coordinator writes offsets through the metadata log.
pub struct OffsetsViaMetadata {
    pub shard: Weak<Shard>,
}

impl OffsetReplicator for OffsetsViaMetadata {
    fn is_coordinator(&self) -> bool {
        self.shard.upgrade().is_some_and(|s| is_coordinator(&s))
    }

    fn replicate(
        &self,
        group: String,
        records: Vec<OffsetRecord>,
    ) -> LocalBoxFuture<'static, Result<(), ResponseError>> {
        let shard = self.shard.upgrade();
        Box::pin(async move {
            let Some(shard) = shard else {
                return Err(ResponseError::CoordinatorNotAvailable);
            };
            let mut offsets = Vec::new();
            let mut deleted = Vec::new();
            let mut delete_ts = 0;
            for r in records {
                match r.value {
                    Some(c) => offsets.push(ReplicatedOffset {
                        topic: r.topic,
                        partition: r.partition,
                        offset: c.offset,
                        leader_epoch: c.leader_epoch,
                        metadata: c.metadata,
                        commit_ts: c.commit_ms,
                    }),
                    None => {
                        delete_ts = delete_ts.max(r.write_ms);
                        deleted.push((r.topic, r.partition));
                    }
                }
            }
            let mut ops = Vec::new();
            if !offsets.is_empty() {
                ops.push(MetaOp::CommitOffsets {
                    group: group.clone(),
                    offsets,
                });
            }
            if !deleted.is_empty() {
                ops.push(MetaOp::DeleteOffsets {
                    group,
                    partitions: deleted,
                    delete_ts,
                });
            }
            for op in ops {
                propose(&shard, op).await.map_err(|e| {
                    if e.kind == MetaErrorKind::Storage {
                        ResponseError::KafkaStorageError
                    } else {
                        // No quorum, or the metadata leader moved: the client finds the
                        // coordinator again and retries.
                        ResponseError::NotCoordinator
                    }
                })?;
            }
            Ok(())
        })
    }
}

/// Cluster mode: whether this node is the controller, which coordinates every group.
pub fn is_coordinator(shard: &Shard) -> bool {
    shard
        .shared
        .cluster()
        .is_some_and(|c| c.controller() == c.node_id)
}

/// Cluster mode: before a coordinator serves committed offsets, everything committed to the
/// metadata log before it became the controller must be applied here (a new leader may not
/// have applied the previous leader's last entries yet). One barrier per controller term.
pub async fn sync_offsets(shard: &Rc<Shard>) -> Result<(), ResponseError> {
    let Some(cluster) = shard.shared.cluster().cloned() else {
        return Ok(());
    };
    if !is_coordinator(shard) {
        return Ok(()); // the request is refused with NOT_COORDINATOR
    }
    let term = cluster.leader(&METADATA_GROUP).map_or(0, |i| i.term);
    if term != 0 && cluster.offsets_synced_term() == term {
        return Ok(());
    }
    propose(shard, MetaOp::Barrier)
        .await
        .map_err(|_| ResponseError::CoordinatorLoadInProgress)?;
    cluster.set_offsets_synced_term(term);
    Ok(())
}

/// Opens (and starts the replicas of) the partitions in `range` that this node holds.
async fn open_held(shard: &Rc<Shard>, meta: &TopicMeta, range: std::ops::Range<i32>) {
    let Some(cluster) = shard.shared.cluster().cloned() else {
        return;
    };
    let n = shard.shared.shard_count();
    for p in range {
        let held = meta
            .replicas
            .get(p as usize)
            .is_some_and(|r| r.contains(&cluster.node_id));
        if !held {
            continue;
        }
        let m = meta.clone();
        let r = shard
            .run_on(owner_shard(&meta.id, p, n), move |s| async move {
                crate::cluster::open_replica(&s, &m, p, true).await
            })
            .await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(topic = %meta.name, partition = p, error = %e, "replica failed to open")
            }
            Err(e) => {
                tracing::error!(topic = %meta.name, partition = p, error = %e, "replica failed to open")
            }
        }
    }
}

/// Replica placement for `count` new partitions with `rf` replicas each: every partition
/// takes, one replica at a time, the registered broker holding the fewest replicas so far
/// (ties by id, rotated per partition) among those on a rack the partition does not use yet
/// (Kafka's rack awareness; brokers without a rack count as one rack each); if every rack is
/// used, any broker not chosen yet. So new partitions go to the least-loaded brokers and
/// spread over racks. The first is the preferred leader.
pub fn place(brokers: &[u64], racks: &BTreeMap<u64, String>, load: &BTreeMap<u64, usize>, count: usize, rf: usize) -> Vec<Vec<u64>> {
    let mut load: BTreeMap<u64, usize> = brokers.iter().map(|b| (*b, load.get(b).copied().unwrap_or(0))).collect();
    let rack_of = |b: &u64| racks.get(b).cloned().unwrap_or_else(|| format!("\u{0}node-{b}"));
    let mut out = Vec::with_capacity(count);
    for p in 0..count {
        let mut order: Vec<u64> = brokers.to_vec();
        let rot = p % order.len().max(1);
        order.rotate_left(rot);
        order.sort_by_key(|b| load[b]);
        let mut chosen: Vec<u64> = Vec::with_capacity(rf);
        let mut used_racks: Vec<String> = Vec::new();
        while chosen.len() < rf.min(order.len()) {
            let next = order
                .iter()
                .find(|b| !chosen.contains(b) && !used_racks.contains(&rack_of(b)))
                .or_else(|| order.iter().find(|b| !chosen.contains(b)))
                .copied();
            let Some(b) = next else { break };
            used_racks.push(rack_of(&b));
            chosen.push(b);
        }
        for b in &chosen {
            *load.entry(*b).or_default() += 1;
        }
        out.push(chosen);
    }
    out
}

/// `broker.rack` of every registered broker that has one.
pub fn racks(snap: &crate::catalog::CatalogSnapshot) -> BTreeMap<u64, String> {
    snap.data.brokers.iter().filter_map(|(id, b)| b.rack.clone().map(|r| (*id, r))).collect()
}

/// Replicas per broker over every topic of the catalog.
pub fn replica_load(snap: &crate::catalog::CatalogSnapshot) -> BTreeMap<u64, usize> {
    let mut load = BTreeMap::new();
    for t in snap.topics() {
        for r in &t.replicas {
            for b in r {
                *load.entry(*b).or_default() += 1;
            }
        }
    }
    load
}

/// A join request reached this node (from a broker that is not a voter): remember its address
/// and, on the controller, commit it to the metadata log (once).
pub fn on_join(shard: &Rc<Shard>, id: u64, addr: std::net::SocketAddr) {
    let Some(cluster) = shard.shared.cluster().cloned() else { return };
    cluster.add_peer(id, addr);
    if cluster.controller() != cluster.node_id {
        return;
    }
    let known = shard.shared.catalog.snapshot().data.nodes.get(&id).cloned();
    if known.as_deref() == Some(addr.to_string().as_str()) {
        return;
    }
    let s = shard.clone();
    compio::runtime::spawn(async move {
        match propose(&s, MetaOp::AddNode { id, addr: addr.to_string() }).await {
            Ok(()) => tracing::info!(node = id, %addr, "a broker joined the cluster"),
            Err(e) => tracing::debug!(node = id, error = %e.message, "join not committed yet"),
        }
    })
    .detach();
}

/// Keeps this node's registration (the address clients use) in the metadata log current.
pub async fn register_loop(shard: Rc<Shard>) {
    let Some(cluster) = shard.shared.cluster().cloned() else {
        return;
    };
    let (host, port) = match &shard.shared.config.advertised_listener {
        Some((h, p)) => (h.clone(), *p),
        None => {
            let l = shard.shared.config.listen;
            let host = if l.ip().is_unspecified() {
                cluster.own_addr().map_or(l.ip(), |a| a.ip()).to_string()
            } else {
                l.ip().to_string()
            };
            (host, shard.shared.listen_port())
        }
    };
    let want = BrokerMeta { host, port, rack: shard.shared.config.broker_rack.clone() };
    loop {
        if !cluster.is_voter() && !shard.shared.catalog.snapshot().data.nodes.contains_key(&cluster.node_id) {
            // Not a voter: ask the voters to let this node in (the leader records it).
            if let Some(frame) = super::transport::encode_join(cluster.node_id, cluster.own_raft) {
                for id in cluster.voter_ids() {
                    super::transport::send(&shard, id, frame.clone());
                }
            }
        }
        let have = shard
            .shared
            .catalog
            .snapshot()
            .data
            .brokers
            .get(&cluster.node_id)
            .cloned();
        if have.as_ref() != Some(&want) {
            let op = MetaOp::RegisterBroker {
                id: cluster.node_id,
                host: want.host.clone(),
                port: want.port,
                rack: want.rack.clone(),
            };
            match propose(&shard, op).await {
                Ok(()) => {
                    tracing::info!(node = cluster.node_id, host = %want.host, port = want.port, "registered in the cluster")
                }
                Err(e) => {
                    tracing::debug!(error = %e.message, "registration not committed yet; retrying")
                }
            }
        }
        compio::time::sleep(Duration::from_millis(1_000)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::expect_used)]
    fn offset_operations_round_trip_as_json() {
        let op = MetaOp::CommitOffsets {
            group: "g".into(),
            offsets: vec![ReplicatedOffset {
                topic: "t".into(),
                partition: 2,
                offset: 42,
                leader_epoch: 3,
                metadata: "m".into(),
                commit_ts: 1_700_000_000_000,
            }],
        };
        let env = Envelope { req: 7, node: 1, op };
        let json = serde_json::to_string(&env).unwrap_or_default();
        assert!(json.contains(r#""op":"commit_offsets""#), "{json}");
        let back: Envelope = serde_json::from_str(&json).expect("decodes");
        let MetaOp::CommitOffsets { group, offsets } = back.op else {
            panic!("{json}")
        };
        assert_eq!((group.as_str(), offsets[0].offset, offsets[0].leader_epoch), ("g", 42, 3));
        for op in [
            MetaOp::Barrier,
            MetaOp::DeleteOffsets {
                group: "g".into(),
                partitions: vec![("t".into(), 1)],
                delete_ts: 5,
            },
        ] {
            let json = serde_json::to_string(&Envelope { req: 1, node: 1, op }).unwrap_or_default();
            assert!(serde_json::from_str::<Envelope>(&json).is_ok(), "{json}");
        }
    }

    #[test]
    fn placement_spreads_and_prefers_least_loaded() {
        let brokers = [1, 2, 3];
        let p = place(&brokers, &BTreeMap::new(), &BTreeMap::new(), 3, 3);
        let leaders: Vec<u64> = p.iter().map(|r| r[0]).collect();
        let mut sorted = leaders.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            vec![1, 2, 3],
            "each broker prefers one leader: {p:?}"
        );
        let mut load = BTreeMap::new();
        load.insert(1, 10);
        load.insert(2, 10);
        let p = place(&brokers, &BTreeMap::new(), &load, 1, 1);
        assert_eq!(
            p,
            vec![vec![3]],
            "the least-loaded broker gets the new partition"
        );
        // Racks: with two racks of two brokers, every partition's two replicas are on both.
        let four = [1, 2, 3, 4];
        let racks: BTreeMap<u64, String> = [(1, "a"), (2, "a"), (3, "b"), (4, "b")].into_iter().map(|(b, r)| (b, r.to_string())).collect();
        for r in place(&four, &racks, &BTreeMap::new(), 8, 2) {
            assert_ne!(racks[&r[0]], racks[&r[1]], "{r:?}");
        }
        // More replicas than racks: the rest go anywhere, never twice on one broker.
        for r in place(&four, &racks, &BTreeMap::new(), 8, 3) {
            let mut s = r.clone();
            s.sort();
            s.dedup();
            assert_eq!(s.len(), 3);
        }
        for r in place(&brokers, &BTreeMap::new(), &BTreeMap::new(), 10, 2) {
            assert_eq!(r.len(), 2);
            assert_ne!(r[0], r[1]);
        }
    }
}
