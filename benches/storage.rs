//! Storage engine benchmarks (criterion, run on a compio runtime via `iter_custom`).
//!
//! - append/fsync: 1 KiB records in 16 KiB batches, 64 appends in flight, each waiting for its
//!   group-commit fdatasync (the acks=all path).
//! - append/nofsync: the same with flush.messages huge (hwm = written end, no fsync).
//! - read: locate + pread of 1 MiB slices of whole batches from a pre-filled log (page cache).
//!
//! Run: `cargo bench --bench storage -- --warm-up-time 1 --measurement-time 3`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice::storage::{batch, Fs, LogConfig, PartitionLog};

const RECORD_BYTES: usize = 1024;
const RECORDS_PER_BATCH: usize = 16;
const IN_FLIGHT: usize = 64;

fn append_bench(c: &mut Criterion) {
    let rt = compio::runtime::Runtime::new().unwrap();
    let b = batch::simple_batch(RECORDS_PER_BATCH, RECORD_BYTES, 1);
    let batch_bytes = b.len() as u64;
    let mut g = c.benchmark_group("append");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(batch_bytes * IN_FLIGHT as u64));
    for (name, flush_messages) in [("fsync", None), ("nofsync", Some(u64::MAX))] {
        let dir = tempfile::tempdir_in(
            std::env::var("SLUICE_BENCH_DIR").unwrap_or_else(|_| "/tmp".into()),
        )
        .unwrap();
        let cfg = LogConfig {
            flush_messages,
            segment_bytes: 256 * 1024 * 1024,
            retention_bytes: 512 * 1024 * 1024,
            ..LogConfig::default()
        };
        let log = rt
            .block_on(PartitionLog::open(
                Fs::real(),
                dir.path().to_path_buf(),
                cfg,
            ))
            .unwrap();
        g.bench_function(name, |bench| {
            bench.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let tasks = (0..IN_FLIGHT).map(|_| {
                            let log = log.clone();
                            let b = b.clone();
                            async move {
                                let info = log.append(b, 0).await.unwrap();
                                log.wait_durable(info.last_offset).await.unwrap();
                            }
                        });
                        futures::future::join_all(tasks).await;
                    }
                    let el = start.elapsed();
                    log.housekeeping(0).await.unwrap();
                    el
                })
            })
        });
        rt.block_on(log.close()).unwrap();
    }
    g.finish();
}

fn read_bench(c: &mut Criterion) {
    let rt = compio::runtime::Runtime::new().unwrap();
    let dir =
        tempfile::tempdir_in(std::env::var("SLUICE_BENCH_DIR").unwrap_or_else(|_| "/tmp".into()))
            .unwrap();
    let cfg = LogConfig {
        flush_messages: Some(u64::MAX),
        ..LogConfig::default()
    };
    let log = rt
        .block_on(PartitionLog::open(
            Fs::real(),
            dir.path().to_path_buf(),
            cfg,
        ))
        .unwrap();
    let b = batch::simple_batch(RECORDS_PER_BATCH, RECORD_BYTES, 1);
    rt.block_on(async {
        for _ in 0..(64 * 1024 * 1024 / b.len()) {
            log.append(b.clone(), 0).await.unwrap();
        }
    });
    let end = log.high_watermark();
    let slice_bytes: u32 = 1024 * 1024;
    let mut g = c.benchmark_group("read");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(u64::from(slice_bytes)));
    g.bench_function("1MiB_slices", |bench| {
        let mut off = 0i64;
        let mut buf = vec![0u8; slice_bytes as usize];
        bench.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let s = log.read(off, slice_bytes, true).await.unwrap();
                    use std::os::unix::fs::FileExt;
                    s.file
                        .read_exact_at(&mut buf[..s.len as usize], s.position)
                        .unwrap();
                    off += (s.len as u64 / b.len() as u64 * RECORDS_PER_BATCH as u64) as i64;
                    if off >= end {
                        off = 0;
                    }
                }
                start.elapsed()
            })
        })
    });
    g.finish();
    rt.block_on(log.close()).unwrap();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = append_bench, read_bench
}
criterion_main!(benches);
