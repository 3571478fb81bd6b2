//! Deterministic simulation of the storage engine (TigerBeetle's VOPR idea, at the storage
//! level): one seed drives a random sequence of appends (batch sizes, record sizes), waits for
//! durability, clean closes, injected faults through the `Fs` seam (`FaultPlan`: ENOSPC torn
//! writes, failed fsyncs) and crashes. A crash drops the log without closing it and then loses
//! unsynced writes the way a power cut can: every byte past the last fsynced position (what the
//! high watermark covered) may be gone, cut at a random point, and the surviving unsynced tail
//! may end in garbage. Half the crashes instead use the `Fs` seam's power-cut model
//! (`FaultPlan::track_unsynced` / `power_cut`): each file keeps its fsynced bytes plus an
//! arbitrary subset of the writes, truncations and O_TRUNCs made since, chosen per file and per
//! write, some torn to a prefix ending in garbage: writes reordered across files and segments (a
//! later segment's batches survive an earlier segment's lost tail, an index survives without its
//! segment bytes) and within a file (a later write survives an earlier one, leaving zeros).
//! After every reopen the checker requires:
//! - every batch acknowledged durable (wait_durable returned Ok) is there, byte-identical, at
//!   its offset; what follows is a prefix of what was appended after it (whole batches, in
//!   order), never anything else;
//! - offsets dense from 0; the high watermark not below the acknowledged durable end;
//! - the log takes appends again right after its recovered end.
//!
//! A failure prints its seed and what the crash kept: SLUICE_SIM_SEED=<seed> SLUICE_SIM_SEEDS=1
//! replays the same operations (the engine runs on one thread and every step here awaits before
//! the next). Not bit for bit: the group-commit flusher runs concurrently with appends, so which
//! writes an fsync covered depends on io_uring completion timing; a failure may take a few
//! replays (one seed takes about a second). SLUICE_SIM_SEEDS sets the number of seeds
//! (default 30 in CI; scripts/crash-soak.sh runs 200), SLUICE_SIM_STEPS the steps per seed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sluice::storage::batch::{self, BatchBuilder};
use sluice::storage::{FaultPlan, Fs, LogConfig, PartitionLog, StorageError};

const SIM_SEEDS_DEFAULT: u64 = 30; // includes seed 12648452, which found the empty-segment gap
const SIM_STEPS_DEFAULT: u64 = 300;
const SIM_SEED_BASE_DEFAULT: u64 = 0xC0FFEE;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cfg(rng: &mut StdRng) -> LogConfig {
    LogConfig {
        // Small segments, so crashes meet rolls, sealed-but-unsynced segments and indexes.
        segment_bytes: rng.random_range(600..6000),
        index_interval_bytes: rng.random_range(64..1024),
        ..LogConfig::default()
    }
}

/// One batch of the model: its bytes as the producer sent them (baseOffset 0).
#[derive(Clone)]
struct Sent {
    records: i64,
    bytes: Bytes,
}

fn make_batch(rng: &mut StdRng, seed: u64, n: u64) -> Sent {
    let count = rng.random_range(1..=4);
    let mut b = BatchBuilder::new(1_700_000_000_000 + n as i64);
    for i in 0..count {
        let len = rng.random_range(0..200);
        let mut v = format!("{seed}:{n}:{i}:").into_bytes();
        v.extend((0..len).map(|_| rng.random::<u8>()));
        b = b.record(None, Some(&v));
    }
    Sent {
        records: count,
        bytes: b.build(),
    }
}

/// The bytes as the log stores them, with the fields it rewrites (baseOffset, leader epoch)
/// zeroed, for comparison.
fn normalized(b: &[u8]) -> Vec<u8> {
    let mut v = b.to_vec();
    v[..8].fill(0);
    v[12..16].fill(0);
    v
}

/// Everything readable, as (base offset, batch bytes with baseOffset/epoch zeroed).
async fn read_batches(log: &PartitionLog, seed: u64, step: u64) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut from = log.log_start_offset();
    while from < log.high_watermark() {
        let s = log.read(from, 1 << 20, true).await.unwrap();
        let bytes = s.read_to_vec().unwrap();
        assert!(
            !bytes.is_empty(),
            "seed {seed} step {step} (SLUICE_SIM_SEED={seed} SLUICE_SIM_SEEDS=1): empty read at \
             {from} below hwm {}",
            log.high_watermark()
        );
        for b in batch::split_batches(&bytes) {
            let h = batch::validate(b, u32::MAX).unwrap();
            out.push((h.base_offset, normalized(b)));
            from = h.last_offset() + 1;
        }
    }
    out
}

/// (inode, byte end) of the last batch below the high watermark: everything before it in that
/// file, and every earlier segment, was fsynced (durable default: hwm = durable end).
async fn durable_end(log: &PartitionLog) -> Option<(u64, u64)> {
    let hwm = log.high_watermark();
    if hwm == 0 {
        return None;
    }
    let s = log.read(hwm - 1, 1, true).await.unwrap();
    let bytes = s.read_to_vec().unwrap();
    let first = batch::split_batches(&bytes)[0];
    let h = batch::validate(first, u32::MAX).unwrap();
    assert_eq!(h.last_offset(), hwm - 1);
    Some((
        s.file.metadata().unwrap().ino(),
        s.position + h.total_bytes(),
    ))
}

/// Power cut: unsynced bytes past the durable end are lost from a random cut point on, the
/// surviving tail may end in garbage. Writes are lost in order (later segments entirely).
fn lose_unsynced(dir: &Path, end: Option<(u64, u64)>, rng: &mut StdRng) -> String {
    let mut segs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segs.sort();
    // Index of the segment holding the durable end, and the synced size in it.
    let (first_unsynced, synced) = match end {
        None => (0, 0),
        Some((ino, pos)) => {
            let i = segs
                .iter()
                .position(|p| std::fs::metadata(p).unwrap().ino() == ino)
                .expect("durable segment exists");
            (i, pos)
        }
    };
    // Bytes after the durable end, over this and later segments, in write order.
    let mut spans = Vec::new();
    for (i, p) in segs.iter().enumerate().skip(first_unsynced) {
        let len = std::fs::metadata(p).unwrap().len();
        let from = if i == first_unsynced { synced } else { 0 };
        spans.push((p.clone(), from, len));
    }
    let total: u64 = spans.iter().map(|(_, f, l)| l - f).sum();
    if total == 0 {
        return "nothing unsynced".into();
    }
    let mut keep = rng.random_range(0..=total);
    let garbage = rng.random_range(0..4) == 0;
    let mut what = format!("{total} unsynced bytes, {keep} kept");
    for (p, from, len) in spans {
        let avail = len - from;
        let k = keep.min(avail);
        keep -= k;
        if from + k < len {
            let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
            f.set_len(from + k).unwrap();
            if garbage && k > 0 {
                use std::os::unix::fs::FileExt;
                let n = k.min(rng.random_range(1..64));
                let junk: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                f.write_all_at(&junk, from + k - n).unwrap();
                what.push_str(&format!(", {n} bytes of garbage at the end"));
            }
        }
    }
    what
}

struct Model {
    /// Every batch appended successfully, in offset order: (base offset, bytes).
    appended: Vec<(i64, Sent)>,
    /// Offsets below this were acknowledged durable.
    durable: i64,
}

fn check(
    seed: u64,
    step: u64,
    model: &mut Model,
    got: &[(i64, Vec<u8>)],
    hwm: i64,
    leo: i64,
    crash: &str,
) {
    let ctx = format!(
        "seed {seed} step {step} (replay: SLUICE_SIM_SEED={seed} SLUICE_SIM_SEEDS=1, a few times if \
         need be: the flusher's timing varies) after {crash}"
    );
    assert!(
        got.len() <= model.appended.len(),
        "{ctx}: more batches than appended"
    );
    for (i, (off, bytes)) in got.iter().enumerate() {
        let (m_off, sent) = &model.appended[i];
        assert_eq!(
            off, m_off,
            "{ctx}: batch {i} at offset {off}, appended at {m_off}"
        );
        assert_eq!(
            bytes[..],
            normalized(&sent.bytes)[..],
            "{ctx}: batch {i} at offset {off} changed"
        );
    }
    let end = got
        .last()
        .map_or(0, |(o, _)| *o + model.appended[got.len() - 1].1.records);
    assert!(
        end >= model.durable,
        "{ctx}: acknowledged durable offsets below {} but only {end} recovered",
        model.durable
    );
    assert_eq!(hwm, end, "{ctx}: hwm {hwm} vs readable end {end}");
    assert_eq!(leo, end, "{ctx}: log end {leo} vs readable end {end}");
    model.appended.truncate(got.len());
    model.durable = end;
}

async fn run_seed(seed: u64, steps: u64) -> (u64, u64, u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p-0");
    let config = cfg(&mut rng);
    let plan = FaultPlan::new();
    plan.track_unsynced(true);
    let open = |plan: std::sync::Arc<FaultPlan>, config: LogConfig| {
        let path = path.clone();
        async move {
            PartitionLog::open(Fs::faulty(plan), path, config)
                .await
                .unwrap()
        }
    };
    let mut log = open(plan.clone(), config.clone()).await;
    let mut model = Model {
        appended: Vec::new(),
        durable: 0,
    };
    let (mut crashes, mut acked) = (0u64, 0u64);
    let mut n = 0u64;
    let mut step = 0;
    // Where the fsynced bytes ended when last known (offline logs cannot be asked).
    let mut last_end = None;
    while step < steps {
        step += 1;
        let dice = rng.random_range(0..100);
        if std::env::var_os("SLUICE_SIM_VERBOSE").is_some() {
            eprintln!(
                "seed {seed} step {step}: dice {dice}, leo {}, hwm {}, durable {}, segments {}, offline {}",
                log.log_end_offset(),
                log.high_watermark(),
                log.durable_offset(),
                log.segment_count(),
                log.is_offline()
            );
        }
        if dice < 70 {
            let sent = make_batch(&mut rng, seed, n);
            n += 1;
            let inject_write_fault = rng.random_range(0..25) == 0;
            let inject_fsync_fault = rng.random_range(0..30) == 0;
            if (inject_write_fault || inject_fsync_fault) && !log.is_offline() {
                // Settle first, so the fsynced end is known exactly when the log goes offline
                // (an offline log cannot be asked, and no fsync succeeds after).
                let leo = log.log_end_offset();
                if leo > 0 && log.wait_durable(leo - 1).await.is_ok() {
                    last_end = durable_end(&log).await;
                }
            }
            if inject_write_fault {
                // ENOSPC somewhere inside this write (torn), or an EIO (fatal).
                let errno = if rng.random_range(0..3) == 0 {
                    libc::EIO
                } else {
                    libc::ENOSPC
                };
                plan.fail_writes_after(rng.random_range(0..sent.bytes.len() as u64), errno);
            }
            let r = log.append(sent.bytes.clone(), 0).await;
            plan.clear();
            if std::env::var_os("SLUICE_SIM_VERBOSE").is_some() {
                eprintln!(
                    "  append {} records: {:?}",
                    sent.records,
                    r.as_ref().map(|i| i.base_offset)
                );
            }
            match r {
                Ok(info) => {
                    assert!(!info.duplicate);
                    assert_eq!(
                        info.base_offset,
                        model.appended.last().map_or(0, |(o, s)| o + s.records)
                    );
                    model.appended.push((info.base_offset, sent));
                    if rng.random_range(0..3) == 0 {
                        if inject_fsync_fault {
                            plan.fail_fsync(true, libc::EIO);
                        }
                        let r = log.wait_durable(info.last_offset).await;
                        plan.clear();
                        if r.is_ok() {
                            model.durable = model.durable.max(info.last_offset + 1);
                            acked += 1;
                            last_end = durable_end(&log).await;
                        } else {
                            assert!(
                                log.is_offline(),
                                "seed {seed}: durability failed but log online"
                            );
                        }
                    }
                }
                // ENOSPC on the data write keeps the log online; on a roll's index write it
                // is fatal like any other failed write there.
                Err(StorageError::NoSpace { .. }) => {}
                Err(StorageError::Io { .. }) | Err(StorageError::Offline { .. }) => {
                    assert!(log.is_offline(), "seed {seed}: write failed but log online")
                }
                Err(e) => panic!("seed {seed} step {step}: unexpected append error {e}"),
            }
        } else if dice < 80 || log.is_offline() {
            // Crash: no close; unsynced bytes lost from a random point.
            let end = if log.is_offline() {
                last_end
            } else {
                assert!(log.high_watermark() >= model.durable);
                durable_end(&log).await
            };
            drop(log);
            let what = if rng.random_range(0..2) == 0 {
                let w = lose_unsynced(&path, end, &mut rng);
                plan.track_unsynced(true); // the files changed behind the journal's back
                format!("crash (unsynced bytes lost in order: {w})")
            } else {
                let w = plan.power_cut(&path, rng.random()).unwrap();
                format!("power cut (unsynced writes kept/dropped/torn per file: {w})")
            };
            crashes += 1;
            log = open(plan.clone(), config.clone()).await;
            let got = read_batches(&log, seed, step).await;
            check(
                seed,
                step,
                &mut model,
                &got,
                log.high_watermark(),
                log.log_end_offset(),
                &what,
            );
            if std::env::var_os("SLUICE_SIM_VERBOSE").is_some() {
                eprintln!("seed {seed} step {step}: crash: {what}");
            }
            last_end = durable_end(&log).await;
        } else if dice < 85 {
            // Clean close and reopen: everything appended is kept.
            log.close().await.unwrap();
            drop(log);
            log = open(plan.clone(), config.clone()).await;
            let got = read_batches(&log, seed, step).await;
            assert_eq!(
                got.len(),
                model.appended.len(),
                "seed {seed} step {step}: clean reopen lost batches"
            );
            check(
                seed,
                step,
                &mut model,
                &got,
                log.high_watermark(),
                log.log_end_offset(),
                "clean close",
            );
            last_end = durable_end(&log).await;
        } else {
            // Reads in the middle of the log agree with the model.
            let got = read_batches(&log, seed, step).await;
            let hwm = log.high_watermark();
            assert!(hwm >= model.durable);
            for (i, (off, bytes)) in got.iter().enumerate() {
                assert_eq!(*off, model.appended[i].0, "seed {seed} step {step}");
                assert_eq!(
                    bytes[..],
                    normalized(&model.appended[i].1.bytes)[..],
                    "seed {seed} step {step}"
                );
            }
        }
    }
    (steps, crashes, acked)
}

#[compio::test]
async fn simulated_crashes_keep_every_durable_batch() {
    let seeds = env_u64("SLUICE_SIM_SEEDS", SIM_SEEDS_DEFAULT);
    let base = env_u64("SLUICE_SIM_SEED", SIM_SEED_BASE_DEFAULT);
    let steps = env_u64("SLUICE_SIM_STEPS", SIM_STEPS_DEFAULT);
    let (mut total_steps, mut crashes, mut acked) = (0, 0, 0);
    for s in base..base + seeds {
        let (a, b, c) = run_seed(s, steps).await;
        total_steps += a;
        crashes += b;
        acked += c;
    }
    println!(
        "sim: {seeds} seeds from {base}, {total_steps} steps, {crashes} crashes with lost unsynced \
         writes, {acked} durable acknowledgements checked"
    );
    assert!(crashes > 0 && acked > 0);
}
