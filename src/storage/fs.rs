//! The file-system seam: every file-system access of the storage engine goes through [`Fs`].
//! `Fs::real()` does plain io_uring I/O through compio; `Fs::faulty(plan)` checks a shared
//! [`FaultPlan`] before each operation so tests can inject torn writes, ENOSPC and failed fsyncs.
//! No dyn dispatch: a struct with an `Option<Arc<FaultPlan>>`.

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;

use compio::buf::BufResult;
use compio::fs::{File, OpenOptions};
use compio::buf::{IntoInner, IoBufMut};
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
    /// Removes every fault.
    pub fn clear(&self) {
        self.write_budget_bytes.store(u64::MAX, Ordering::SeqCst);
        self.fail_fsync.store(false, Ordering::SeqCst);
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

/// The seam. Clone is cheap.
#[derive(Clone, Debug, Default)]
pub struct Fs {
    faults: Option<Arc<FaultPlan>>,
}

impl Fs {
    /// Real io_uring I/O.
    pub fn real() -> Fs {
        Fs { faults: None }
    }
    /// Real I/O with the faults of `plan` injected.
    pub fn faulty(plan: Arc<FaultPlan>) -> Fs {
        Fs { faults: Some(plan) }
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
            if let Some(errno) = errno {
                if allowed > 0 {
                    let prefix = buf[..allowed as usize].to_vec();
                    let BufResult(r, _) = f.write_all_at(prefix, pos).await;
                    r?;
                }
                return Err(io::Error::from_raw_os_error(errno));
            }
        }
        let BufResult(r, _) = f.write_all_at(buf, pos).await;
        r
    }

    /// Reads up to `len` bytes at `pos` (fewer only at end of file).
    pub async fn read_at(&self, file: &File, len: usize, pos: u64) -> io::Result<Vec<u8>> {
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
        file.sync_data().await
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
        file.set_len(len).await
    }

    pub async fn remove_file(&self, path: &Path) -> io::Result<()> {
        compio::fs::remove_file(path).await
    }

    /// Removes a file, treating "not found" as done.
    pub async fn remove_file_if_exists(&self, path: &Path) -> io::Result<()> {
        match compio::fs::remove_file(path).await {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }

    pub async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
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
                let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
                f.write_all(&[2u8; 10]).unwrap();
            }
            let BufResult(r, b) = file.read_at(buf.uninit(), 10).await;
            assert_eq!(r.unwrap(), 10);
            buf = b.into_inner();
            assert_eq!(buf, [[1u8; 10], [2u8; 10]].concat());
            // And through Fs::read_at from a fresh start.
            assert_eq!(fs.read_at(&file, 20, 0).await.unwrap(), [[1u8; 10], [2u8; 10]].concat());
        });
    }
}
