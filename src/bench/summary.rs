//! `--repeat N`: the same phases run N times; per phase, the median of each figure over the
//! runs with its range (min–max) and relative spread (max − min) / median.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::device::DeviceProbe;
use super::runner::PhaseResult;

/// Median, range and relative spread of one figure over the repeats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// (max − min) / median in percent; None when the median is 0.
    pub spread_pct: Option<f64>,
    /// Runs the figure was measured in.
    pub n: usize,
}

/// The median of `values` (the mean of the middle two for an even count); None when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// Median, min, max and relative spread of `values` (non-finite values ignored); None when
/// nothing is left.
pub fn spread(values: &[f64]) -> Option<Spread> {
    let finite: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let median = median(&finite)?;
    let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert!(min <= median && median <= max);
    Some(Spread {
        median,
        min,
        max,
        spread_pct: (median != 0.0).then(|| (max - min) / median.abs() * 100.0),
        n: finite.len(),
    })
}

impl Spread {
    fn to_json(self) -> Value {
        json!({"median": self.median, "min": self.min, "max": self.max,
               "spread_pct": self.spread_pct, "runs": self.n})
    }
}

/// How a figure is printed.
#[derive(Clone, Copy)]
enum Unit {
    Count,
    Mb,
    Us,
    Cores,
    SPerGb,
}

fn fmt(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Count => format!("{v:.0}"),
        Unit::Mb => format!("{v:.2}"),
        Unit::Us => super::report::fmt_us(v),
        Unit::Cores => format!("{v:.2}"),
        Unit::SPerGb => format!("{v:.1}"),
    }
}

/// A figure of one phase result; None when not measured in that run.
type Getter = fn(&PhaseResult) -> Option<f64>;

fn lat(count: u64, v: f64) -> Option<f64> {
    (count > 0).then_some(v)
}

/// The figures summarised: (JSON key, table label, unit, getter). Latencies in microseconds.
const FIGURES: &[(&str, &str, Unit, Getter)] = &[
    ("msgs_per_s", "throughput msgs/s", Unit::Count, |r| {
        Some(r.msgs_per_s)
    }),
    ("mb_per_s", "throughput MB/s", Unit::Mb, |r| {
        Some(r.mb_per_s)
    }),
    ("publish_p50_us", "publish p50", Unit::Us, |r| {
        lat(r.measured.publish.len(), r.publish.p50)
    }),
    ("publish_p90_us", "", Unit::Us, |r| {
        lat(r.measured.publish.len(), r.publish.p90)
    }),
    ("publish_p99_us", "publish p99", Unit::Us, |r| {
        lat(r.measured.publish.len(), r.publish.p99)
    }),
    ("publish_p999_us", "publish p99.9", Unit::Us, |r| {
        lat(r.measured.publish.len(), r.publish.p999)
    }),
    ("publish_p9999_us", "", Unit::Us, |r| {
        lat(r.measured.publish.len(), r.publish.p9999)
    }),
    ("publish_max_us", "", Unit::Us, |r| {
        lat(r.measured.publish.len(), r.publish.max)
    }),
    ("request_p50_us", "request p50", Unit::Us, |r| {
        lat(r.measured.request.len(), r.request.p50)
    }),
    ("request_p99_us", "request p99", Unit::Us, |r| {
        lat(r.measured.request.len(), r.request.p99)
    }),
    ("e2e_p50_us", "end-to-end p50", Unit::Us, |r| {
        lat(r.measured.e2e.len(), r.e2e.p50)
    }),
    ("e2e_p90_us", "", Unit::Us, |r| {
        lat(r.measured.e2e.len(), r.e2e.p90)
    }),
    ("e2e_p99_us", "end-to-end p99", Unit::Us, |r| {
        lat(r.measured.e2e.len(), r.e2e.p99)
    }),
    ("e2e_p999_us", "", Unit::Us, |r| {
        lat(r.measured.e2e.len(), r.e2e.p999)
    }),
    ("e2e_p9999_us", "", Unit::Us, |r| {
        lat(r.measured.e2e.len(), r.e2e.p9999)
    }),
    ("e2e_max_us", "", Unit::Us, |r| {
        lat(r.measured.e2e.len(), r.e2e.max)
    }),
    ("broker_cpu_cores", "broker CPU cores", Unit::Cores, |r| {
        r.cpu().broker_cores
    }),
    (
        "broker_cpu_s_per_gb_produced",
        "broker CPU s/GB produced",
        Unit::SPerGb,
        |r| r.cpu().broker_s_per_gb_produced,
    ),
    ("generator_cpu_cores", "", Unit::Cores, |r| {
        Some(r.cpu().generator_cores)
    }),
    (
        "generator_cpu_s_per_gb_produced",
        "generator CPU s/GB produced",
        Unit::SPerGb,
        |r| r.cpu().generator_s_per_gb_produced,
    ),
];

/// The phases of every run by phase index: `runs[k][i]` is phase i of run k.
fn by_phase<'a>(runs: &[&'a [PhaseResult]]) -> Vec<Vec<&'a PhaseResult>> {
    let n = runs.iter().map(|r| r.len()).max().unwrap_or(0);
    (0..n)
        .map(|i| runs.iter().filter_map(|r| r.get(i)).collect())
        .collect()
}

fn figure(phase: &[&PhaseResult], get: Getter) -> Option<Spread> {
    let v: Vec<f64> = phase.iter().filter_map(|r| get(r)).collect();
    spread(&v)
}

/// The summary table printed after N > 1 runs.
pub fn table(runs: &[&[PhaseResult]], devices: &[Option<DeviceProbe>], topics: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nsummary of {} runs ({topics}): median, min – max, spread = (max - min) / median",
        runs.len()
    );
    for phase in by_phase(runs) {
        let Some(first) = phase.first() else { continue };
        let _ = writeln!(
            s,
            "\nphase {} ({} of {} runs)",
            first.phase.name,
            phase.len(),
            runs.len()
        );
        let _ = writeln!(
            s,
            "  {:<30} {:>10} {:>23} {:>8}",
            "", "median", "min – max", "spread"
        );
        for (_, label, unit, get) in FIGURES {
            if label.is_empty() {
                continue;
            }
            let Some(f) = figure(&phase, *get) else {
                continue;
            };
            let _ = writeln!(
                s,
                "  {:<30} {:>10} {:>23} {:>8}",
                label,
                fmt(*unit, f.median),
                format!("{} – {}", fmt(*unit, f.min), fmt(*unit, f.max)),
                f.spread_pct
                    .map(|p| format!("{p:.1}%"))
                    .unwrap_or_else(|| "-".into())
            );
        }
    }
    let dev = |get: fn(&DeviceProbe) -> f64| {
        spread(&devices.iter().flatten().map(get).collect::<Vec<f64>>())
    };
    if let (Some(p50), Some(p99)) = (dev(|d| d.p50_ms), dev(|d| d.p99_ms)) {
        let _ = writeln!(
            s,
            "\ndevice write+fdatasync 2 KiB over {} probes: p50 {:.2} ms ({:.2} – {:.2}), p99 {:.2} ms ({:.2} – {:.2})",
            p50.n, p50.median, p50.min, p50.max, p99.median, p99.min, p99.max
        );
    }
    s
}

/// The JSON `summary`: per phase, median/min/max/spread of every figure.
pub fn to_json(runs: &[&[PhaseResult]], devices: &[Option<DeviceProbe>], topics: &str) -> Value {
    let phases: Vec<Value> = by_phase(runs)
        .into_iter()
        .filter_map(|phase| {
            let first = phase.first()?;
            let mut m = serde_json::Map::new();
            m.insert("name".into(), json!(first.phase.name));
            m.insert("rate".into(), json!(first.phase.rate));
            m.insert("runs".into(), json!(phase.len()));
            for (key, _, _, get) in FIGURES {
                m.insert(
                    (*key).into(),
                    figure(&phase, *get)
                        .map(Spread::to_json)
                        .unwrap_or(Value::Null),
                );
            }
            Some(Value::Object(m))
        })
        .collect();
    let dev = |get: fn(&DeviceProbe) -> f64| {
        spread(&devices.iter().flatten().map(get).collect::<Vec<f64>>())
            .map(Spread::to_json)
            .unwrap_or(Value::Null)
    };
    json!({
        "repeats": runs.len(),
        "topics": topics,
        "device_fdatasync_p50_ms": dev(|d| d.p50_ms),
        "device_fdatasync_p99_ms": dev(|d| d.p99_ms),
        "phases": phases,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 1.0, 5.0]), Some(3.0), "NaN ignored");
    }

    #[test]
    fn spread_is_range_over_median() {
        let s = spread(&[100.0, 90.0, 120.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (100.0, 90.0, 120.0, 3));
        assert!((s.spread_pct.unwrap() - 30.0).abs() < 1e-9);
        let one = spread(&[5.0]).unwrap();
        assert_eq!(one.spread_pct, Some(0.0));
        assert_eq!(
            spread(&[0.0, 0.0]).unwrap().spread_pct,
            None,
            "no spread of a zero median"
        );
        assert_eq!(spread(&[]), None);
    }

    #[test]
    fn medians_of_percentiles_keep_their_order() {
        // Per run p50 <= p99; the medians over runs keep that order.
        let p50 = [1.0, 5.0, 2.0, 9.0];
        let p99 = [3.0, 6.0, 2.5, 30.0];
        assert!(median(&p50).unwrap() <= median(&p99).unwrap());
    }
}
