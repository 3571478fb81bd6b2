//! Storage engine: one [`PartitionLog`] per partition directory, in Kafka's on-disk layout
//! (`<base_offset:020>.log` segments of RecordBatch v2 bytes, sparse `.index` and `.timeindex`),
//! with io_uring writes (compio), group-commit fdatasync, recovery, retention, idempotent
//! producer dedup, and a file-system seam ([`Fs`]) for fault injection.
//! Byte layouts: docs/format.md. Invariants: ARCHITECTURE-storage.md.
//!
//! Layer (ARCHITECTURE.md "Layers", kept by tests/it/layers.rs): `storage` uses `limits`, `recorder`.

pub mod batch;
mod fs;
mod index;
mod log;
mod producer;

use std::path::PathBuf;
use std::sync::Arc;

pub use fs::{buffered_writes_punt, FaultPlan, Fs};
pub use index::{OffsetIndex, TimeIndex};
pub use log::{CorruptionReport, FlushTimes, PartitionLog};
pub use producer::{ProducerBatch, ProducerTable};

/// Per-log configuration (Kafka topic config names in the comments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// segment.bytes, default 1 GiB.
    pub segment_bytes: u64,
    /// segment.ms, default 7 days.
    pub segment_ms: i64,
    /// index.interval.bytes, default 4096.
    pub index_interval_bytes: u32,
    /// retention.ms, default 7 days, -1 = unlimited.
    pub retention_ms: i64,
    /// retention.bytes, default -1 (unlimited).
    pub retention_bytes: i64,
    /// flush.messages; None = fsync every group commit (durable default).
    pub flush_messages: Option<u64>,
    /// flush.ms; None = fsync every group commit (durable default).
    pub flush_ms: Option<u64>,
    /// max.message.bytes (max size of one batch), default 1 MiB + 12.
    pub message_max_bytes: u32,
    /// The log is a Raft log (cluster mode): the high watermark is set by the replication
    /// layer ([`PartitionLog::set_committed`]), never by the flusher or an append.
    pub replicated: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            flush_messages: None,
            flush_ms: None,
            message_max_bytes: 1024 * 1024 + 12,
            replicated: false,
        }
    }
}

impl LogConfig {
    /// True when flush.messages / flush.ms relax durability: hwm = written end.
    pub fn relaxed(&self) -> bool {
        self.flush_messages.is_some() || self.flush_ms.is_some()
    }
    /// segment.bytes clamped to what the format supports.
    pub(crate) fn segment_bytes_clamped(&self) -> u64 {
        self.segment_bytes.clamp(
            crate::limits::SEGMENT_BYTES_MIN,
            crate::limits::SEGMENT_BYTES_MAX,
        )
    }
}

/// Result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub log_start_offset: i64,
    /// True if the batch was an idempotent duplicate: nothing written, original offsets returned.
    pub duplicate: bool,
}

/// A byte range of whole batches in one segment file. Send + 'static; valid even if retention
/// deletes the segment (the file is unlinked, this descriptor keeps it).
#[derive(Debug, Clone)]
pub struct ReadSlice {
    /// Opened read-only.
    pub file: Arc<std::fs::File>,
    pub position: u64,
    pub len: u32,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

impl ReadSlice {
    /// Copies the range into memory with pread (for tests and non-zero-copy paths).
    pub fn read_to_vec(&self) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let mut v = vec![0u8; self.len as usize];
        self.file.read_exact_at(&mut v, self.position)?;
        Ok(v)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A write or fsync failed: the log is offline.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// ENOSPC: the log is offline.
    #[error("no space left on device writing {path}")]
    NoSpace { path: PathBuf },
    #[error("corrupt data in {path} at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// A bad incoming batch (CRC, magic, lengths) -> CORRUPT_MESSAGE.
    #[error("corrupt record batch: {0}")]
    CorruptRecord(String),
    /// -> MESSAGE_TOO_LARGE.
    #[error("record batch of {size} bytes exceeds {max}")]
    RecordTooLarge { size: usize, max: usize },
    #[error("offset {offset} outside [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    #[error("producer {producer_id}: sequence {got}, expected {expected}")]
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
        got: i32,
    },
    #[error("producer {producer_id}: epoch {got} fenced by epoch {current_epoch}")]
    ProducerFenced {
        producer_id: i64,
        current_epoch: i16,
        got: i16,
    },
    /// The log is offline (after a failed write/fsync) or closed -> KAFKA_STORAGE_ERROR.
    #[error("log {path} is offline")]
    Offline { path: PathBuf },
}

impl From<batch::BatchError> for StorageError {
    fn from(e: batch::BatchError) -> StorageError {
        match e {
            batch::BatchError::Corrupt(m) => StorageError::CorruptRecord(m),
            batch::BatchError::TooLarge { size, max } => StorageError::RecordTooLarge { size, max },
        }
    }
}

/// What one replicated (Raft) entry became in the log: the offsets it occupies, and for the
/// producer the outcome of its batch. An entry without data, or one that fails validation,
/// still occupies its Raft index: it is stored as a one-record control batch, so every
/// replica's log stays batch-for-entry identical.
#[derive(Debug)]
pub struct EntryAppend {
    pub base_offset: i64,
    /// Offset after the entry.
    pub next_offset: i64,
    pub outcome: Result<AppendInfo, StorageError>,
}

/// The leader's checks of the batches it proposes in one turn
/// ([`PartitionLog::check_proposal`]): the producer changes of the batches accepted so far,
/// and the offsets they will take (provisional: only to tell a retry of one of them).
#[derive(Debug)]
pub struct ProposalCheck {
    pub(crate) staged: std::collections::HashMap<i64, producer::ProducerEntry>,
    pub(crate) next: i64,
    /// The log end when the checks started: batches at or above it are not written yet.
    pub(crate) first: i64,
    /// What the last accepted batch changed, for [`ProposalCheck::undo_last`].
    pub(crate) last: Option<Undo>,
}

/// `next` before the last accepted batch, and (if idempotent) its producer id with that
/// producer's staged entry before it.
#[derive(Debug)]
pub(crate) struct Undo {
    pub(crate) next: i64,
    pub(crate) producer: Option<(i64, Option<producer::ProducerEntry>)>,
}

impl ProposalCheck {
    /// Forgets the last accepted batch (Raft refused to propose it), so that the batches after
    /// it are judged as if it had never come.
    pub fn undo_last(&mut self) {
        let Some(Undo { next, producer }) = self.last.take() else { return };
        self.next = next;
        if let Some((pid, before)) = producer {
            match before {
                Some(e) => self.staged.insert(pid, e),
                None => self.staged.remove(&pid),
            };
        }
    }
}

/// The leader's verdict on a producer batch before proposing it.
#[derive(Debug)]
pub enum ProposalVerdict {
    /// Propose it.
    Accept,
    /// An idempotent duplicate of a batch in the log: answer with its offsets, propose nothing.
    Duplicate(AppendInfo),
    /// A duplicate of a batch proposed moments ago and not written yet: the producer retries.
    InFlight,
    /// Refused: corrupt, too large, out of sequence, or a fenced producer epoch.
    Refused(StorageError),
}

/// One batch found by [`PartitionLog::start_replication`]: its base offset and leader epoch
/// (the Raft term in cluster mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryPos {
    pub base_offset: i64,
    pub next_offset: i64,
    pub epoch: i32,
}
