//! The broker's side of a durable produce, read from its `/metrics` at the start and end of a
//! phase: mean time per stage (`sluice_produce_stage_seconds`: queued, write, fsync_wait, fsync,
//! respond), group commits (`sluice_fsync_duration_seconds`) and appends per group commit
//! (`sluice_fsync_batch_appends`). Works for the embedded broker (its admin listener) and for
//! any Sluice broker given with `--broker-metrics`; a broker without these series (Kafka) gives
//! nothing.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Stage names in the order of a produce (the `stage` label values).
pub const STAGES: [&str; 5] = ["queued", "write", "fsync_wait", "fsync", "respond"];

/// Longest a scrape may take (connect, write, read).
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest exposition read.
const SCRAPE_BYTES_MAX: u64 = 16 << 20;

/// Sums and counts of the series above at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// By stage name: (sum of seconds, count).
    pub stages: HashMap<String, (f64, u64)>,
    pub fsync: (f64, u64),
    pub batch: (f64, u64),
}

/// What happened between two scrapes.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Breakdown {
    /// Mean microseconds per stage, in `STAGES` order (None: the stage was not seen).
    pub stage_mean_us: Vec<(String, Option<f64>)>,
    pub appends: u64,
    pub fsyncs: u64,
    pub fsync_mean_us: Option<f64>,
    pub appends_per_fsync: Option<f64>,
}

/// GET /metrics from `addr` (plain HTTP/1.0, bounded in time and size).
pub fn scrape(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, SCRAPE_TIMEOUT)?;
    s.set_read_timeout(Some(SCRAPE_TIMEOUT))?;
    s.set_write_timeout(Some(SCRAPE_TIMEOUT))?;
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    let mut body = String::new();
    s.take(SCRAPE_BYTES_MAX).read_to_string(&mut body)?;
    Ok(body.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or(body))
}

/// Reads the counters out of a Prometheus text exposition.
pub fn parse(text: &str) -> Counters {
    let mut c = Counters::default();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((name_labels, value)) = line.rsplit_once(' ') else { continue };
        let Ok(v) = value.trim().parse::<f64>() else { continue };
        let (name, labels) = match name_labels.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (name_labels, ""),
        };
        let (family, part) = match name.rsplit_once('_') {
            Some((f, p @ ("sum" | "count"))) => (f, p),
            _ => continue,
        };
        let slot = match family {
            "sluice_produce_stage_seconds" => {
                let Some(stage) = labels
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("stage=\""))
                    .map(|s| s.trim_end_matches('"').to_string())
                else {
                    continue;
                };
                c.stages.entry(stage).or_default()
            }
            "sluice_fsync_duration_seconds" => &mut c.fsync,
            "sluice_fsync_batch_appends" => &mut c.batch,
            _ => continue,
        };
        if part == "sum" {
            slot.0 = v;
        } else {
            slot.1 = v as u64;
        }
    }
    c
}

/// The breakdown between `a` (earlier) and `b`; None when the broker exposes no stage series.
pub fn between(a: &Counters, b: &Counters) -> Option<Breakdown> {
    if b.stages.is_empty() {
        return None;
    }
    let mean_us = |(s0, n0): (f64, u64), (s1, n1): (f64, u64)| {
        let n = n1.saturating_sub(n0);
        (n > 0).then(|| (s1 - s0).max(0.0) / n as f64 * 1e6)
    };
    let stage = |name: &str| {
        let x = b.stages.get(name).copied().unwrap_or_default();
        let y = a.stages.get(name).copied().unwrap_or_default();
        (y, x)
    };
    let stage_mean_us = STAGES
        .iter()
        .map(|s| {
            let (y, x) = stage(s);
            (s.to_string(), mean_us(y, x))
        })
        .collect();
    let (w0, w1) = stage("write");
    let fsyncs = b.fsync.1.saturating_sub(a.fsync.1);
    let batches = b.batch.1.saturating_sub(a.batch.1);
    Some(Breakdown {
        stage_mean_us,
        appends: w1.1.saturating_sub(w0.1),
        fsyncs,
        fsync_mean_us: mean_us(a.fsync, b.fsync),
        appends_per_fsync: (batches > 0).then(|| (b.batch.0 - a.batch.0).max(0.0) / batches as f64),
    })
}

/// Scrapes `addr` if given; errors and brokers without the series give None.
pub fn read(addr: Option<SocketAddr>) -> Option<Counters> {
    let addr = addr?;
    match scrape(addr) {
        Ok(t) => Some(parse(&t)),
        Err(e) => {
            tracing::debug!(%addr, error = %e, "broker metrics scrape failed");
            None
        }
    }
}

impl Breakdown {
    /// One line for the phase table.
    pub fn line(&self, window_s: f64) -> String {
        let stages: Vec<String> = self
            .stage_mean_us
            .iter()
            .map(|(n, v)| match v {
                Some(us) => format!("{n} {us:.0}"),
                None => format!("{n} -"),
            })
            .collect();
        let mut s = format!("  broker produce path, mean µs per append: {}", stages.join(" | "));
        if self.fsyncs > 0 {
            s.push_str(&format!(
                "; {:.0} group commits/s, {} appends each",
                self.fsyncs as f64 / window_s.max(1e-9),
                self.appends_per_fsync.map_or("-".into(), |x| format!("{x:.2}"))
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const A: &str = "# TYPE sluice_produce_stage_seconds histogram
sluice_produce_stage_seconds_sum{stage=\"queued\"} 0.001
sluice_produce_stage_seconds_count{stage=\"queued\"} 10
sluice_produce_stage_seconds_bucket{le=\"0.00005\",stage=\"queued\"} 10
sluice_produce_stage_seconds_sum{stage=\"write\"} 0.002
sluice_produce_stage_seconds_count{stage=\"write\"} 10
sluice_fsync_duration_seconds_sum 0.01
sluice_fsync_duration_seconds_count 5
sluice_fsync_batch_appends_sum 10
sluice_fsync_batch_appends_count 5
";
    const B: &str = "sluice_produce_stage_seconds_sum{stage=\"queued\"} 0.003
sluice_produce_stage_seconds_count{stage=\"queued\"} 30
sluice_produce_stage_seconds_sum{stage=\"write\"} 0.004
sluice_produce_stage_seconds_count{stage=\"write\"} 30
sluice_fsync_duration_seconds_sum 0.03
sluice_fsync_duration_seconds_count 15
sluice_fsync_batch_appends_sum 30
sluice_fsync_batch_appends_count 15
";

    #[test]
    fn parses_sums_and_counts_and_ignores_buckets() {
        let c = parse(A);
        assert_eq!(c.stages["queued"], (0.001, 10));
        assert_eq!(c.fsync, (0.01, 5));
        assert_eq!(c.batch, (10.0, 5));
    }

    #[test]
    fn breakdown_is_the_difference_of_two_scrapes() {
        let b = between(&parse(A), &parse(B)).unwrap();
        assert_eq!(b.appends, 20);
        assert_eq!(b.fsyncs, 10);
        assert!((b.stage_mean_us[0].1.unwrap() - 100.0).abs() < 1e-6);
        assert!((b.stage_mean_us[1].1.unwrap() - 100.0).abs() < 1e-6);
        assert_eq!(b.stage_mean_us[2].1, None);
        assert!((b.fsync_mean_us.unwrap() - 2000.0).abs() < 1e-6);
        assert!((b.appends_per_fsync.unwrap() - 2.0).abs() < 1e-9);
        assert!(b.line(10.0).contains("1 group commits/s, 2.00 appends each"));
    }

    #[test]
    fn a_broker_without_the_series_gives_nothing() {
        assert_eq!(between(&parse(""), &parse("kafka_brokers 1\n")), None);
    }
}
