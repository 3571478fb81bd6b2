//! The group coordinator: classic consumer groups and committed offsets.
//!
//! Each group is owned by one shard, [`owner_shard_for_group`] (CRC32C of the group id mod the
//! shard count); handlers route every group request there with `Shard::run_on`. The owning
//! shard's [`Coordinator`] holds the group's membership ([`state::Group`], the classic state
//! machine) and its committed offsets, whose durable log is [`offsets::OffsetLog`]. A timer per
//! shard ([`Coordinator::tick`], every [`limits::GROUP_TICK_INTERVAL_MS`]) expires sessions,
//! ends join phases, expires offsets of empty groups and compacts the log.
//!
//! Architecture invariant: group state lives only on its owner shard and is touched only from
//! that shard's executor; nothing about a group is shared between shards.
//! Architecture invariant: OffsetCommit is acknowledged only after its records are fsync'd.
//!
//! Layer (ARCHITECTURE.md "Layers", kept by tests/it/layers.rs): `group` uses `runtime` and the bottom rows; it defines `OffsetReplicator`, which `cluster` implements.

pub mod consumer;
pub mod offsets;
pub mod state;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use kafka_protocol::error::ResponseError;

use crate::config::BrokerConfig;
use crate::limits;
use crate::runtime::Shard;
use consumer::{ConsumerGroup, ConsumerSettings, HeartbeatParams, HeartbeatResult};
use offsets::{Committed, OffsetLog, OffsetRecord, OffsetTable};
use state::Group;
pub use state::{Code, GroupSettings, GroupState, JoinParams, JoinResult, Reply, SyncResult, NONE};

/// The shard that coordinates `group_id`: a pure function of the id bytes.
pub fn owner_shard_for_group(group_id: &str, shards: usize) -> usize {
    assert!(shards > 0);
    (crc32c::crc32c(group_id.as_bytes()) as usize) % shards
}

/// Kafka's checks on a group id: not empty, bounded.
pub fn validate_group_id(group_id: &str) -> Result<(), ResponseError> {
    if group_id.is_empty() || group_id.len() > limits::GROUP_ID_BYTES_MAX {
        return Err(ResponseError::InvalidGroupId);
    }
    Ok(())
}

/// OffsetFetch rows: per topic, (partition, committed offset if any).
pub type FetchedOffsets = Vec<(String, Vec<(i32, Option<Committed>)>)>;

/// One partition of an OffsetCommit.
#[derive(Clone, Debug)]
pub struct CommitEntry {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

/// A group as ListGroups / DescribeGroups show it.
#[derive(Clone, Debug)]
pub struct GroupSummary {
    pub group_id: String,
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberSummary>,
}

#[derive(Clone, Debug)]
pub struct MemberSummary {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Clone, Debug)]
pub struct ConsumerGroupSummary {
    pub state: &'static str,
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    pub members: Vec<ConsumerMemberSummary>,
}

#[derive(Clone, Debug)]
pub struct ConsumerMemberSummary {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed: Vec<String>,
    pub assigned: Vec<consumer::Tp>,
    pub target: Vec<consumer::Tp>,
}

/// Cluster mode: committed offsets are written through the replicated metadata log, so that
/// every node holds them and a new coordinator serves them after a failover.
pub trait OffsetReplicator {
    /// Whether this node coordinates groups now (it is the controller).
    fn is_coordinator(&self) -> bool;
    /// Writes `records` (commits or tombstones of one group) on every node: resolves once a
    /// majority has them and this node has applied them ([`Coordinator::apply_replicated`]).
    fn replicate(
        &self,
        group: String,
        records: Vec<OffsetRecord>,
    ) -> LocalBoxFuture<'static, Result<(), ResponseError>>;
}

/// A shard's group coordinator: a shard-local service in the runtime's slots, made on first
/// use.
pub trait GroupShard {
    fn groups(&self) -> Rc<Coordinator>;
}

impl GroupShard for Shard {
    fn groups(&self) -> Rc<Coordinator> {
        self.services.get_or_init(|| Coordinator::new(&self.shared.config))
    }
}

/// The group coordinator state of one shard.
pub struct Coordinator {
    groups: RefCell<HashMap<String, Group>>,
    /// KIP-848 groups (`group.protocol=consumer`); an id is in at most one of the two maps.
    consumer_groups: RefCell<HashMap<String, ConsumerGroup>>,
    consumer_settings: ConsumerSettings,
    offsets: RefCell<OffsetTable>,
    log: RefCell<Option<Rc<OffsetLog>>>,
    settings: GroupSettings,
    offsets_retention_ms: i64,
    offset_metadata_bytes_max: usize,
    last_retention_ms: Cell<i64>,
    compacting: Cell<bool>,
    /// Log writes whose effect is not yet applied to `offsets` (compaction waits for zero).
    writes_in_flight: Cell<usize>,
    /// Log size past which compaction is considered ([`limits::OFFSETS_LOG_COMPACT_BYTES`]).
    pub compact_bytes: Cell<u64>,
    /// Cluster mode: offsets are written through the metadata log (None: this shard's log).
    replicator: RefCell<Option<Rc<dyn OffsetReplicator>>>,
}

/// Why writing offsets failed: the local log, or the replication (with the code to answer).
enum WriteError {
    Local(offsets::OffsetLogError),
    Replication(ResponseError),
}

/// Counts a log write until its effect is applied to the in-memory table.
struct InFlight<'a>(&'a Cell<usize>);

impl<'a> InFlight<'a> {
    fn new(c: &'a Cell<usize>) -> Self {
        c.set(c.get() + 1);
        InFlight(c)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

impl Coordinator {
    pub fn new(config: &BrokerConfig) -> Coordinator {
        Coordinator {
            groups: RefCell::new(HashMap::new()),
            consumer_groups: RefCell::new(HashMap::new()),
            consumer_settings: ConsumerSettings {
                session_timeout_ms: config.group_consumer_session_timeout_ms,
                heartbeat_interval_ms: config.group_consumer_heartbeat_interval_ms,
                members_max: config.group_max_size,
            },
            offsets: RefCell::new(HashMap::new()),
            log: RefCell::new(None),
            settings: GroupSettings {
                min_session_timeout_ms: config.group_min_session_timeout_ms,
                max_session_timeout_ms: config.group_max_session_timeout_ms,
                initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
                members_max: config.group_max_size,
                protocol_metadata_bytes_max: limits::GROUP_PROTOCOL_METADATA_BYTES_MAX,
            },
            offsets_retention_ms: config.offsets_retention_minutes.saturating_mul(60_000),
            offset_metadata_bytes_max: config.offset_metadata_max_bytes,
            last_retention_ms: Cell::new(0),
            compacting: Cell::new(false),
            writes_in_flight: Cell::new(0),
            compact_bytes: Cell::new(limits::OFFSETS_LOG_COMPACT_BYTES),
            replicator: RefCell::new(None),
        }
    }

    /// Cluster mode: write offsets through `r` from now on.
    pub fn set_replicator(&self, r: Rc<dyn OffsetReplicator>) {
        *self.replicator.borrow_mut() = Some(r);
    }

    /// Cluster mode: whether this node coordinates groups now (always true in single-node mode).
    pub fn is_coordinator(&self) -> bool {
        self.replicator
            .borrow()
            .as_ref()
            .is_none_or(|r| r.is_coordinator())
    }

    /// Writes records and applies them to the table: to this shard's log (single node), or
    /// through the metadata log (cluster mode: applied by [`Coordinator::apply_replicated`] on
    /// every node, this one included, before this resolves).
    async fn write(
        &self,
        log: &OffsetLog,
        group_id: &str,
        records: Vec<OffsetRecord>,
    ) -> Result<(), WriteError> {
        let replicator = self.replicator.borrow().clone();
        if let Some(r) = replicator {
            return r
                .replicate(group_id.to_string(), records)
                .await
                .map_err(WriteError::Replication);
        }
        let _in_flight = InFlight::new(&self.writes_in_flight);
        log.append(&records).await.map_err(WriteError::Local)?;
        self.apply_records(records);
        Ok(())
    }

    fn apply_records(&self, records: Vec<OffsetRecord>) {
        offsets::apply_records(&mut self.offsets.borrow_mut(), records);
    }

    /// Cluster mode: stores offsets replicated through the metadata log (commits or
    /// tombstones) in this shard's table and log. Waits until this shard has loaded its
    /// offsets. The log write is queued in order but not waited for: the metadata log is the
    /// durable copy (fsync'd by a majority before the commit is answered, and replayed from
    /// its start at every restart), so the apply path (every metadata operation, and the
    /// replay at startup) does not wait for a second fsync per commit.
    pub async fn apply_replicated(&self, records: Vec<OffsetRecord>) {
        let log = loop {
            if let Some(log) = self.log.borrow().clone() {
                break log;
            }
            compio::time::sleep(std::time::Duration::from_millis(10)).await;
        };
        // Queued before the table changes: compaction (which waits for an empty queue) never
        // snapshots a table that is ahead of the file without these records following.
        let queued = log.enqueue(&records);
        self.apply_records(records);
        match queued {
            Ok(seq) => compio::runtime::spawn(async move {
                if let Err(e) = log.flush(seq).await {
                    tracing::error!(error = %e, "replicated offsets not written to the local offsets log");
                }
            })
            .detach(),
            Err(e) => tracing::debug!(error = %e, "replicated offsets not written to the local offsets log"),
        }
    }

    /// True once the offsets of this shard's groups are loaded.
    pub fn is_loaded(&self) -> bool {
        self.log.borrow().is_some()
    }

    /// Replays every shard's offsets log, keeping the groups this shard owns (so a changed shard
    /// count keeps every commit), then opens this shard's log for appending. Owned offsets found
    /// in another shard's file are re-appended here before the shard serves.
    pub async fn open(
        &self,
        data_dir: &Path,
        shard: usize,
        shards: usize,
    ) -> Result<(), offsets::OffsetLogError> {
        let data_dir = data_dir.to_path_buf();
        let r = compio::runtime::spawn_blocking(
            move || -> Result<(OffsetLog, Vec<OffsetRecord>, bool), offsets::OffsetLogError> {
                let own_dir = offsets::dir_for_shard(&data_dir, shard);
                let own_path = own_dir.join("offsets.log");
                let mut records = Vec::new();
                let mut foreign = false;
                for path in offsets::all_log_files(&data_dir) {
                    let mine: Vec<OffsetRecord> = offsets::replay_file(&path)?
                        .into_iter()
                        .filter(|r| owner_shard_for_group(&r.group, shards) == shard)
                        .collect();
                    foreign |= path != own_path && !mine.is_empty();
                    records.extend(mine);
                }
                Ok((OffsetLog::open(own_dir)?, records, foreign))
            },
        )
        .await;
        let (log, records, foreign) = match r {
            Ok(r) => r?,
            Err(_) => {
                return Err(offsets::OffsetLogError::Io {
                    path: data_dir_path(),
                    source: std::io::Error::other("blocking task panicked"),
                })
            }
        };
        let n = records.len();
        offsets::apply_replay(&mut self.offsets.borrow_mut(), records);
        let log = Rc::new(log);
        if foreign {
            let live = self.live_records();
            log.append(&live).await?;
            tracing::info!(
                shard,
                groups = self.offsets.borrow().len(),
                "offsets moved from other shards' logs (shard count changed)"
            );
        }
        tracing::debug!(
            shard,
            records = n,
            groups = self.offsets.borrow().len(),
            "offsets log replayed"
        );
        *self.log.borrow_mut() = Some(log);
        Ok(())
    }

    fn live_records(&self) -> Vec<OffsetRecord> {
        let mut out = Vec::new();
        for (g, parts) in self.offsets.borrow().iter() {
            for ((t, p), c) in parts {
                out.push(OffsetRecord {
                    group: g.clone(),
                    topic: t.clone(),
                    partition: *p,
                    value: Some(c.clone()),
                    write_ms: c.commit_ms,
                });
            }
        }
        out
    }

    pub fn join(&self, group_id: &str, p: JoinParams, now_ms: i64) -> Reply<JoinResult> {
        {
            let mut cgs = self.consumer_groups.borrow_mut();
            if cgs.get(group_id).is_some_and(|g| g.members.is_empty()) {
                // An empty consumer-protocol group becomes a classic one (Kafka converts too).
                cgs.remove(group_id);
            }
        }
        if self
            .consumer_groups
            .borrow()
            .get(group_id)
            .is_some_and(|g| !g.members.is_empty())
        {
            return Reply::Now(JoinResult {
                error: ResponseError::InconsistentGroupProtocol.code(),
                generation: -1,
                member_id: p.member_id,
                ..Default::default()
            });
        }
        let mut groups = self.groups.borrow_mut();
        if !groups.contains_key(group_id) {
            if !p.member_id.is_empty() {
                return Reply::Now(JoinResult {
                    error: ResponseError::UnknownMemberId.code(),
                    generation: -1,
                    member_id: p.member_id,
                    ..Default::default()
                });
            }
            if groups.len() >= limits::GROUPS_PER_SHARD_MAX {
                tracing::warn!(
                    group = group_id,
                    "group refused: groups per shard limit reached"
                );
                return Reply::Now(JoinResult {
                    error: ResponseError::UnknownServerError.code(),
                    generation: -1,
                    ..Default::default()
                });
            }
            groups.insert(
                group_id.to_string(),
                Group::new(group_id.to_string(), now_ms),
            );
        }
        let g = groups.get_mut(group_id).ok_or(()).map_err(|_| ());
        match g {
            Ok(g) => g.join(p, now_ms, &self.settings),
            Err(()) => Reply::Now(JoinResult {
                error: ResponseError::UnknownServerError.code(),
                ..Default::default()
            }),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now_ms: i64,
    ) -> Reply<SyncResult> {
        match self.groups.borrow_mut().get_mut(group_id) {
            Some(g) => g.sync(
                member_id,
                instance_id,
                generation,
                protocol_type,
                protocol_name,
                assignments,
                now_ms,
            ),
            None => Reply::Now(SyncResult {
                error: ResponseError::UnknownMemberId.code(),
                ..Default::default()
            }),
        }
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> Code {
        match self.groups.borrow_mut().get_mut(group_id) {
            Some(g) => g.heartbeat(member_id, instance_id, generation, now_ms),
            None => ResponseError::UnknownMemberId.code(),
        }
    }

    /// LeaveGroup for each (member id, instance id); one code per member.
    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
        now_ms: i64,
    ) -> Vec<Code> {
        let mut groups = self.groups.borrow_mut();
        let Some(g) = groups.get_mut(group_id) else {
            return vec![ResponseError::UnknownMemberId.code(); members.len()];
        };
        members
            .iter()
            .map(|(m, i)| g.leave(m, i.as_deref(), now_ms, &self.settings))
            .collect()
    }

    /// OffsetCommit: validates membership and partitions, writes durably, then applies.
    /// Returns one code per entry, in order; a top-level failure gives every entry that code.
    #[allow(clippy::too_many_arguments)]
    pub async fn commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        entries: Vec<CommitEntry>,
        catalog: &crate::catalog::CatalogSnapshot,
        now_ms: i64,
    ) -> Vec<Code> {
        let all = |e: ResponseError| vec![e.code(); entries.len()];
        let Some(log) = self.log.borrow().clone() else {
            return all(ResponseError::CoordinatorLoadInProgress);
        };
        if let Some(cg) = self.consumer_groups.borrow().get(group_id) {
            if let Err(e) = cg.check_commit(member_id, generation) {
                return all(e);
            }
        } else {
            let mut groups = self.groups.borrow_mut();
            match groups.get_mut(group_id) {
                Some(g) => {
                    if let Err(e) = g.check_commit(member_id, instance_id, generation, now_ms) {
                        return all(e);
                    }
                }
                None if generation < 0 => {}
                // Kafka: a commit with a generation for a group that does not exist.
                None => return all(ResponseError::IllegalGeneration),
            }
        }
        let mut codes = vec![NONE; entries.len()];
        let mut records = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let known = catalog
                .topic(&e.topic)
                .is_some_and(|t| e.partition >= 0 && e.partition < t.partitions);
            if !known {
                codes[i] = ResponseError::UnknownTopicOrPartition.code();
            } else if e.metadata.len() > self.offset_metadata_bytes_max {
                codes[i] = ResponseError::OffsetMetadataTooLarge.code();
            } else {
                records.push(OffsetRecord {
                    group: group_id.to_string(),
                    topic: e.topic.clone(),
                    partition: e.partition,
                    value: Some(Committed {
                        offset: e.offset,
                        leader_epoch: e.leader_epoch,
                        metadata: e.metadata.clone(),
                        commit_ms: now_ms,
                    }),
                    write_ms: now_ms,
                });
            }
        }
        if records.is_empty() {
            return codes;
        }
        let failed = match self.write(&log, group_id, records).await {
            Ok(()) => return codes,
            Err(WriteError::Local(e)) => {
                tracing::error!(group = group_id, error = %e, "offset commit failed");
                ResponseError::KafkaStorageError
            }
            Err(WriteError::Replication(e)) => {
                tracing::debug!(group = group_id, error = ?e, "offset commit not replicated");
                e
            }
        };
        for (c, e) in codes.iter_mut().zip(&entries) {
            if *c == NONE && catalog.topic(&e.topic).is_some() {
                *c = failed.code();
            }
        }
        codes
    }

    /// Committed offsets of a group: of the given partitions, or of all when `None`.
    /// Unknown ones come back as offset -1.
    pub fn fetch(&self, group_id: &str, wanted: Option<Vec<(String, Vec<i32>)>>) -> FetchedOffsets {
        let table = self.offsets.borrow();
        let empty = BTreeMap::new();
        let g = table.get(group_id).unwrap_or(&empty);
        match wanted {
            Some(topics) => topics
                .into_iter()
                .map(|(t, parts)| {
                    let rows = parts
                        .into_iter()
                        .map(|p| (p, g.get(&(t.clone(), p)).cloned()))
                        .collect();
                    (t, rows)
                })
                .collect(),
            None => {
                let mut out: FetchedOffsets = Vec::new();
                for ((t, p), c) in g {
                    match out.last_mut() {
                        Some((lt, rows)) if lt == t => rows.push((*p, Some(c.clone()))),
                        _ => out.push((t.clone(), vec![(*p, Some(c.clone()))])),
                    }
                }
                out
            }
        }
    }

    /// OffsetDelete: top-level code, then one code per (topic, partition).
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        parts: Vec<(String, i32)>,
        now_ms: i64,
    ) -> (Code, Vec<Code>) {
        let Some(log) = self.log.borrow().clone() else {
            return (ResponseError::CoordinatorLoadInProgress.code(), vec![]);
        };
        let subscribed = match self.groups.borrow().get(group_id) {
            Some(g) => match g.subscribed_topics() {
                Some(s) => s,
                None => return (ResponseError::NonEmptyGroup.code(), vec![]),
            },
            None => Default::default(),
        };
        let exists = self.groups.borrow().contains_key(group_id)
            || self.offsets.borrow().contains_key(group_id);
        if !exists {
            return (ResponseError::GroupIdNotFound.code(), vec![]);
        }
        let mut codes = Vec::with_capacity(parts.len());
        let mut records = Vec::new();
        for (t, p) in &parts {
            if subscribed.contains(t) {
                codes.push(ResponseError::GroupSubscribedToTopic.code());
                continue;
            }
            codes.push(NONE);
            if self
                .offsets
                .borrow()
                .get(group_id)
                .is_some_and(|g| g.contains_key(&(t.clone(), *p)))
            {
                records.push(OffsetRecord {
                    group: group_id.to_string(),
                    topic: t.clone(),
                    partition: *p,
                    value: None,
                    write_ms: now_ms,
                });
            }
        }
        if !records.is_empty() {
            match self.write(&log, group_id, records).await {
                Ok(()) => {}
                Err(WriteError::Local(e)) => {
                    tracing::error!(group = group_id, error = %e, "offset delete failed");
                    return (ResponseError::KafkaStorageError.code(), vec![]);
                }
                Err(WriteError::Replication(e)) => return (e.code(), vec![]),
            }
        }
        (NONE, codes)
    }

    fn apply_tombstones(&self, records: &[OffsetRecord]) {
        let mut table = self.offsets.borrow_mut();
        for r in records {
            if let Some(g) = table.get_mut(&r.group) {
                g.remove(&(r.topic.clone(), r.partition));
                if g.is_empty() {
                    table.remove(&r.group);
                }
            }
        }
    }

    /// DeleteGroups for one group: must be empty; its offsets are deleted durably.
    pub async fn delete_group(&self, group_id: &str, now_ms: i64) -> Code {
        let Some(log) = self.log.borrow().clone() else {
            return ResponseError::CoordinatorLoadInProgress.code();
        };
        if self
            .consumer_groups
            .borrow()
            .get(group_id)
            .is_some_and(|g| !g.members.is_empty())
        {
            return ResponseError::NonEmptyGroup.code();
        }
        let had_consumer_group = self.consumer_groups.borrow_mut().remove(group_id).is_some();
        let has_group = had_consumer_group
            || match self.groups.borrow().get(group_id) {
                Some(g) if !g.is_empty() => return ResponseError::NonEmptyGroup.code(),
                Some(g) => g.state != GroupState::Dead,
                None => false,
            };
        let records: Vec<OffsetRecord> = self
            .offsets
            .borrow()
            .get(group_id)
            .map(|g| {
                g.keys()
                    .map(|(t, p)| OffsetRecord {
                        group: group_id.to_string(),
                        topic: t.clone(),
                        partition: *p,
                        value: None,
                        write_ms: now_ms,
                    })
                    .collect()
            })
            .unwrap_or_default();
        if !has_group && records.is_empty() {
            return ResponseError::GroupIdNotFound.code();
        }
        if !records.is_empty() {
            match self.write(&log, group_id, records).await {
                Ok(()) => {}
                Err(WriteError::Local(e)) => {
                    tracing::error!(group = group_id, error = %e, "group delete failed");
                    return ResponseError::KafkaStorageError.code();
                }
                Err(WriteError::Replication(e)) => return e.code(),
            }
        }
        // The group may have gained members while the tombstones were written.
        let mut groups = self.groups.borrow_mut();
        if groups.get(group_id).is_some_and(|g| g.is_empty()) {
            if let Some(mut g) = groups.remove(group_id) {
                g.kill(now_ms);
            }
        }
        NONE
    }

    /// ConsumerGroupHeartbeat (KIP-848). `topics` resolves a topic name to (id, partitions).
    pub fn consumer_heartbeat(
        &self,
        group_id: &str,
        p: HeartbeatParams,
        topics: &dyn Fn(&str) -> Option<(uuid::Uuid, i32)>,
        now_ms: i64,
    ) -> (HeartbeatResult, i32) {
        let interval = self.consumer_settings.heartbeat_interval_ms;
        let fail = |e: ResponseError, m: &str| {
            (
                HeartbeatResult {
                    error: e.code(),
                    error_message: Some(m.to_string()),
                    member_epoch: -1,
                    ..Default::default()
                },
                interval,
            )
        };
        {
            let mut classic = self.groups.borrow_mut();
            match classic.get(group_id) {
                Some(g) if !g.is_empty() => {
                    return fail(
                        ResponseError::GroupIdNotFound,
                        "the group uses the classic protocol",
                    )
                }
                Some(_) => {
                    classic.remove(group_id);
                }
                None => {}
            }
        }
        let mut cgs = self.consumer_groups.borrow_mut();
        if !cgs.contains_key(group_id) {
            if p.member_epoch != 0 {
                return fail(ResponseError::UnknownMemberId, "unknown member");
            }
            if cgs.len() + self.groups.borrow().len() >= limits::GROUPS_PER_SHARD_MAX {
                return fail(
                    ResponseError::UnknownServerError,
                    "too many groups on this coordinator",
                );
            }
            cgs.insert(
                group_id.to_string(),
                ConsumerGroup::new(group_id.to_string(), now_ms),
            );
        }
        match cgs.get_mut(group_id) {
            Some(g) => (
                g.heartbeat(p, topics, now_ms, &self.consumer_settings),
                interval,
            ),
            None => fail(ResponseError::UnknownServerError, "group vanished"),
        }
    }

    /// ConsumerGroupDescribe: None when `group_id` is not a KIP-848 group.
    pub fn consumer_describe(&self, group_id: &str) -> Option<ConsumerGroupSummary> {
        let cgs = self.consumer_groups.borrow();
        let g = cgs.get(group_id)?;
        Some(ConsumerGroupSummary {
            state: g.state_name(),
            epoch: g.epoch,
            assignment_epoch: g.assignment_epoch,
            assignor: g.assignor.clone(),
            members: g
                .members
                .values()
                .map(|m| ConsumerMemberSummary {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    epoch: m.epoch,
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    subscribed: m.subscribed.clone(),
                    assigned: m.assigned.iter().copied().collect(),
                    target: g
                        .target
                        .get(&m.id)
                        .map(|t| t.iter().copied().collect())
                        .unwrap_or_default(),
                })
                .collect(),
        })
    }

    pub fn describe(&self, group_id: &str) -> GroupSummary {
        if let Some(cg) = self.consumer_groups.borrow().get(group_id) {
            return GroupSummary {
                group_id: group_id.to_string(),
                state: cg.state_name(),
                protocol_type: "consumer".into(),
                protocol: String::new(),
                members: vec![],
            };
        }
        let groups = self.groups.borrow();
        match groups.get(group_id) {
            Some(g) => {
                let protocol = g.protocol.clone().unwrap_or_default();
                GroupSummary {
                    group_id: group_id.to_string(),
                    state: g.state.name(),
                    protocol_type: g.protocol_type.clone().unwrap_or_default(),
                    protocol: if g.state == GroupState::Stable {
                        protocol.clone()
                    } else {
                        String::new()
                    },
                    members: g
                        .members
                        .values()
                        .map(|m| MemberSummary {
                            member_id: m.id.clone(),
                            instance_id: m.instance_id.clone(),
                            client_id: m.client_id.clone(),
                            client_host: m.client_host.clone(),
                            metadata: m.metadata_for(&protocol),
                            assignment: if g.state == GroupState::Stable {
                                m.assignment.clone()
                            } else {
                                Bytes::new()
                            },
                        })
                        .collect(),
                }
            }
            None if self.offsets.borrow().contains_key(group_id) => GroupSummary {
                group_id: group_id.to_string(),
                state: GroupState::Empty.name(),
                protocol_type: String::new(),
                protocol: String::new(),
                members: vec![],
            },
            None => GroupSummary {
                group_id: group_id.to_string(),
                state: GroupState::Dead.name(),
                protocol_type: String::new(),
                protocol: String::new(),
                members: vec![],
            },
        }
    }

    /// Every group this shard knows: (id, protocol type, state, group type "classic" or
    /// "consumer"), with members or with committed offsets only.
    pub fn list(&self) -> Vec<(String, String, &'static str, &'static str)> {
        let groups = self.groups.borrow();
        let mut out: Vec<(String, String, &'static str, &'static str)> = groups
            .values()
            .map(|g| {
                (
                    g.id.clone(),
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state.name(),
                    "classic",
                )
            })
            .collect();
        let cgs = self.consumer_groups.borrow();
        out.extend(cgs.values().map(|g| {
            (
                g.id.clone(),
                "consumer".to_string(),
                g.state_name(),
                "consumer",
            )
        }));
        for id in self.offsets.borrow().keys() {
            if !groups.contains_key(id) && !cgs.contains_key(id) {
                out.push((
                    id.clone(),
                    String::new(),
                    GroupState::Empty.name(),
                    "classic",
                ));
            }
        }
        out
    }

    /// Timers of every group; offset expiry and log compaction now and then.
    pub async fn tick(&self, now_ms: i64, all_shards_ready: bool) {
        for g in self.groups.borrow_mut().values_mut() {
            g.tick(now_ms, &self.settings);
        }
        for g in self.consumer_groups.borrow_mut().values_mut() {
            g.tick(now_ms);
        }
        if now_ms - self.last_retention_ms.get() >= limits::OFFSETS_RETENTION_CHECK_INTERVAL_MS {
            self.last_retention_ms.set(now_ms);
            self.expire_offsets(now_ms).await;
        }
        self.maybe_compact(all_shards_ready).await;
    }

    /// `offsets.retention.minutes`: offsets of a group without members expire once the group
    /// has been empty that long (for groups that never had members: since the commit).
    async fn expire_offsets(&self, now_ms: i64) {
        let Some(log) = self.log.borrow().clone() else {
            return;
        };
        let replicator = self.replicator.borrow().clone();
        // Cluster mode: only the coordinator expires offsets (it knows which groups have
        // members), and through the metadata log, so that every node forgets them.
        let expire = replicator.as_ref().is_none_or(|r| r.is_coordinator());
        let mut records = Vec::new();
        if expire {
            let groups = self.groups.borrow();
            let cgs = self.consumer_groups.borrow();
            for (gid, parts) in self.offsets.borrow().iter() {
                let since = match (groups.get(gid), cgs.get(gid)) {
                    (Some(g), _) if g.state == GroupState::Empty && g.is_empty() => {
                        Some(g.state_since_ms)
                    }
                    (Some(_), _) => continue,
                    (None, Some(g)) if g.members.is_empty() => Some(g.state_since_ms),
                    (None, Some(_)) => continue,
                    (None, None) => None,
                };
                for ((t, p), c) in parts {
                    if since.unwrap_or(0).max(c.commit_ms) + self.offsets_retention_ms <= now_ms {
                        records.push(OffsetRecord {
                            group: gid.clone(),
                            topic: t.clone(),
                            partition: *p,
                            value: None,
                            write_ms: now_ms,
                        });
                    }
                }
            }
        }
        if let (Some(r), false) = (replicator, records.is_empty()) {
            let mut by_group: BTreeMap<String, Vec<OffsetRecord>> = BTreeMap::new();
            for rec in records.drain(..) {
                by_group.entry(rec.group.clone()).or_default().push(rec);
            }
            for (gid, recs) in by_group {
                let n = recs.len();
                // Not awaited: a proposal without quorum must not hold up session expiry.
                let f = r.replicate(gid.clone(), recs);
                compio::runtime::spawn(async move {
                    match f.await {
                        Ok(()) => tracing::info!(group = %gid, offsets = n, "committed offsets expired (offsets.retention.minutes)"),
                        Err(e) => tracing::warn!(group = %gid, error = ?e, "offset expiry not replicated"),
                    }
                })
                .detach();
            }
        }
        if !records.is_empty() {
            let _in_flight = InFlight::new(&self.writes_in_flight);
            match log.append(&records).await {
                Ok(()) => {
                    tracing::info!(
                        offsets = records.len(),
                        "committed offsets expired (offsets.retention.minutes)"
                    );
                    self.apply_tombstones(&records);
                }
                Err(e) => tracing::error!(error = %e, "offset expiry failed"),
            }
        }
        // Empty groups without offsets are forgotten (Kafka marks them Dead).
        let offsets = self.offsets.borrow();
        self.groups.borrow_mut().retain(|id, g| {
            !(g.state == GroupState::Empty && g.is_empty() && !offsets.contains_key(id))
        });
        self.consumer_groups
            .borrow_mut()
            .retain(|id, g| !g.members.is_empty() || offsets.contains_key(id));
    }

    async fn maybe_compact(&self, all_shards_ready: bool) {
        let Some(log) = self.log.borrow().clone() else {
            return;
        };
        // Before every shard has loaded, this file may hold another shard's groups it has not
        // copied yet (after a shard-count change); compaction would drop them.
        // The snapshot below must contain every write already in the file.
        if self.writes_in_flight.get() > 0 {
            return;
        }
        if !all_shards_ready || self.compacting.get() || log.bytes() < self.compact_bytes.get() {
            return;
        }
        let live = self.live_records();
        let mut live_bytes = Vec::new();
        for r in &live {
            r.encode(&mut live_bytes);
        }
        if (live_bytes.len() as u64).saturating_mul(2) > log.bytes() {
            return; // mostly live: rewriting gains little
        }
        self.compacting.set(true);
        // compact() takes the writer lock on its first poll (no other writer is in flight), so
        // no write lands between the snapshot and the rewrite.
        if let Err(e) = log.compact(live).await {
            tracing::error!(error = %e, "offsets log compaction failed");
        }
        self.compacting.set(false);
    }
}

/// Why a group request could not reach its coordinator.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error(transparent)]
    Gone(#[from] crate::runtime::ShardGone),
    #[error("the coordinator shard is still loading its offsets")]
    Loading,
    /// Cluster mode: this node is not the controller (anymore), which coordinates groups.
    #[error("this node does not coordinate groups")]
    NotCoordinator,
}

impl RouteError {
    pub fn code(&self) -> Code {
        match self {
            RouteError::Gone(_) => ResponseError::CoordinatorNotAvailable.code(),
            RouteError::Loading => ResponseError::CoordinatorLoadInProgress.code(),
            RouteError::NotCoordinator => ResponseError::NotCoordinator.code(),
        }
    }
}

/// Runs `f` with the coordinator of `group_id`, on its owner shard.
pub async fn on_coordinator<R, F, Fut>(
    shard: &Rc<crate::runtime::Shard>,
    group_id: &str,
    f: F,
) -> Result<R, RouteError>
where
    F: FnOnce(Rc<crate::runtime::Shard>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = R> + 'static,
    R: Send + 'static,
{
    let owner = owner_shard_for_group(group_id, shard.shared.shard_count());
    shard
        .run_on(owner, move |s| async move {
            if !s.groups().is_coordinator() {
                return Err(RouteError::NotCoordinator);
            }
            if !s.groups().is_loaded() {
                return Err(RouteError::Loading);
            }
            Ok(f(s.clone()).await)
        })
        .await?
}

fn data_dir_path() -> std::path::PathBuf {
    std::path::PathBuf::from("__consumer_offsets")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::sync::Arc;

    #[test]
    fn owner_is_stable_and_in_range() {
        for n in 1..8 {
            for g in ["a", "group-1", "another group"] {
                let s = owner_shard_for_group(g, n);
                assert!(s < n);
                assert_eq!(s, owner_shard_for_group(g, n));
            }
        }
        assert!(validate_group_id("").is_err());
        assert!(validate_group_id(&"x".repeat(limits::GROUP_ID_BYTES_MAX + 1)).is_err());
    }

    fn catalog_with_topic(dir: &Path) -> Arc<crate::catalog::CatalogSnapshot> {
        let cat = crate::catalog::Catalog::open(dir).unwrap();
        cat.update_blocking(|d| {
            d.topics.insert(
                "t".into(),
                crate::catalog::TopicMeta {
                    name: "t".into(),
                    id: uuid::Uuid::new_v4(),
                    partitions: 4,
                    configs: Default::default(),
                    replicas: Vec::new(),
                    targets: Default::default(),
                    raft_ids: Default::default(),
                },
            );
            Ok::<(), ()>(())
        })
        .unwrap()
        .unwrap();
        cat.snapshot()
    }

    fn entry(p: i32, offset: i64) -> CommitEntry {
        CommitEntry {
            topic: "t".into(),
            partition: p,
            offset,
            leader_epoch: -1,
            metadata: String::new(),
        }
    }

    fn offset_of(c: &Coordinator, group: &str, p: i32) -> Option<i64> {
        c.fetch(group, Some(vec![("t".into(), vec![p])]))[0].1[0]
            .1
            .as_ref()
            .map(|c| c.offset)
    }

    #[compio::test]
    async fn offsets_expire_compact_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let snap = catalog_with_topic(dir.path());
        let config = BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            offsets_retention_minutes: 1,
            ..BrokerConfig::default()
        };
        let c = Coordinator::new(&config);
        c.open(dir.path(), 0, 1).await.unwrap();
        let t0 = 1_000_000;
        // Many commits of the same two partitions: the log is mostly dead records.
        for i in 0..200 {
            let codes = c
                .commit(
                    "g",
                    "",
                    None,
                    -1,
                    vec![entry(0, i), entry(1, 1000 + i)],
                    &snap,
                    t0 + i,
                )
                .await;
            assert_eq!(codes, vec![NONE, NONE]);
        }
        let codes = c
            .commit("g", "", None, -1, vec![entry(9, 1)], &snap, t0)
            .await;
        assert_eq!(codes, vec![ResponseError::UnknownTopicOrPartition.code()]);
        c.commit("old", "", None, -1, vec![entry(2, 5)], &snap, t0 - 120_000)
            .await;
        let before = c.log.borrow().as_ref().unwrap().bytes();
        c.compact_bytes.set(1024);
        // One tick: "old" (committed 2 minutes before) expires; the log is compacted.
        c.tick(t0 + 500, true).await;
        let after = c.log.borrow().as_ref().unwrap().bytes();
        assert!(after < before / 10, "compacted {before} -> {after}");
        assert_eq!(offset_of(&c, "old", 2), None);
        assert_eq!(offset_of(&c, "g", 0), Some(199));
        drop(c);

        let c = Coordinator::new(&config);
        c.open(dir.path(), 0, 1).await.unwrap();
        assert_eq!(offset_of(&c, "g", 0), Some(199));
        assert_eq!(offset_of(&c, "g", 1), Some(1199));
        assert_eq!(offset_of(&c, "old", 2), None);
        // The shard count changes: the group moves to its new owner with its offsets.
        let owner = owner_shard_for_group("g", 3);
        let moved = Coordinator::new(&config);
        moved.open(dir.path(), owner, 3).await.unwrap();
        assert_eq!(offset_of(&moved, "g", 0), Some(199));
        let other = Coordinator::new(&config);
        other.open(dir.path(), (owner + 1) % 3, 3).await.unwrap();
        assert_eq!(offset_of(&other, "g", 0), None);
    }

    #[compio::test]
    async fn member_commits_are_fenced() {
        let dir = tempfile::tempdir().unwrap();
        let snap = catalog_with_topic(dir.path());
        let config = BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            group_initial_rebalance_delay_ms: 0,
            ..BrokerConfig::default()
        };
        let c = Coordinator::new(&config);
        c.open(dir.path(), 0, 1).await.unwrap();
        let p = JoinParams {
            member_id: String::new(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::new())],
            require_known_member_id: false,
        };
        let Reply::Later(rx) = c.join("g", p, 0) else {
            panic!("join answered at once")
        };
        let j = rx.await.unwrap();
        assert_eq!(j.generation, 1);
        // CompletingRebalance: commits wait for the assignment.
        let codes = c
            .commit("g", &j.member_id, None, 1, vec![entry(0, 1)], &snap, 1)
            .await;
        assert_eq!(codes, vec![ResponseError::RebalanceInProgress.code()]);
        let Reply::Later(rx) = c.sync(
            "g",
            &j.member_id,
            None,
            1,
            None,
            None,
            vec![(j.member_id.clone(), Bytes::from_static(b"x"))],
            2,
        ) else {
            panic!()
        };
        assert_eq!(rx.await.unwrap().assignment, Bytes::from_static(b"x"));
        assert_eq!(
            c.commit("g", &j.member_id, None, 1, vec![entry(0, 1)], &snap, 3)
                .await,
            vec![NONE]
        );
        assert_eq!(
            c.commit("g", &j.member_id, None, 2, vec![entry(0, 2)], &snap, 3)
                .await,
            vec![ResponseError::IllegalGeneration.code()]
        );
        assert_eq!(
            c.commit("g", "x", None, 1, vec![entry(0, 2)], &snap, 3)
                .await,
            vec![ResponseError::UnknownMemberId.code()]
        );
        assert_eq!(
            c.delete_group("g", 4).await,
            ResponseError::NonEmptyGroup.code()
        );
        assert_eq!(c.leave("g", &[(j.member_id.clone(), None)], 5), vec![NONE]);
        assert_eq!(c.describe("g").state, "Empty");
        assert_eq!(c.delete_group("g", 6).await, NONE);
        assert_eq!(offset_of(&c, "g", 0), None);
        assert_eq!(c.describe("g").state, "Dead");
    }
}
