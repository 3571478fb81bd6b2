//! The device probe: how long a small durable write takes on this machine.
//!
//! Before the phases `sluice bench` appends 2 KiB blocks to a temporary file in the broker's
//! data directory (embedded broker) or in `--probe-dir` (default: the current directory),
//! each `pwrite` followed by `fdatasync`, and times every pair. A broker that syncs before it
//! answers acks=all cannot answer faster than this, so the table can say when a durable latency
//! is the device's rather than the broker's (`durable_floor_note`).
//!
//! Bounded: at most `PROBE_SAMPLES_MAX` writes and `PROBE_TIME_MS_MAX` of probing (one slow
//! sync may overrun it once), `PROBE_WRITE_BYTES` each, so at most 2 MiB on disk; the file is
//! removed afterwards, also on error.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

/// Bytes of one probe write (about one small produce request's batch).
pub const PROBE_WRITE_BYTES: usize = 2 * 1024;
/// Writes one probe makes at most.
pub const PROBE_SAMPLES_MAX: usize = 1000;
/// Time one probe spends at most (checked between writes).
pub const PROBE_TIME_MS_MAX: u64 = 1000;
/// The paced part of the probe: this many write+fdatasync pairs, one starting every
/// `PACED_INTERVAL_US` (about a durable producer's request rate at linger 1 ms). On virtual
/// machines a paced sync is slower than back-to-back ones (perf/results/2026-12-03-fsync-pacing.md),
/// and a durable load at a fixed rate meets the paced figure.
pub const PACED_SAMPLES: usize = 300;
pub const PACED_INTERVAL_US: u64 = 1_000;

/// What one probe measured.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeviceProbe {
    /// Directory the temporary file was written in.
    pub dir: PathBuf,
    pub write_bytes: usize,
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub elapsed_s: f64,
    /// The paced part (`PACED_SAMPLES` pairs, one per `PACED_INTERVAL_US`), when it ran.
    pub paced: Option<PacedProbe>,
}

/// Write+fdatasync pairs started at a fixed interval instead of back to back.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PacedProbe {
    pub interval_us: u64,
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Probes `dir` with the default bounds: back to back, then paced.
pub fn probe(dir: &Path) -> anyhow::Result<DeviceProbe> {
    let mut p = probe_bounded(
        dir,
        PROBE_SAMPLES_MAX,
        Duration::from_millis(PROBE_TIME_MS_MAX),
    )?;
    p.paced = Some(probe_paced(
        dir,
        PACED_SAMPLES,
        Duration::from_micros(PACED_INTERVAL_US),
        Duration::from_millis(PROBE_TIME_MS_MAX),
    )?);
    Ok(p)
}

/// Appends `PROBE_WRITE_BYTES` blocks with `pwrite` + `fdatasync` to a new file in `dir`
/// until `samples_max` (at most `PROBE_SAMPLES_MAX`) writes or `time_max` have passed, removes
/// the file, and returns the percentiles of the write+sync times.
pub fn probe_bounded(
    dir: &Path,
    samples_max: usize,
    time_max: Duration,
) -> anyhow::Result<DeviceProbe> {
    let (samples_ns, elapsed) = timed_pairs(dir, samples_max, time_max, Duration::ZERO)?;
    let ms = |q: f64| percentile(&samples_ns, q) as f64 / 1e6;
    let probe = DeviceProbe {
        dir: dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()),
        write_bytes: PROBE_WRITE_BYTES,
        samples: samples_ns.len(),
        p50_ms: ms(0.50),
        p99_ms: ms(0.99),
        max_ms: ms(1.0),
        elapsed_s: elapsed.as_secs_f64(),
        paced: None,
    };
    assert!(probe.p50_ms <= probe.p99_ms && probe.p99_ms <= probe.max_ms);
    Ok(probe)
}

/// `samples` write+fdatasync pairs on a new file in `dir`, one starting every `interval`
/// (a slow pair delays the next, never two at once), stopping after `time_max`; the file is
/// removed.
pub fn probe_paced(
    dir: &Path,
    samples: usize,
    interval: Duration,
    time_max: Duration,
) -> anyhow::Result<PacedProbe> {
    let (samples_ns, _) = timed_pairs(dir, samples, time_max, interval)?;
    let ms = |q: f64| percentile(&samples_ns, q) as f64 / 1e6;
    Ok(PacedProbe {
        interval_us: u64::try_from(interval.as_micros()).unwrap_or(u64::MAX),
        samples: samples_ns.len(),
        p50_ms: ms(0.50),
        p99_ms: ms(0.99),
    })
}

/// Appends `PROBE_WRITE_BYTES` blocks with `pwrite` + `fdatasync` to a new file in `dir`, one
/// pair starting every `interval` (zero: back to back), until `samples_max` (at most
/// `PROBE_SAMPLES_MAX`) pairs or `time_max` have passed; removes the file, also on error.
/// Returns the pair times in ns, ascending, and the total time.
fn timed_pairs(
    dir: &Path,
    samples_max: usize,
    time_max: Duration,
    interval: Duration,
) -> anyhow::Result<(Vec<u64>, Duration)> {
    assert!(samples_max > 0, "a probe needs at least one sample");
    let samples_max = samples_max.min(PROBE_SAMPLES_MAX);
    let path = dir.join(format!(
        ".sluice-device-probe-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("cannot create the probe file {}", path.display()))?;
    let measured = time_writes(&file, samples_max, time_max, interval);
    drop(file);
    let removed = std::fs::remove_file(&path)
        .with_context(|| format!("cannot remove the probe file {}", path.display()));
    let (mut samples_ns, elapsed) =
        measured.with_context(|| format!("probe write+fdatasync in {} failed", dir.display()))?;
    removed?;
    samples_ns.sort_unstable();
    Ok((samples_ns, elapsed))
}

/// Times `pwrite` + `fdatasync` pairs appended to `file`, one starting every `interval`;
/// returns the times (ns) and the total.
fn time_writes(
    file: &std::fs::File,
    samples_max: usize,
    time_max: Duration,
    interval: Duration,
) -> std::io::Result<(Vec<u64>, Duration)> {
    let block = vec![0x5au8; PROBE_WRITE_BYTES];
    let mut samples_ns = Vec::with_capacity(samples_max);
    let started = Instant::now();
    while samples_ns.len() < samples_max && started.elapsed() < time_max {
        let due = started + interval * samples_ns.len() as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let offset = (samples_ns.len() * PROBE_WRITE_BYTES) as u64;
        let t = Instant::now();
        file.write_all_at(&block, offset)?;
        file.sync_data()?;
        samples_ns.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    Ok((samples_ns, started.elapsed()))
}

/// The value at quantile `q` (0..=1) of ascending `sorted` by nearest rank; 0 when empty.
pub fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The outcome of the probe of one run.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeOutcome {
    /// `--no-device-probe`.
    Skipped,
    /// The probe could not run (e.g. the directory is not writable); the reason.
    Failed(String),
    Done(DeviceProbe),
}

impl ProbeOutcome {
    /// Runs the probe in `dir` unless `skip`.
    pub fn run(dir: &Path, skip: bool) -> ProbeOutcome {
        if skip {
            return ProbeOutcome::Skipped;
        }
        match probe(dir) {
            Ok(p) => ProbeOutcome::Done(p),
            Err(e) => ProbeOutcome::Failed(format!("{e:#}")),
        }
    }

    /// The probe, if it ran.
    pub fn probe(&self) -> Option<&DeviceProbe> {
        match self {
            ProbeOutcome::Done(p) => Some(p),
            _ => None,
        }
    }

    /// The `device:` line of the table; None when skipped.
    pub fn line(&self) -> Option<String> {
        match self {
            ProbeOutcome::Skipped => None,
            ProbeOutcome::Failed(e) => Some(format!("device: probe failed: {e}")),
            ProbeOutcome::Done(p) => Some(format!(
                "device: write+fdatasync {} KiB p50 {:.2} ms p99 {:.2} ms{} ({} samples, {})",
                p.write_bytes / 1024,
                p.p50_ms,
                p.p99_ms,
                p.paced.as_ref().map_or(String::new(), |q| format!(
                    " back to back; one every {} µs: p50 {:.2} ms p99 {:.2} ms",
                    q.interval_us, q.p50_ms, q.p99_ms
                )),
                p.samples,
                p.dir.display()
            )),
        }
    }

    /// The JSON value: the probe, `{"error": ...}`, or null when skipped.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            ProbeOutcome::Skipped => serde_json::Value::Null,
            ProbeOutcome::Failed(e) => serde_json::json!({ "error": e }),
            ProbeOutcome::Done(p) => serde_json::to_value(p).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// Distance above the device's sync p50 within which a durable publish p50 counts as the
/// device's (plus the producer's linger).
const FLOOR_MARGIN_MS: f64 = 0.5;
/// A device whose sync p99 is above this sets the durable tail by itself.
const SLOW_SYNC_P99_MS: f64 = 2.0;

/// The one-line note printed after an acks=all phase when this machine is the limit: the
/// publish p50 is within `FLOOR_MARGIN_MS` + linger of the device's sync p50, or the device's
/// sync p99 is above `SLOW_SYNC_P99_MS`. A publish p50 below the sync p50 contradicts the
/// probe (the device was faster during the phase, or the broker does not sync), and the note
/// says so instead. `broker_syncs`: the broker is known to fdatasync before acknowledging
/// acks=all (the embedded Sluice does); otherwise the note names that condition.
pub fn durable_floor_note(
    d: &DeviceProbe,
    publish_p50_ms: f64,
    linger_ms: f64,
    broker_syncs: bool,
) -> Option<String> {
    let below = publish_p50_ms < d.p50_ms;
    let near = publish_p50_ms <= d.p50_ms + FLOOR_MARGIN_MS + linger_ms;
    let slow = d.p99_ms > SLOW_SYNC_P99_MS;
    if below {
        return Some(format!(
            "note: publish p50 {publish_p50_ms:.2} ms is below this machine's fdatasync p50 {:.2} ms (p99 {:.2} ms) probed before the run: the device was faster during the phase than in the probe{}",
            d.p50_ms,
            d.p99_ms,
            if broker_syncs { "" } else { ", or the broker does not sync before acknowledging" }
        ));
    }
    if !near && !slow {
        return None;
    }
    let mut s = format!(
        "note: this machine's fdatasync p50 is {:.2} ms (p99 {:.2} ms{})",
        d.p50_ms,
        d.p99_ms,
        if slow { ", above 2 ms" } else { "" }
    );
    if near {
        let linger = if linger_ms > 0.0 {
            format!(" plus the {linger_ms} ms linger")
        } else {
            String::new()
        };
        s += &format!(
            "; publish p50 {publish_p50_ms:.2} ms is at most {FLOOR_MARGIN_MS} ms above it{linger}"
        );
    }
    s += ": durable latency cannot go below the fdatasync";
    if slow {
        s += ", nor its tail below the fdatasync p99";
    }
    if !broker_syncs {
        s += " (for a broker that syncs before acknowledging)";
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn probe_returns_its_samples_and_removes_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = probe_bounded(dir.path(), 20, Duration::from_secs(30)).unwrap();
        assert_eq!(p.samples, 20);
        assert_eq!(p.write_bytes, PROBE_WRITE_BYTES);
        assert!(
            p.p50_ms > 0.0 && p.p50_ms <= p.p99_ms && p.p99_ms <= p.max_ms,
            "{p:?}"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "probe file left"
        );
        let line = ProbeOutcome::Done(p).line().unwrap();
        assert!(
            line.starts_with("device: write+fdatasync 2 KiB p50 "),
            "{line}"
        );
        assert!(
            line.ends_with(&format!(
                "(20 samples, {})",
                dir.path().canonicalize().unwrap().display()
            )),
            "{line}"
        );
        assert_eq!(ProbeOutcome::run(dir.path(), true), ProbeOutcome::Skipped);
    }

    #[test]
    fn probe_stops_at_its_time_bound() {
        let dir = tempfile::tempdir().unwrap();
        let p = probe_bounded(dir.path(), usize::MAX, Duration::from_millis(50)).unwrap();
        assert!(p.samples >= 1 && p.samples <= PROBE_SAMPLES_MAX, "{p:?}");
        // One sync may overrun the bound; a hundred cannot.
        assert!(p.elapsed_s < 5.0, "{p:?}");
    }

    #[test]
    fn probe_of_a_missing_directory_fails_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let e = probe(&missing).unwrap_err();
        assert!(format!("{e:#}").contains("nope"), "{e:#}");
    }

    #[test]
    fn percentiles_are_nearest_rank_and_monotone() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 50);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&v, 1.0), 100);
        assert_eq!(percentile(&v, 0.0), 1);
        assert_eq!(percentile(&[7], 0.99), 7);
        assert_eq!(percentile(&[], 0.5), 0);
        let mut prev = 0;
        for i in 0..=1000 {
            let x = percentile(&v, i as f64 / 1000.0);
            assert!(x >= prev);
            prev = x;
        }
    }

    #[test]
    fn paced_probe_keeps_its_interval_and_removes_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let t = Instant::now();
        let q = probe_paced(dir.path(), 10, Duration::from_millis(5), Duration::from_secs(30)).unwrap();
        assert_eq!(q.samples, 10);
        assert_eq!(q.interval_us, 5_000);
        assert!(q.p50_ms > 0.0 && q.p50_ms <= q.p99_ms, "{q:?}");
        // Ten pairs one every 5 ms: the last starts 45 ms after the first.
        assert!(t.elapsed() >= Duration::from_millis(45));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "probe file left");
    }

    #[test]
    fn the_note_appears_only_when_the_device_is_the_limit() {
        let d = |p50_ms, p99_ms| DeviceProbe {
            dir: PathBuf::from("/x"),
            write_bytes: PROBE_WRITE_BYTES,
            samples: 100,
            p50_ms,
            p99_ms,
            max_ms: p99_ms,
            elapsed_s: 0.1,
            paced: None,
        };
        // Fast device, publish well above it: no note.
        assert_eq!(durable_floor_note(&d(0.1, 0.3), 3.0, 1.0, true), None);
        // Publish p50 within 0.5 ms + linger of the sync p50.
        assert_eq!(
            durable_floor_note(&d(1.0, 1.5), 2.4, 1.0, true).unwrap(),
            "note: this machine's fdatasync p50 is 1.00 ms (p99 1.50 ms); publish p50 2.40 ms is at most 0.5 ms above it plus the 1 ms linger: durable latency cannot go below the fdatasync"
        );
        // Slow tail alone, external broker.
        assert_eq!(
            durable_floor_note(&d(0.2, 4.0), 5.0, 0.0, false).unwrap(),
            "note: this machine's fdatasync p50 is 0.20 ms (p99 4.00 ms, above 2 ms): durable latency cannot go below the fdatasync, nor its tail below the fdatasync p99 (for a broker that syncs before acknowledging)"
        );
        // Both.
        let n = durable_floor_note(&d(1.0, 3.0), 1.2, 0.0, true).unwrap();
        assert!(
            n.contains("publish p50 1.20 ms is at most 0.5 ms above it:")
                && n.contains("above 2 ms"),
            "{n}"
        );
        // Publish faster than the probed sync: the probe is contradicted, not repeated.
        assert_eq!(
            durable_floor_note(&d(2.26, 5.18), 1.03, 1.0, false).unwrap(),
            "note: publish p50 1.03 ms is below this machine's fdatasync p50 2.26 ms (p99 5.18 ms) probed before the run: the device was faster during the phase than in the probe, or the broker does not sync before acknowledging"
        );
        assert!(!durable_floor_note(&d(2.0, 2.5), 1.0, 0.0, true)
            .unwrap()
            .contains("does not sync"));
    }
}
