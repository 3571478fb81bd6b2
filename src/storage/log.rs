//! The partition log: segments, append, group commit, read, recovery, retention.
//!
//! Concurrency: single-threaded (one shard). State lives in `RefCell<State>` inside an `Rc`;
//! no borrow is held across an `.await` (every await sits outside a `{ let st = ...; }` block).
//! Appends, rolls, DeleteRecords, housekeeping and close are serialized by an async mutex.
//! Durability is driven by a flusher task (`compio::runtime::spawn`, detached, one per log) that
//! sleeps on a oneshot until an append wakes it, then fdatasyncs every file written since the
//! previous fsync began and advances the durable offset; appends that arrive during an fsync are
//! covered by the next one (group commit). The flusher holds only a `Weak` while idle and exits
//! when the log closes, goes offline, or is dropped.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use compio::fs::File;
use futures::channel::oneshot;
use futures::lock::Mutex;

use super::batch::{self, BatchHeader, HEADER_BYTES};
use super::fs::Fs;
use super::index::{OffsetIndex, TimeIndex, INDEX_ENTRY_BYTES, TIME_INDEX_ENTRY_BYTES};
use super::producer::{Check, ProducerEntry, ProducerTable, SeqError};
use super::{ProposalCheck, ProposalVerdict, Undo};
use super::{AppendInfo, EntryAppend, EntryPos, LogConfig, ReadSlice, StorageError};
use crate::limits::{
    APPEND_BYTES_MAX, BATCH_BYTES_MAX, HEADER_SCAN_READ_BYTES, HWM_WAITERS_PRUNE_COUNT,
    PRODUCER_SNAPSHOT_BYTES_MAX, RECOVERY_READ_BYTES,
};

const CLEAN_MARKER: &str = ".clean-shutdown";
const CLEAN_MARKER_MAGIC: &[u8; 4] = b"SLCS";
const LOG_START_CHECKPOINT: &str = "log-start-offset";
const LOG_START_MAGIC: &[u8; 4] = b"SLLS";
const FORMAT_VERSION: u16 = 1;

/// Damage found in a sealed segment at open: reported, the log stays readable up to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptionReport {
    pub path: PathBuf,
    /// Byte position of the first bad batch in the segment file.
    pub position: u64,
    /// The offset expected at that position.
    pub offset: i64,
    pub reason: String,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn segment_name(base: i64, ext: &str) -> String {
    format!("{base:020}.{ext}")
}

struct Segment {
    base: i64,
    path: PathBuf,
    read: File,
    read_std: Arc<std::fs::File>,
    /// Only the active (last) segment has a write handle.
    write: Option<File>,
    /// Valid bytes (may be less than the file length for a damaged sealed segment).
    size: u64,
    /// Offset after the last batch (== base when empty).
    next_offset: i64,
    index: OffsetIndex,
    time_index: TimeIndex,
    bytes_since_index: u64,
    max_ts: i64,
    max_ts_offset: i64,
    /// Wall-clock time of the first append (segment.ms), or first batch timestamp after open.
    first_append_ms: Option<i64>,
    /// Wall-clock time of the last write (retention.ms fallback when batches carry no timestamps).
    modified_ms: i64,
}

impl Segment {
    fn rel(&self, offset: i64) -> u32 {
        debug_assert!(offset >= self.base && offset - self.base <= i64::from(u32::MAX));
        (offset - self.base) as u32
    }

    /// Accounts one batch written (or found) at `pos`, Kafka's way: index entry for the batch's
    /// last offset when more than `interval` bytes passed since the previous entry.
    fn on_batch(&mut self, h: &BatchHeader, pos: u64, interval: u32) {
        assert_eq!(pos, self.size, "batch not appended at the segment end");
        assert!(h.base_offset >= self.next_offset, "offsets not increasing");
        let last = h.last_offset();
        if h.max_timestamp > self.max_ts || self.max_ts_offset < 0 {
            self.max_ts = self.max_ts.max(h.max_timestamp);
            self.max_ts_offset = last;
        }
        if self.bytes_since_index > u64::from(interval) {
            let rel = self.rel(last);
            if self.index.entries.last().is_none_or(|&(r, _)| rel > r) {
                self.index.push(rel, pos as u32);
            }
            let ts_rel = self.rel(self.max_ts_offset);
            self.time_index.maybe_push(self.max_ts, ts_rel);
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += h.total_bytes();
        self.size = pos + h.total_bytes();
        self.next_offset = last + 1;
    }

    /// Final time-index entry when sealing/closing (Kafka appends max-so-far at roll).
    fn seal_time_index(&mut self) {
        if self.max_ts_offset >= self.base {
            let rel = self.rel(self.max_ts_offset);
            self.time_index.maybe_push(self.max_ts, rel);
        }
    }

    fn index_path(&self) -> PathBuf {
        self.path.with_extension("index")
    }
    fn time_index_path(&self) -> PathBuf {
        self.path.with_extension("timeindex")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    offset: i64,
    seg_base: i64,
    pos: u64,
}

/// Resolves a `wait_durable` caller: Ok(the group commit that covered it), Err if the log failed.
type DurableTx = oneshot::Sender<Result<Option<FlushTimes>, ()>>;

struct State {
    config: LogConfig,
    segs: Vec<Segment>,
    log_start: i64,
    leo: i64,
    written: Mark,
    hwm: i64,
    hwm_mark: Mark,
    /// Every offset < durable has been fsynced.
    durable: i64,
    /// Sealed segments' write handles with writes not yet fsynced.
    unsynced: Vec<(PathBuf, File)>,
    active_unsynced: bool,
    msgs_unflushed: u64,
    last_flush: Instant,
    offline: bool,
    closed: bool,
    producers: ProducerTable,
    durable_waiters: Vec<(i64, DurableTx)>,
    /// Appends written since the last group commit began (its batch size, for the recorder).
    appends_unflushed: u64,
    /// The last group commit's fdatasync (handed to the waiters it releases).
    last_flush_times: Option<FlushTimes>,
    hwm_waiters: Vec<oneshot::Sender<()>>,
    flusher_wake: Option<oneshot::Sender<()>>,
    corruption: Vec<CorruptionReport>,
    /// Replicated logs: the end of each entry above the high watermark, oldest first.
    entry_ends: VecDeque<Mark>,
}

enum FlushDue {
    Now,
    At(Instant),
    Never,
}

impl State {
    fn active(&self) -> &Segment {
        // Invariant: a log always has at least one segment (the active one).
        &self.segs[self.segs.len() - 1]
    }
    fn active_mut(&mut self) -> &mut Segment {
        let n = self.segs.len();
        &mut self.segs[n - 1]
    }

    /// The readable byte limit of a segment: all of it below the hwm segment, up to the hwm
    /// position inside it, nothing after it.
    fn read_limit(&self, seg: &Segment) -> Option<u64> {
        if seg.base < self.hwm_mark.seg_base {
            Some(seg.size)
        } else if seg.base == self.hwm_mark.seg_base {
            Some(self.hwm_mark.pos.min(seg.size))
        } else {
            None
        }
    }

    fn durable_target(&self) -> i64 {
        if self.config.relaxed() {
            self.leo
        } else {
            self.durable
        }
    }

    fn set_hwm(&mut self, hwm: i64, mark: Mark) {
        if hwm > self.hwm {
            self.hwm = hwm;
            self.hwm_mark = mark;
            for tx in self.hwm_waiters.drain(..) {
                let _ = tx.send(());
            }
        }
    }

    fn wake_flusher(&mut self) {
        if let Some(tx) = self.flusher_wake.take() {
            let _ = tx.send(());
        }
    }

    fn flush_due(&self, now: Instant) -> FlushDue {
        if self.leo <= self.durable && self.unsynced.is_empty() {
            return FlushDue::Never;
        }
        if !self.config.relaxed() {
            return FlushDue::Now;
        }
        if let Some(n) = self.config.flush_messages {
            if self.msgs_unflushed >= n {
                return FlushDue::Now;
            }
        }
        match self.config.flush_ms {
            Some(ms) => {
                let at = self.last_flush + Duration::from_millis(ms);
                if now >= at {
                    FlushDue::Now
                } else {
                    FlushDue::At(at)
                }
            }
            None => FlushDue::Never,
        }
    }
}

/// How many of the oldest sealed segments retention (retention.ms / retention.bytes) would
/// delete now (never one reaching above the high watermark).
fn retention_count(st: &State, now_ms: i64) -> usize {
    let cfg = &st.config;
    let mut total: u64 = st.segs.iter().map(|s| s.size).sum();
    let mut n = 0;
    for s in &st.segs[..st.segs.len() - 1] {
        if s.next_offset > st.hwm {
            break;
        }
        let ts = if s.max_ts >= 0 {
            s.max_ts
        } else {
            s.modified_ms
        };
        let by_time = cfg.retention_ms >= 0 && now_ms - ts > cfg.retention_ms;
        let by_size =
            cfg.retention_bytes >= 0 && total - s.size >= cfg.retention_bytes as u64;
        if !(by_time || by_size) {
            break;
        }
        total -= s.size;
        n += 1;
    }
    n
}

fn fire_durable(st: &mut State) {
    let target = st.durable_target();
    let mut i = 0;
    while i < st.durable_waiters.len() {
        if st.durable_waiters[i].0 < target {
            let (_, tx) = st.durable_waiters.swap_remove(i);
            let _ = tx.send(Ok(st.last_flush_times));
        } else {
            i += 1;
        }
    }
}

struct Inner {
    fs: Fs,
    dir: PathBuf,
    state: RefCell<State>,
    append_lock: Mutex<()>,
}

/// When one group commit's fdatasyncs ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushTimes {
    pub started: Instant,
    pub ended: Instant,
}

/// One partition's log. Clone = another handle to the same log. !Send.
#[derive(Clone)]
pub struct PartitionLog {
    inner: Rc<Inner>,
}

fn io_err(path: &Path, e: io::Error) -> StorageError {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        StorageError::NoSpace {
            path: path.to_path_buf(),
        }
    } else {
        StorageError::Io {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

// ------------------------------------------------------------------------------------------
// Scanning

/// Reads batch headers with small positional reads (no CRC check): for reads and lookups.
struct HeaderScanner<'a> {
    fs: &'a Fs,
    file: &'a File,
    buf: Vec<u8>,
    buf_start: u64,
}

impl<'a> HeaderScanner<'a> {
    fn new(fs: &'a Fs, file: &'a File) -> Self {
        HeaderScanner {
            fs,
            file,
            buf: Vec::new(),
            buf_start: 0,
        }
    }
    /// The header at `pos`; caller guarantees `pos + HEADER_BYTES <= limit` of valid data.
    async fn header_at(&mut self, pos: u64, path: &Path) -> Result<BatchHeader, StorageError> {
        let have = pos >= self.buf_start
            && pos + HEADER_BYTES as u64 <= self.buf_start + self.buf.len() as u64;
        if !have {
            self.buf = self
                .fs
                .read_at(self.file, HEADER_SCAN_READ_BYTES, pos)
                .await
                .map_err(|e| StorageError::Io {
                    path: path.to_path_buf(),
                    source: e,
                })?;
            self.buf_start = pos;
        }
        let at = (pos - self.buf_start) as usize;
        let h = BatchHeader::parse(&self.buf[at..]).ok_or_else(|| StorageError::Corrupt {
            path: path.to_path_buf(),
            offset: pos,
            reason: "short read of a batch header".into(),
        })?;
        if h.batch_length < (HEADER_BYTES - batch::LOG_OVERHEAD_BYTES) as i32 {
            return Err(StorageError::Corrupt {
                path: path.to_path_buf(),
                offset: pos,
                reason: format!("batchLength {}", h.batch_length),
            });
        }
        Ok(h)
    }
}

/// Outcome of validating a segment from some position to its end.
struct ScanEnd {
    /// Position and reason of the first bad batch, if any.
    damage: Option<(u64, String)>,
}

/// Validates every batch (shape, CRC, increasing offsets) of `seg` from `seg.size` to
/// `file_len`, accounting each into the segment and calling `each`.
async fn validate_scan(
    fs: &Fs,
    seg: &mut Segment,
    file_len: u64,
    interval: u32,
    mut each: impl FnMut(&BatchHeader),
) -> Result<ScanEnd, StorageError> {
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_start = seg.size;
    loop {
        let pos = seg.size;
        if pos >= file_len {
            return Ok(ScanEnd { damage: None });
        }
        let avail = file_len - pos;
        if avail < HEADER_BYTES as u64 {
            return Ok(ScanEnd {
                damage: Some((
                    pos,
                    format!("{avail} trailing bytes, shorter than a header"),
                )),
            });
        }
        let buf_end = buf_start + buf.len() as u64;
        if pos < buf_start || pos + HEADER_BYTES as u64 > buf_end {
            buf = fs
                .read_at(&seg.read, RECOVERY_READ_BYTES, pos)
                .await
                .map_err(|e| io_err(&seg.path, e))?;
            buf_start = pos;
        }
        let at = (pos - buf_start) as usize;
        let Some(h) = BatchHeader::parse(&buf[at..]) else {
            return Ok(ScanEnd {
                damage: Some((pos, "short read".into())),
            });
        };
        if let Err(e) = h.check_shape(avail, BATCH_BYTES_MAX) {
            return Ok(ScanEnd {
                damage: Some((pos, e)),
            });
        }
        let total = h.total_bytes();
        if pos + total > buf_start + buf.len() as u64 {
            let len = (RECOVERY_READ_BYTES as u64).max(total) as usize;
            buf = fs
                .read_at(&seg.read, len, pos)
                .await
                .map_err(|e| io_err(&seg.path, e))?;
            buf_start = pos;
        }
        let at = (pos - buf_start) as usize;
        let Some(bytes) = buf.get(at..at + total as usize) else {
            return Ok(ScanEnd {
                damage: Some((pos, "short read".into())),
            });
        };
        if let Err(e) = batch::validate(bytes, BATCH_BYTES_MAX) {
            return Ok(ScanEnd {
                damage: Some((pos, e)),
            });
        }
        if h.base_offset < seg.next_offset || h.last_offset() - seg.base > i64::from(i32::MAX) {
            return Ok(ScanEnd {
                damage: Some((
                    pos,
                    format!(
                        "offset {} where >= {} expected",
                        h.base_offset, seg.next_offset
                    ),
                )),
            });
        }
        seg.on_batch(&h, pos, interval);
        each(&h);
    }
}

/// True if the batch at `pos` claims a plausible length and a whole, CRC-valid batch starts
/// right after it: then the damage at `pos` is mid-log corruption, not a torn tail.
async fn valid_batch_follows(fs: &Fs, file: &File, pos: u64, file_len: u64) -> bool {
    let Ok(b) = fs.read_at(file, HEADER_BYTES, pos).await else {
        return false;
    };
    let Some(h) = BatchHeader::parse(&b) else {
        return false;
    };
    if h.batch_length < (HEADER_BYTES - batch::LOG_OVERHEAD_BYTES) as i32
        || h.total_bytes() > u64::from(BATCH_BYTES_MAX)
    {
        return false;
    }
    let next = pos + h.total_bytes();
    if next + HEADER_BYTES as u64 > file_len {
        return false;
    }
    let Ok(nb) = fs.read_at(file, HEADER_BYTES, next).await else {
        return false;
    };
    let Some(nh) = BatchHeader::parse(&nb) else {
        return false;
    };
    if nh.check_shape(file_len - next, BATCH_BYTES_MAX).is_err() {
        return false;
    }
    match fs.read_at(file, nh.total_bytes() as usize, next).await {
        Ok(whole) => batch::validate(&whole, BATCH_BYTES_MAX).is_ok(),
        Err(_) => false,
    }
}

async fn open_segment_files(
    fs: &Fs,
    path: &Path,
    writable: bool,
    create: bool,
) -> Result<(File, Arc<std::fs::File>, Option<File>), StorageError> {
    let write = if writable {
        Some(
            fs.open_write(path, create)
                .await
                .map_err(|e| io_err(path, e))?,
        )
    } else {
        None
    };
    let read = fs.open_read(path).await.map_err(|e| io_err(path, e))?;
    let read_std = Arc::new(fs.std_handle(&read).map_err(|e| io_err(path, e))?);
    Ok((read, read_std, write))
}

fn empty_segment(
    base: i64,
    path: PathBuf,
    read: File,
    read_std: Arc<std::fs::File>,
    write: Option<File>,
) -> Segment {
    Segment {
        base,
        path,
        read,
        read_std,
        write,
        size: 0,
        next_offset: base,
        index: OffsetIndex::default(),
        time_index: TimeIndex::default(),
        bytes_since_index: 0,
        max_ts: -1,
        max_ts_offset: -1,
        first_append_ms: None,
        modified_ms: now_ms(),
    }
}

/// Loads a segment's index files if present and sane, positioning `seg` at the last indexed batch.
async fn load_indexes(fs: &Fs, seg: &mut Segment, file_len: u64) -> Result<(), String> {
    // At most one entry per batch, and a batch is at least a header long.
    let entries_max = file_len / HEADER_BYTES as u64 + 1;
    let ib = fs
        .read_small(&seg.index_path(), entries_max * INDEX_ENTRY_BYTES as u64)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("missing")?;
    let tb = fs
        .read_small(
            &seg.time_index_path(),
            entries_max * TIME_INDEX_ENTRY_BYTES as u64,
        )
        .await
        .map_err(|e| e.to_string())?
        .ok_or("missing")?;
    let index = OffsetIndex::decode(&ib, file_len)?;
    let time_index = TimeIndex::decode(&tb, u32::MAX)?;
    if let Some(&(rel, pos)) = index.entries.last() {
        // The last entry must point at a batch whose last offset is that entry's offset.
        let mut sc = HeaderScanner::new(fs, &seg.read);
        if u64::from(pos) + HEADER_BYTES as u64 > file_len {
            return Err(format!("last entry position {pos} beyond file"));
        }
        let h = sc
            .header_at(u64::from(pos), &seg.path)
            .await
            .map_err(|e| e.to_string())?;
        if h.last_offset() != seg.base + i64::from(rel) {
            return Err(format!(
                "last entry ({rel}, {pos}) points at a batch ending at {}",
                h.last_offset()
            ));
        }
        seg.size = u64::from(pos);
        seg.next_offset = h.base_offset;
        seg.bytes_since_index = 0;
    }
    if let Some(&(ts, rel)) = time_index.entries.last() {
        seg.max_ts = ts;
        seg.max_ts_offset = seg.base + i64::from(rel);
    }
    seg.index = index;
    seg.time_index = time_index;
    Ok(())
}

async fn write_file(fs: &Fs, path: &Path, bytes: Vec<u8>) -> Result<(), StorageError> {
    let f = fs
        .open_write(path, true)
        .await
        .map_err(|e| io_err(path, e))?;
    if !bytes.is_empty() {
        fs.write_all_at(&f, bytes, 0)
            .await
            .map_err(|e| io_err(path, e))?;
    }
    fs.sync_data(&f).await.map_err(|e| io_err(path, e))
}

fn encode_small(magic: &[u8; 4], v: i64) -> Vec<u8> {
    let mut b = Vec::with_capacity(18);
    b.extend_from_slice(magic);
    b.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    b.extend_from_slice(&v.to_be_bytes());
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_be_bytes());
    b
}

fn decode_small(magic: &[u8; 4], b: &[u8]) -> Option<i64> {
    if b.len() != 18 || &b[..4] != magic || b[4..6] != FORMAT_VERSION.to_be_bytes() {
        return None;
    }
    let crc = u32::from_be_bytes([b[14], b[15], b[16], b[17]]);
    if crc32c::crc32c(&b[..14]) != crc {
        return None;
    }
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[6..14]);
    Some(i64::from_be_bytes(v))
}

fn parse_base(p: &Path, ext: &str) -> Option<i64> {
    if p.extension()?.to_str()? != ext {
        return None;
    }
    let stem = p.file_stem()?.to_str()?;
    if stem.len() != 20 || !stem.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

// ------------------------------------------------------------------------------------------

impl PartitionLog {
    /// Opens or creates `dir`, running recovery:
    /// - clean-shutdown marker present (it is deleted first): indexes are trusted (sanity-checked,
    ///   rebuilt if missing or corrupt), each segment is scanned only from its last index entry, and
    ///   producer state comes from the snapshot;
    /// - otherwise every batch of every segment is validated (CRC), indexes and producer state are
    ///   rebuilt, a torn/corrupt tail of the last segment is truncated (reported as corruption
    ///   too when valid batches follow the bad one), and damage in a sealed
    ///   segment is reported (tracing::error + [`PartitionLog::corruption_reports`]); the log stays
    ///   readable up to the damage and reads continue at the next segment.
    pub async fn open(
        fs: Fs,
        dir: PathBuf,
        config: LogConfig,
    ) -> Result<PartitionLog, StorageError> {
        fs.create_dir_all(&dir).await.map_err(|e| io_err(&dir, e))?;
        let names = fs.list_dir(&dir).await.map_err(|e| io_err(&dir, e))?;
        let mut bases: Vec<i64> = names.iter().filter_map(|p| parse_base(p, "log")).collect();
        bases.sort_unstable();
        let snapshots: Vec<(i64, PathBuf)> = names
            .iter()
            .filter_map(|p| parse_base(p, "snapshot").map(|o| (o, p.clone())))
            .collect();
        for p in &names {
            if p.extension().is_some_and(|e| e == "tmp") {
                fs.remove_file_if_exists(p)
                    .await
                    .map_err(|e| io_err(p, e))?;
            }
        }

        let marker_path = dir.join(CLEAN_MARKER);
        let marker = fs
            .read_small(&marker_path, 64)
            .await
            .map_err(|e| io_err(&marker_path, e))?
            .and_then(|b| decode_small(CLEAN_MARKER_MAGIC, &b));
        let had_marker_file = names
            .iter()
            .any(|p| p.file_name().is_some_and(|n| n == CLEAN_MARKER));
        if had_marker_file {
            // Deleted (durably) before anything else: a crash from here on is an unclean stop.
            fs.remove_file(&marker_path)
                .await
                .map_err(|e| io_err(&marker_path, e))?;
            fs.sync_dir(&dir).await.map_err(|e| io_err(&dir, e))?;
        }
        let ckpt_path = dir.join(LOG_START_CHECKPOINT);
        let ckpt = fs
            .read_small(&ckpt_path, 64)
            .await
            .map_err(|e| io_err(&ckpt_path, e))?
            .and_then(|b| decode_small(LOG_START_MAGIC, &b));

        let mut producers = None;
        if let Some(marker_leo) = marker {
            if let Some((_, p)) = snapshots.iter().find(|(o, _)| *o == marker_leo) {
                let b = fs
                    .read_small(p, PRODUCER_SNAPSHOT_BYTES_MAX)
                    .await
                    .map_err(|e| io_err(p, e))?;
                producers = b.and_then(|b| ProducerTable::decode_snapshot(&b));
            }
        }
        // Without a trustworthy snapshot every batch is scanned anyway (to rebuild producer
        // state), so indexes are rebuilt from that same scan.
        let clean = marker.is_some() && producers.is_some();
        if marker.is_some() && !clean {
            tracing::warn!(dir = %dir.display(), "clean-shutdown marker without a usable producer snapshot: full recovery");
        }
        if !clean && !bases.is_empty() {
            tracing::info!(dir = %dir.display(), segments = bases.len(), "unclean shutdown: validating every batch");
            // Empty segments at the end were made by a roll whose appends never reached the
            // disk; the segment before them may then end in a torn tail of unsynced writes
            // (lost by a power cut). Removing them makes that segment the active one again, so
            // its torn tail is truncated like any active segment's, instead of being reported
            // as mid-log damage with a gap of unreadable offsets below the high watermark.
            // (Found by the storage simulation, tests/it/sim.rs.)
            let mut removed = false;
            while bases.len() > 1 {
                let Some(&base) = bases.last() else { break };
                let path = dir.join(segment_name(base, "log"));
                let f = fs.open_read(&path).await.map_err(|e| io_err(&path, e))?;
                let len = fs.file_len(&f).await.map_err(|e| io_err(&path, e))?;
                drop(f);
                if len > 0 {
                    break;
                }
                tracing::info!(path = %path.display(), "removing an empty segment left by a roll before the crash");
                for ext in ["log", "index", "timeindex"] {
                    let p = dir.join(segment_name(base, ext));
                    fs.remove_file_if_exists(&p)
                        .await
                        .map_err(|e| io_err(&p, e))?;
                }
                bases.pop();
                removed = true;
            }
            if removed {
                fs.sync_dir(&dir).await.map_err(|e| io_err(&dir, e))?;
            }
        }
        let mut table = producers.unwrap_or_default();
        let interval = config.index_interval_bytes;
        let mut segs: Vec<Segment> = Vec::with_capacity(bases.len().max(1));
        let mut corruption = Vec::new();
        for (i, &base) in bases.iter().enumerate() {
            let last = i + 1 == bases.len();
            let path = dir.join(segment_name(base, "log"));
            let (read, read_std, write) = open_segment_files(&fs, &path, last, false).await?;
            let file_len = fs.file_len(&read).await.map_err(|e| io_err(&path, e))?;
            let mut seg = empty_segment(base, path.clone(), read, read_std, write);
            seg.modified_ms = fs.mtime_ms(&path).await.unwrap_or_else(|_| now_ms());
            let old_index = if clean {
                match load_indexes(&fs, &mut seg, file_len).await {
                    Ok(()) => None,
                    Err(reason) => {
                        tracing::warn!(path = %seg.index_path().display(), %reason, "rebuilding index");
                        seg = empty_segment(base, path.clone(), seg.read, seg.read_std, seg.write);
                        Some(Vec::new())
                    }
                }
            } else {
                let bound = (file_len / HEADER_BYTES as u64 + 1) * TIME_INDEX_ENTRY_BYTES as u64;
                let ib = fs
                    .read_small(&seg.index_path(), bound)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                let tb = fs
                    .read_small(&seg.time_index_path(), bound)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                Some([ib, tb].concat())
            };
            let end = validate_scan(&fs, &mut seg, file_len, interval, |h| {
                if !clean {
                    table.replay(h)
                }
            })
            .await?;
            if let Some((pos, reason)) = end.damage {
                if last {
                    if valid_batch_follows(&fs, &seg.read, pos, file_len).await {
                        // Not a torn tail: good data follows the bad batch. The log must end
                        // somewhere consistent, so it is still truncated, but loudly.
                        tracing::error!(path = %path.display(), position = pos, offset = seg.next_offset,
                            bytes_dropped = file_len - pos, %reason,
                            "corrupt batch followed by valid data in the active segment; truncating here");
                        corruption.push(CorruptionReport {
                            path: path.clone(),
                            position: pos,
                            offset: seg.next_offset,
                            reason: reason.clone(),
                        });
                    } else {
                        tracing::warn!(path = %path.display(), position = pos, offset = seg.next_offset,
                            bytes_dropped = file_len - pos, %reason, "truncating torn or corrupt tail of the active segment");
                    }
                    if let Some(w) = &seg.write {
                        fs.set_len(w, pos).await.map_err(|e| io_err(&path, e))?;
                        fs.sync_data(w).await.map_err(|e| io_err(&path, e))?;
                    }
                } else {
                    tracing::error!(path = %path.display(), position = pos, offset = seg.next_offset, %reason,
                        "corrupt batch in a sealed segment; readable up to here, reads continue at the next segment");
                    corruption.push(CorruptionReport {
                        path: path.clone(),
                        position: pos,
                        offset: seg.next_offset,
                        reason,
                    });
                }
            }
            if !last {
                seg.seal_time_index();
            }
            if let Some(old) = old_index {
                let (ib, tb) = (seg.index.encode(), seg.time_index.encode());
                if !last && old != [ib.clone(), tb.clone()].concat() {
                    tracing::info!(path = %seg.index_path().display(), "writing rebuilt index files");
                    write_file(&fs, &seg.index_path(), ib).await?;
                    write_file(&fs, &seg.time_index_path(), tb).await?;
                }
            }
            if last && seg.size > 0 {
                // segment.ms counts from the first append in this process (a restart resets it).
                seg.first_append_ms = Some(now_ms());
            }
            segs.push(seg);
        }

        let mut log_start = segs.first().map_or(0, |s| s.base);
        if let Some(c) = ckpt {
            log_start = log_start.max(c);
        }
        if segs.is_empty() {
            let path = dir.join(segment_name(log_start, "log"));
            let (read, read_std, write) = open_segment_files(&fs, &path, true, true).await?;
            segs.push(empty_segment(log_start, path, read, read_std, write));
            fs.sync_dir(&dir).await.map_err(|e| io_err(&dir, e))?;
        }
        let Some(active) = segs.last() else {
            return Err(StorageError::Corrupt {
                path: dir,
                offset: 0,
                reason: "no segment".into(),
            });
        };
        let leo = active.next_offset;
        log_start = log_start.min(leo);
        if let Some(m) = marker {
            if m != leo {
                tracing::warn!(dir = %dir.display(), marker = m, found = leo, "clean-shutdown marker disagrees with the log end");
            }
        }
        if !clean {
            // Whatever survived is made durable before it becomes visible.
            if let Some(w) = &active.write {
                fs.sync_data(w).await.map_err(|e| io_err(&active.path, e))?;
            }
        }
        let mark = Mark {
            offset: leo,
            seg_base: active.base,
            pos: active.size,
        };
        for (_, p) in &snapshots {
            fs.remove_file_if_exists(p)
                .await
                .map_err(|e| io_err(p, e))?;
        }
        let state = State {
            config,
            segs,
            log_start,
            leo,
            written: mark,
            hwm: leo,
            hwm_mark: mark,
            durable: leo,
            unsynced: Vec::new(),
            active_unsynced: false,
            msgs_unflushed: 0,
            last_flush: Instant::now(),
            offline: false,
            closed: false,
            producers: table,
            durable_waiters: Vec::new(),
            appends_unflushed: 0,
            last_flush_times: None,
            hwm_waiters: Vec::new(),
            flusher_wake: None,
            corruption,
            entry_ends: VecDeque::new(),
        };
        let inner = Rc::new(Inner {
            fs,
            dir,
            state: RefCell::new(state),
            append_lock: Mutex::new(()),
        });
        compio::runtime::spawn(flusher(Rc::downgrade(&inner))).detach();
        Ok(PartitionLog { inner })
    }

    fn check_open(&self) -> Result<(), StorageError> {
        let st = self.inner.state.borrow();
        if st.offline || st.closed {
            return Err(StorageError::Offline {
                path: self.inner.dir.clone(),
            });
        }
        Ok(())
    }

    /// Takes the log offline after a failed write/fsync (never retried) and returns the error.
    fn fail(&self, path: &Path, e: io::Error) -> StorageError {
        tracing::error!(path = %path.display(), error = %e, "storage write or fsync failed: partition offline, not retried");
        let mut st = self.inner.state.borrow_mut();
        st.offline = true;
        for (_, tx) in st.durable_waiters.drain(..) {
            let _ = tx.send(Err(()));
        }
        for tx in st.hwm_waiters.drain(..) {
            let _ = tx.send(());
        }
        st.wake_flusher();
        io_err(path, e)
    }

    /// Appends one or more RecordBatch v2 (see the API contract). Resolves once written to the
    /// kernel (acks=1 point); use [`PartitionLog::wait_durable`] for acks=all.
    pub async fn append(
        &self,
        records: Bytes,
        leader_epoch: i32,
    ) -> Result<AppendInfo, StorageError> {
        if records.len() > APPEND_BYTES_MAX {
            return Err(StorageError::RecordTooLarge {
                size: records.len(),
                max: APPEND_BYTES_MAX,
            });
        }
        let _guard = self.inner.append_lock.lock().await;
        self.check_open()?;
        let headers = self.validate(&records)?;
        let staged = match self.check_producers(&headers) {
            Ok(staged) => staged,
            Err(Ok(duplicate)) => return Ok(duplicate),
            Err(Err(e)) => return Err(e),
        };
        self.write_locked(records, headers, staged, leader_epoch)
            .await
    }

    /// Cluster mode, the leader, before it proposes a producer batch: the batch is validated
    /// (size, CRC, one batch) and checked against the producer table as it will be when every
    /// batch proposed before it with the same `check` is written. Only the leader decides:
    /// followers write every entry as it comes ([`PartitionLog::append_entry`]), so their
    /// producer tables (which a snapshot or retention can leave different from the leader's)
    /// never change what the log holds.
    pub fn check_proposal(&self, data: &Bytes, check: &mut ProposalCheck) -> ProposalVerdict {
        let headers = match self.validate(data) {
            Ok(h) if h.len() == 1 => h,
            Ok(_) => return ProposalVerdict::Refused(StorageError::CorruptRecord("a replicated entry holds one batch".into())),
            Err(e) => return ProposalVerdict::Refused(e),
        };
        let st = self.inner.state.borrow();
        let h = &headers[0].1;
        let undo = Undo {
            next: check.next,
            producer: h.is_idempotent().then(|| (h.producer_id, check.staged.get(&h.producer_id).cloned())),
        };
        match stage_producers(&st, &mut check.staged, &mut check.next, &headers) {
            Ok(()) => {
                check.last = Some(undo);
                ProposalVerdict::Accept
            }
            // Proposed moments ago, not written yet: the producer's retry of it retries.
            Err(Ok(d)) if d.base_offset >= check.first => ProposalVerdict::InFlight,
            Err(Ok(d)) => ProposalVerdict::Duplicate(d),
            Err(Err(e)) => ProposalVerdict::Refused(e),
        }
    }

    /// Appends one Raft entry (cluster mode) with the Raft term as its leader epoch, at the
    /// log end, as the leader proposed it: `data` is one producer batch (the leader checked it
    /// with [`PartitionLog::check_proposal`]; it is written whatever this replica's producer
    /// table says, and the table learns from it), or empty for an entry without data (written
    /// as a control batch). A batch that fails validation (corrupt: the same verdict on every
    /// replica, as the bytes are the same) is replaced by a control batch, so the entry still
    /// occupies exactly one batch. Err only when nothing was written.
    pub async fn append_entry(&self, data: Bytes, term: i32) -> Result<EntryAppend, StorageError> {
        let _guard = self.inner.append_lock.lock().await;
        self.check_open()?;
        let mut outcome = None;
        let mut accepted = None;
        if !data.is_empty() {
            // No size limit here: the leader applied it, and a topic's max.message.bytes can
            // change on one replica before another.
            match batch::validate_all(&data, u32::MAX).map_err(StorageError::from) {
                Ok(h) if h.len() == 1 => {
                    let st = self.inner.state.borrow();
                    let mut staged = HashMap::new();
                    st.producers.stage(&mut staged, &h[0].1, st.leo);
                    drop(st);
                    accepted = Some((data.clone(), h, staged));
                }
                Ok(_) => {
                    outcome = Some(Err(StorageError::CorruptRecord(
                        "a replicated entry holds one batch".into(),
                    )))
                }
                Err(e) => outcome = Some(Err(e)),
            }
        }
        let (records, headers, staged) = match accepted {
            Some(a) => a,
            None => {
                // Timestamp 0, so the control batch is byte-identical on every replica.
                let b = batch::control_batch(0, batch::CONTROL_TYPE_LEADER_CHANGE);
                let h = self.validate(&b)?;
                (b, h, HashMap::new())
            }
        };
        let info = self.write_locked(records, headers, staged, term).await?;
        let next_offset = info.last_offset + 1;
        let outcome = match outcome {
            None if data.is_empty() => {
                Err(StorageError::CorruptRecord("entry without data".into()))
            }
            None => Ok(info),
            Some(Ok(dup)) => Ok(dup),
            Some(Err(e)) => Err(e),
        };
        Ok(EntryAppend {
            base_offset: info.base_offset,
            next_offset,
            outcome,
        })
    }

    fn validate(&self, records: &Bytes) -> Result<Vec<(usize, BatchHeader)>, StorageError> {
        let max = self.inner.state.borrow().config.message_max_bytes;
        batch::validate_all(records, max).map_err(StorageError::from)
    }

    /// Starts the leader's checks of the batches it is about to propose ([`Self::check_proposal`]).
    pub fn proposal_check(&self) -> ProposalCheck {
        let leo = self.inner.state.borrow().leo;
        ProposalCheck { staged: HashMap::new(), next: leo, first: leo, last: None }
    }

    /// The producer table's verdict on `headers`: the staged changes to commit with the write,
    /// or Err(Ok(original offsets)) for an idempotent duplicate, or Err(Err(refusal)).
    #[allow(clippy::type_complexity)]
    fn check_producers(
        &self,
        headers: &[(usize, BatchHeader)],
    ) -> Result<HashMap<i64, ProducerEntry>, Result<AppendInfo, StorageError>> {
        let st = self.inner.state.borrow();
        let mut staged = HashMap::new();
        let mut next = st.leo;
        stage_producers(&st, &mut staged, &mut next, headers)?;
        Ok(staged)
    }

    /// Writes validated batches at the log end (append lock held, producer checks done).
    async fn write_locked(
        &self,
        records: Bytes,
        headers: Vec<(usize, BatchHeader)>,
        staged: HashMap<i64, ProducerEntry>,
        leader_epoch: i32,
    ) -> Result<AppendInfo, StorageError> {
        let records_count: i64 = headers.iter().map(|(_, h)| i64::from(h.record_count)).sum();
        let total = records.len() as u64;
        let now = now_ms();
        let roll_at = {
            let st = self.inner.state.borrow();
            let a = st.active();
            let full = a.size + total > st.config.segment_bytes_clamped();
            let old = a
                .first_append_ms
                .is_some_and(|t| now - t >= st.config.segment_ms);
            let rel_overflow = st.leo + records_count - 1 - a.base > i64::from(i32::MAX);
            (a.size > 0 && (full || old || rel_overflow)).then_some(st.leo)
        };
        if let Some(base) = roll_at {
            self.roll(base).await?;
        }
        let mut buf = records.to_vec();
        let (file, pos, path, base_offset) = {
            let st = self.inner.state.borrow();
            let mut next = st.leo;
            for (p, h) in &headers {
                batch::set_offset_and_epoch(&mut buf[*p..], next, leader_epoch);
                next += i64::from(h.last_offset_delta) + 1;
            }
            let a = st.active();
            let Some(w) = a.write.clone() else {
                return Err(StorageError::Offline {
                    path: a.path.clone(),
                });
            };
            (w, a.size, a.path.clone(), st.leo)
        };
        if let Err(e) = self.inner.fs.write_all_at(&file, buf, pos).await {
            // ENOSPC on the data write: nothing of this append was acknowledged, and nothing
            // before `pos` was touched. If the torn bytes can be cut off again, the log stays
            // online and refuses only this append (Redpanda's behaviour: writes resume once
            // space is freed). Any other write error, a failed truncate, and every failed
            // fsync stay fatal (fsyncgate: never retried).
            if e.raw_os_error() == Some(libc::ENOSPC) {
                match self.inner.fs.set_len(&file, pos).await {
                    Ok(()) => {
                        tracing::warn!(path = %path.display(), position = pos,
                            "no space left on device: append refused, torn bytes cut off, log stays online");
                        return Err(io_err(&path, e));
                    }
                    Err(te) => {
                        tracing::error!(path = %path.display(), error = %te,
                            "could not cut off the torn bytes of a failed append");
                    }
                }
            }
            return Err(self.fail(&path, e));
        }
        let mut st = self.inner.state.borrow_mut();
        let interval = st.config.index_interval_bytes;
        let mut max_ts = -1;
        let mut next = base_offset;
        {
            let a = st.active_mut();
            for (p, h) in &headers {
                let mut h = *h;
                h.base_offset = next;
                a.on_batch(&h, pos + *p as u64, interval);
                max_ts = max_ts.max(h.max_timestamp);
                next = h.last_offset() + 1;
            }
            a.first_append_ms.get_or_insert(now);
            a.modified_ms = now;
            assert_eq!(a.size, pos + total);
        }
        st.producers.commit(staged);
        st.leo = next;
        let a = st.active();
        st.written = Mark {
            offset: next,
            seg_base: a.base,
            pos: a.size,
        };
        st.active_unsynced = true;
        st.msgs_unflushed += records_count as u64;
        st.appends_unflushed += 1;
        if st.config.replicated {
            let w = st.written;
            st.entry_ends.push_back(w);
        } else if st.config.relaxed() {
            let w = st.written;
            st.set_hwm(next, w);
            fire_durable(&mut st);
        }
        st.wake_flusher();
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            max_timestamp: max_ts,
            log_start_offset: st.log_start,
            duplicate: false,
        })
    }

    /// Seals the active segment (its data and index files fsynced) and starts one at `base`.
    ///
    /// The sealed segment is fdatasynced here, before the new segment exists, and not left to
    /// the flusher: otherwise a power cut could keep writes to the new segment while losing the
    /// sealed one's unsynced tail (the disk orders nothing across files). Recovery would then
    /// see mid-log damage in a sealed segment and, after a gap of missing offsets, batches that
    /// were never acknowledged served as valid (found by tests/it/sim.rs's power-cut model).
    /// Unconditional: a group commit covering it may still be in flight.
    async fn roll(&self, base: i64) -> Result<(), StorageError> {
        let fs = self.inner.fs.clone();
        let (ib, tb, ipath, tpath, sealed) = {
            let mut st = self.inner.state.borrow_mut();
            let a = st.active_mut();
            assert!(
                base >= a.next_offset,
                "roll base below the active segment's end"
            );
            a.seal_time_index();
            let w = a.write.take();
            let path = a.path.clone();
            (
                a.index.encode(),
                a.time_index.encode(),
                a.index_path(),
                a.time_index_path(),
                w.map(|w| (path, w)),
            )
        };
        if let Some((path, w)) = &sealed {
            if let Err(e) = fs.sync_data(w).await {
                return Err(self.fail(path, e));
            }
        }
        if let Err(e) = write_file(&fs, &ipath, ib).await {
            return Err(self.fail_storage(e));
        }
        if let Err(e) = write_file(&fs, &tpath, tb).await {
            return Err(self.fail_storage(e));
        }
        let path = self.inner.dir.join(segment_name(base, "log"));
        let (read, read_std, write) = match open_segment_files(&fs, &path, true, true).await {
            Ok(x) => x,
            Err(e) => return Err(self.fail_storage(e)),
        };
        if let Err(e) = fs.sync_dir(&self.inner.dir).await {
            return Err(self.fail(&self.inner.dir, e));
        }
        let mut st = self.inner.state.borrow_mut();
        st.segs
            .push(empty_segment(base, path, read, read_std, write));
        Ok(())
    }

    fn fail_storage(&self, e: StorageError) -> StorageError {
        match e {
            StorageError::Io { path, source } => self.fail(&path, source),
            StorageError::NoSpace { path } => {
                self.fail(&path, io::Error::from_raw_os_error(libc::ENOSPC))
            }
            other => other,
        }
    }

    /// One group commit: fdatasync every file written since the previous one started.
    async fn flush_once(&self) {
        let (files, target, mark, msgs, appends) = {
            let mut st = self.inner.state.borrow_mut();
            let mut files = std::mem::take(&mut st.unsynced);
            if st.active_unsynced {
                let a = st.active();
                if let Some(w) = &a.write {
                    files.push((a.path.clone(), w.clone()));
                }
            }
            st.active_unsynced = false;
            let appends = std::mem::take(&mut st.appends_unflushed);
            (files, st.leo, st.written, st.msgs_unflushed, appends)
        };
        let started = Instant::now();
        for (path, f) in &files {
            if let Err(e) = self.inner.fs.sync_data(f).await {
                self.fail(path, e);
                return;
            }
        }
        let ended = Instant::now();
        if !files.is_empty() {
            crate::recorder::fsync_done(ended - started);
            crate::recorder::fsync_batch(appends);
        }
        let mut st = self.inner.state.borrow_mut();
        if st.offline {
            return;
        }
        if !files.is_empty() {
            st.last_flush_times = Some(FlushTimes { started, ended });
        }
        st.durable = st.durable.max(target);
        st.msgs_unflushed = st.msgs_unflushed.saturating_sub(msgs);
        st.last_flush = Instant::now();
        if !st.config.relaxed() && !st.config.replicated {
            st.set_hwm(target, mark);
        }
        fire_durable(&mut st);
    }

    /// Resolves once every offset <= `offset` is durable per the flush policy (group commit
    /// fsync; with flush.messages/flush.ms set: once written). Err(Offline) if the log fails.
    pub async fn wait_durable(&self, offset: i64) -> Result<(), StorageError> {
        self.wait_durable_timed(offset).await.map(|_| ())
    }

    /// [`Self::wait_durable`], also telling when the group commit that made `offset` durable
    /// ran (the last one when it was durable already; None when no fdatasync ran yet).
    pub async fn wait_durable_timed(&self, offset: i64) -> Result<Option<FlushTimes>, StorageError> {
        let rx = {
            let mut st = self.inner.state.borrow_mut();
            if st.offline {
                return Err(StorageError::Offline {
                    path: self.inner.dir.clone(),
                });
            }
            if offset < st.durable_target() {
                return Ok(st.last_flush_times);
            }
            if st.closed {
                return Err(StorageError::Offline {
                    path: self.inner.dir.clone(),
                });
            }
            let (tx, rx) = oneshot::channel();
            st.durable_waiters.push((offset, tx));
            rx
        };
        match rx.await {
            Ok(Ok(times)) => Ok(times),
            _ => Err(StorageError::Offline {
                path: self.inner.dir.clone(),
            }),
        }
    }

    pub fn log_start_offset(&self) -> i64 {
        self.inner.state.borrow().log_start
    }
    /// Next offset to assign.
    pub fn log_end_offset(&self) -> i64 {
        self.inner.state.borrow().leo
    }
    /// Durable end (or written end with flush.messages/flush.ms): what consumers may read.
    pub fn high_watermark(&self) -> i64 {
        self.inner.state.borrow().hwm
    }
    /// The idempotent producers this partition remembers (DescribeProducers): (producer id,
    /// epoch, last sequence, max timestamp of its last batch), by producer id.
    pub fn producers(&self) -> Vec<(i64, i16, i32, i64)> {
        let st = self.inner.state.borrow();
        let mut v: Vec<_> = st
            .producers
            .map
            .iter()
            .map(|(&id, e)| {
                let last = e.batches.back();
                (id, e.epoch, last.map_or(-1, |b| b.last_seq), last.map_or(-1, |b| b.max_timestamp))
            })
            .collect();
        v.sort_unstable();
        v
    }
    /// Every offset below this has been fdatasynced.
    pub fn durable_offset(&self) -> i64 {
        self.inner.state.borrow().durable
    }
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }
    /// Damage found in sealed segments at open.
    pub fn corruption_reports(&self) -> Vec<CorruptionReport> {
        self.inner.state.borrow().corruption.clone()
    }

    /// Whole batches from the batch containing `offset`, at most `max_bytes` (or the first batch
    /// alone if larger and `min_one`), never past the high watermark.
    pub async fn read(
        &self,
        offset: i64,
        max_bytes: u32,
        min_one: bool,
    ) -> Result<ReadSlice, StorageError> {
        self.check_open()?;
        let fs = self.inner.fs.clone();
        // Locate the segment and the index hint (sync).
        let (seg_base, file, std_file, path, mut pos, limit, hwm, start) = {
            let st = self.inner.state.borrow();
            let (hwm, start) = (st.hwm, st.log_start);
            if offset < start || offset > hwm {
                return Err(StorageError::OffsetOutOfRange {
                    offset,
                    start,
                    end: hwm,
                });
            }
            if offset == hwm {
                let s = st
                    .segs
                    .iter()
                    .find(|s| s.base == st.hwm_mark.seg_base)
                    .unwrap_or(st.active());
                let position = if s.base == st.hwm_mark.seg_base {
                    st.hwm_mark.pos
                } else {
                    s.size
                };
                return Ok(ReadSlice {
                    file: s.read_std.clone(),
                    position,
                    len: 0,
                    high_watermark: hwm,
                    log_start_offset: start,
                });
            }
            let mut i = st
                .segs
                .partition_point(|s| s.base <= offset)
                .saturating_sub(1);
            // Skip holes (empty or damaged sealed segments): continue at the next segment.
            while offset >= st.segs[i].next_offset && i + 1 < st.segs.len() {
                i += 1;
            }
            let s = &st.segs[i];
            let Some(limit) = st.read_limit(s) else {
                return Err(StorageError::OffsetOutOfRange {
                    offset,
                    start,
                    end: hwm,
                });
            };
            let pos = if offset >= s.base {
                s.index.lookup(s.rel(offset))
            } else {
                0
            };
            (
                s.base,
                s.read.clone(),
                s.read_std.clone(),
                s.path.clone(),
                u64::from(pos),
                limit,
                hwm,
                start,
            )
        };
        let empty = |position| ReadSlice {
            file: std_file.clone(),
            position,
            len: 0,
            high_watermark: hwm,
            log_start_offset: start,
        };
        let mut sc = HeaderScanner::new(&fs, &file);
        // Find the batch containing `offset`.
        let first = loop {
            if pos + HEADER_BYTES as u64 > limit {
                return Ok(empty(pos));
            }
            let h = sc.header_at(pos, &path).await?;
            if h.last_offset() >= offset {
                break h;
            }
            pos += h.total_bytes();
        };
        let first_len = first.total_bytes();
        if pos + first_len > limit {
            return Ok(empty(pos));
        }
        if first_len > u64::from(max_bytes) {
            let len = if min_one { first_len as u32 } else { 0 };
            return Ok(ReadSlice {
                file: std_file,
                position: pos,
                len,
                high_watermark: hwm,
                log_start_offset: start,
            });
        }
        let want_end = (pos + u64::from(max_bytes)).min(limit);
        let mut end = pos + first_len;
        // Jump over whole batches using the index, then scan the rest.
        {
            let st = self.inner.state.borrow();
            if let Some(s) = st.segs.iter().find(|s| s.base == seg_base) {
                if let Some(b) = s
                    .index
                    .boundary_at_or_before(want_end.min(u64::from(u32::MAX)) as u32)
                {
                    end = end.max(u64::from(b));
                }
            }
        }
        while end + HEADER_BYTES as u64 <= want_end {
            let h = sc.header_at(end, &path).await?;
            if end + h.total_bytes() > want_end {
                break;
            }
            end += h.total_bytes();
        }
        assert!(end - pos <= u64::from(max_bytes) && end <= limit);
        Ok(ReadSlice {
            file: std_file,
            position: pos,
            len: (end - pos) as u32,
            high_watermark: hwm,
            log_start_offset: start,
        })
    }

    /// First batch (below the hwm) whose max timestamp >= `ts`: (its base offset, or the log
    /// start if later, and that max timestamp). None if none.
    pub async fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, StorageError> {
        self.check_open()?;
        let fs = self.inner.fs.clone();
        let mut after_base = i64::MIN;
        loop {
            let (file, path, mut pos, limit, start) = {
                let st = self.inner.state.borrow();
                let Some(s) = st
                    .segs
                    .iter()
                    .find(|s| s.base > after_base && s.max_ts >= ts && s.size > 0)
                else {
                    return Ok(None);
                };
                let Some(limit) = st.read_limit(s) else {
                    return Ok(None);
                };
                after_base = s.base;
                let pos = s
                    .time_index
                    .start_for(ts)
                    .map_or(0, |rel| s.index.lookup(rel));
                (
                    s.read.clone(),
                    s.path.clone(),
                    u64::from(pos),
                    limit,
                    st.log_start,
                )
            };
            let mut sc = HeaderScanner::new(&fs, &file);
            while pos + HEADER_BYTES as u64 <= limit {
                let h = sc.header_at(pos, &path).await?;
                if pos + h.total_bytes() > limit {
                    break;
                }
                if h.max_timestamp >= ts && h.last_offset() >= start {
                    return Ok(Some((h.base_offset.max(start), h.max_timestamp)));
                }
                pos += h.total_bytes();
            }
        }
    }

    /// (max timestamp, offset) over the log: the offset is the last offset of the first batch
    /// carrying that timestamp (batch-level, like Kafka's shallow max-timestamp offset). (-1,-1) if empty.
    pub fn max_timestamp(&self) -> (i64, i64) {
        let st = self.inner.state.borrow();
        st.segs
            .iter()
            .filter(|s| s.max_ts_offset >= 0)
            .fold((-1, -1), |acc, s| {
                if s.max_ts > acc.0 {
                    (s.max_ts, s.max_ts_offset)
                } else {
                    acc
                }
            })
    }

    /// Resolves when the high watermark moves, or the log goes offline or closes.
    pub fn hwm_changed(&self) -> impl Future<Output = ()> + 'static {
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.inner.state.borrow_mut();
            if !(st.offline || st.closed) {
                if st.hwm_waiters.len() >= HWM_WAITERS_PRUNE_COUNT {
                    st.hwm_waiters.retain(|t| !t.is_canceled());
                }
                st.hwm_waiters.push(tx);
            }
            // else: tx dropped here, rx resolves at once.
        }
        async move {
            let _ = rx.await;
        }
    }

    /// DeleteRecords: moves the log start to `offset` (<= hwm; -1 = hwm) durably, deletes
    /// segments wholly below it (never the active one). Returns the new log start.
    pub async fn delete_records(&self, offset: i64) -> Result<i64, StorageError> {
        let _guard = self.inner.append_lock.lock().await;
        self.check_open()?;
        let (offset, start) = {
            let st = self.inner.state.borrow();
            let offset = if offset == -1 { st.hwm } else { offset };
            if offset < 0 || offset > st.hwm {
                return Err(StorageError::OffsetOutOfRange {
                    offset,
                    start: st.log_start,
                    end: st.hwm,
                });
            }
            (offset, st.log_start)
        };
        if offset <= start {
            return Ok(start);
        }
        let fs = &self.inner.fs;
        if let Err(e) = fs
            .write_small_durably(
                &self.inner.dir,
                LOG_START_CHECKPOINT,
                encode_small(LOG_START_MAGIC, offset),
            )
            .await
        {
            return Err(self.fail(&self.inner.dir.join(LOG_START_CHECKPOINT), e));
        }
        let n = {
            let mut st = self.inner.state.borrow_mut();
            st.log_start = offset;
            let last = st.segs.len() - 1;
            st.segs[..last]
                .iter()
                .take_while(|s| s.next_offset <= offset)
                .count()
        };
        self.delete_front(n).await?;
        Ok(offset)
    }

    /// Removes the `n` oldest segments (never the active one) and unlinks their files.
    async fn delete_front(&self, n: usize) -> Result<(), StorageError> {
        if n == 0 {
            return Ok(());
        }
        let removed: Vec<Segment> = {
            let mut st = self.inner.state.borrow_mut();
            assert!(n < st.segs.len(), "the active segment is never deleted");
            let removed: Vec<Segment> = st.segs.drain(..n).collect();
            st.log_start = st.log_start.max(st.segs[0].base);
            // Sealed segments being deleted may still have unsynced writes; drop those handles.
            let gone: Vec<PathBuf> = removed.iter().map(|s| s.path.clone()).collect();
            st.unsynced.retain(|(p, _)| !gone.contains(p));
            removed
        };
        let fs = &self.inner.fs;
        for s in removed {
            tracing::info!(path = %s.path.display(), base = s.base, "deleting segment");
            for p in [s.path.clone(), s.index_path(), s.time_index_path()] {
                fs.remove_file_if_exists(&p)
                    .await
                    .map_err(|e| StorageError::Io {
                        path: p.clone(),
                        source: e,
                    })?;
            }
            // Open read handles (ReadSlice) keep the unlinked file readable.
        }
        Ok(())
    }

    /// Applies segment.ms rolling and retention.ms / retention.bytes; call periodically.
    pub async fn housekeeping(&self, now_ms: i64) -> Result<(), StorageError> {
        let _guard = self.inner.append_lock.lock().await;
        self.check_open()?;
        let roll_at = {
            let st = self.inner.state.borrow();
            let a = st.active();
            (a.size > 0
                && a.first_append_ms
                    .is_some_and(|t| now_ms - t >= st.config.segment_ms))
            .then_some(st.leo)
        };
        if let Some(base) = roll_at {
            self.roll(base).await?;
        }
        let n = {
            let st = self.inner.state.borrow();
            if st.config.replicated {
                // A Raft log's prefix goes only through its replica (`retention_point`, then
                // `delete_records`), after the replica recorded the compaction point.
                return Ok(());
            }
            retention_count(&st, now_ms)
        };
        self.delete_front(n).await
    }

    /// Where the first segment kept by `delete_records(offset)` starts (segments entirely below
    /// `offset` are deleted; the active one never).
    pub fn first_segment_base_after(&self, offset: i64) -> i64 {
        let st = self.inner.state.borrow();
        let last = st.segs.len() - 1;
        let n = st.segs[..last].iter().take_while(|s| s.next_offset <= offset).count();
        st.segs[n].base
    }

    /// Replicated logs: where the log would start if retention (retention.ms, retention.bytes)
    /// deleted what it wants now: the base offset of the first segment to keep (a batch, so a
    /// Raft entry, boundary). None if nothing is due.
    pub fn retention_point(&self, now_ms: i64) -> Option<i64> {
        let st = self.inner.state.borrow();
        let n = retention_count(&st, now_ms);
        (n > 0).then(|| st.segs[n].base)
    }

    /// Replicated logs: replaces the whole log by an empty one starting at `offset` (a follower
    /// installing a Raft snapshot: the leader no longer has the entries it lacks). The log is
    /// closed, its segments, indexes and producer snapshots removed, the log start checkpoint
    /// set to `offset`, and opened again; the returned handle replaces this one.
    pub async fn reset_to(self, offset: i64) -> Result<PartitionLog, StorageError> {
        let (fs, dir, config) = (self.inner.fs.clone(), self.inner.dir.clone(), self.config());
        match self.close().await {
            Ok(()) | Err(StorageError::Offline { .. }) => {}
            Err(e) => return Err(e),
        }
        drop(self);
        let names = fs.list_dir(&dir).await.map_err(|e| io_err(&dir, e))?;
        for p in names {
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            let marker = p.file_name().is_some_and(|n| n == CLEAN_MARKER);
            if matches!(ext, "log" | "index" | "timeindex" | "snapshot") || marker {
                fs.remove_file_if_exists(&p).await.map_err(|e| io_err(&p, e))?;
            }
        }
        fs.write_small_durably(&dir, LOG_START_CHECKPOINT, encode_small(LOG_START_MAGIC, offset))
            .await
            .map_err(|e| io_err(&dir, e))?;
        fs.sync_dir(&dir).await.map_err(|e| io_err(&dir, e))?;
        tracing::info!(dir = %dir.display(), offset, "replicated log reset to start at a snapshot's offset");
        PartitionLog::open(fs, dir, config).await
    }

    pub fn set_config(&self, config: LogConfig) {
        let mut st = self.inner.state.borrow_mut();
        st.config = config;
        if st.config.relaxed() {
            let (leo, w) = (st.leo, st.written);
            st.set_hwm(leo, w);
        }
        fire_durable(&mut st);
        st.wake_flusher();
    }

    pub fn config(&self) -> LogConfig {
        self.inner.state.borrow().config.clone()
    }

    /// Valid bytes in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.inner.state.borrow().segs.iter().map(|s| s.size).sum()
    }
    pub fn segment_count(&self) -> usize {
        self.inner.state.borrow().segs.len()
    }
    pub fn is_offline(&self) -> bool {
        self.inner.state.borrow().offline
    }

    /// Flush + fsync + index files + producer snapshot + clean-shutdown marker. Later calls
    /// return Offline; closing twice is Ok.
    pub async fn close(&self) -> Result<(), StorageError> {
        let _guard = self.inner.append_lock.lock().await;
        {
            let st = self.inner.state.borrow();
            if st.closed {
                return Ok(());
            }
            if st.offline {
                return Err(StorageError::Offline {
                    path: self.inner.dir.clone(),
                });
            }
        }
        let fs = self.inner.fs.clone();
        let (files, ib, tb, ipath, tpath, leo, snap) = {
            let mut st = self.inner.state.borrow_mut();
            let mut files = std::mem::take(&mut st.unsynced);
            let a = st.active_mut();
            a.seal_time_index();
            if let Some(w) = &a.write {
                files.push((a.path.clone(), w.clone()));
            }
            let r = (
                a.index.encode(),
                a.time_index.encode(),
                a.index_path(),
                a.time_index_path(),
            );
            (
                files,
                r.0,
                r.1,
                r.2,
                r.3,
                st.leo,
                st.producers.encode_snapshot(),
            )
        };
        for (path, f) in &files {
            if let Err(e) = fs.sync_data(f).await {
                return Err(self.fail(path, e));
            }
        }
        for (p, b) in [(ipath, ib), (tpath, tb)] {
            if let Err(e) = write_file(&fs, &p, b).await {
                return Err(self.fail_storage(e));
            }
        }
        let dir = &self.inner.dir;
        if let Err(e) = fs
            .write_small_durably(dir, &segment_name(leo, "snapshot"), snap)
            .await
        {
            return Err(self.fail(dir, e));
        }
        if let Err(e) = fs
            .write_small_durably(dir, CLEAN_MARKER, encode_small(CLEAN_MARKER_MAGIC, leo))
            .await
        {
            return Err(self.fail(dir, e));
        }
        let mut st = self.inner.state.borrow_mut();
        st.durable = leo;
        let w = st.written;
        st.set_hwm(leo, w);
        fire_durable(&mut st);
        st.closed = true;
        for (_, tx) in st.durable_waiters.drain(..) {
            let _ = tx.send(Err(()));
        }
        for tx in st.hwm_waiters.drain(..) {
            let _ = tx.send(());
        }
        st.wake_flusher();
        Ok(())
    }

    /// Replicated logs: makes every offset below `offset` (an entry boundary at or below the
    /// log end) readable. Never lowers the high watermark.
    pub fn set_committed(&self, offset: i64) {
        let mut st = self.inner.state.borrow_mut();
        let mut mark = None;
        while let Some(m) = st.entry_ends.front().copied() {
            if m.offset > offset {
                break;
            }
            mark = Some(m);
            st.entry_ends.pop_front();
        }
        if let Some(m) = mark {
            st.set_hwm(m.offset, m);
        }
    }

    /// Replicated logs, once after open: scans every batch header (each batch is one Raft
    /// entry) and lowers the high watermark to the offset `committed` computes from them (the
    /// last entry boundary at or below it), keeping the boundaries above for
    /// [`PartitionLog::set_committed`].
    pub async fn start_replication(
        &self,
        committed: impl FnOnce(&[EntryPos]) -> i64,
    ) -> Result<Vec<EntryPos>, StorageError> {
        let _guard = self.inner.append_lock.lock().await;
        self.check_open()?;
        let fs = self.inner.fs.clone();
        let segs: Vec<(i64, File, PathBuf, u64)> = {
            let st = self.inner.state.borrow();
            st.segs
                .iter()
                .map(|s| (s.base, s.read.clone(), s.path.clone(), s.size))
                .collect()
        };
        let mut entries = Vec::new();
        let mut ends = Vec::new();
        for (base, file, path, size) in &segs {
            let mut sc = HeaderScanner::new(&fs, file);
            let mut pos = 0u64;
            while pos + HEADER_BYTES as u64 <= *size {
                let h = sc.header_at(pos, path).await?;
                pos += h.total_bytes();
                entries.push(EntryPos {
                    base_offset: h.base_offset,
                    next_offset: h.last_offset() + 1,
                    epoch: h.partition_leader_epoch,
                });
                ends.push(Mark {
                    offset: h.last_offset() + 1,
                    seg_base: *base,
                    pos,
                });
            }
        }
        let committed = committed(&entries);
        let mut st = self.inner.state.borrow_mut();
        let first = st.segs[0].base;
        let mut mark = Mark {
            offset: first,
            seg_base: first,
            pos: 0,
        };
        let mut rest = VecDeque::new();
        for m in ends {
            if m.offset <= committed {
                mark = m;
            } else {
                rest.push_back(m);
            }
        }
        st.hwm = mark.offset.max(st.log_start);
        st.hwm_mark = mark;
        st.entry_ends = rest;
        Ok(entries)
    }

    /// Replicated logs: whole batches from the one starting at `base_offset` on, up to
    /// `max_bytes` (at least one batch), within its segment and below the written end; read
    /// with io_uring (for Raft entries a lagging follower needs).
    pub async fn read_batches(&self, base_offset: i64, max_bytes: u64) -> Result<Vec<Bytes>, StorageError> {
        self.check_open()?;
        let fs = self.inner.fs.clone();
        let (file, path, mut pos, size) = {
            let st = self.inner.state.borrow();
            let i = st.segs.partition_point(|s| s.base <= base_offset).saturating_sub(1);
            let s = &st.segs[i];
            if base_offset < s.base || base_offset >= s.next_offset {
                return Err(StorageError::OffsetOutOfRange { offset: base_offset, start: st.log_start, end: st.leo });
            }
            (s.read.clone(), s.path.clone(), u64::from(s.index.lookup(s.rel(base_offset))), s.size)
        };
        let mut sc = HeaderScanner::new(&fs, &file);
        let mut start = None;
        while pos + HEADER_BYTES as u64 <= size {
            let h = sc.header_at(pos, &path).await?;
            if h.base_offset == base_offset {
                start = Some(pos);
                break;
            }
            if h.base_offset > base_offset {
                break;
            }
            pos += h.total_bytes();
        }
        let Some(start) = start else {
            return Err(StorageError::Corrupt { path, offset: pos, reason: format!("no batch starts at offset {base_offset}") });
        };
        let mut end = start;
        while end + HEADER_BYTES as u64 <= size {
            let h = sc.header_at(end, &path).await?;
            if end > start && end + h.total_bytes() - start > max_bytes {
                break;
            }
            end += h.total_bytes();
        }
        let bytes = fs.read_at(&file, (end - start) as usize, start).await.map_err(|e| io_err(&path, e))?;
        let bytes = Bytes::from(bytes);
        let mut out = Vec::new();
        let mut at = 0usize;
        while let Some(h) = BatchHeader::parse(&bytes[at..]) {
            let total = h.total_bytes() as usize;
            if at + total > bytes.len() {
                break;
            }
            out.push(bytes.slice(at..at + total));
            at += total;
        }
        Ok(out)
    }

    /// Replicated logs: the bytes of the one batch starting at `base_offset`, read
    /// synchronously (pread on the shard thread; Raft's storage interface is synchronous, and
    /// only a follower that fell behind needs entries back from the files).
    pub fn read_entry_sync(&self, base_offset: i64) -> io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let (file, mut pos, size) = {
            let st = self.inner.state.borrow();
            let i = st
                .segs
                .partition_point(|s| s.base <= base_offset)
                .saturating_sub(1);
            let s = &st.segs[i];
            if base_offset < s.base || base_offset >= s.next_offset {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no batch at offset {base_offset}"),
                ));
            }
            (
                s.read_std.clone(),
                u64::from(s.index.lookup(s.rel(base_offset))),
                s.size,
            )
        };
        let mut hb = [0u8; HEADER_BYTES];
        while pos + HEADER_BYTES as u64 <= size {
            file.read_exact_at(&mut hb, pos)?;
            let h = BatchHeader::parse(&hb).ok_or_else(|| io::Error::other("bad batch header"))?;
            if h.base_offset == base_offset {
                let mut v = vec![0u8; h.total_bytes() as usize];
                file.read_exact_at(&mut v, pos)?;
                return Ok(v);
            }
            if h.base_offset > base_offset {
                break;
            }
            pos += h.total_bytes();
        }
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no batch starts at offset {base_offset}"),
        ))
    }

    /// Replicated logs: removes every batch from `offset` (a batch boundary above the high
    /// watermark) on: a follower dropping a conflicting uncommitted suffix. The log is closed,
    /// cut on disk, and opened again through full recovery (which rebuilds indexes and the
    /// producer table); the returned handle replaces this one.
    pub async fn truncate_from(self, offset: i64) -> Result<PartitionLog, StorageError> {
        let (fs, dir, config) = (self.inner.fs.clone(), self.inner.dir.clone(), self.config());
        let (cut, later) = {
            let st = self.inner.state.borrow();
            assert!(offset >= st.hwm, "truncating below the high watermark");
            let i = st
                .segs
                .partition_point(|s| s.base <= offset)
                .saturating_sub(1);
            let s = &st.segs[i];
            let later: Vec<i64> = st.segs[i + 1..].iter().map(|s| s.base).collect();
            (
                (
                    s.base,
                    s.read.clone(),
                    s.path.clone(),
                    s.size,
                    u64::from(s.index.lookup(s.rel(offset.max(s.base)))),
                ),
                later,
            )
        };
        let (seg_base, file, path, size, mut pos) = cut;
        {
            let mut sc = HeaderScanner::new(&fs, &file);
            while pos + HEADER_BYTES as u64 <= size {
                let h = sc.header_at(pos, &path).await?;
                if h.base_offset >= offset {
                    break;
                }
                pos += h.total_bytes();
            }
        }
        drop(file);
        self.close().await?;
        drop(self);
        for base in later {
            for ext in ["log", "index", "timeindex"] {
                let p = dir.join(segment_name(base, ext));
                fs.remove_file_if_exists(&p)
                    .await
                    .map_err(|e| io_err(&p, e))?;
            }
        }
        for ext in ["index", "timeindex"] {
            let p = dir.join(segment_name(seg_base, ext));
            fs.remove_file_if_exists(&p)
                .await
                .map_err(|e| io_err(&p, e))?;
        }
        let w = fs
            .open_write(&path, false)
            .await
            .map_err(|e| io_err(&path, e))?;
        fs.set_len(&w, pos).await.map_err(|e| io_err(&path, e))?;
        fs.sync_data(&w).await.map_err(|e| io_err(&path, e))?;
        drop(w);
        // Without the marker the next open validates every batch and rebuilds producer state.
        let marker = dir.join(CLEAN_MARKER);
        fs.remove_file_if_exists(&marker)
            .await
            .map_err(|e| io_err(&marker, e))?;
        fs.sync_dir(&dir).await.map_err(|e| io_err(&dir, e))?;
        tracing::info!(dir = %dir.display(), offset, "replicated log truncated to drop a conflicting suffix");
        PartitionLog::open(fs, dir, config).await
    }

    /// Close and remove the whole directory (topic deletion).
    pub async fn remove(self) -> Result<(), StorageError> {
        match self.close().await {
            Ok(()) | Err(StorageError::Offline { .. }) => {}
            Err(e) => return Err(e),
        }
        let dir = self.inner.dir.clone();
        self.inner
            .fs
            .remove_dir_all(&dir)
            .await
            .map_err(|e| StorageError::Io {
                path: dir,
                source: e,
            })
    }
}

/// The per-log flusher task (see module docs).
/// Checks `headers` in order against the producer table, with `staged` holding the changes of
/// batches accepted before them and not written yet, and stages each accepted batch at offset
/// `*next` on. Err(Ok(original offsets)) for an idempotent duplicate, Err(Err(refusal)) for a
/// sequence or epoch error.
fn stage_producers(
    st: &State,
    staged: &mut HashMap<i64, ProducerEntry>,
    next: &mut i64,
    headers: &[(usize, BatchHeader)],
) -> Result<(), Result<AppendInfo, StorageError>> {
    for (_, h) in headers {
        match st.producers.check(staged, h) {
            Ok(Check::Accept) => {}
            Ok(Check::Duplicate(d)) => {
                return Err(Ok(AppendInfo {
                    base_offset: d.base_offset,
                    last_offset: d.last_offset,
                    max_timestamp: d.max_timestamp,
                    log_start_offset: st.log_start,
                    duplicate: true,
                }));
            }
            Err(SeqError::OutOfOrder { producer_id, expected, got }) => {
                return Err(Err(StorageError::OutOfOrderSequence { producer_id, expected, got }));
            }
            Err(SeqError::Fenced { producer_id, current_epoch, got }) => {
                return Err(Err(StorageError::ProducerFenced { producer_id, current_epoch, got }));
            }
        }
        st.producers.stage(staged, h, *next);
        *next += i64::from(h.last_offset_delta) + 1;
    }
    Ok(())
}

async fn flusher(weak: Weak<Inner>) {
    loop {
        let wait = {
            let Some(inner) = weak.upgrade() else { return };
            let mut st = inner.state.borrow_mut();
            if st.offline || st.closed {
                return;
            }
            match st.flush_due(Instant::now()) {
                FlushDue::Now => None,
                FlushDue::At(at) => {
                    let (tx, rx) = oneshot::channel();
                    st.flusher_wake = Some(tx);
                    Some((rx, Some(at)))
                }
                FlushDue::Never => {
                    let (tx, rx) = oneshot::channel();
                    st.flusher_wake = Some(tx);
                    Some((rx, None))
                }
            }
        };
        if let Some((rx, at)) = wait {
            let cancelled = match at {
                None => rx.await.is_err(),
                Some(at) => {
                    let sleep = std::pin::pin!(compio::time::sleep(
                        at.saturating_duration_since(Instant::now())
                    ));
                    match futures::future::select(rx, sleep).await {
                        futures::future::Either::Left((r, _)) => r.is_err(),
                        futures::future::Either::Right(_) => false,
                    }
                }
            };
            if cancelled {
                return; // the log was dropped
            }
            continue;
        }
        let Some(inner) = weak.upgrade() else { return };
        PartitionLog { inner }.flush_once().await;
    }
}
