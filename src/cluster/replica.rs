//! One Raft group on the shard that owns it: a partition replica (or the metadata group).
//!
//! The group's [`PartitionLog`] is its Raft log. Entry i (1-based) is the log's i-th batch; its
//! term is the batch's partitionLeaderEpoch. An entry without producer data (a new leader's
//! no-op) or whose batch the producer table refuses (an idempotent duplicate, a sequence or
//! epoch error) is written as a one-record control batch, which consumers skip. Every replica
//! decides from the same log prefix, so every replica's log is batch-for-batch the same, and
//! offsets are the same everywhere.
//!
//! The driver task owns the `RawNode`: messages and proposals are queued on the replica and
//! stepped in by the driver between `Ready`s (never while one is being persisted). A `Ready`
//! is handled in order: send the leader's messages, apply committed entries (high watermark,
//! acks=all waiters, metadata operations), append the new entries (truncating a conflicting
//! uncommitted suffix first) and fdatasync them, persist the hard state (term, vote) durably,
//! then send the messages that required persistence.
//!
//! Invariants: an entry is acknowledged to a producer with acks=all only when committed (a
//! majority has it fdatasynced); the high watermark is the end of the last committed entry, so
//! consumers never see an entry that could be truncated; only a leader accepts produce and
//! fetch (others answer NOT_LEADER_OR_FOLLOWER), and a leader that cannot hear a majority steps
//! down (check_quorum), so a fenced old leader commits nothing.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::oneshot;
use futures::FutureExt;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Message, Snapshot};
use raft::{GetEntriesContext, RaftState, RawNode, StateRole, Storage};
use serde::{Deserialize, Serialize};

use super::{transport, GroupKey, LeaderInfo};
use crate::runtime::Shard;
use crate::storage::{AppendInfo, EntryPos, PartitionLog, ProposalVerdict, StorageError};
use std::sync::Arc;
use crate::cluster::ClusterOf;

/// One Raft tick.
pub const TICK_MS: u64 = 100;
/// Largest payload of entries in one append message.
const MAX_SIZE_PER_MSG: u64 = 1 << 20;
const MAX_INFLIGHT_MSGS: usize = 256;
const MAX_UNCOMMITTED_BYTES: u64 = 64 << 20;
const HARD_STATE_FILE: &str = "raft.state";

/// Why a proposal or a wait for its commit failed; `kafka::error::replica` maps it to Kafka's
/// error codes.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReplicaError {
    /// This replica does not lead the partition (or stopped leading it): retry at the leader.
    #[error("{0}")]
    NotLeader(String),
    /// The log refused the batch (sequence, size, CRC, ...) or failed.
    #[error("{0}")]
    Storage(Arc<StorageError>),
}

fn not_leader(msg: impl Into<String>) -> ReplicaError {
    ReplicaError::NotLeader(msg.into())
}

// ------------------------------------------------------------------------------------------
// Raft storage over the partition log

/// The `raft::Storage` of a group: entry positions in memory, bytes read back from the log:
/// asynchronously (io_uring, [`PartitionLog::read_batches`]) when Raft sends to a follower that
/// fell behind, synchronously (pread) where raft-rs allows no asynchronous answer (committed
/// entries at startup, for the metadata log's replay).
pub struct LogStore {
    log: PartitionLog,
    hard: HardState,
    conf: ConfState,
    /// entries[i] is Raft index first + i.
    entries: Vec<EntryPos>,
    /// The first index in the log: 1, or one after the compaction point (retention deleted the
    /// entries before it, or a snapshot replaced them).
    first: u64,
    /// Term of entry first - 1 (0 when first is 1).
    snap_term: u64,
    /// Kafka offset where the log starts (after the compaction point).
    start_offset: i64,
    /// The last entries appended and not yet applied (at most `RECENT_BYTES_MAX`), as Raft
    /// gave them: committed entries and appends to followers that are nearly caught up are
    /// served from here instead of being read back from the files.
    recent: VecDeque<Entry>,
    recent_bytes: usize,
    /// Entries read back asynchronously for a lagging follower, by index; served once.
    fetched: RefCell<BTreeMap<u64, Entry>>,
    /// What Raft asked for that is not in memory: (first index, max bytes, its context). The
    /// driver reads it with io_uring and calls `on_entries_fetched`.
    wanted: RefCell<Vec<(u64, u64, GetEntriesContext)>>,
}

impl LogStore {
    fn offset_after(&self, index: u64) -> i64 {
        offset_after(&self.entries, self.first, self.start_offset, index)
    }

    fn pos(&self, index: u64) -> Option<&EntryPos> {
        index.checked_sub(self.first).and_then(|i| self.entries.get(i as usize))
    }

    fn last(&self) -> u64 {
        self.first - 1 + self.entries.len() as u64
    }

    /// Forgets entries up to `index` (retention deleted them): the log now starts after it.
    fn compact_to(&mut self, index: u64, term: u64, start_offset: i64) {
        let n = ((index + 1).saturating_sub(self.first) as usize).min(self.entries.len());
        self.entries.drain(..n);
        self.first = index + 1;
        self.snap_term = term;
        self.start_offset = start_offset;
        self.forget_through(index);
        self.fetched.borrow_mut().clear();
    }

    /// Keeps a just-appended entry in memory (see `recent`).
    fn remember(&mut self, e: Entry) {
        if self.recent.back().is_some_and(|b| b.index + 1 != e.index) {
            self.forget_recent();
        }
        self.recent_bytes += e.data.len();
        self.recent.push_back(e);
        while self.recent_bytes > RECENT_BYTES_MAX {
            self.drop_oldest();
        }
    }

    /// Drops the remembered entries up to `index` (applied: Raft will not ask for them again
    /// unless a follower lags, and then they are read from the files).
    fn forget_through(&mut self, index: u64) {
        while self.recent.front().is_some_and(|e| e.index <= index) {
            self.drop_oldest();
        }
    }

    fn forget_recent(&mut self) {
        self.recent.clear();
        self.recent_bytes = 0;
    }

    fn drop_oldest(&mut self) {
        if let Some(e) = self.recent.pop_front() {
            self.recent_bytes -= e.data.len();
        }
    }
}

/// The Kafka offset after Raft entry `index`, for a log whose entries[0] is index `first` and
/// which starts at Kafka offset `start` (an index before `first` gives `start`).
fn offset_after(entries: &[EntryPos], first: u64, start: i64, index: u64) -> i64 {
    if index < first || entries.is_empty() {
        return start;
    }
    let last = first - 1 + entries.len() as u64;
    entries[(index.min(last) - first) as usize].next_offset
}

impl Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard.clone(), self.conf.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        ctx: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max = max_size.into().unwrap_or(u64::MAX);
        if low < self.first {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if high > self.last() + 1 {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        if let Some(first) = self.recent.front().map(|e| e.index) {
            if low >= first && low < first + self.recent.len() as u64 {
                let mut out = Vec::new();
                let mut size = 0u64;
                for e in self.recent.iter().skip((low - first) as usize).take((high - low) as usize) {
                    size += e.data.len() as u64;
                    if !out.is_empty() && size > max {
                        break;
                    }
                    out.push(e.clone());
                }
                return Ok(out);
            }
        }
        {
            let mut fetched = self.fetched.borrow_mut();
            if fetched.contains_key(&low) {
                let mut out = Vec::new();
                let mut size = 0u64;
                for idx in low..high {
                    let Some(e) = fetched.get(&idx) else { break };
                    size += e.data.len() as u64;
                    if !out.is_empty() && size > max {
                        break;
                    }
                    out.push(e.clone());
                }
                let rest = fetched.split_off(&(low + out.len() as u64));
                *fetched = rest;
                return Ok(out);
            }
        }
        if ctx.can_async() {
            // Sending to a follower that fell behind: read with io_uring, not on this thread.
            self.wanted.borrow_mut().push((low, max, ctx));
            return Err(raft::Error::Store(raft::StorageError::LogTemporarilyUnavailable));
        }
        let mut out = Vec::new();
        let mut size = 0u64;
        for idx in low..high {
            let pos = self.entries[(idx - self.first) as usize];
            let data = self.log.read_entry_sync(pos.base_offset).map_err(|e| {
                tracing::error!(dir = %self.log.dir().display(), offset = pos.base_offset, error = %e, "reading a Raft entry back failed");
                raft::Error::Store(raft::StorageError::Unavailable)
            })?;
            size += data.len() as u64;
            if !out.is_empty() && size > max {
                break;
            }
            let (entry_type, data) = entry_of_batch(Bytes::from(data));
            out.push(Entry {
                index: idx,
                term: pos.epoch as u64,
                entry_type,
                data,
                ..Default::default()
            });
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx + 1 == self.first {
            return Ok(self.snap_term);
        }
        if idx < self.first {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        match self.pos(idx) {
            Some(e) => Ok(e.epoch as u64),
            None => Err(raft::Error::Store(raft::StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    /// A follower that needs entries retention already deleted gets a snapshot: no state (a
    /// partition's state is its log), only where the log now starts: the Raft index and term
    /// of the compaction point and, as data, the Kafka offset after it. The follower replaces
    /// its log by an empty one starting there (as a Kafka follower does on OFFSET_OUT_OF_RANGE).
    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if self.first <= 1 {
            return Err(raft::Error::Store(raft::StorageError::SnapshotTemporarilyUnavailable));
        }
        let mut snap = Snapshot { data: Bytes::copy_from_slice(&self.start_offset.to_be_bytes()), ..Default::default() };
        let meta = snap.mut_metadata();
        meta.index = self.first - 1;
        meta.term = self.snap_term;
        meta.set_conf_state(self.conf.clone());
        Ok(snap)
    }
}

/// Term, vote, commit and the group's configuration once it changed, in `raft.state`
/// (written durably: temp file, fsync, rename).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct SavedHardState {
    term: u64,
    vote: u64,
    commit: u64,
    /// The configuration after the last applied change (None: the assignment's replicas).
    #[serde(default)]
    conf: Option<SavedConf>,
    /// The compaction point: entries up to `index` are gone, the log starts at `offset`.
    #[serde(default)]
    snap: Option<SavedSnap>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
struct SavedSnap {
    index: u64,
    term: u64,
    offset: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct SavedConf {
    voters: Vec<u64>,
    learners: Vec<u64>,
    voters_outgoing: Vec<u64>,
    learners_next: Vec<u64>,
    auto_leave: bool,
}

impl SavedConf {
    fn of(cs: &ConfState) -> SavedConf {
        SavedConf {
            voters: cs.voters.clone(),
            learners: cs.learners.clone(),
            voters_outgoing: cs.voters_outgoing.clone(),
            learners_next: cs.learners_next.clone(),
            auto_leave: cs.auto_leave,
        }
    }
    fn to_conf_state(&self) -> ConfState {
        ConfState {
            voters: self.voters.clone(),
            learners: self.learners.clone(),
            voters_outgoing: self.voters_outgoing.clone(),
            learners_next: self.learners_next.clone(),
            auto_leave: self.auto_leave,
            ..Default::default()
        }
    }
}

/// A single-node (v1) configuration change as a v2 change (Sluice proposes only v2).
fn conf_change_v2(c: raft::eraftpb::ConfChange) -> raft::eraftpb::ConfChangeV2 {
    raft::eraftpb::ConfChangeV2 {
        changes: vec![raft::eraftpb::ConfChangeSingle { change_type: c.change_type, node_id: c.node_id, ..Default::default() }].into(),
        context: c.context,
        ..Default::default()
    }
}

/// Control record type of a Raft configuration change stored in the log (value: the
/// protobuf `ConfChangeV2`). Kafka's own control types are small numbers; clients skip
/// control batches.
const CONTROL_TYPE_CONF_CHANGE: i16 = 100;

/// Control record type of a replicated DeleteRecords (value: the new log start offset, i64).
const CONTROL_TYPE_DELETE_RECORDS: i16 = 101;

/// The Raft entry of a DeleteRecords: applied by every replica in log order.
pub fn delete_records_entry(offset: i64) -> Bytes {
    crate::storage::batch::control_batch_with_value(0, CONTROL_TYPE_DELETE_RECORDS, &offset.to_be_bytes())
}

/// The new log start of a DeleteRecords entry, if `data` is one.
fn delete_records_offset(data: &[u8]) -> Option<i64> {
    match crate::storage::batch::control_record(data)? {
        (CONTROL_TYPE_DELETE_RECORDS, Some(v)) => Some(i64::from_be_bytes(v.get(..8)?.try_into().ok()?)),
        _ => None,
    }
}

fn conf_change_batch(cc: &[u8]) -> Bytes {
    crate::storage::batch::control_batch_with_value(0, CONTROL_TYPE_CONF_CHANGE, cc)
}

/// The Raft entry a stored batch is: a configuration change (from its control batch), or a
/// normal entry carrying the batch.
fn entry_of_batch(batch: Bytes) -> (EntryType, Bytes) {
    match crate::storage::batch::control_record(&batch) {
        Some((CONTROL_TYPE_CONF_CHANGE, value)) => (EntryType::EntryConfChangeV2, Bytes::from(value.unwrap_or_default())),
        _ => (EntryType::EntryNormal, batch),
    }
}

// ------------------------------------------------------------------------------------------
// The replica

/// What committed entries mean to the group's owner.
pub enum Kind {
    /// A partition: commit moves the high watermark.
    Data,
    /// The metadata group: committed entries are applied as metadata operations.
    Metadata,
}

struct Proposal {
    data: Bytes,
    tx: oneshot::Sender<Result<AppendInfo, ReplicaError>>,
}

struct Pending {
    term: u64,
    tx: oneshot::Sender<Result<AppendInfo, ReplicaError>>,
}

/// An acks=all waiter: (last offset, term it was proposed in, reply).
type CommitWaiter = (i64, u64, oneshot::Sender<Result<(), ReplicaError>>);

pub struct Replica {
    pub group: GroupKey,
    /// This replica's Raft id (its broker id, plus an incarnation if a reassignment added it).
    pub raft_id: u64,
    /// Topic name (the metadata log's directory name for the metadata group).
    pub topic: String,
    pub kind: Kind,
    log: RefCell<PartitionLog>,
    inbox: RefCell<Vec<Message>>,
    proposals: RefCell<Vec<Proposal>>,
    wake_tx: async_channel::Sender<()>,
    wake_rx: async_channel::Receiver<()>,
    leader: Cell<u64>,
    term: Cell<u64>,
    is_leader: Cell<bool>,
    /// acks=all waiters: (last offset, term proposed in, reply).
    commit_waiters: RefCell<Vec<CommitWaiter>>,
    stopped: Cell<bool>,
    voters: Vec<u64>,
    campaign_now: Cell<bool>,
    /// Finished asynchronous reads of entries: (first index, the batches, Raft's context).
    #[allow(clippy::type_complexity)]
    fetch_done: RefCell<Vec<(u64, Result<Vec<Bytes>, StorageError>, GetEntriesContext)>>,
    /// Simulation only: Raft ticks the harness asked for and the driver has not taken yet.
    ticks_due: Cell<u32>,
    /// Simulation only: the driver is parked waiting for work.
    idle: Cell<bool>,
    /// The driver has exited (stopped).
    exited: Cell<bool>,
    /// The applied configuration: (voters, outgoing voters of a joint configuration).
    conf: RefCell<(Vec<u64>, Vec<u64>)>,
}

impl Replica {
    pub fn log(&self) -> PartitionLog {
        self.log.borrow().clone()
    }

    pub fn is_leader(&self) -> bool {
        self.is_leader.get()
    }

    pub fn leader_id(&self) -> u64 {
        self.leader.get()
    }

    pub fn term(&self) -> u64 {
        self.term.get()
    }

    fn wake(&self) {
        let _ = self.wake_tx.try_send(());
    }

    /// A Raft message from a peer.
    pub fn deliver(&self, m: Message) {
        if m.to != self.raft_id {
            // Meant for another copy of this replica (an earlier one, removed since).
            return;
        }
        let mut inbox = self.inbox.borrow_mut();
        if inbox.len() < 16 * 1024 {
            inbox.push(m);
        }
        drop(inbox);
        self.wake();
    }

    /// Proposes one producer batch (or a metadata record); resolves once written and
    /// fdatasynced on this leader, with the offsets it got (or the producer table's verdict).
    pub async fn propose(&self, data: Bytes) -> Result<AppendInfo, ReplicaError> {
        if self.stopped.get() || (!self.is_leader() && matches!(self.kind, Kind::Data)) {
            return Err(not_leader(format!(
                "this broker is not the leader of {}-{}",
                self.topic, self.group.1
            )));
        }
        let (tx, rx) = oneshot::channel();
        self.proposals.borrow_mut().push(Proposal { data, tx });
        self.wake();
        rx.await
            .unwrap_or_else(|_| Err(not_leader("the replica stopped")))
    }

    /// Resolves once every offset <= `last_offset` is committed (acks=all), or fails if this
    /// node stops leading first.
    pub async fn wait_committed(&self, last_offset: i64) -> Result<(), ReplicaError> {
        if self.log().high_watermark() > last_offset {
            return Ok(());
        }
        if !self.is_leader() {
            return Err(not_leader(
                "leadership moved before the write was committed",
            ));
        }
        let (tx, rx) = oneshot::channel();
        self.commit_waiters
            .borrow_mut()
            .push((last_offset, self.term.get(), tx));
        rx.await
            .unwrap_or_else(|_| Err(not_leader("the replica stopped")))
    }

    /// Simulation only ([`super::SimHooks`]): one Raft tick, taken by the driver's next turn.
    pub fn tick(&self) {
        self.ticks_due.set(self.ticks_due.get() + 1);
        self.wake();
    }

    /// Simulation only: the driver has nothing left to do until the next message, proposal
    /// or tick (every write and fdatasync it started is finished), or it has exited.
    pub fn is_quiet(&self) -> bool {
        self.exited.get()
            || self.idle.get()
            && self.ticks_due.get() == 0
            && self.wake_rx.is_empty()
            && self.inbox.borrow().is_empty()
            && self.proposals.borrow().is_empty()
            && self.fetch_done.borrow().is_empty()
    }

    /// The applied configuration: voters, and the outgoing voters while a joint configuration
    /// (a replica-set change in progress) is in force.
    pub fn conf(&self) -> (Vec<u64>, Vec<u64>) {
        self.conf.borrow().clone()
    }

    fn set_conf(&self, cs: &ConfState) {
        *self.conf.borrow_mut() = (cs.voters.clone(), cs.voters_outgoing.clone());
    }

    /// Whether the driver was stopped (topic deleted, shutdown, or its storage failed).
    pub fn is_stopped(&self) -> bool {
        self.stopped.get()
    }

    /// Stops the driver (topic deleted, or shutdown).
    pub fn stop(&self) {
        self.stopped.set(true);
        self.wake();
    }

    fn fail_waiters(&self, why: &str) {
        for (_, _, tx) in self.commit_waiters.borrow_mut().drain(..) {
            let _ = tx.send(Err(not_leader(why.to_string())));
        }
        for p in self.proposals.borrow_mut().drain(..) {
            let _ = p.tx.send(Err(not_leader(why.to_string())));
        }
    }

    fn on_committed(&self) {
        let hwm = self.log().high_watermark();
        let mut w = self.commit_waiters.borrow_mut();
        let mut i = 0;
        while i < w.len() {
            if w[i].0 < hwm {
                let (_, _, tx) = w.swap_remove(i);
                let _ = tx.send(Ok(()));
            } else {
                i += 1;
            }
        }
    }
}

/// Opens the Raft state of `log` and starts its driver on this shard. `me` is this replica's
/// Raft id and `voters` the group's members' ([`crate::catalog::TopicMeta::raft_id`]: the
/// broker id, plus an incarnation for a replica added by a reassignment); `campaign` makes this
/// node stand for election at once (the preferred leader of a new partition), instead of after
/// an election timeout.
#[allow(clippy::too_many_arguments)]
pub async fn start(
    shard: &Rc<Shard>,
    group: GroupKey,
    topic: String,
    kind: Kind,
    log: PartitionLog,
    me: u64,
    voters: Vec<u64>,
    campaign: bool,
) -> Result<Rc<Replica>, StorageError> {
    if shard.shared.cluster().is_none() {
        return Err(StorageError::Io {
            path: log.dir().to_path_buf(),
            source: std::io::Error::other("replicas exist only in cluster mode"),
        });
    }
    let saved = load_hard_state(shard, &log).await;
    let log = finish_snapshot_install(shard, &topic, group, log, saved.snap).await?;
    let mut hard = HardState {
        term: saved.term,
        vote: saved.vote,
        ..Default::default()
    };
    let committed_hint = saved.commit;
    let (first, snap_term, snap_offset) = match saved.snap {
        Some(s) => (s.index + 1, s.term, s.offset),
        None => (1, 0, i64::MIN),
    };
    // Entries and the high watermark: everything up to the saved commit index is committed.
    // Batches below the compaction point (a crash between recording it and deleting them)
    // are not entries any more.
    let mut entries = log
        .start_replication(|all| {
            let skip = all.iter().take_while(|e| e.base_offset < snap_offset).count();
            let kept = &all[skip..];
            let start = if snap_offset == i64::MIN { kept.first().map_or(0, |e| e.base_offset) } else { snap_offset };
            let commit = committed_hint.clamp(first - 1, first - 1 + kept.len() as u64);
            offset_after(kept, first, start, commit)
        })
        .await?;
    entries.retain(|e| e.base_offset >= snap_offset);
    let start_offset = if snap_offset == i64::MIN { entries.first().map_or(log.log_start_offset(), |e| e.base_offset) } else { snap_offset };
    let commit = committed_hint.clamp(first - 1, first - 1 + entries.len() as u64);
    hard.commit = commit;
    // Raft's term is never below the term of an entry in the log. Logs written before the
    // hard state was saved ahead of the entries may break that after a crash: the term is
    // raised to the last entry's, with no vote (a vote in that term was never sent: vote
    // answers leave only after the hard state is saved).
    let last_term = entries.last().map_or(snap_term, |e| e.epoch.max(0) as u64);
    if hard.term < last_term {
        tracing::warn!(topic = %topic, partition = group.1, saved_term = hard.term, last_term, "the saved Raft term is below the log's last entry's (a crash before it was saved): raised");
        hard.term = last_term;
        hard.vote = 0;
    }
    let store = LogStore {
        log: log.clone(),
        hard,
        conf: saved
            .conf
            .as_ref()
            .map(SavedConf::to_conf_state)
            .unwrap_or_else(|| ConfState::from((voters.clone(), vec![]))),
        entries,
        first,
        snap_term,
        start_offset,
        fetched: RefCell::new(BTreeMap::new()),
        wanted: RefCell::new(Vec::new()),
        recent: VecDeque::new(),
        recent_bytes: 0,
    };
    let election_tick = (shard.config().raft_election_timeout_ms / TICK_MS).max(3) as usize;
    let cfg = raft::Config {
        id: me,
        election_tick,
        heartbeat_tick: (election_tick / 5).max(1),
        max_size_per_msg: MAX_SIZE_PER_MSG,
        max_inflight_msgs: MAX_INFLIGHT_MSGS,
        check_quorum: true,
        // A leader that cannot commit stops accepting proposals past this many bytes in its
        // uncommitted tail (they fail and producers retry), so memory stays bounded.
        max_uncommitted_size: MAX_UNCOMMITTED_BYTES,
        pre_vote: true,
        // Data: applying only moves the high watermark, already set from the saved commit.
        // Metadata: replay every committed operation (they are idempotent).
        applied: if matches!(kind, Kind::Metadata) {
            0
        } else {
            commit
        },
        ..Default::default()
    };
    let logger = slog::Logger::root(SlogToTracing, slog::o!());
    let node = RawNode::new(&cfg, store, &logger).map_err(|e| StorageError::Io {
        path: log.dir().to_path_buf(),
        source: std::io::Error::other(format!("raft: {e}")),
    })?;
    let (wake_tx, wake_rx) = async_channel::bounded(1);
    let r = Rc::new(Replica {
        group,
        raft_id: me,
        topic,
        kind,
        log: RefCell::new(log),
        inbox: RefCell::new(Vec::new()),
        proposals: RefCell::new(Vec::new()),
        wake_tx,
        wake_rx,
        leader: Cell::new(0),
        term: Cell::new(0),
        is_leader: Cell::new(false),
        commit_waiters: RefCell::new(Vec::new()),
        stopped: Cell::new(false),
        voters,
        campaign_now: Cell::new(campaign),
        fetch_done: RefCell::new(Vec::new()),
        ticks_due: Cell::new(0),
        idle: Cell::new(false),
        exited: Cell::new(false),
        conf: RefCell::new((Vec::new(), Vec::new())),
    });
    r.set_conf(&node.store().conf);
    compio::runtime::spawn(drive(shard.clone(), r.clone(), node, saved)).detach();
    Ok(r)
}

/// A snapshot is recorded in `raft.state` before the log is reset to it
/// ([`install_snapshot`]); after a crash between the two, the log below the snapshot's offset
/// may hold entries that disagree with the leader's (and end anywhere). Unless the log is
/// consistent with the snapshot (no batch across its offset, and the batch ending there has
/// the snapshot's term: the same entry as the leader's), the install is completed now: the log
/// restarts at the snapshot's offset. Retention and DeleteRecords leave the log starting at
/// or after the snapshot's offset, so this costs nothing on a normal start.
async fn finish_snapshot_install(
    shard: &Rc<Shard>,
    topic: &str,
    group: GroupKey,
    log: PartitionLog,
    snap: Option<SavedSnap>,
) -> Result<PartitionLog, StorageError> {
    let Some(s) = snap.filter(|s| log.log_start_offset() < s.offset) else { return Ok(log) };
    let all = log.start_replication(|_| i64::MIN).await?;
    if consistent_with_snapshot(&all, s, log.log_end_offset()) {
        return Ok(log);
    }
    tracing::warn!(topic, partition = group.1, index = s.index, offset = s.offset, "completing a snapshot install interrupted by a crash: the log restarts at the snapshot's offset");
    let new = log.reset_to(s.offset).await?;
    shard.replace_log(topic, group.0, group.1, new.clone());
    Ok(new)
}

/// Whether a log whose batches are `all` (and whose end is `log_end`) continues from snapshot
/// `s` as the leader's does: no batch across the snapshot's offset, the next batch (if any)
/// starting there, and the batch ending there (if any) of the snapshot's term (an entry with the
/// same term and end offset is the leader's entry: one leader per term).
fn consistent_with_snapshot(all: &[EntryPos], s: SavedSnap, log_end: i64) -> bool {
    let straddles = all.iter().any(|e| e.base_offset < s.offset && e.next_offset > s.offset);
    let first_after = all.iter().find(|e| e.base_offset >= s.offset).map(|e| e.base_offset);
    let last_below = all.iter().rev().find(|e| e.next_offset <= s.offset);
    !straddles
        && first_after.is_none_or(|b| b == s.offset)
        && match last_below {
            Some(e) => e.next_offset == s.offset && e.epoch as u64 == s.term,
            None => first_after.is_some() || log_end == s.offset,
        }
}

async fn load_hard_state(shard: &Rc<Shard>, log: &PartitionLog) -> SavedHardState {
    let path = log.dir().join(HARD_STATE_FILE);
    match shard.fs.read_small(&path, 4096).await {
        Ok(Some(b)) => serde_json::from_slice(&b).unwrap_or_else(|e| {
            tracing::error!(path = %path.display(), error = %e, "unreadable Raft state; starting from term 0 without a vote");
            SavedHardState::default()
        }),
        _ => SavedHardState::default(),
    }
}

async fn save_hard_state(
    shard: &Rc<Shard>,
    log: &PartitionLog,
    hs: SavedHardState,
) -> Result<(), StorageError> {
    let io = |e| StorageError::Io { path: log.dir().join(HARD_STATE_FILE), source: e };
    let bytes = serde_json::to_vec(&hs).map_err(|e| io(std::io::Error::other(e)))?;
    shard.fs.write_small_durably(log.dir(), HARD_STATE_FILE, bytes).await.map_err(io)
}

async fn drive(
    shard: Rc<Shard>,
    r: Rc<Replica>,
    mut node: RawNode<LogStore>,
    mut saved: SavedHardState,
) {
    let tick = Duration::from_millis(TICK_MS);
    let mut next_tick = Instant::now() + tick;
    let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
    let mut role = (StateRole::Follower, 0u64, 0u64);
    let mut ticks = 0u64;
    let mut done_sent: Option<Instant> = None;
    let sim = shard.shared.cluster().and_then(|c| c.sim.clone());
    let mut sim_timeout = SimTimeout::default();
    if r.campaign_now.get() {
        let _ = node.campaign();
    }
    loop {
        if r.stopped.get() {
            r.exited.set(true);
            // Never again a leader here: requests get NOT_LEADER_OR_FOLLOWER and re-route.
            r.is_leader.set(false);
            r.leader.set(0);
            r.fail_waiters("the partition is closing");
            for (_, p) in std::mem::take(&mut pending) {
                let _ = p.tx.send(Err(not_leader("the partition is closing")));
            }
            if let Some(c) = shard.shared.cluster() {
                c.forget(&r.group);
            }
            return;
        }
        let now = Instant::now();
        let ticked = match &sim {
            Some(_) => r.ticks_due.get() > 0,
            None => now >= next_tick,
        };
        if ticked {
            node.tick();
            r.ticks_due.set(r.ticks_due.get().saturating_sub(1));
            next_tick = now + tick;
            ticks += 1;
            if ticks % RECONCILE_TICKS == 0 && node.raft.state == StateRole::Leader {
                reconcile(&shard, &r, &mut node, &mut done_sent, ticks % REBALANCE_TICKS == 0);
            }
            if ticks % COMPACT_TICKS == 0 && matches!(r.kind, Kind::Data) {
                if let Err(e) = compact(&shard, &r, &mut node, &mut saved).await {
                    tracing::warn!(topic = %r.topic, partition = r.group.1, error = %e, "retention failed");
                    if r.log().is_offline() {
                        // A failed write took the log offline: this replica can neither append
                        // nor serve, so it stops as on any other storage failure.
                        tracing::error!(topic = %r.topic, partition = r.group.1, "replica storage failed; this replica stops");
                        r.stop();
                        continue;
                    }
                }
            }
            // The preferred leader of a new partition stands again if its first campaign
            // found the other replicas not created yet (their votes were lost).
            if r.campaign_now.get() && (ticks == 3 || ticks == 6) && node.raft.leader_id == 0 {
                let _ = node.campaign();
            }
        }
        let msgs = std::mem::take(&mut *r.inbox.borrow_mut());
        for m in msgs {
            // A data partition's batches are judged by the leader before they are proposed:
            // one forwarded by a peer (none of ours does) would skip that.
            if matches!(r.kind, Kind::Data) && m.msg_type == raft::eraftpb::MessageType::MsgPropose {
                continue;
            }
            // A leader's heartbeat never commits past what this replica acknowledged. One that
            // does was meant for an earlier copy of this replica (removed by a reassignment,
            // its log deleted, added back since): raft-rs would abort on it. Dropped, as a lost
            // message is.
            if m.msg_type == raft::eraftpb::MessageType::MsgHeartbeat && m.commit > node.raft.raft_log.last_index() {
                tracing::warn!(topic = %r.topic, partition = r.group.1, from = m.from, commit = m.commit, last_index = node.raft.raft_log.last_index(), "a heartbeat committing past this replica's log (sent to an earlier copy of it); ignored");
                continue;
            }
            let _ = node.step(m);
        }
        entries_fetched(&r, &mut node);
        let props = std::mem::take(&mut *r.proposals.borrow_mut());
        // The leader alone judges producer batches (size, sequence, duplicates) before they
        // enter the log; every replica then writes them as they are.
        let mut check = (matches!(r.kind, Kind::Data) && node.raft.state == StateRole::Leader && !props.is_empty()).then(|| r.log().proposal_check());
        for p in props {
            if matches!(r.kind, Kind::Data) && node.raft.state != StateRole::Leader {
                // Never forwarded: only the leader may judge a producer batch.
                let _ = p.tx.send(Err(not_leader("this broker is not the leader")));
                continue;
            }
            if let Some(c) = check.as_mut() {
                match r.log().check_proposal(&p.data, c) {
                    ProposalVerdict::Accept => {}
                    ProposalVerdict::Duplicate(info) => {
                        let _ = p.tx.send(Ok(info));
                        continue;
                    }
                    ProposalVerdict::InFlight => {
                        let _ = p.tx.send(Err(not_leader("a retry of a batch not written yet; retry")));
                        continue;
                    }
                    ProposalVerdict::Refused(e) => {
                        let _ = p.tx.send(Err(ReplicaError::Storage(Arc::new(e))));
                        continue;
                    }
                }
            }
            let before = node.raft.raft_log.last_index();
            let leader = node.raft.state == StateRole::Leader;
            let res = node.propose(vec![], p.data.to_vec());
            let after = node.raft.raft_log.last_index();
            match res {
                Ok(()) if leader && after > before => {
                    pending.insert(
                        after,
                        Pending {
                            term: node.raft.term,
                            tx: p.tx,
                        },
                    );
                }
                // A follower forwards the proposal to the leader (metadata operations); the
                // caller waits for it to be applied, not for this reply.
                Ok(()) => {
                    let _ = p.tx.send(Err(not_leader("forwarded to the leader")));
                }
                Err(e) => {
                    if let Some(c) = check.as_mut() {
                        c.undo_last();
                    }
                    let _ = p.tx.send(Err(not_leader(format!("proposal dropped: {e}"))));
                }
            }
        }
        if node.has_ready() {
            if let Err(e) = handle_ready(&shard, &r, &mut node, &mut pending, &mut saved).await {
                tracing::error!(topic = %r.topic, partition = r.group.1, error = %e, "replica storage failed; this replica stops");
                r.stop();
                continue;
            }
        }
        let now_role = (node.raft.state, node.raft.leader_id, node.raft.term);
        if now_role != role {
            let was_leader = role.0 == StateRole::Leader;
            role = now_role;
            r.is_leader.set(role.0 == StateRole::Leader);
            r.leader.set(super::broker_of(role.1));
            r.term.set(role.2);
            if was_leader && role.0 != StateRole::Leader {
                r.fail_waiters("this broker lost leadership");
                for (_, p) in std::mem::take(&mut pending) {
                    let _ = p.tx.send(Err(not_leader("this broker lost leadership")));
                }
            }
            if role.0 == StateRole::Leader {
                tracing::info!(topic = %r.topic, partition = r.group.1, term = role.2, "became leader");
            }
            publish_leader(&shard, &r, &node);
        } else if role.0 == StateRole::Leader && ticked {
            // Once per tick (ISR changes), not on every wake of the produce path.
            publish_leader(&shard, &r, &node);
        }
        if let Some(s) = &sim {
            sim_timeout.apply(s.seed, &mut node);
            // One sequence of I/O per step: the reads for lagging followers are awaited here.
            let reads = wanted_reads(&r, &node);
            for (low, base, max, ctx) in reads {
                let res = r.log().read_batches(base, max).await;
                r.fetch_done.borrow_mut().push((low, res, ctx));
            }
            if r.ticks_due.get() == 0 && r.fetch_done.borrow().is_empty() {
                r.idle.set(true);
                let _ = r.wake_rx.recv().await;
                r.idle.set(false);
            }
            continue;
        }
        start_fetches(&r, &node);
        let wait = next_tick.saturating_duration_since(Instant::now());
        let wake = r.wake_rx.recv().fuse();
        let sleep = compio::time::sleep(wait).fuse();
        futures::pin_mut!(wake, sleep);
        futures::select! {
            _ = wake => {},
            _ = sleep => {},
        }
    }
}

/// The entry ranges Raft asked for that were not in memory: (first index, its offset, max
/// bytes, Raft's context).
fn wanted_reads(r: &Rc<Replica>, node: &RawNode<LogStore>) -> Vec<(u64, i64, u64, GetEntriesContext)> {
    let wanted = std::mem::take(&mut *node.store().wanted.borrow_mut());
    let mut reads = Vec::with_capacity(wanted.len());
    for (low, max, ctx) in wanted {
        let Some(pos) = node.store().pos(low) else { continue };
        tracing::debug!(topic = %r.topic, partition = r.group.1, from_index = low, from_offset = pos.base_offset, "reading Raft entries for a follower");
        reads.push((low, pos.base_offset, max.min(MAX_SIZE_PER_MSG), ctx));
    }
    reads
}

/// Starts an io_uring read for every entry range Raft asked for that was not in memory.
fn start_fetches(r: &Rc<Replica>, node: &RawNode<LogStore>) {
    for (low, base, max, ctx) in wanted_reads(r, node) {
        let (log, r) = (r.log(), r.clone());
        compio::runtime::spawn(async move {
            let res = log.read_batches(base, max).await;
            r.fetch_done.borrow_mut().push((low, res, ctx));
            r.wake();
        })
        .detach();
    }
}

/// Simulation only: Raft draws each election timeout from its thread-local RNG, which no seed
/// reaches. Whenever Raft may have drawn one (its role, term or leader changed, or the value
/// changed), the driver replaces it with one derived from the seed and that state, in the same
/// range ([election_tick, 2 * election_tick)), so a seed replays the same elections.
#[derive(Default)]
struct SimTimeout {
    last: Option<(StateRole, u64, u64, usize)>,
}

impl SimTimeout {
    fn apply(&mut self, seed: u64, node: &mut RawNode<LogStore>) {
        let raft = &mut node.raft;
        let now = (raft.state, raft.term, raft.leader_id, raft.randomized_election_timeout());
        if self.last == Some(now) {
            return;
        }
        let min = raft.election_timeout().max(1);
        let role = match raft.state {
            StateRole::Follower => 1u64,
            StateRole::Candidate => 2,
            StateRole::Leader => 3,
            StateRole::PreCandidate => 4,
        };
        let mut x = seed ^ raft.id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ raft.term.wrapping_mul(0xBF58_476D_1CE4_E5B9) ^ raft.leader_id.wrapping_mul(0x94D0_49BB_1331_11EB) ^ role;
        // splitmix64's finalizer
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
        let t = min + (x % min as u64) as usize;
        raft.set_randomized_election_timeout(t);
        self.last = Some((now.0, now.1, now.2, t));
    }
}

/// Hands finished reads to Raft: the entries go to the store's `fetched` map (checked against
/// the entry positions), then `on_entries_fetched` makes Raft send them. A failed read is
/// logged and dropped: Raft asks again on the follower's next response.
fn entries_fetched(r: &Rc<Replica>, node: &mut RawNode<LogStore>) {
    let done = std::mem::take(&mut *r.fetch_done.borrow_mut());
    for (low, res, ctx) in done {
        match res {
            Ok(batches) => {
                let store = node.store();
                let mut fetched = store.fetched.borrow_mut();
                if fetched.len() > FETCHED_ENTRIES_MAX {
                    fetched.clear();
                }
                for (i, b) in batches.into_iter().enumerate() {
                    let idx = low + i as u64;
                    let Some(pos) = store.pos(idx) else { break };
                    let base = crate::storage::batch::BatchHeader::parse(&b).map(|h| h.base_offset);
                    if base != Some(pos.base_offset) {
                        break;
                    }
                    let (entry_type, data) = entry_of_batch(b);
                    fetched.insert(idx, Entry { index: idx, term: pos.epoch as u64, entry_type, data, ..Default::default() });
                }
            }
            Err(e) => {
                // Not handed back: Raft asks again on the follower's next response.
                tracing::warn!(topic = %r.topic, partition = r.group.1, error = %e, "reading Raft entries for a follower failed");
                continue;
            }
        }
        node.on_entries_fetched(ctx);
    }
}

/// Bytes of appended, not yet applied entries kept in memory per group.
const RECENT_BYTES_MAX: usize = 16 << 20;

/// Entries kept in memory between an asynchronous read and Raft taking them.
const FETCHED_ENTRIES_MAX: usize = 4096;

/// How often (in ticks) a leader compares its voters with the assignment.
const RECONCILE_TICKS: u64 = 5;
/// How often (in ticks) a leader checks whether leadership should go back to the preferred
/// replica.
const REBALANCE_TICKS: u64 = 50;

/// Leader only: moves the group's voters toward a reassignment's target, one safe step at a
/// time: add the new replicas (they catch up from the log); once they are in sync, hand
/// leadership away if this node is leaving, then remove the old replicas; once the voters are
/// the target, commit [`super::metadata::MetaOp::ReassignDone`].
fn reconcile(shard: &Rc<Shard>, r: &Rc<Replica>, node: &mut RawNode<LogStore>, done_sent: &mut Option<Instant>, rebalance: bool) {
    use raft::eraftpb::{ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2};
    if r.group == super::METADATA_GROUP {
        // Joined brokers (not voters) receive the metadata log as learners.
        let conf = node.store().conf.clone();
        if node.raft.has_pending_conf() || !conf.voters_outgoing.is_empty() {
            return;
        }
        let nodes = shard.shared.catalog.snapshot().data.nodes.clone();
        let new: Vec<u64> = nodes.keys().copied().filter(|id| !conf.voters.contains(id) && !conf.learners.contains(id)).collect();
        if !new.is_empty() {
            tracing::info!(learners = ?new, "adding joined brokers to the metadata group as learners");
            let cc = ConfChangeV2 {
                transition: ConfChangeTransition::Auto,
                changes: new.into_iter().map(|id| ConfChangeSingle { change_type: ConfChangeType::AddLearnerNode, node_id: id, ..Default::default() }).collect(),
                ..Default::default()
            };
            if let Err(e) = node.propose_conf_change(vec![], cc) {
                tracing::warn!(error = %e, "learner change not proposed");
            }
        }
        return;
    }
    let snap = shard.shared.catalog.snapshot();
    let Some(meta) = snap.topic_by_id(&r.group.0) else { return };
    let Some(target) = meta.targets.get(&r.group.1) else {
        if rebalance {
            prefer_leader(r, node, meta.replicas.get(r.group.1 as usize).and_then(|v| v.first()).map(|b| meta.raft_id(r.group.1, *b)));
        }
        return;
    };
    let conf = node.store().conf.clone();
    if node.raft.has_pending_conf() || !conf.voters_outgoing.is_empty() {
        return;
    }
    // In Raft ids: a replica the reassignment adds joins under a new one.
    let mut want: Vec<u64> = target.iter().map(|b| meta.raft_id(r.group.1, *b)).collect();
    want.sort_unstable();
    want.dedup();
    let me = node.raft.id;
    let change = |ids: Vec<u64>, t: ConfChangeType| ConfChangeV2 {
        transition: ConfChangeTransition::Auto,
        changes: ids.into_iter().map(|id| ConfChangeSingle { change_type: t, node_id: id, ..Default::default() }).collect(),
        ..Default::default()
    };
    let adds: Vec<u64> = want.iter().copied().filter(|id| !conf.voters.contains(id)).collect();
    if !adds.is_empty() {
        tracing::info!(topic = %r.topic, partition = r.group.1, brokers = ?brokers(&adds), raft_ids = ?adds, "adding replicas");
        if let Err(e) = node.propose_conf_change(vec![], change(adds, ConfChangeType::AddNode)) {
            tracing::warn!(topic = %r.topic, error = %e, "configuration change not proposed");
        }
        return;
    }
    let removes: Vec<u64> = conf.voters.iter().copied().filter(|id| !want.contains(id)).collect();
    if !removes.is_empty() {
        let committed = node.raft.raft_log.committed;
        let in_sync = |id: &u64| *id == me || node.raft.prs().get(*id).is_some_and(|p| p.matched >= committed);
        if !want.iter().all(in_sync) {
            return; // new replicas still catching up
        }
        if removes.contains(&me) {
            let last = node.raft.raft_log.last_index();
            if let Some(to) = want.iter().copied().find(|id| node.raft.prs().get(*id).is_some_and(|p| p.matched == last)) {
                tracing::info!(topic = %r.topic, partition = r.group.1, to = super::broker_of(to), "handing leadership to a remaining replica");
                node.transfer_leader(to);
            }
            return;
        }
        tracing::info!(topic = %r.topic, partition = r.group.1, brokers = ?brokers(&removes), raft_ids = ?removes, "removing replicas");
        if let Err(e) = node.propose_conf_change(vec![], change(removes, ConfChangeType::RemoveNode)) {
            tracing::warn!(topic = %r.topic, error = %e, "configuration change not proposed");
        }
        return;
    }
    if done_sent.is_none_or(|t| t.elapsed() > Duration::from_secs(2)) {
        *done_sent = Some(Instant::now());
        let op = super::metadata::MetaOp::ReassignDone { name: meta.name.clone(), id: meta.id, partition: r.group.1, replicas: target.clone() };
        let s = shard.clone();
        compio::runtime::spawn(async move {
            if let Err(e) = super::metadata::propose(&s, op).await {
                tracing::warn!(error = %e.message, "reassignment completion not committed yet; retrying");
            }
        })
        .detach();
    }
}

/// Leadership rebalancing (Kafka's auto.leader.rebalance): hands leadership to the partition's
/// preferred replica (the first of its assignment) once that replica has the whole log, so
/// leaders spread over the brokers as placement intended after elections moved them.
fn prefer_leader(r: &Rc<Replica>, node: &mut RawNode<LogStore>, preferred: Option<u64>) {
    let Some(p) = preferred else { return };
    if p == node.raft.id || node.raft.lead_transferee.is_some() {
        return;
    }
    let last = node.raft.raft_log.last_index();
    let caught_up = node.raft.prs().get(p).is_some_and(|pr| pr.matched == last && pr.recent_active);
    if caught_up && node.store().conf.voters.contains(&p) {
        tracing::info!(topic = %r.topic, partition = r.group.1, to = super::broker_of(p), "handing leadership to the preferred replica");
        node.transfer_leader(p);
    }
}

/// Brokers of Raft ids, for logs.
fn brokers(ids: &[u64]) -> Vec<u64> {
    ids.iter().map(|id| super::broker_of(*id)).collect()
}

/// Updates the node's leadership table (and the controller id for the metadata group).
fn publish_leader(shard: &Rc<Shard>, r: &Rc<Replica>, node: &RawNode<LogStore>) {
    let Some(cluster) = shard.shared.cluster() else {
        return;
    };
    // Raft ids to broker ids: Metadata and the leadership table speak of brokers.
    let leader = super::broker_of(node.raft.leader_id);
    let isr = if node.raft.state == StateRole::Leader {
        let last = node.raft.raft_log.last_index();
        let mut isr: Vec<u64> = node
            .raft
            .prs()
            .iter()
            .filter(|(id, pr)| {
                **id == node.raft.id || (pr.recent_active && pr.matched + 1000 >= last)
            })
            .map(|(id, _)| super::broker_of(*id))
            .collect();
        isr.sort_unstable();
        isr
    } else {
        r.voters.iter().map(|id| super::broker_of(*id)).collect()
    };
    if r.group == super::METADATA_GROUP {
        cluster.set_controller(leader);
    }
    cluster.set_leader(
        r.group,
        LeaderInfo {
            leader,
            term: node.raft.term,
            isr,
        },
    );
}

async fn handle_ready(
    shard: &Rc<Shard>,
    r: &Rc<Replica>,
    node: &mut RawNode<LogStore>,
    pending: &mut BTreeMap<u64, Pending>,
    saved: &mut SavedHardState,
) -> Result<(), StorageError> {
    let mut rd = node.ready();
    let msgs = rd.take_messages();
    send_messages_of(shard, r, node, msgs);
    if !rd.snapshot().is_empty() {
        install_snapshot(shard, r, node, saved, rd.snapshot().clone()).await?;
    }
    if let Some(hs) = rd.hs() {
        node.mut_store().hard = hs.clone();
        let new = SavedHardState {
            term: hs.term,
            vote: hs.vote,
            commit: hs.commit,
            conf: saved.conf.clone(),
            snap: saved.snap,
        };
        // Term and vote must be durable before any message that depends on them leaves, and
        // before the entries of this Ready: a crash in between must not leave an entry of a
        // term newer than the saved one (raft-rs then answers votes with term 0 and aborts;
        // the cluster simulation found it). The commit index is only a restart hint, saved
        // along with them.
        if new.term != saved.term || new.vote != saved.vote {
            let log = r.log();
            save_hard_state(shard, &log, new.clone()).await?;
            *saved = new;
        }
    }
    apply(shard, r, node, saved, rd.take_committed_entries()).await?;
    let entries = rd.take_entries();
    if !entries.is_empty() {
        append_entries(shard, r, node, pending, entries).await?;
    }
    send_messages(shard, r, rd.take_persisted_messages());
    let mut light = node.advance(rd);
    if let Some(c) = light.commit_index() {
        node.mut_store().hard.commit = c;
    }
    let msgs = light.take_messages();
    send_messages_of(shard, r, node, msgs);
    apply(shard, r, node, saved, light.take_committed_entries()).await?;
    node.advance_apply();
    Ok(())
}

/// Sends a leader's messages; a snapshot is reported delivered at once (if it was lost, the
/// follower's next response makes the leader send it again), so the follower's progress is
/// never left paused waiting for a report.
fn send_messages_of(shard: &Rc<Shard>, r: &Rc<Replica>, node: &mut RawNode<LogStore>, msgs: Vec<Message>) {
    let snapshots: Vec<u64> = msgs.iter().filter(|m| m.msg_type == raft::eraftpb::MessageType::MsgSnapshot).map(|m| m.to).collect();
    send_messages(shard, r, msgs);
    for to in snapshots {
        tracing::info!(topic = %r.topic, partition = r.group.1, to, "sent a snapshot (the follower's log restarts at the leader's log start)");
        node.report_snapshot(to, raft::SnapshotStatus::Finish);
    }
}

/// A follower whose missing entries the leader no longer has: its log is replaced by an empty
/// one starting where the leader's log starts; Raft continues from the snapshot's index.
async fn install_snapshot(
    shard: &Rc<Shard>,
    r: &Rc<Replica>,
    node: &mut RawNode<LogStore>,
    saved: &mut SavedHardState,
    snap: Snapshot,
) -> Result<(), StorageError> {
    let meta = snap.get_metadata();
    let (index, term) = (meta.index, meta.term);
    let Some(offset) = snap.data.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(i64::from_be_bytes) else {
        tracing::error!(topic = %r.topic, "a snapshot without its log start offset; ignored");
        return Ok(());
    };
    tracing::info!(topic = %r.topic, partition = r.group.1, index, term, offset, "installing a snapshot: the log restarts at the leader's log start");
    // Recorded durably before the log is reset: a crash in between restarts from the snapshot
    // ([`finish_snapshot_install`]), never from a log that lost entries Raft saw acknowledged.
    let conf = meta.get_conf_state().clone();
    saved.snap = Some(SavedSnap { index, term, offset });
    saved.conf = Some(SavedConf::of(&conf));
    saved.commit = saved.commit.max(index);
    save_hard_state(shard, &r.log(), saved.clone()).await?;
    let new = r.log().reset_to(offset).await?;
    *r.log.borrow_mut() = new.clone();
    shard.replace_log(&r.topic, r.group.0, r.group.1, new.clone());
    {
        let store = node.mut_store();
        store.log = new.clone();
        store.entries.clear();
        store.first = index + 1;
        store.snap_term = term;
        store.start_offset = offset;
        store.conf = conf.clone();
        r.set_conf(&conf);
        store.hard.commit = store.hard.commit.max(index);
        store.forget_recent();
        store.fetched.borrow_mut().clear();
    }
    let _ = new.start_replication(|_| offset).await?;
    Ok(())
}

/// Retention for a replicated partition (every `COMPACT_TICKS`): when retention.ms /
/// retention.bytes want whole segments gone, and every entry in them is applied, the
/// compaction point is recorded durably first, then the segments are deleted.
async fn compact(shard: &Rc<Shard>, r: &Rc<Replica>, node: &mut RawNode<LogStore>, saved: &mut SavedHardState) -> Result<(), StorageError> {
    let log = r.log();
    let Some(keep_from) = log.retention_point(crate::runtime::now_ms()) else { return Ok(()) };
    let store = node.store();
    let Some(k) = store.entries.iter().position(|e| e.next_offset == keep_from) else { return Ok(()) };
    let index = store.first + k as u64;
    if index > node.raft.raft_log.applied {
        return Ok(());
    }
    let term = store.entries[k].epoch as u64;
    saved.snap = Some(SavedSnap { index, term, offset: keep_from });
    save_hard_state(shard, &log, saved.clone()).await?;
    log.delete_records(keep_from).await?;
    node.mut_store().compact_to(index, term, keep_from);
    tracing::info!(topic = %r.topic, partition = r.group.1, index, log_start = keep_from, "retention removed the log's prefix");
    Ok(())
}

/// How often (in ticks) a data partition's replica applies retention.
const COMPACT_TICKS: u64 = 50;

fn send_messages(shard: &Rc<Shard>, r: &Rc<Replica>, msgs: Vec<Message>) {
    for m in msgs {
        let to = super::broker_of(m.to);
        if let Some(frame) = transport::encode_raft(&r.group, &m) {
            transport::send(shard, to, frame);
        }
    }
}

async fn append_entries(
    shard: &Rc<Shard>,
    r: &Rc<Replica>,
    node: &mut RawNode<LogStore>,
    pending: &mut BTreeMap<u64, Pending>,
    entries: Vec<Entry>,
) -> Result<(), StorageError> {
    let mut acks = Vec::new();
    let mut last_next = None;
    for e in entries {
        let idx = e.index;
        let have = node.store().last();
        if idx <= have {
            // A new leader's log disagrees with our uncommitted suffix: drop it.
            let Some(off) = node.store().pos(idx).map(|p| p.base_offset) else {
                return Err(StorageError::Corrupt { path: r.log().dir().to_path_buf(), offset: 0, reason: format!("conflicting Raft entry {idx} below the compaction point") });
            };
            let old = r.log();
            let new = old.truncate_from(off).await?;
            let keep = (idx - node.store().first) as usize;
            node.mut_store().entries.truncate(keep);
            node.mut_store().fetched.borrow_mut().clear();
            node.mut_store().forget_recent();
            node.mut_store().log = new.clone();
            *r.log.borrow_mut() = new.clone();
            shard.replace_log(&r.topic, r.group.0, r.group.1, new.clone());
            let commit = node.store().hard.commit;
            let committed = node.store().offset_after(commit);
            let _ = new.start_replication(|_| committed).await?;
        } else if idx != have + 1 {
            return Err(StorageError::Corrupt {
                path: r.log().dir().to_path_buf(),
                offset: 0,
                reason: format!("Raft entry {idx} after {have}"),
            });
        }
        let data = match e.entry_type {
            EntryType::EntryNormal => e.data.clone(),
            // Stored as a control batch, so that the entry reads back as what it is.
            EntryType::EntryConfChangeV2 => conf_change_batch(&e.data),
            EntryType::EntryConfChange => {
                let cc = raft::eraftpb::ConfChange::parse_from_bytes(&e.data).ok().map(conf_change_v2);
                let v2 = cc.and_then(|c| protobuf::Message::write_to_bytes(&c).ok()).unwrap_or_default();
                conf_change_batch(&v2)
            }
        };
        let log = r.log();
        let ea = log.append_entry(data, e.term as i32).await?;
        node.mut_store().entries.push(EntryPos {
            base_offset: ea.base_offset,
            next_offset: ea.next_offset,
            epoch: e.term as i32,
        });
        node.mut_store().remember(e.clone());
        last_next = Some(ea.next_offset);
        if let Some(p) = pending.remove(&idx) {
            if p.term == e.term {
                acks.push((p.tx, ea.outcome));
            } else {
                let _ =
                    p.tx.send(Err(not_leader("the entry was replaced by a new leader")));
            }
        }
    }
    if let Some(next) = last_next {
        r.log().wait_durable(next - 1).await?;
    }
    for (tx, outcome) in acks {
        let _ = tx.send(outcome.map_err(|e| ReplicaError::Storage(Arc::new(e))));
    }
    Ok(())
}

async fn apply(
    shard: &Rc<Shard>,
    r: &Rc<Replica>,
    node: &mut RawNode<LogStore>,
    saved: &mut SavedHardState,
    committed: Vec<Entry>,
) -> Result<(), StorageError> {
    let Some(last) = committed.last().map(|e| e.index) else {
        return Ok(());
    };
    for e in &committed {
        if e.entry_type == EntryType::EntryNormal {
            continue;
        }
        let cc = match e.entry_type {
            EntryType::EntryConfChangeV2 => raft::eraftpb::ConfChangeV2::parse_from_bytes(&e.data).ok(),
            _ => raft::eraftpb::ConfChange::parse_from_bytes(&e.data).ok().map(conf_change_v2),
        };
        let Some(cc) = cc else {
            tracing::error!(topic = %r.topic, index = e.index, "undecodable configuration change skipped");
            continue;
        };
        match node.apply_conf_change(&cc) {
            Ok(cs) => {
                tracing::info!(topic = %r.topic, partition = r.group.1, brokers = ?brokers(&cs.voters), outgoing = ?brokers(&cs.voters_outgoing), raft_ids = ?cs.voters, "replica set changed");
                node.mut_store().conf = cs.clone();
                r.set_conf(&cs);
                // A leader that is no longer a voter steps down (raft-rs leaves it leading, and
                // then aborts when it persists its next entries: its own progress is gone).
                // `reconcile` hands leadership away before removing the leader, but a replica
                // that became leader with the removal already in its log applies it here.
                let me = node.raft.id;
                if node.raft.state == StateRole::Leader && !cs.voters.contains(&me) && !cs.voters_outgoing.contains(&me) {
                    tracing::info!(topic = %r.topic, partition = r.group.1, "this leader left the replica set; stepping down");
                    let term = node.raft.term;
                    node.raft.become_follower(term, raft::INVALID_ID);
                }
                saved.conf = Some(SavedConf::of(&cs));
                let log = r.log();
                save_hard_state(shard, &log, saved.clone()).await?;
            }
            Err(err) => tracing::error!(topic = %r.topic, error = %err, "configuration change refused"),
        }
    }
    if let Kind::Metadata = r.kind {
        for e in &committed {
            if e.entry_type == EntryType::EntryNormal && !e.data.is_empty() {
                super::metadata::apply_entry(shard, &e.data, e.index).await;
            }
        }
    } else {
        for e in &committed {
            if e.entry_type != EntryType::EntryNormal {
                continue;
            }
            if let Some(offset) = delete_records_offset(&e.data) {
                apply_delete_records(shard, r, node, saved, e.index, offset).await?;
            }
        }
    }
    node.mut_store().forget_through(last);
    let next = node.store().offset_after(last);
    r.log().set_committed(next);
    r.on_committed();
    Ok(())
}

/// A committed DeleteRecords: the log start moves to `offset` on this replica; segments wholly
/// below it go, and with them their Raft entries (the compaction point is recorded first, as
/// retention does).
async fn apply_delete_records(
    shard: &Rc<Shard>,
    r: &Rc<Replica>,
    node: &mut RawNode<LogStore>,
    saved: &mut SavedHardState,
    index: u64,
    offset: i64,
) -> Result<(), StorageError> {
    let log = r.log();
    // Everything before this entry is committed: readable, so deletable.
    log.set_committed(node.store().offset_after(index - 1));
    let keep_base = log.first_segment_base_after(offset);
    let store = node.store();
    let compact = if keep_base > store.start_offset {
        store.entries.iter().position(|p| p.next_offset == keep_base).map(|k| (store.first + k as u64, store.entries[k].epoch as u64))
    } else {
        None
    };
    if let Some((ci, term)) = compact {
        saved.snap = Some(SavedSnap { index: ci, term, offset: keep_base });
        save_hard_state(shard, &log, saved.clone()).await?;
    }
    match log.delete_records(offset).await {
        Ok(_) => {}
        Err(StorageError::OffsetOutOfRange { .. }) => {
            tracing::warn!(topic = %r.topic, partition = r.group.1, offset, "replicated DeleteRecords past this replica's log end; ignored");
            return Ok(());
        }
        Err(e) => return Err(e),
    }
    if let Some((ci, term)) = compact {
        node.mut_store().compact_to(ci, term, keep_base);
    }
    tracing::info!(topic = %r.topic, partition = r.group.1, log_start = offset, "records deleted (replicated DeleteRecords)");
    Ok(())
}

/// raft-rs logs through slog; this drain forwards its records to `tracing` (Raft's info is
/// our debug: elections are logged by the replica itself).
struct SlogToTracing;

impl slog::Drain for SlogToTracing {
    type Ok = ();
    type Err = slog::Never;
    fn log(&self, record: &slog::Record, _values: &slog::OwnedKVList) -> Result<(), slog::Never> {
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "raft", "{}", record.msg())
            }
            slog::Level::Warning => tracing::warn!(target: "raft", "{}", record.msg()),
            slog::Level::Info | slog::Level::Debug => {
                tracing::debug!(target: "raft", "{}", record.msg())
            }
            slog::Level::Trace => tracing::trace!(target: "raft", "{}", record.msg()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn pos(base: i64, next: i64, epoch: i32) -> EntryPos {
        EntryPos { base_offset: base, next_offset: next, epoch }
    }

    #[test]
    fn offsets_of_raft_indexes() {
        // Entries 1..=3: a no-op (offset 0), a 5-record batch (1..=5), a 2-record batch (6..=7).
        let e = [pos(0, 1, 1), pos(1, 6, 1), pos(6, 8, 2)];
        assert_eq!(offset_after(&e, 1, 0, 0), 0);
        assert_eq!(offset_after(&e, 1, 0, 1), 1);
        assert_eq!(offset_after(&e, 1, 0, 2), 6);
        assert_eq!(offset_after(&e, 1, 0, 3), 8);
        assert_eq!(offset_after(&e, 1, 0, 9), 8, "clamped to the last entry");
        // After compaction through index 10 at log start 100: entries start at index 11.
        let e = [pos(100, 104, 3)];
        assert_eq!(offset_after(&e, 11, 100, 10), 100);
        assert_eq!(offset_after(&e, 11, 100, 5), 100);
        assert_eq!(offset_after(&e, 11, 100, 11), 104);
        assert_eq!(offset_after(&[], 11, 100, 11), 100);
    }

    #[test]
    fn an_interrupted_snapshot_install_is_completed_unless_the_log_already_matches() {
        let snap = SavedSnap { index: 6, term: 2, offset: 11 };
        // Crash after recording the snapshot, before the reset: old entries of another term.
        let old = [pos(0, 4, 1), pos(4, 9, 1), pos(9, 12, 1)];
        assert!(!consistent_with_snapshot(&old, snap, 12), "a batch across the snapshot's offset");
        let old = [pos(0, 4, 1), pos(4, 11, 1)];
        assert!(!consistent_with_snapshot(&old, snap, 11), "the entry ending there is of another term");
        assert!(!consistent_with_snapshot(&[], snap, 0), "an empty log that would take offset 0 next");
        assert!(!consistent_with_snapshot(&[pos(12, 13, 2)], snap, 13), "a gap before the next entry");
        // The leader's own entries (same term, same end offset), with or without more after.
        assert!(consistent_with_snapshot(&[pos(0, 4, 1), pos(4, 11, 2)], snap, 11));
        assert!(consistent_with_snapshot(&[pos(4, 11, 2), pos(11, 13, 3)], snap, 13));
        // Retention and DeleteRecords: the log starts at (or, empty, ends at) the offset.
        assert!(consistent_with_snapshot(&[pos(11, 13, 3)], snap, 13));
        assert!(consistent_with_snapshot(&[], snap, 11));
    }

    #[test]
    fn configuration_changes_read_back_as_what_they_are() {
        use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2};
        let cc = ConfChangeV2 {
            changes: vec![ConfChangeSingle { change_type: ConfChangeType::AddNode, node_id: 4, ..Default::default() }].into(),
            ..Default::default()
        };
        let bytes = protobuf::Message::write_to_bytes(&cc).unwrap();
        let stored = conf_change_batch(&bytes);
        let h = crate::storage::batch::validate(&stored, 1 << 20).unwrap();
        assert_ne!(h.attributes & crate::storage::batch::ATTR_CONTROL, 0, "a control batch: consumers skip it");
        let (t, data) = entry_of_batch(stored);
        assert_eq!(t, EntryType::EntryConfChangeV2);
        assert_eq!(raft::eraftpb::ConfChangeV2::parse_from_bytes(&data).unwrap(), cc);
        // A producer batch and a no-op control batch are normal entries, bytes unchanged.
        let b = crate::storage::batch::simple_batch(2, 10, 1);
        assert_eq!(entry_of_batch(b.clone()), (EntryType::EntryNormal, b));
        let noop = crate::storage::batch::control_batch(0, crate::storage::batch::CONTROL_TYPE_LEADER_CHANGE);
        assert_eq!(entry_of_batch(noop.clone()).0, EntryType::EntryNormal);
        // The no-op is byte-identical wherever it is written (replicas compare logs bytewise).
        assert_eq!(noop, crate::storage::batch::control_batch(0, crate::storage::batch::CONTROL_TYPE_LEADER_CHANGE));
        // A v1 change converts to the same v2 change.
        let v1 = raft::eraftpb::ConfChange { change_type: ConfChangeType::AddNode, node_id: 4, ..Default::default() };
        assert_eq!(conf_change_v2(v1).changes, cc.changes);
    }

    #[test]
    fn saved_state_round_trips_and_reads_old_files() {
        let s = SavedHardState {
            term: 7,
            vote: 2,
            commit: 40,
            conf: Some(SavedConf { voters: vec![1, 2, 4], learners: vec![5], ..Default::default() }),
            snap: Some(SavedSnap { index: 10, term: 3, offset: 1602 }),
        };
        let back: SavedHardState = serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.conf.unwrap().to_conf_state().voters, vec![1, 2, 4]);
        // A file written before configuration changes and compaction existed.
        let old: SavedHardState = serde_json::from_str(r#"{"term":1,"vote":1,"commit":5}"#).unwrap();
        assert_eq!((old.term, old.conf, old.snap), (1, None, None));
    }
}
