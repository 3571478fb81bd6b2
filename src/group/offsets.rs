//! Committed offsets: the in-memory table and its durable log (Sluice's `__consumer_offsets`).
//!
//! One append-only file per coordinator shard, `<data>/__consumer_offsets-<shard>/offsets.log`,
//! of CRC32C-protected records (byte layout in docs/format.md). An OffsetCommit is acknowledged
//! only after its records are written and fdatasync'd; commits that arrive while a sync runs
//! share the next one (group commit). On start every file is replayed: a torn or corrupt tail is
//! truncated, the newest record of each key wins (by commit timestamp, then file order).
//! When the file passes [`limits::OFFSETS_LOG_COMPACT_BYTES`] and is mostly dead records, it
//! is rewritten with only the live offsets (tmp file, fsync, rename, fsync dir).
//!
//! Architecture invariant: a failed write or fsync poisons the log (never retried); every
//! later commit on that shard fails with KAFKA_STORAGE_ERROR until restart.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::limits;

#[derive(Debug, thiserror::Error)]
pub enum OffsetLogError {
    #[error("offsets log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("offsets log {path} failed earlier and is read-only until restart")]
    Poisoned { path: PathBuf },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_ms: i64,
}

/// One record of the log.
#[derive(Clone, Debug, PartialEq)]
pub struct OffsetRecord {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    /// None = tombstone (offset deleted).
    pub value: Option<Committed>,
    /// When the record was written (orders records across files).
    pub write_ms: i64,
}

const RECORD_VERSION: u8 = 0;
const KIND_COMMIT: u8 = 0;
const KIND_TOMBSTONE: u8 = 1;
/// length (u32) + crc (u32)
const FRAME_HEADER_BYTES: usize = 8;

fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    let n = b.len().min(u16::MAX as usize);
    out.extend_from_slice(&(n as u16).to_be_bytes());
    out.extend_from_slice(&b[..n]);
}

impl OffsetRecord {
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut body = Vec::with_capacity(64);
        body.push(RECORD_VERSION);
        body.push(if self.value.is_some() {
            KIND_COMMIT
        } else {
            KIND_TOMBSTONE
        });
        body.extend_from_slice(&self.write_ms.to_be_bytes());
        put_str(&mut body, &self.group);
        put_str(&mut body, &self.topic);
        body.extend_from_slice(&self.partition.to_be_bytes());
        if let Some(v) = &self.value {
            body.extend_from_slice(&v.offset.to_be_bytes());
            body.extend_from_slice(&v.leader_epoch.to_be_bytes());
            body.extend_from_slice(&v.commit_ms.to_be_bytes());
            put_str(&mut body, &v.metadata);
        }
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
    }

    fn decode_body(b: &[u8]) -> Option<OffsetRecord> {
        let mut r = Reader { b, p: 0 };
        if r.u8()? != RECORD_VERSION {
            return None;
        }
        let kind = r.u8()?;
        let write_ms = r.i64()?;
        let group = r.str()?;
        let topic = r.str()?;
        let partition = r.i32()?;
        let value = match kind {
            KIND_COMMIT => {
                let offset = r.i64()?;
                let leader_epoch = r.i32()?;
                let commit_ms = r.i64()?;
                let metadata = r.str()?;
                Some(Committed {
                    offset,
                    leader_epoch,
                    metadata,
                    commit_ms,
                })
            }
            KIND_TOMBSTONE => None,
            _ => return None,
        };
        (r.p == b.len()).then_some(OffsetRecord {
            group,
            topic,
            partition,
            value,
            write_ms,
        })
    }
}

struct Reader<'a> {
    b: &'a [u8],
    p: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.b.get(self.p..self.p.checked_add(n)?)?;
        self.p += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<String> {
        let n = u16::from_be_bytes(self.take(2)?.try_into().ok()?) as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

/// Parses a log image: the records of its valid prefix and that prefix's length.
pub fn decode_all(b: &[u8]) -> (Vec<OffsetRecord>, usize) {
    let mut out = Vec::new();
    let mut p = 0usize;
    while p + FRAME_HEADER_BYTES <= b.len() {
        let len = u32::from_be_bytes([b[p], b[p + 1], b[p + 2], b[p + 3]]) as usize;
        let crc = u32::from_be_bytes([b[p + 4], b[p + 5], b[p + 6], b[p + 7]]);
        if len > limits::OFFSET_RECORD_BYTES_MAX {
            break;
        }
        let Some(body) = b.get(p + FRAME_HEADER_BYTES..p + FRAME_HEADER_BYTES + len) else {
            break;
        };
        if crc32c::crc32c(body) != crc {
            break;
        }
        let Some(rec) = OffsetRecord::decode_body(body) else {
            break;
        };
        out.push(rec);
        p += FRAME_HEADER_BYTES + len;
    }
    (out, p)
}

/// group -> (topic, partition) -> committed offset.
pub type OffsetTable = HashMap<String, BTreeMap<(String, i32), Committed>>;

/// Applies replayed records (from any number of files) in order of write time; later wins.
pub fn apply_replay(table: &mut OffsetTable, mut records: Vec<OffsetRecord>) {
    records.sort_by_key(|r| r.write_ms); // stable: file order breaks ties
    apply_records(table, records);
}

/// Applies records in the given order: a commit sets the offset, a tombstone removes it (and
/// the group once it has none).
pub fn apply_records(table: &mut OffsetTable, records: Vec<OffsetRecord>) {
    for r in records {
        let key = (r.topic, r.partition);
        match r.value {
            Some(v) => {
                table.entry(r.group).or_default().insert(key, v);
            }
            None => {
                if let Some(g) = table.get_mut(&r.group) {
                    g.remove(&key);
                    if g.is_empty() {
                        table.remove(&r.group);
                    }
                }
            }
        }
    }
}

/// The durable log of one shard.
pub struct OffsetLog {
    dir: PathBuf,
    path: PathBuf,
    file: RefCell<Arc<std::fs::File>>,
    /// Bytes in the file (written and synced).
    bytes: Cell<u64>,
    /// Encoded records not yet written, and the sequence number of the last one.
    pending: RefCell<Vec<u8>>,
    pending_seq: Cell<u64>,
    durable_seq: Cell<u64>,
    writer: futures::lock::Mutex<()>,
    poisoned: Cell<bool>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OffsetLogError + '_ {
    move |source| OffsetLogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn dir_for_shard(data_dir: &Path, shard: usize) -> PathBuf {
    data_dir.join(format!("__consumer_offsets-{shard}"))
}

/// Reads one shard's log file, truncating a torn or corrupt tail. Blocking.
pub fn replay_file(path: &Path) -> Result<Vec<OffsetRecord>, OffsetLogError> {
    let mut f = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(OffsetLogError::Io {
                path: path.to_path_buf(),
                source: e,
            })
        }
    };
    let mut b = Vec::new();
    f.read_to_end(&mut b).map_err(io(path))?;
    let (records, valid) = decode_all(&b);
    if valid < b.len() {
        tracing::warn!(path = %path.display(), valid_bytes = valid, dropped_bytes = b.len() - valid, "offsets log: torn or corrupt tail truncated");
        f.set_len(valid as u64).map_err(io(path))?;
        f.sync_all().map_err(io(path))?;
    }
    Ok(records)
}

/// Every `__consumer_offsets-*/offsets.log` under the data directory.
pub fn all_log_files(data_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(data_dir) {
        for e in rd.flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with("__consumer_offsets-")
            {
                out.push(e.path().join("offsets.log"));
            }
        }
    }
    out.sort();
    out
}

impl OffsetLog {
    /// Opens (creating) this shard's log for appending. Blocking; call before serving.
    pub fn open(dir: PathBuf) -> Result<OffsetLog, OffsetLogError> {
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = dir.join("offsets.log");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(io(&path))?;
        let bytes = f.seek(std::io::SeekFrom::End(0)).map_err(io(&path))?;
        sync_dir(&dir)?;
        Ok(OffsetLog {
            dir,
            path,
            file: RefCell::new(Arc::new(f)),
            bytes: Cell::new(bytes),
            pending: RefCell::new(Vec::new()),
            pending_seq: Cell::new(0),
            durable_seq: Cell::new(0),
            writer: futures::lock::Mutex::new(()),
            poisoned: Cell::new(false),
        })
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.get()
    }

    /// Appends records and resolves once they are durable (group commit).
    pub async fn append(&self, records: &[OffsetRecord]) -> Result<(), OffsetLogError> {
        let my_seq = self.enqueue(records)?;
        self.flush(my_seq).await
    }

    /// Queues records to be written, in call order; returns the sequence number to
    /// [`OffsetLog::flush`] them with.
    pub fn enqueue(&self, records: &[OffsetRecord]) -> Result<u64, OffsetLogError> {
        if self.poisoned.get() {
            return Err(OffsetLogError::Poisoned {
                path: self.path.clone(),
            });
        }
        {
            let mut p = self.pending.borrow_mut();
            for r in records {
                r.encode(&mut p);
            }
        }
        let my_seq = self.pending_seq.get() + 1;
        self.pending_seq.set(my_seq);
        Ok(my_seq)
    }

    /// Resolves once everything queued up to `my_seq` is durable (group commit).
    pub async fn flush(&self, my_seq: u64) -> Result<(), OffsetLogError> {
        let _guard = self.writer.lock().await;
        if self.durable_seq.get() >= my_seq {
            return Ok(());
        }
        if self.poisoned.get() {
            return Err(OffsetLogError::Poisoned {
                path: self.path.clone(),
            });
        }
        let buf = std::mem::take(&mut *self.pending.borrow_mut());
        let upto = self.pending_seq.get();
        let file = self.file.borrow().clone();
        let path = self.path.clone();
        let n = buf.len() as u64;
        let r = blocking(move || {
            (&*file).write_all(&buf).map_err(io(&path))?;
            file.sync_data().map_err(io(&path))
        })
        .await;
        match r {
            Ok(()) => {
                self.bytes.set(self.bytes.get() + n);
                self.durable_seq.set(upto);
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "offsets log write failed; committing offsets on this shard is disabled until restart");
                self.poisoned.set(true);
                Err(e)
            }
        }
    }

    /// Rewrites the log with exactly `live` (the shard's current offsets). Serialized with appends.
    pub async fn compact(&self, live: Vec<OffsetRecord>) -> Result<(), OffsetLogError> {
        let _guard = self.writer.lock().await;
        if self.poisoned.get() || !self.pending.borrow().is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for r in &live {
            r.encode(&mut buf);
        }
        let (dir, path) = (self.dir.clone(), self.path.clone());
        let n = buf.len() as u64;
        let r = blocking(move || -> Result<std::fs::File, OffsetLogError> {
            let tmp = dir.join("offsets.log.tmp");
            let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&buf).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(io(&path))?;
            sync_dir(&dir)?;
            std::fs::OpenOptions::new()
                .append(true)
                .read(true)
                .open(&path)
                .map_err(io(&path))
        })
        .await;
        match r {
            Ok(f) => {
                tracing::info!(path = %self.path.display(), from_bytes = self.bytes.get(), to_bytes = n, "offsets log compacted");
                *self.file.borrow_mut() = Arc::new(f);
                self.bytes.set(n);
                Ok(())
            }
            Err(e) => {
                // The rename is atomic: either the old or the new file is in place, both complete.
                // We no longer know which handle is current, so stop writing.
                tracing::error!(error = %e, "offsets log compaction failed; committing offsets on this shard is disabled until restart");
                self.poisoned.set(true);
                Err(e)
            }
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), OffsetLogError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io(dir))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, OffsetLogError> + Send + 'static,
) -> Result<T, OffsetLogError> {
    match compio::runtime::spawn_blocking(f).await {
        Ok(r) => r,
        Err(_) => Err(OffsetLogError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other("blocking task panicked"),
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn rec(group: &str, p: i32, offset: Option<i64>, t: i64) -> OffsetRecord {
        OffsetRecord {
            group: group.into(),
            topic: "t".into(),
            partition: p,
            value: offset.map(|o| Committed {
                offset: o,
                leader_epoch: -1,
                metadata: "m".into(),
                commit_ms: t,
            }),
            write_ms: t,
        }
    }

    #[test]
    fn roundtrip_torn_tail_and_corruption() {
        let mut b = Vec::new();
        rec("g", 0, Some(5), 1).encode(&mut b);
        rec("g", 0, None, 2).encode(&mut b);
        let good = b.len();
        rec("g", 1, Some(7), 3).encode(&mut b);
        let (r, n) = decode_all(&b);
        assert_eq!(r.len(), 3);
        assert_eq!(n, b.len());
        // Torn: every strict prefix of the last record decodes to the first two.
        for cut in good..b.len() {
            let (r, n) = decode_all(&b[..cut]);
            assert_eq!((r.len(), n), (2, good));
        }
        // A flipped bit in the last record is caught by the CRC.
        let mut bad = b.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(decode_all(&bad).1, good);
    }

    #[test]
    fn replay_newest_wins_and_tombstones_delete() {
        let mut t = OffsetTable::new();
        apply_replay(
            &mut t,
            vec![
                rec("g", 0, Some(9), 5),
                rec("g", 0, Some(5), 1),
                rec("g", 1, Some(1), 1),
                rec("g", 1, None, 2),
                rec("h", 0, None, 9),
            ],
        );
        assert_eq!(t["g"][&("t".to_string(), 0)].offset, 9);
        assert!(!t["g"].contains_key(&("t".to_string(), 1)));
        assert!(!t.contains_key("h"));
    }

    #[compio::test]
    async fn append_replay_compact_and_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("__consumer_offsets-0");
        let log = OffsetLog::open(d.clone()).unwrap();
        let (r1, r2) = (
            [rec("g", 0, Some(1), 1)],
            [rec("g", 0, Some(2), 2), rec("g", 1, Some(3), 2)],
        );
        let (a, b) = futures::join!(log.append(&r1), log.append(&r2));
        a.unwrap();
        b.unwrap();
        let path = d.join("offsets.log");
        assert_eq!(replay_file(&path).unwrap().len(), 3);
        log.compact(vec![rec("g", 0, Some(2), 2)]).await.unwrap();
        log.append(&[rec("g", 5, Some(50), 3)]).await.unwrap();
        let r = replay_file(&path).unwrap();
        assert_eq!(r.len(), 2);
        // A torn tail is truncated on replay.
        let len = std::fs::metadata(&path).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        assert_eq!(replay_file(&path).unwrap().len(), 1);
        assert!(std::fs::metadata(&path).unwrap().len() < len - 3);
        assert_eq!(all_log_files(dir.path()), vec![path]);
    }
}
