//! The file-system seam: every file-system access of the storage engine goes through [`Fs`].
//! `Fs::real()` does plain io_uring I/O through compio; `Fs::faulty(plan)` checks a shared
//! [`FaultPlan`] before each operation so tests can inject torn writes, ENOSPC and failed fsyncs.
//! No dyn dispatch: a struct with an `Option<Arc<FaultPlan>>`.
//!
//! Power cuts ([`FaultPlan::track_unsynced`], [`FaultPlan::power_cut`]): the plan journals, per
//! file (inode), every write, `set_len` and `O_TRUNC` since that file's last successful
//! fdatasync, with the file's bytes as of that fdatasync. A power cut rewrites each journaled
//! file as its synced bytes plus an arbitrary subset of its unsynced operations (each kept,
//! dropped or torn to a prefix, possibly ending in garbage), chosen independently per file: a
//! later segment's writes may survive while an earlier segment's are lost, an index may survive
//! without the segment bytes it describes, a later write may survive an earlier one.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;

use compio::buf::BufResult;
use compio::buf::{IntoInner, IoBufMut};
use compio::fs::{File, OpenOptions};
use compio::io::{AsyncReadAt, AsyncWriteAtExt};

/// Faults to inject, shared between the test and the `Fs` handles (Send + Sync).
#[derive(Debug)]
pub struct FaultPlan {
    /// Bytes that may still be written before writes fail (u64::MAX = unlimited).
    write_budget_bytes: AtomicU64,
    /// errno for a failing write.
    write_errno: AtomicI32,
    /// When set, every fsync/fdatasync fails with `fsync_errno`.
    fail_fsync: AtomicBool,
    fsync_errno: AtomicI32,
    writes: AtomicU64,
    fsyncs: AtomicU64,
    /// Fired (and emptied) at the start of each fsync: lets tests wait for one without polling.
    fsync_waiters: std::sync::Mutex<Vec<futures::channel::oneshot::Sender<()>>>,
    /// Power-cut model: unsynced operations per inode, when tracking is on.
    journal: std::sync::Mutex<Option<HashMap<u64, FileJournal>>>,
    /// Deterministic simulation: reads, writes, truncations and fdatasyncs are done with
    /// blocking calls in the calling task, so they complete in the order they are issued
    /// (io_uring completes concurrent operations, e.g. the flusher's fdatasync and the next
    /// append's write, in an order that varies from run to run).
    serial: AtomicBool,
}

/// What a power cut may do to one file: it was `synced` at its last fdatasync (or when first
/// touched), then `ops` happened.
#[derive(Debug)]
struct FileJournal {
    synced: Vec<u8>,
    ops: Vec<Op>,
}

#[derive(Debug, Clone)]
enum Op {
    Write { pos: u64, bytes: Vec<u8> },
    SetLen(u64),
}

fn apply(content: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Write { pos, bytes } => {
            let pos = *pos as usize;
            if content.len() < pos + bytes.len() {
                content.resize(pos + bytes.len(), 0);
            }
            content[pos..pos + bytes.len()].copy_from_slice(bytes);
        }
        Op::SetLen(len) => content.resize(*len as usize, 0),
    }
}

fn inode(file: &std::fs::File) -> io::Result<u64> {
    Ok(file.metadata()?.ino())
}

fn read_whole(file: &std::fs::File) -> io::Result<Vec<u8>> {
    let len = file.metadata()?.len() as usize;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan {
            write_budget_bytes: AtomicU64::new(u64::MAX),
            write_errno: AtomicI32::new(libc::EIO),
            fail_fsync: AtomicBool::new(false),
            fsync_errno: AtomicI32::new(libc::EIO),
            writes: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            fsync_waiters: std::sync::Mutex::new(Vec::new()),
            journal: std::sync::Mutex::new(None),
            serial: AtomicBool::new(false),
        }
    }
}

impl FaultPlan {
    pub fn new() -> Arc<FaultPlan> {
        Arc::new(FaultPlan::default())
    }
    /// After `bytes` more bytes have been written, the write that crosses the budget writes only
    /// the prefix that fits (a torn write), then fails with `errno`; later writes fail outright.
    pub fn fail_writes_after(&self, bytes: u64, errno: i32) {
        self.write_errno.store(errno, Ordering::SeqCst);
        self.write_budget_bytes.store(bytes, Ordering::SeqCst);
    }
    /// Every later fsync fails with `errno` (or succeeds again with `false`).
    pub fn fail_fsync(&self, fail: bool, errno: i32) {
        self.fsync_errno.store(errno, Ordering::SeqCst);
        self.fail_fsync.store(fail, Ordering::SeqCst);
    }
    /// Deterministic simulation: file I/O through this plan's `Fs` completes where it is
    /// issued (blocking calls), in issue order. For tests only: it blocks the event loop.
    pub fn serial_io(&self, on: bool) {
        self.serial.store(on, Ordering::SeqCst);
    }

    fn serial(&self) -> bool {
        self.serial.load(Ordering::Relaxed)
    }

    /// Removes every fault.
    pub fn clear(&self) {
        self.write_budget_bytes.store(u64::MAX, Ordering::SeqCst);
        self.fail_fsync.store(false, Ordering::SeqCst);
    }
    /// Starts (or stops, dropping the journal) the power-cut model: from now on writes,
    /// `set_len` and truncating opens through a `Fs` with this plan are journaled per file
    /// until that file's next successful fdatasync.
    pub fn track_unsynced(&self, on: bool) {
        if let Ok(mut j) = self.journal.lock() {
            *j = on.then(HashMap::new);
        }
    }

    /// Files (inodes) with unsynced operations.
    pub fn unsynced_files(&self) -> usize {
        self.journal
            .lock()
            .ok()
            .and_then(|j| j.as_ref().map(|j| j.len()))
            .unwrap_or(0)
    }

    /// Power cut. Every file of `dir` with unsynced operations is rewritten as its synced bytes
    /// plus a subset of those operations chosen by `seed`: each dropped, kept, or (a write) torn
    /// to a prefix that may end in random bytes; operations of different files independently.
    /// Nothing may have the files open for writing meanwhile (drop the log first). The journal
    /// is emptied. Returns a description of what survived, for a failing test to print.
    pub fn power_cut(&self, dir: &Path, seed: u64) -> io::Result<String> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        self.cut(dir, |_, op| match rng.random_range(0..8) {
            0..=2 => None,
            3 => match op {
                Op::Write { pos, bytes } if !bytes.is_empty() => {
                    let mut prefix = bytes[..rng.random_range(0..bytes.len())].to_vec();
                    if rng.random_range(0..2) == 0 && !prefix.is_empty() {
                        let n = prefix.len().min(rng.random_range(1..64));
                        let at = prefix.len() - n;
                        rng.fill(&mut prefix[at..]);
                    }
                    Some(Op::Write {
                        pos: *pos,
                        bytes: prefix,
                    })
                }
                _ => None,
            },
            _ => Some(op.clone()),
        })
    }

    /// Power cut keeping exactly the unsynced operations for which `keep(file name, index of
    /// the operation in that file)` is true (whole, none torn).
    pub fn power_cut_keeping(
        &self,
        dir: &Path,
        mut keep: impl FnMut(&str, usize) -> bool,
    ) -> io::Result<String> {
        let mut counts: HashMap<String, usize> = HashMap::new();
        self.cut(dir, |name, op| {
            let i = counts.entry(name.to_string()).or_insert(0);
            *i += 1;
            keep(name, *i - 1).then(|| op.clone())
        })
    }

    /// Unsynced operations journaled for the file at `path` (0 if none or not tracking).
    pub fn unsynced_ops(&self, path: &Path) -> usize {
        let Ok(meta) = std::fs::metadata(path) else {
            return 0;
        };
        let Ok(guard) = self.journal.lock() else {
            return 0;
        };
        guard
            .as_ref()
            .and_then(|j| j.get(&meta.ino()))
            .map_or(0, |j| j.ops.len())
    }

    fn cut(&self, dir: &Path, mut fate: impl FnMut(&str, &Op) -> Option<Op>) -> io::Result<String> {
        let Ok(mut guard) = self.journal.lock() else {
            return Err(io::Error::other("journal lock poisoned"));
        };
        let Some(journal) = guard.as_mut() else {
            return Err(io::Error::other("power cut without track_unsynced(true)"));
        };
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect::<io::Result<_>>()?;
        names.sort();
        let mut what = Vec::new();
        for path in names {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let Some(j) = journal.remove(&meta.ino()) else {
                continue;
            };
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut content = j.synced;
            let mut kept = String::new();
            for op in &j.ops {
                match fate(&name, op) {
                    None => kept.push('-'),
                    Some(o) => {
                        let torn = matches!((&o, op), (Op::Write { bytes: a, .. }, Op::Write { bytes: b, .. }) if a.len() < b.len());
                        kept.push(if torn { 't' } else { 'k' });
                        apply(&mut content, &o);
                    }
                }
            }
            std::fs::write(&path, &content)?;
            what.push(format!(
                "{name}: {} ops [{kept}] -> {} bytes",
                j.ops.len(),
                content.len()
            ));
        }
        journal.clear();
        Ok(what.join("; "))
    }

    /// Journals `op` on `file` (if tracking), recording the file's bytes first if this is its
    /// first unsynced operation.
    fn journal_op(&self, file: &std::fs::File, op: impl FnOnce() -> Op) {
        let Ok(mut guard) = self.journal.lock() else {
            return;
        };
        let Some(journal) = guard.as_mut() else {
            return;
        };
        let Ok(ino) = inode(file) else { return };
        journal
            .entry(ino)
            .or_insert_with(|| FileJournal {
                synced: read_whole(file).unwrap_or_default(),
                ops: Vec::new(),
            })
            .ops
            .push(op());
    }

    /// At the start of an fdatasync: the file's inode and how many of its operations it covers
    /// (operations issued while it runs are not covered).
    fn journal_sync_start(&self, file: &std::fs::File) -> Option<(u64, usize)> {
        let guard = self.journal.lock().ok()?;
        let journal = guard.as_ref()?;
        let ino = inode(file).ok()?;
        Some((ino, journal.get(&ino).map_or(0, |j| j.ops.len())))
    }

    /// After a successful fdatasync: the first `covered` operations are durable.
    fn journal_synced(&self, ino: u64, covered: usize) {
        let Ok(mut guard) = self.journal.lock() else {
            return;
        };
        let Some(journal) = guard.as_mut() else {
            return;
        };
        if let Some(j) = journal.get_mut(&ino) {
            let covered = covered.min(j.ops.len());
            for op in j.ops.drain(..covered) {
                apply(&mut j.synced, &op);
            }
            if j.ops.is_empty() {
                journal.remove(&ino);
            }
        }
    }

    /// `path` is about to be unlinked (removed, or replaced by a rename): its inode's journal
    /// goes, so a new file reusing the inode number does not inherit it.
    fn forget(&self, path: &Path) {
        let Ok(mut guard) = self.journal.lock() else {
            return;
        };
        if let (Some(journal), Ok(meta)) = (guard.as_mut(), std::fs::metadata(path)) {
            journal.remove(&meta.ino());
        }
    }

    fn tracking(&self) -> bool {
        self.journal.lock().map(|j| j.is_some()).unwrap_or(false)
    }

    /// Number of write calls seen (successful or not).
    pub fn write_count(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }
    /// Number of fsync/fdatasync calls seen.
    pub fn fsync_count(&self) -> u64 {
        self.fsyncs.load(Ordering::SeqCst)
    }

    /// Resolves when the next fsync/fdatasync is issued through a `Fs` using this plan.
    pub fn next_fsync(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (tx, rx) = futures::channel::oneshot::channel();
        if let Ok(mut w) = self.fsync_waiters.lock() {
            w.push(tx);
        }
        async move {
            let _ = rx.await;
        }
    }

    /// How many of `len` bytes may be written; `Some(errno)` if the write must then fail.
    fn before_write(&self, len: u64) -> (u64, Option<i32>) {
        self.writes.fetch_add(1, Ordering::SeqCst);
        let budget = self.write_budget_bytes.load(Ordering::SeqCst);
        if budget == u64::MAX {
            return (len, None);
        }
        if len <= budget {
            self.write_budget_bytes
                .store(budget - len, Ordering::SeqCst);
            return (len, None);
        }
        self.write_budget_bytes.store(0, Ordering::SeqCst);
        (budget, Some(self.write_errno.load(Ordering::SeqCst)))
    }

    fn before_fsync(&self) -> Option<i32> {
        self.fsyncs.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut w) = self.fsync_waiters.lock() {
            for tx in w.drain(..) {
                let _ = tx.send(());
            }
        }
        self.fail_fsync
            .load(Ordering::SeqCst)
            .then(|| self.fsync_errno.load(Ordering::SeqCst))
    }
}

/// `pwrite`s on the calling (shard) thread (a copy into the page cache), through std's
/// `write_all_at` on `file`'s descriptor, borrowed: no dup, and never closed here.
fn pwrite_all(file: &File, buf: &[u8], pos: u64) -> io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: the descriptor stays open for the borrow of `file`; ManuallyDrop never closes it.
    let f = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(file.as_fd().as_raw_fd()) });
    f.write_all_at(buf, pos)
}

/// Whether buffered writes to files in `dir` cannot be tried without blocking
/// (`pwritev2(RWF_NOWAIT)` answers EOPNOTSUPP, as ext4 does): io_uring then queues every such
/// write to an io-wq worker thread (a wake of another thread and a wake back per write) instead
/// of copying it into the page cache inline. Probed with a small temporary file in `dir`.
pub fn buffered_writes_punt(dir: &Path) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let path = dir.join(format!(".nowait-probe-{}", std::process::id()));
    let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
    let _ = std::fs::remove_file(&path);
    let buf = [0u8; 512];
    let iov = libc::iovec { iov_base: buf.as_ptr() as *mut libc::c_void, iov_len: buf.len() };
    // SAFETY: one iovec over a live stack buffer; the fd is open.
    let n = unsafe { libc::pwritev2(f.as_raw_fd(), &iov, 1, 0, libc::RWF_NOWAIT) };
    if n >= 0 {
        return Ok(false);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) => Ok(true),
        // Supported, only this write would have blocked.
        Some(libc::EAGAIN) => Ok(false),
        _ => Err(e),
    }
}

/// The seam. Clone is cheap.
#[derive(Clone, Debug, Default)]
pub struct Fs {
    faults: Option<Arc<FaultPlan>>,
    /// Segment writes by `pwrite` on the calling thread instead of io_uring (see
    /// [`buffered_writes_punt`]).
    inline_writes: bool,
}

impl Fs {
    /// Real io_uring I/O.
    pub fn real() -> Fs {
        Fs { faults: None, inline_writes: false }
    }
    /// Real I/O with the faults of `plan` injected.
    pub fn faulty(plan: Arc<FaultPlan>) -> Fs {
        Fs { faults: Some(plan), inline_writes: false }
    }
    /// Data writes (`write_all_at`) done with a plain `pwrite` on the calling thread. Meant for
    /// file systems where io_uring hands every buffered write to a worker thread
    /// ([`buffered_writes_punt`]): the page-cache copy then costs less than the two thread
    /// switches. The shard blocks for the copy (and for dirty-page throttling, if the kernel
    /// applies it); the executor-stall metric shows when it does.
    pub fn with_inline_writes(mut self, on: bool) -> Fs {
        self.inline_writes = on;
        self
    }

    pub async fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        compio::fs::create_dir_all(path).await
    }

    /// Names in a directory (directory listing is a small synchronous call; io_uring has no getdents).
    pub async fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(path)? {
            out.push(e?.path());
        }
        out.sort();
        Ok(out)
    }

    pub async fn open_read(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new().read(true).open(path).await
    }

    /// Opens for reading and writing, creating the file if missing; `truncate` empties it.
    pub async fn open_write(&self, path: &Path, truncate: bool) -> io::Result<File> {
        if let Some(plan) = self.faults.as_ref().filter(|p| truncate && p.tracking()) {
            // O_TRUNC is an unsynced change like any other: journal it as set_len(0).
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .open(path)
                .await?;
            let std = self.std_handle(&f)?;
            plan.journal_op(&std, || Op::SetLen(0));
            f.set_len(0).await?;
            return Ok(f);
        }
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(truncate)
            .open(path)
            .await
    }

    /// A plain `std::fs::File` sharing `file`'s open file description (for sendfile/splice/pread
    /// from another thread). `file` should be opened read-only.
    pub fn std_handle(&self, file: &File) -> io::Result<std::fs::File> {
        Ok(std::fs::File::from(file.as_fd().try_clone_to_owned()?))
    }

    pub async fn file_len(&self, file: &File) -> io::Result<u64> {
        Ok(file.metadata().await?.len())
    }

    /// Modification time in ms since the epoch.
    pub async fn mtime_ms(&self, path: &Path) -> io::Result<i64> {
        let m = compio::fs::metadata(path).await?.modified()?;
        Ok(m.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0))
    }

    /// Writes all of `buf` at `pos`. With a fault plan the write may be torn (a prefix written).
    pub async fn write_all_at(&self, file: &File, buf: Vec<u8>, pos: u64) -> io::Result<()> {
        let mut f = file;
        if let Some(plan) = &self.faults {
            let (allowed, errno) = plan.before_write(buf.len() as u64);
            let tracking = plan.tracking();
            if let Some(errno) = errno {
                if allowed > 0 {
                    let prefix = buf[..allowed as usize].to_vec();
                    if tracking {
                        let bytes = prefix.clone();
                        plan.journal_op(&self.std_handle(file)?, || Op::Write { pos, bytes });
                    }
                    if plan.serial() {
                        self.std_handle(file)?.write_all_at(&prefix, pos)?;
                    } else {
                        let BufResult(r, _) = f.write_all_at(prefix, pos).await;
                        r?;
                    }
                }
                return Err(io::Error::from_raw_os_error(errno));
            }
            if tracking {
                let bytes = buf.clone();
                plan.journal_op(&self.std_handle(file)?, || Op::Write { pos, bytes });
            }
            if plan.serial() {
                return self.std_handle(file)?.write_all_at(&buf, pos);
            }
        }
        if self.inline_writes {
            return pwrite_all(file, &buf, pos);
        }
        let BufResult(r, _) = f.write_all_at(buf, pos).await;
        r
    }

    /// Reads up to `len` bytes at `pos` (fewer only at end of file).
    pub async fn read_at(&self, file: &File, len: usize, pos: u64) -> io::Result<Vec<u8>> {
        if self.faults.as_ref().is_some_and(|p| p.serial()) {
            let std = self.std_handle(file)?;
            let mut buf = vec![0u8; len];
            let mut done = 0;
            while done < len {
                let n = std.read_at(&mut buf[done..], pos + done as u64)?;
                if n == 0 {
                    break;
                }
                done += n;
            }
            buf.truncate(done);
            return Ok(buf);
        }
        let mut buf: Vec<u8> = Vec::with_capacity(len);
        let mut done = 0usize;
        while done < len {
            // `read_at` fills a buffer from its start; `uninit()` makes it fill the part after
            // what is already read. (Reading into `buf` itself would put the bytes of a second,
            // short-read-continuing read at index 0: a file growing between the two reads then
            // showed later bytes at earlier positions.)
            let BufResult(r, b) = file.read_at(buf.uninit(), pos + done as u64).await;
            buf = b.into_inner();
            let n = r?;
            if n == 0 {
                break;
            }
            done = buf.len();
        }
        Ok(buf)
    }

    /// fdatasync.
    pub async fn sync_data(&self, file: &File) -> io::Result<()> {
        if let Some(errno) = self.faults.as_ref().and_then(|p| p.before_fsync()) {
            return Err(io::Error::from_raw_os_error(errno));
        }
        let plan = self.faults.as_ref().filter(|p| p.tracking());
        let covered = match plan {
            Some(p) => p.journal_sync_start(&self.std_handle(file)?),
            None => None,
        };
        if self.faults.as_ref().is_some_and(|p| p.serial()) {
            self.std_handle(file)?.sync_data()?;
        } else {
            file.sync_data().await?;
        }
        if let (Some(plan), Some((ino, n))) = (plan, covered) {
            plan.journal_synced(ino, n);
        }
        Ok(())
    }

    /// fsync of a directory (makes created/renamed/removed names durable).
    pub async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if let Some(errno) = self.faults.as_ref().and_then(|p| p.before_fsync()) {
            return Err(io::Error::from_raw_os_error(errno));
        }
        let d = OpenOptions::new().read(true).open(dir).await?;
        d.sync_all().await
    }

    pub async fn set_len(&self, file: &File, len: u64) -> io::Result<()> {
        if let Some(plan) = self.faults.as_ref().filter(|p| p.tracking()) {
            plan.journal_op(&self.std_handle(file)?, || Op::SetLen(len));
        }
        if self.faults.as_ref().is_some_and(|p| p.serial()) {
            return self.std_handle(file)?.set_len(len);
        }
        file.set_len(len).await
    }

    pub async fn remove_file(&self, path: &Path) -> io::Result<()> {
        if let Some(plan) = &self.faults {
            plan.forget(path);
        }
        compio::fs::remove_file(path).await
    }

    /// Removes a file, treating "not found" as done.
    pub async fn remove_file_if_exists(&self, path: &Path) -> io::Result<()> {
        if let Some(plan) = &self.faults {
            plan.forget(path);
        }
        match compio::fs::remove_file(path).await {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }

    pub async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if let Some(plan) = &self.faults {
            plan.forget(to);
        }
        compio::fs::rename(from, to).await
    }

    pub async fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        for p in self.list_dir(path).await? {
            self.remove_file(&p).await?;
        }
        compio::fs::remove_dir(path).await
    }

    /// Reads a whole small file (None if missing).
    pub async fn read_small(&self, path: &Path, max_bytes: u64) -> io::Result<Option<Vec<u8>>> {
        let f = match self.open_read(path).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let len = self.file_len(&f).await?;
        if len > max_bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} bytes > {max_bytes}", len),
            ));
        }
        Ok(Some(self.read_at(&f, len as usize, 0).await?))
    }

    /// Writes a small file durably: tmp file, fdatasync, rename, directory fsync.
    pub async fn write_small_durably(
        &self,
        dir: &Path,
        name: &str,
        bytes: Vec<u8>,
    ) -> io::Result<()> {
        let tmp = dir.join(format!("{name}.tmp"));
        let f = self.open_write(&tmp, true).await?;
        self.write_all_at(&f, bytes, 0).await?;
        self.sync_data(&f).await?;
        drop(f);
        self.rename(&tmp, &dir.join(name)).await?;
        self.sync_dir(dir).await
    }
}

#[cfg(test)]
mod read_at_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn read_at_continuing_after_a_short_read_keeps_bytes_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, [1u8; 10]).unwrap();
        compio::runtime::Runtime::new().unwrap().block_on(async {
            let fs = Fs::real();
            let file = OpenOptions::new().read(true).open(&path).await.unwrap();
            // First read is short (10 of 20 bytes); the file then grows before the next one.
            let BufResult(r, b) = file.read_at(Vec::with_capacity(20), 0).await;
            assert_eq!(r.unwrap(), 10);
            let mut buf = b;
            {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .unwrap();
                f.write_all(&[2u8; 10]).unwrap();
            }
            let BufResult(r, b) = file.read_at(buf.uninit(), 10).await;
            assert_eq!(r.unwrap(), 10);
            buf = b.into_inner();
            assert_eq!(buf, [[1u8; 10], [2u8; 10]].concat());
            // And through Fs::read_at from a fresh start.
            assert_eq!(
                fs.read_at(&file, 20, 0).await.unwrap(),
                [[1u8; 10], [2u8; 10]].concat()
            );
        });
    }
}

#[cfg(test)]
mod inline_write_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Inline writes land at their positions like io_uring writes do, and a read-only file
    /// refuses them with the OS error.
    #[test]
    fn inline_writes_put_bytes_at_their_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        compio::runtime::Runtime::new().unwrap().block_on(async {
            let fs = Fs::real().with_inline_writes(true);
            let f = fs.open_write(&path, true).await.unwrap();
            fs.write_all_at(&f, vec![7u8; 70_000], 0).await.unwrap();
            fs.write_all_at(&f, vec![9u8; 10], 100_000).await.unwrap();
            fs.sync_data(&f).await.unwrap();
            let ro = fs.open_read(&path).await.unwrap();
            let e = fs.write_all_at(&ro, vec![1u8; 4], 0).await.unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EBADF));
        });
        let b = std::fs::read(&path).unwrap();
        assert_eq!(b.len(), 100_010);
        assert!(b[..70_000].iter().all(|x| *x == 7));
        assert!(b[70_000..100_000].iter().all(|x| *x == 0));
        assert!(b[100_000..].iter().all(|x| *x == 9));
    }

    /// The probe answers for a real directory and leaves no file behind.
    #[test]
    fn nowait_probe_answers_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        buffered_writes_punt(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(buffered_writes_punt(&dir.path().join("missing")).is_err());
    }
}
