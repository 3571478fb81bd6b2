//! Storage engine tests: append/read, rolls, indexes, recovery, retention, idempotence,
//! fault injection through the Fs seam, and offset-math properties.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use sluice::storage::batch::{self, BatchBuilder, BatchHeader};
use sluice::storage::{FaultPlan, Fs, LogConfig, PartitionLog, ProposalVerdict, StorageError};

fn small_cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

fn batch_of(n: usize, value_bytes: usize, ts: i64) -> Bytes {
    batch::simple_batch(n, value_bytes, ts)
}

async fn open(dir: &Path, cfg: LogConfig) -> PartitionLog {
    PartitionLog::open(Fs::real(), dir.to_path_buf(), cfg)
        .await
        .unwrap()
}

/// Reads everything from `from` to the hwm as (base offset, record count) of each batch.
async fn read_all(log: &PartitionLog, mut from: i64) -> Vec<(i64, i32)> {
    let mut out = Vec::new();
    while from < log.high_watermark() {
        let s = log.read(from, 1 << 20, true).await.unwrap();
        let bytes = s.read_to_vec().unwrap();
        assert!(!bytes.is_empty(), "empty read at {from}");
        for b in batch::split_batches(&bytes) {
            let h = batch::validate(b, u32::MAX).unwrap();
            out.push((h.base_offset, h.record_count));
            from = h.last_offset() + 1;
        }
    }
    out
}

fn seg_files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

#[compio::test]
async fn append_read_roundtrip_across_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_cfg()).await;
    let mut expect = Vec::new();
    for i in 0..60usize {
        let n = 1 + i % 7;
        let info = log
            .append(batch_of(n, 10 + i * 3, 1000 + i as i64), 3)
            .await
            .unwrap();
        assert!(!info.duplicate);
        assert_eq!(info.last_offset - info.base_offset + 1, n as i64);
        expect.push((info.base_offset, n as i32));
        log.wait_durable(info.last_offset).await.unwrap();
    }
    assert!(log.segment_count() > 3, "segments: {}", log.segment_count());
    assert_eq!(log.high_watermark(), log.log_end_offset());
    assert_eq!(read_all(&log, 0).await, expect);
    // The stored batch carries the assigned offset and leader epoch, and a valid CRC.
    let s = log.read(expect[5].0, 1, true).await.unwrap();
    let b = s.read_to_vec().unwrap();
    let h = batch::validate(&b, u32::MAX).unwrap();
    assert_eq!((h.base_offset, h.partition_leader_epoch), (expect[5].0, 3));
    // Segment files are named by base offset and no batch straddles two.
    let logs = seg_files(dir.path(), "log");
    assert_eq!(logs.len(), log.segment_count());
    for p in &logs {
        let bytes = std::fs::read(p).unwrap();
        let batches = batch::split_batches(&bytes);
        assert_eq!(batches.iter().map(|b| b.len()).sum::<usize>(), bytes.len());
        let base: i64 = p.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        assert_eq!(BatchHeader::parse(batches[0]).unwrap().base_offset, base);
    }
    // Past the hwm / before the start.
    assert!(matches!(
        log.read(log.high_watermark() + 1, 100, true).await,
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert_eq!(
        log.read(log.high_watermark(), 100, true).await.unwrap().len,
        0
    );
    log.close().await.unwrap();
    assert!(matches!(
        log.append(batch_of(1, 1, 0), 0).await,
        Err(StorageError::Offline { .. })
    ));
}

#[compio::test]
async fn index_lookup_inside_batches_and_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            index_interval_bytes: 100,
            ..LogConfig::default()
        },
    )
    .await;
    for _ in 0..40 {
        log.append(batch_of(10, 20, 5), 0).await.unwrap();
    }
    log.wait_durable(399).await.unwrap();
    let idx = std::fs::metadata(seg_files(dir.path(), "log")[0].with_extension("index"));
    assert!(idx.is_err(), "active index is written at roll/close only");
    for off in [0, 5, 9, 10, 13, 199, 255, 399] {
        let s = log.read(off, 1, true).await.unwrap();
        let b = s.read_to_vec().unwrap();
        let h = batch::validate(&b, u32::MAX).unwrap();
        assert_eq!(h.base_offset, off / 10 * 10, "offset {off}");
    }
    // max_bytes bounds whole batches; min_one=false with a too-small max gives nothing.
    let one = log.read(0, 1, true).await.unwrap().len;
    let s = log.read(0, one * 3 + one / 2, false).await.unwrap();
    assert_eq!(s.len, one * 3);
    assert_eq!(log.read(0, one - 1, false).await.unwrap().len, 0);
    log.close().await.unwrap();
    // After a clean close the index exists and lookups still work after reopen.
    let log = open(
        dir.path(),
        LogConfig {
            index_interval_bytes: 100,
            ..LogConfig::default()
        },
    )
    .await;
    let s = log.read(257, 1, true).await.unwrap();
    assert_eq!(
        BatchHeader::parse(&s.read_to_vec().unwrap())
            .unwrap()
            .base_offset,
        250
    );
    assert_eq!(log.log_end_offset(), 400);
}

#[compio::test]
async fn bad_batches_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            message_max_bytes: 2000,
            ..LogConfig::default()
        },
    )
    .await;
    let good = batch_of(2, 10, 0);
    let mut crc = good.to_vec();
    let last = crc.len() - 1;
    crc[last] ^= 0xff;
    assert!(matches!(
        log.append(Bytes::from(crc), 0).await,
        Err(StorageError::CorruptRecord(_))
    ));
    let mut magic = good.to_vec();
    magic[16] = 1;
    assert!(matches!(
        log.append(Bytes::from(magic), 0).await,
        Err(StorageError::CorruptRecord(_))
    ));
    let truncated = good.slice(..good.len() - 3);
    assert!(matches!(
        log.append(truncated, 0).await,
        Err(StorageError::CorruptRecord(_))
    ));
    assert!(matches!(
        log.append(Bytes::new(), 0).await,
        Err(StorageError::CorruptRecord(_))
    ));
    assert!(matches!(
        log.append(batch_of(1, 3000, 0), 0).await,
        Err(StorageError::RecordTooLarge { .. })
    ));
    // count inconsistent with lastOffsetDelta (CRC recomputed so only the count is wrong)
    let mut count = good.to_vec();
    count[57..61].copy_from_slice(&5i32.to_be_bytes());
    let c = batch::compute_crc(&count);
    count[17..21].copy_from_slice(&c.to_be_bytes());
    assert!(matches!(
        log.append(Bytes::from(count), 0).await,
        Err(StorageError::CorruptRecord(_))
    ));
    assert_eq!(log.log_end_offset(), 0);
    // Two batches in one append are both stored, offsets contiguous.
    let two = [good.clone(), good].concat();
    let info = log.append(Bytes::from(two), 0).await.unwrap();
    assert_eq!((info.base_offset, info.last_offset), (0, 3));
}

#[compio::test]
async fn recovery_truncates_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path(), small_cfg()).await;
        for i in 0..30 {
            log.append(batch_of(3, 50, i), 0).await.unwrap();
        }
        log.wait_durable(89).await.unwrap();
        // dropped without close: unclean
    }
    let last = seg_files(dir.path(), "log").pop().unwrap();
    let len = std::fs::metadata(&last).unwrap().len();
    // Tear the last batch: cut 10 bytes off, then append garbage.
    let f = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    f.set_len(len - 10).unwrap();
    drop(f);
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&last)
            .unwrap();
        f.write_all(&[0xAB; 37]).unwrap();
    }
    let log = open(dir.path(), small_cfg()).await;
    assert_eq!(log.log_end_offset(), 87, "last batch (87..90) was torn");
    assert_eq!(log.high_watermark(), 87);
    let all = read_all(&log, 0).await;
    assert_eq!(all.len(), 29);
    assert!(log.corruption_reports().is_empty());
    let info = log.append(batch_of(1, 5, 0), 0).await.unwrap();
    assert_eq!(info.base_offset, 87);
    log.wait_durable(87).await.unwrap();
    assert_eq!(read_all(&log, 80).await.last(), Some(&(87, 1)));
}

#[compio::test]
async fn recovery_garbled_crc_in_tail_and_sealed_damage_reported() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path(), small_cfg()).await;
        for i in 0..40 {
            log.append(batch_of(2, 150, i), 0).await.unwrap();
        }
        log.wait_durable(79).await.unwrap();
    }
    let logs = seg_files(dir.path(), "log");
    assert!(logs.len() >= 3);
    // Flip a byte inside the 3rd batch of the first (sealed) segment.
    let first = &logs[0];
    let bytes = std::fs::read(first).unwrap();
    let batches = batch::split_batches(&bytes);
    let pos3: usize = batches[..2].iter().map(|b| b.len()).sum();
    let mut garbled = bytes.clone();
    garbled[pos3 + 70] ^= 0x55;
    std::fs::write(first, &garbled).unwrap();
    let log = open(dir.path(), small_cfg()).await;
    let reports = log.corruption_reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].path, *first);
    assert_eq!(reports[0].position, pos3 as u64);
    assert_eq!(reports[0].offset, 4);
    // Nothing after the damage was dropped from later segments; the end is intact.
    assert_eq!(log.log_end_offset(), 80);
    let got = read_all(&log, 0).await;
    assert_eq!(&got[..2], &[(0, 2), (2, 2)]);
    let second_base: i64 = logs[1]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(got[2].0, second_base, "reads continue at the next segment");
    // An offset inside the damaged range reads from the next segment.
    let s = log.read(5, 1, true).await.unwrap();
    assert_eq!(
        BatchHeader::parse(&s.read_to_vec().unwrap())
            .unwrap()
            .base_offset,
        second_base
    );
}

#[compio::test]
async fn mid_active_segment_corruption_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path(), LogConfig::default()).await;
        for i in 0..10 {
            log.append(batch_of(2, 50, i), 0).await.unwrap();
        }
        log.wait_durable(19).await.unwrap();
    }
    let p = seg_files(dir.path(), "log").pop().unwrap();
    let mut bytes = std::fs::read(&p).unwrap();
    let one = bytes.len() / 10;
    bytes[one * 4 + 65] ^= 1; // inside the 5th batch's records
    std::fs::write(&p, &bytes).unwrap();
    let log = open(dir.path(), LogConfig::default()).await;
    assert_eq!(log.log_end_offset(), 8);
    let r = log.corruption_reports();
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].position, r[0].offset), ((one * 4) as u64, 8));
}

#[compio::test]
async fn corrupt_and_missing_index_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_cfg();
    {
        let log = open(dir.path(), cfg.clone()).await;
        for i in 0..60 {
            log.append(batch_of(4, 40, 100 + i), 0).await.unwrap();
        }
        log.close().await.unwrap();
    }
    let logs = seg_files(dir.path(), "log");
    let idx0 = logs[0].with_extension("index");
    let tidx1 = logs[1].with_extension("timeindex");
    let idx2 = logs[2].with_extension("index");
    let orig0 = std::fs::read(&idx0).unwrap();
    let orig_t1 = std::fs::read(&tidx1).unwrap();
    let orig2 = std::fs::read(&idx2).unwrap();
    assert!(orig0.len() >= 16, "expected several index entries");
    // Corrupt: reverse the entries (not increasing). Missing: delete.
    let mut bad: Vec<u8> = orig0.chunks(8).rev().flatten().copied().collect();
    bad.extend_from_slice(&[1, 2, 3]);
    std::fs::write(&idx0, &bad).unwrap();
    std::fs::write(&tidx1, [0xFFu8; 24]).unwrap();
    std::fs::remove_file(&idx2).unwrap();
    let log = open(dir.path(), cfg).await;
    assert_eq!(std::fs::read(&idx0).unwrap(), orig0);
    assert_eq!(std::fs::read(&tidx1).unwrap(), orig_t1);
    assert_eq!(std::fs::read(&idx2).unwrap(), orig2);
    assert_eq!(read_all(&log, 0).await.len(), 60);
    for off in [0, 3, 61, 130, 239] {
        let s = log.read(off, 1, true).await.unwrap();
        assert_eq!(
            BatchHeader::parse(&s.read_to_vec().unwrap())
                .unwrap()
                .base_offset,
            off / 4 * 4
        );
    }
}

#[compio::test]
async fn index_pointing_at_wrong_batch_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path(), small_cfg()).await;
        for i in 0..30 {
            log.append(batch_of(4, 40, i), 0).await.unwrap();
        }
        log.close().await.unwrap();
    }
    let idx0 = seg_files(dir.path(), "log")[0].with_extension("index");
    let orig = std::fs::read(&idx0).unwrap();
    // Structurally valid but wrong: shift every relative offset by one.
    let mut bad = orig.clone();
    for e in bad.chunks_mut(8) {
        let r = u32::from_be_bytes([e[0], e[1], e[2], e[3]]) + 1;
        e[..4].copy_from_slice(&r.to_be_bytes());
    }
    std::fs::write(&idx0, &bad).unwrap();
    let log = open(dir.path(), small_cfg()).await;
    assert_eq!(std::fs::read(&idx0).unwrap(), orig);
    assert_eq!(read_all(&log, 0).await.len(), 30);
}

#[compio::test]
async fn retention_by_bytes_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_cfg()).await;
    for i in 0..80 {
        log.append(batch_of(2, 100, 1_000 + i), 0).await.unwrap();
    }
    log.wait_durable(159).await.unwrap();
    let segs = log.segment_count();
    assert!(segs >= 5);
    // retention.ms: batch timestamps 1000..1079; at now=1050 with retention 10 ms the segments
    // whose max timestamp < 1040 go, the next one stays.
    log.set_config(LogConfig {
        retention_ms: 10,
        ..small_cfg()
    });
    log.housekeeping(1_050).await.unwrap();
    let start = log.log_start_offset();
    assert!(start > 0 && log.segment_count() < segs);
    let first = log.read(start, 1, true).await.unwrap();
    let h = BatchHeader::parse(&first.read_to_vec().unwrap()).unwrap();
    assert_eq!(h.base_offset, start);
    assert!(
        h.max_timestamp < 1_040 + 14,
        "first kept batch is from the segment crossing 1040"
    );
    assert!(log.max_timestamp().0 == 1_079);
    assert!(matches!(
        log.read(0, 100, true).await,
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    // retention.bytes: keep at least 2 segments' worth.
    let size = log.size_bytes();
    log.set_config(LogConfig {
        retention_bytes: 2 * 4096,
        retention_ms: -1,
        ..small_cfg()
    });
    log.housekeeping(i64::MAX / 2).await.unwrap();
    assert!(log.size_bytes() >= 2 * 4096 && log.size_bytes() < size);
    let start2 = log.log_start_offset();
    assert!(start2 > start);
    assert_eq!(seg_files(dir.path(), "log").len(), log.segment_count());
    assert_eq!(read_all(&log, start2).await.first().unwrap().0, start2);
    log.set_config(LogConfig {
        retention_ms: 10,
        ..small_cfg()
    });
    log.housekeeping(1_000_000).await.unwrap();
    assert_eq!(log.segment_count(), 1, "everything but the active segment");
    // segment.ms rolls the active segment when it is old enough; then it can be deleted.
    log.set_config(LogConfig {
        segment_ms: 0,
        retention_ms: 10,
        ..small_cfg()
    });
    log.housekeeping(2_000_000_000_000_000).await.unwrap();
    log.housekeeping(2_000_000_000_000_000).await.unwrap();
    assert_eq!(log.size_bytes(), 0);
    assert_eq!(log.log_start_offset(), 160);
    assert_eq!(log.log_end_offset(), 160);
    let info = log.append(batch_of(1, 1, 0), 0).await.unwrap();
    assert_eq!(info.base_offset, 160);
}

#[compio::test]
async fn delete_records_moves_start_durably() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path(), small_cfg()).await;
        for i in 0..50 {
            log.append(batch_of(2, 100, i), 0).await.unwrap();
        }
        log.wait_durable(99).await.unwrap();
        let segs = log.segment_count();
        assert!(matches!(
            log.delete_records(101).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        assert_eq!(log.delete_records(45).await.unwrap(), 45);
        assert_eq!(log.log_start_offset(), 45);
        assert!(log.segment_count() < segs);
        assert_eq!(
            log.delete_records(10).await.unwrap(),
            45,
            "never moves backwards"
        );
        assert!(matches!(
            log.read(44, 10, true).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        let s = log.read(45, 1, true).await.unwrap();
        let h = BatchHeader::parse(&s.read_to_vec().unwrap()).unwrap();
        assert_eq!(h.base_offset, 44, "the batch containing 45");
        assert_eq!(s.log_start_offset, 45);
        // unclean drop
    }
    let log = open(dir.path(), small_cfg()).await;
    assert_eq!(log.log_start_offset(), 45);
    assert_eq!(log.delete_records(-1).await.unwrap(), 100);
}

fn idem(pid: i64, epoch: i16, seq: i32, n: usize) -> Bytes {
    let mut b = BatchBuilder::new(7).producer(pid, epoch, seq);
    for i in 0..n {
        b = b.record(None, Some(format!("v{i}").as_bytes()));
    }
    b.build()
}

#[compio::test]
async fn idempotent_dedup_out_of_order_and_fencing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default()).await;
    let a = log.append(idem(1, 0, 0, 3), 0).await.unwrap();
    let b = log.append(idem(1, 0, 3, 2), 0).await.unwrap();
    log.append(batch_of(1, 1, 0), 0).await.unwrap(); // non-idempotent
    let dup = log.append(idem(1, 0, 0, 3), 0).await.unwrap();
    assert!(dup.duplicate);
    assert_eq!(
        (dup.base_offset, dup.last_offset),
        (a.base_offset, a.last_offset)
    );
    let dup_b = log.append(idem(1, 0, 3, 2), 0).await.unwrap();
    assert_eq!((dup_b.base_offset, dup_b.duplicate), (b.base_offset, true));
    assert_eq!(log.log_end_offset(), 6, "duplicates write nothing");
    assert!(matches!(
        log.append(idem(1, 0, 7, 1), 0).await,
        Err(StorageError::OutOfOrderSequence {
            producer_id: 1,
            expected: 5,
            got: 7
        })
    ));
    // A new epoch must start at 0, then the old epoch is fenced.
    assert!(matches!(
        log.append(idem(1, 1, 5, 1), 0).await,
        Err(StorageError::OutOfOrderSequence { .. })
    ));
    log.append(idem(1, 1, 0, 1), 0).await.unwrap();
    assert!(matches!(
        log.append(idem(1, 0, 5, 1), 0).await,
        Err(StorageError::ProducerFenced { .. })
    ));
    // Another producer is independent; only the last 5 batches are remembered.
    for s in 0..7 {
        log.append(idem(2, 0, s, 1), 0).await.unwrap();
    }
    assert!(log.append(idem(2, 0, 6, 1), 0).await.unwrap().duplicate);
    assert!(log.append(idem(2, 0, 2, 1), 0).await.unwrap().duplicate);
    assert!(matches!(
        log.append(idem(2, 0, 1, 1), 0).await,
        Err(StorageError::OutOfOrderSequence { .. })
    ));
}

#[compio::test]
async fn dedup_survives_unclean_and_clean_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let log = open(dir.path(), small_cfg()).await;
        let first = log.append(idem(9, 2, 0, 4), 0).await.unwrap();
        for i in 0..20 {
            log.append(batch_of(2, 100, i), 0).await.unwrap(); // force rolls
        }
        log.append(idem(9, 2, 4, 1), 0).await.unwrap();
        log.wait_durable(log.log_end_offset() - 1).await.unwrap();
        first
    };
    let log = open(dir.path(), small_cfg()).await;
    let d = log.append(idem(9, 2, 4, 1), 0).await.unwrap();
    assert!(d.duplicate);
    let d0 = log.append(idem(9, 2, 0, 4), 0).await.unwrap();
    assert_eq!((d0.base_offset, d0.duplicate), (first.base_offset, true));
    assert!(matches!(
        log.append(idem(9, 1, 5, 1), 0).await,
        Err(StorageError::ProducerFenced { .. })
    ));
    log.close().await.unwrap();
    assert!(seg_files(dir.path(), "snapshot").len() == 1);
    let log = open(dir.path(), small_cfg()).await;
    assert!(
        seg_files(dir.path(), "snapshot").is_empty(),
        "snapshot consumed at open"
    );
    assert!(log.append(idem(9, 2, 4, 1), 0).await.unwrap().duplicate);
    assert!(!log.append(idem(9, 2, 5, 1), 0).await.unwrap().duplicate);
}

#[compio::test]
async fn enospc_refuses_the_append_and_writes_resume_once_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    let log = PartitionLog::open(
        Fs::faulty(plan.clone()),
        dir.path().to_path_buf(),
        LogConfig::default(),
    )
    .await
    .unwrap();
    let ok = log.append(batch_of(2, 100, 0), 0).await.unwrap();
    log.wait_durable(ok.last_offset).await.unwrap();
    let size_before = std::fs::metadata(&seg_files(dir.path(), "log")[0])
        .unwrap()
        .len();
    plan.fail_writes_after(50, libc::ENOSPC); // torn: 50 bytes then ENOSPC
    let e = log.append(batch_of(2, 100, 0), 0).await.unwrap_err();
    assert!(matches!(e, StorageError::NoSpace { .. }), "{e:?}");
    assert!(
        !log.is_offline(),
        "ENOSPC on a data write with the torn bytes cut off keeps the log"
    );
    let size_after = std::fs::metadata(&seg_files(dir.path(), "log")[0])
        .unwrap()
        .len();
    assert_eq!(size_after, size_before, "the 50 torn bytes were cut off");
    // Still full: refused again, nothing stored, offsets not consumed.
    let e = log.append(batch_of(1, 10, 0), 0).await.unwrap_err();
    assert!(matches!(e, StorageError::NoSpace { .. }), "{e:?}");
    assert_eq!(log.log_end_offset(), 2);
    // Reads keep working meanwhile.
    assert_eq!(read_all(&log, 0).await, vec![(0, 2)]);
    // Space returns: writes resume right after the last acknowledged batch.
    plan.clear();
    let info = log.append(batch_of(3, 10, 0), 0).await.unwrap();
    assert_eq!(info.base_offset, 2);
    log.wait_durable(info.last_offset).await.unwrap();
    assert_eq!(read_all(&log, 0).await, vec![(0, 2), (2, 3)]);
    drop(log);
    // An unclean reopen finds exactly the acknowledged batches.
    let log = open(dir.path(), LogConfig::default()).await;
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(read_all(&log, 0).await, vec![(0, 2), (2, 3)]);
}

#[compio::test]
async fn eio_on_write_takes_partition_offline() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    let log = PartitionLog::open(
        Fs::faulty(plan.clone()),
        dir.path().to_path_buf(),
        LogConfig::default(),
    )
    .await
    .unwrap();
    let ok = log.append(batch_of(2, 100, 0), 0).await.unwrap();
    log.wait_durable(ok.last_offset).await.unwrap();
    plan.fail_writes_after(50, libc::EIO); // torn: 50 bytes then EIO
    let e = log.append(batch_of(2, 100, 0), 0).await.unwrap_err();
    assert!(matches!(e, StorageError::Io { .. }), "{e:?}");
    assert!(log.is_offline());
    plan.clear();
    assert!(matches!(
        log.append(batch_of(1, 1, 0), 0).await,
        Err(StorageError::Offline { .. })
    ));
    assert!(matches!(
        log.read(0, 100, true).await,
        Err(StorageError::Offline { .. })
    ));
    assert!(matches!(
        log.wait_durable(0).await,
        Err(StorageError::Offline { .. })
    ));
    drop(log);
    // Reopen: the torn 50 bytes are truncated away.
    let log = open(dir.path(), LogConfig::default()).await;
    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(read_all(&log, 0).await, vec![(0, 2)]);
}

#[compio::test]
async fn failed_fsync_takes_partition_offline() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    let log = PartitionLog::open(
        Fs::faulty(plan.clone()),
        dir.path().to_path_buf(),
        LogConfig::default(),
    )
    .await
    .unwrap();
    let ok = log.append(batch_of(1, 10, 0), 0).await.unwrap();
    log.wait_durable(ok.last_offset).await.unwrap();
    plan.fail_fsync(true, libc::EIO);
    let waiter = log.hwm_changed();
    let info = log.append(batch_of(1, 10, 0), 0).await.unwrap(); // write succeeds
    let e = log.wait_durable(info.last_offset).await.unwrap_err();
    assert!(matches!(e, StorageError::Offline { .. }), "{e:?}");
    assert!(log.is_offline());
    waiter.await; // woken by going offline
    assert_eq!(log.high_watermark(), 1, "never exposed an unsynced batch");
    plan.clear();
    assert!(matches!(
        log.append(batch_of(1, 1, 0), 0).await,
        Err(StorageError::Offline { .. })
    ));
    assert!(matches!(
        log.close().await,
        Err(StorageError::Offline { .. })
    ));
}

#[compio::test]
async fn group_commit_covers_concurrent_appends() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    let log = PartitionLog::open(
        Fs::faulty(plan.clone()),
        dir.path().to_path_buf(),
        LogConfig::default(),
    )
    .await
    .unwrap();
    let before = plan.fsync_count();
    let n = 64;
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let log = log.clone();
            async move {
                let info = log.append(batch_of(4, 200, 0), 0).await.unwrap();
                log.wait_durable(info.last_offset).await.unwrap();
                info.last_offset
            }
        })
        .collect();
    let offs = futures::future::join_all(tasks).await;
    assert_eq!(offs.iter().max(), Some(&(n * 4 - 1)));
    assert_eq!(log.high_watermark(), n * 4);
    let fsyncs = plan.fsync_count() - before;
    // Appends written while an fsync runs share the next one. How many share depends on the
    // machine's speed (33 of 64 seen on a loaded 2-core box), so only sharing itself is asserted.
    assert!(
        fsyncs < n as u64,
        "{fsyncs} fsyncs for {n} appends: no group commit"
    );
}

#[compio::test]
async fn hwm_changed_and_relaxed_flush() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    let cfg = LogConfig {
        flush_messages: Some(1_000_000),
        ..LogConfig::default()
    };
    let log = PartitionLog::open(Fs::faulty(plan.clone()), dir.path().to_path_buf(), cfg)
        .await
        .unwrap();
    let w = log.hwm_changed();
    let before = plan.fsync_count();
    let info = log.append(batch_of(3, 10, 0), 0).await.unwrap();
    w.await;
    assert_eq!(log.high_watermark(), 3, "relaxed: hwm = written end");
    log.wait_durable(info.last_offset).await.unwrap();
    assert_eq!(plan.fsync_count(), before, "no fsync below flush.messages");
    assert_eq!(log.durable_offset(), 0);
    // flush.messages threshold reached -> one fsync.
    log.set_config(LogConfig {
        flush_messages: Some(5),
        ..LogConfig::default()
    });
    let w = log.hwm_changed();
    log.append(batch_of(3, 10, 0), 0).await.unwrap();
    w.await;
    // Durable default again: hwm waits for the fsync.
    log.set_config(LogConfig::default());
    let info = log.append(batch_of(1, 10, 0), 0).await.unwrap();
    log.wait_durable(info.last_offset).await.unwrap();
    assert_eq!(log.durable_offset(), 7);
    assert!(plan.fsync_count() > before);
}

#[compio::test]
async fn flush_ms_fsyncs_on_its_own_and_segment_ms_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    let cfg = LogConfig {
        flush_ms: Some(20),
        segment_ms: 0,
        ..LogConfig::default()
    };
    let log = PartitionLog::open(Fs::faulty(plan.clone()), dir.path().to_path_buf(), cfg)
        .await
        .unwrap();
    let fsync = plan.next_fsync();
    let info = log.append(batch_of(2, 10, 0), 0).await.unwrap();
    assert_eq!(log.high_watermark(), 2);
    assert_eq!(log.durable_offset(), 0);
    // Bounded wait: the flusher's flush.ms timer must issue the fsync without another append.
    compio::time::timeout(std::time::Duration::from_secs(10), fsync)
        .await
        .expect("no fsync within 10 s");
    log.wait_durable(info.last_offset).await.unwrap();
    // segment.ms = 0: the next append rolls (the segment is already old enough).
    assert_eq!(log.segment_count(), 1);
    log.append(batch_of(1, 10, 0), 0).await.unwrap();
    assert_eq!(log.segment_count(), 2);
}

#[compio::test]
async fn read_slice_survives_segment_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_cfg()).await;
    for i in 0..30 {
        log.append(batch_of(2, 200, i), 0).await.unwrap();
    }
    log.wait_durable(59).await.unwrap();
    let slice = log.read(0, 4096, true).await.unwrap();
    let want = slice.read_to_vec().unwrap();
    assert!(!want.is_empty());
    log.delete_records(log.high_watermark()).await.unwrap();
    assert_eq!(log.segment_count(), 1);
    assert!(!seg_files(dir.path(), "log")
        .iter()
        .any(|p| p.ends_with(format!("{:020}.log", 0))));
    // Readable from another thread, after the unlink.
    let got = std::thread::spawn(move || slice.read_to_vec().unwrap())
        .join()
        .unwrap();
    assert_eq!(got, want);
}

#[compio::test]
async fn timestamps_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_cfg()).await;
    assert_eq!(log.max_timestamp(), (-1, -1));
    for i in 0..50i64 {
        log.append(batch_of(2, 100, 10_000 + i * 10), 0)
            .await
            .unwrap();
    }
    log.wait_durable(99).await.unwrap();
    assert_eq!(
        log.offset_for_timestamp(0).await.unwrap(),
        Some((0, 10_000))
    );
    assert_eq!(
        log.offset_for_timestamp(10_005).await.unwrap(),
        Some((2, 10_010))
    );
    assert_eq!(
        log.offset_for_timestamp(10_300).await.unwrap(),
        Some((60, 10_300))
    );
    assert_eq!(log.offset_for_timestamp(10_491).await.unwrap(), None);
    assert_eq!(log.max_timestamp(), (10_490, 99));
    log.close().await.unwrap();
    let log = open(dir.path(), small_cfg()).await;
    assert_eq!(
        log.offset_for_timestamp(10_301).await.unwrap(),
        Some((62, 10_310))
    );
    assert_eq!(log.max_timestamp(), (10_490, 99));
}

#[compio::test]
async fn remove_deletes_directory() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t-0");
    let log = open(&p, LogConfig::default()).await;
    log.append(batch_of(1, 1, 0), 0).await.unwrap();
    log.remove().await.unwrap();
    assert!(!p.exists());
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]
        /// Random batch sizes and counts: every offset reads back the batch containing it,
        /// before and after an unclean reopen.
        #[test]
        fn every_offset_reads_its_batch(
            batches in proptest::collection::vec((1usize..12, 0usize..300), 1..60),
            seg_kib in 1u64..6,
            interval in 0u32..2048,
        ) {
            let rt = compio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let cfg = LogConfig { segment_bytes: seg_kib * 1024, index_interval_bytes: interval, ..LogConfig::default() };
                let log = open(dir.path(), cfg.clone()).await;
                let mut spans = Vec::new();
                for (i, (n, v)) in batches.iter().enumerate() {
                    let info = log.append(batch_of(*n, *v, i as i64), 0).await.unwrap();
                    spans.push((info.base_offset, info.last_offset));
                }
                log.wait_durable(log.log_end_offset() - 1).await.unwrap();
                check(&log, &spans).await;
                drop(log); // unclean: full scan
                let log = open(dir.path(), cfg.clone()).await;
                check(&log, &spans).await;
                log.close().await.unwrap();
                let log = open(dir.path(), cfg).await; // clean: indexes trusted
                check(&log, &spans).await;
                assert_eq!(log.log_end_offset(), spans.last().unwrap().1 + 1);
            });
        }
    }

    async fn check(log: &PartitionLog, spans: &[(i64, i64)]) {
        for &(base, last) in spans {
            for off in base..=last {
                let s = log.read(off, 1, true).await.unwrap();
                let h = BatchHeader::parse(&s.read_to_vec().unwrap()).unwrap();
                assert_eq!(
                    (h.base_offset, h.last_offset()),
                    (base, last),
                    "offset {off}"
                );
            }
            // A big read from here returns whole batches starting at this one.
            let s = log.read(base, 3000, false).await.unwrap();
            let bytes = s.read_to_vec().unwrap();
            let bs = batch::split_batches(&bytes);
            assert_eq!(bs.iter().map(|b| b.len()).sum::<usize>(), bytes.len());
            if let Some(b) = bs.first() {
                assert_eq!(BatchHeader::parse(b).unwrap().base_offset, base);
            }
        }
    }
}

mod interop {
    //! Batches from kafka-protocol's encoder (compressed, idempotent) are stored as sent and
    //! decode back with its decoder; BatchBuilder's output decodes with it too.
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };

    fn records(n: i32, first_seq: i32) -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: 42,
                producer_epoch: 0,
                timestamp_type: TimestampType::Creation,
                offset: i64::from(i),
                sequence: first_seq + i,
                timestamp: 1_700_000_000_000 + i64::from(i),
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(vec![b'a' + (i % 26) as u8; 300])),
                headers: Default::default(),
            })
            .collect()
    }

    fn encode(recs: &[Record], compression: Compression) -> Bytes {
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            recs,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.freeze()
    }

    #[compio::test]
    async fn kafka_protocol_batches_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), LogConfig::default()).await;
        let mut seq = 0;
        let mut sent = Vec::new();
        for c in [
            Compression::None,
            Compression::Lz4,
            Compression::Zstd,
            Compression::Gzip,
            Compression::Snappy,
        ] {
            let recs = records(7, seq);
            let wire = encode(&recs, c);
            let info = log.append(wire.clone(), 5).await.unwrap();
            assert_eq!(info.last_offset - info.base_offset, 6);
            // A retry of the same batch is a duplicate.
            assert!(log.append(wire.clone(), 5).await.unwrap().duplicate);
            seq += 7;
            sent.push((info.base_offset, wire, recs));
        }
        log.wait_durable(34).await.unwrap();
        for (base, wire, recs) in sent {
            let s = log.read(base, 1 << 20, true).await.unwrap();
            let stored = s.read_to_vec().unwrap();
            let first = batch::split_batches(&stored)[0];
            assert_eq!(first.len(), wire.len());
            assert_eq!(
                &first[21..],
                &wire[21..],
                "bytes after the CRC field stored as sent"
            );
            let mut b = Bytes::copy_from_slice(first);
            let set = RecordBatchDecoder::decode(&mut b).unwrap();
            assert_eq!(set.records.len(), recs.len());
            for (i, r) in set.records.iter().enumerate() {
                assert_eq!(r.offset, base + i as i64);
                assert_eq!(r.value, recs[i].value);
                assert_eq!(r.partition_leader_epoch, 5);
            }
        }
    }

    #[test]
    fn batch_builder_decodes_with_kafka_protocol() {
        let b = BatchBuilder::new(1000)
            .producer(3, 1, 10)
            .record(Some(b"k"), Some(b"v"))
            .record_at(1009, None, None)
            .build();
        let mut bytes = b.clone();
        let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
        assert_eq!(set.records.len(), 2);
        assert_eq!(set.records[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(set.records[1].value, None);
        assert_eq!(set.records[1].timestamp, 1009);
        assert_eq!(set.records[1].sequence, 11);
        assert_eq!(set.records[0].producer_id, 3);
    }
}

/// A power cut right after a roll: the new segment empty, the sealed one's unsynced tail torn.
/// Recovery must truncate the torn tail (not report it as mid-log damage and leave offsets
/// below the high watermark unreadable). Found by tests/it/sim.rs (seed 12648452).
#[compio::test]
async fn torn_tail_before_an_empty_rolled_segment_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_cfg()).await;
    let first = log.append(batch_of(2, 50, 0), 0).await.unwrap();
    log.wait_durable(first.last_offset).await.unwrap();
    while log.segment_count() < 2 {
        log.append(batch_of(1, 100, 0), 0).await.unwrap();
    }
    drop(log);
    let segs = seg_files(dir.path(), "log");
    assert_eq!(segs.len(), 2);
    // Lost: the whole new segment and the last 10 bytes of the sealed one.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segs[1])
        .unwrap()
        .set_len(0)
        .unwrap();
    let sealed = std::fs::OpenOptions::new()
        .write(true)
        .open(&segs[0])
        .unwrap();
    let len = sealed.metadata().unwrap().len();
    sealed.set_len(len - 10).unwrap();
    drop(sealed);

    let log = open(dir.path(), small_cfg()).await;
    assert!(
        log.corruption_reports().is_empty(),
        "{:?}",
        log.corruption_reports()
    );
    assert_eq!(
        seg_files(dir.path(), "log").len(),
        1,
        "the empty segment is removed"
    );
    let batches = read_all(&log, 0).await;
    let end = batches.last().map(|(o, n)| o + i64::from(*n)).unwrap();
    assert!(end > first.last_offset, "the durable batch survived");
    assert_eq!(
        log.high_watermark(),
        end,
        "no unreadable offsets below the high watermark"
    );
    assert_eq!(log.log_end_offset(), end);
    let next = log.append(batch_of(1, 10, 0), 0).await.unwrap();
    assert_eq!(next.base_offset, end);
}

/// A power cut that keeps a later segment's unsynced writes and drops an earlier segment's
/// (the disk orders nothing across files). Before the fix the roll left the sealed segment's
/// tail to the next group commit, so writes to the new segment could reach the disk first:
/// recovery then reported the sealed segment's lost tail as mid-log damage and served the new
/// segment's never-fsynced batches after a gap of missing offsets (found by tests/it/sim.rs).
/// Now the roll fsyncs the sealed segment before the new one exists. `flush.messages` set to
/// its maximum keeps the flusher from fsyncing anything, so only the roll's own fsync counts.
#[compio::test]
async fn power_cut_keeping_a_later_segment_but_not_an_earlier_one_leaves_no_gap() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    plan.track_unsynced(true);
    let cfg = LogConfig {
        segment_bytes: 1000,
        flush_messages: Some(u64::MAX),
        ..small_cfg()
    };
    let log = PartitionLog::open(
        Fs::faulty(plan.clone()),
        dir.path().to_path_buf(),
        cfg.clone(),
    )
    .await
    .unwrap();
    while seg_files(dir.path(), "log").len() < 2 {
        log.append(batch_of(2, 100, 0), 0).await.unwrap();
    }
    log.append(batch_of(2, 100, 0), 0).await.unwrap();
    let written = log.log_end_offset();
    let segs = seg_files(dir.path(), "log");
    assert_eq!(
        plan.unsynced_ops(&segs[0]),
        0,
        "a sealed segment has no unsynced writes once the next one exists"
    );
    assert!(
        plan.unsynced_ops(&segs[1]) > 0,
        "the new segment's append is not fsynced"
    );
    let last_name = segs[1].file_name().unwrap().to_string_lossy().into_owned();
    drop(log);
    // Drop every unsynced write except the new segment's.
    let what = plan
        .power_cut_keeping(dir.path(), |name, _| name == last_name)
        .unwrap();
    let log = PartitionLog::open(Fs::faulty(plan.clone()), dir.path().to_path_buf(), cfg)
        .await
        .unwrap();
    assert!(
        log.corruption_reports().is_empty(),
        "{what}: {:?}",
        log.corruption_reports()
    );
    let got = read_all(&log, 0).await;
    let mut next = 0;
    for (base, count) in &got {
        assert_eq!(*base, next, "{what}: offsets dense from 0, no gap: {got:?}");
        next += *count as i64;
    }
    assert_eq!(
        next, written,
        "{what}: the sealed segment was durable, the new one's write kept"
    );
    assert_eq!(
        (log.high_watermark(), log.log_end_offset()),
        (next, next),
        "{what}"
    );
}

// ---- replicated logs (cluster mode): the storage operations Raft relies on ----

fn replicated_cfg() -> LogConfig {
    LogConfig { replicated: true, ..small_cfg() }
}

#[compio::test]
async fn replicated_entries_dedup_truncate_and_reset() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), replicated_cfg()).await;
    // An entry without data (a new leader's no-op) is a one-record control batch.
    let noop = log.append_entry(Bytes::new(), 1).await.unwrap();
    assert_eq!((noop.base_offset, noop.next_offset), (0, 1));
    assert!(noop.outcome.is_err());
    // A producer batch gets the next offsets and the term as its leader epoch.
    let b = BatchBuilder::new(1000).producer(7, 0, 0).record(None, Some(b"a")).record(None, Some(b"b")).build();
    let e = log.append_entry(b.clone(), 1).await.unwrap();
    assert_eq!((e.base_offset, e.next_offset), (1, 3));
    assert!(!e.outcome.unwrap().duplicate);
    // The leader judges a batch before proposing it: the same idempotent batch again (a retry)
    // is a duplicate with the original offsets, and is not proposed.
    let mut check = log.proposal_check();
    match log.check_proposal(&b, &mut check) {
        ProposalVerdict::Duplicate(info) => assert_eq!((info.base_offset, info.last_offset, info.duplicate), (1, 2, true)),
        v => panic!("a retry of a written batch: {v:?}"),
    }
    // A follower writes what the leader proposed whatever its own producer table says (here
    // it would call the batch a duplicate: its table can differ from the leader's after a
    // snapshot or retention), so every replica's log is the same.
    let verbatim = log.append_entry(b.clone(), 2).await.unwrap();
    assert_eq!((verbatim.base_offset, verbatim.next_offset), (3, 5));
    // Nothing is readable before it is committed.
    assert_eq!(log.high_watermark(), 0);
    log.set_committed(3);
    assert_eq!(log.high_watermark(), 3);
    let positions = log.start_replication(|_| 3).await.unwrap();
    let epochs: Vec<(i64, i32)> = positions.iter().map(|p| (p.base_offset, p.epoch)).collect();
    assert_eq!(epochs, vec![(0, 1), (1, 1), (3, 2)]);
    assert_eq!(log.read_batches(1, 1 << 20).await.unwrap().len(), 2);
    assert_eq!(log.read_entry_sync(3).unwrap().len(), b.len());
    assert_eq!(log.read_entry_sync(0).unwrap().len(), batch::control_batch(0, batch::CONTROL_TYPE_LEADER_CHANGE).len());
    // Dropping the uncommitted suffix (a conflicting new leader) reopens the log without it
    // and rebuilds the producer table: the batch can be accepted again at the cut.
    let log = log.truncate_from(3).await.unwrap();
    assert_eq!(log.log_end_offset(), 3);
    let again = log
        .append_entry(BatchBuilder::new(1000).producer(7, 0, 2).record(None, Some(b"c")).build(), 3)
        .await
        .unwrap();
    assert_eq!(again.base_offset, 3);
    assert!(!again.outcome.unwrap().duplicate);
    // Installing a snapshot: the log restarts, empty, at the leader's log start.
    let log = log.reset_to(50).await.unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (50, 50));
    let next = log.append_entry(Bytes::new(), 4).await.unwrap();
    assert_eq!(next.base_offset, 50);
    log.close().await.unwrap();
}

#[compio::test]
async fn the_leader_judges_producer_batches_before_proposing_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig { message_max_bytes: 2000, ..replicated_cfg() }).await;
    log.append_entry(idem(7, 0, 0, 2), 1).await.unwrap();
    let mut check = log.proposal_check();
    let verdict = |check: &mut _, b: Bytes| format!("{:?}", log.check_proposal(&b, check));
    // In sequence, then the next one proposed in the same turn: judged after the first.
    assert_eq!(verdict(&mut check, idem(7, 0, 2, 3)), "Accept");
    assert_eq!(verdict(&mut check, idem(7, 0, 5, 1)), "Accept");
    // A retry of one proposed in this turn, not written yet: the producer retries it.
    assert_eq!(verdict(&mut check, idem(7, 0, 2, 3)), "InFlight");
    // A retry of a written one: its offsets.
    assert!(verdict(&mut check, idem(7, 0, 0, 2)).starts_with("Duplicate(AppendInfo { base_offset: 0, last_offset: 1,"));
    assert!(verdict(&mut check, idem(7, 0, 9, 1)).starts_with("Refused(OutOfOrderSequence"));
    assert!(verdict(&mut check, idem(7, 1, 3, 1)).starts_with("Refused(OutOfOrderSequence"));
    assert!(verdict(&mut check, batch_of(1, 3000, 0)).starts_with("Refused(RecordTooLarge"));
    let two = [batch_of(1, 10, 0), batch_of(1, 10, 0)].concat();
    assert!(verdict(&mut check, Bytes::from(two)).starts_with("Refused(CorruptRecord"));
    // A follower takes what the leader sent, even past its own max.message.bytes (a topic
    // config change reaches replicas at different times) and out of its table's sequence.
    let big = log.append_entry(batch_of(1, 3000, 0), 1).await.unwrap();
    assert!(big.outcome.is_ok());
    let gap = log.append_entry(idem(7, 0, 9, 1), 1).await.unwrap();
    assert_eq!((gap.base_offset, gap.next_offset), (3, 4));
    // Raft refused to propose the last accepted batch: the batches after it are judged as if
    // it had never come.
    let mut check = log.proposal_check();
    assert_eq!(verdict(&mut check, idem(8, 0, 0, 1)), "Accept");
    assert_eq!(verdict(&mut check, idem(8, 0, 1, 1)), "Accept");
    check.undo_last();
    assert!(verdict(&mut check, idem(8, 0, 2, 1)).starts_with("Refused(OutOfOrderSequence"));
    assert_eq!(verdict(&mut check, idem(8, 0, 1, 1)), "Accept");
    let mut check = log.proposal_check();
    assert_eq!(verdict(&mut check, idem(9, 0, 0, 1)), "Accept");
    check.undo_last();
    assert_eq!(verdict(&mut check, idem(9, 0, 0, 1)), "Accept", "not a retry of a batch in flight");
    log.close().await.unwrap();
}

#[compio::test]
async fn replicated_retention_waits_for_the_replica() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig { retention_bytes: 4096, ..replicated_cfg() };
    let log = open(dir.path(), cfg).await;
    let mut next = 0;
    for i in 0..40 {
        next = log.append_entry(batch_of(3, 200, 1000 + i), 1).await.unwrap().next_offset;
    }
    log.wait_durable(next - 1).await.unwrap();
    // Nothing committed yet: retention has nothing it may delete.
    assert_eq!(log.retention_point(i64::MAX), None);
    log.set_committed(next);
    let keep = log.retention_point(i64::MAX).expect("segments over retention.bytes");
    // Housekeeping never deletes a replicated log's prefix by itself.
    log.housekeeping(i64::MAX).await.unwrap();
    assert_eq!(log.log_start_offset(), 0);
    // The replica deletes it, at a segment (entry) boundary.
    log.delete_records(keep).await.unwrap();
    assert_eq!(log.log_start_offset(), keep);
    assert!(seg_files(dir.path(), "log").len() < 40);
    log.close().await.unwrap();
}
