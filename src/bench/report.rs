//! Results: the table, the JSON file, the HdrHistogram interval log, SVG plots,
//! and `sluice bench compare`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use serde_json::{json, Value};

use super::device::{durable_floor_note, ProbeOutcome};
use super::runner::PhaseResult;
use super::stats::{IntervalStats, LatencySummary};
use super::usage::BrokerSource;
use super::workload::Workload;

/// Where the run happened.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Environment {
    pub kernel: String,
    pub cpu: String,
    pub cores: usize,
    pub commit: String,
    pub os: String,
    pub broker: String,
    pub generator_threads: usize,
}

impl Environment {
    /// Reads kernel, CPU model, core count and the git commit of the working directory.
    pub fn detect(broker: &str, generator_threads: usize) -> Environment {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        // The commit of the source tree this binary was built from (or of the working directory).
        let git = |dir: &str| {
            std::process::Command::new("git")
                .args(["-C", dir, "rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        };
        let commit = option_env!("SLUICE_GIT_COMMIT")
            .map(str::to_owned)
            .or_else(|| git(env!("CARGO_MANIFEST_DIR")))
            .or_else(|| git("."))
            .unwrap_or_else(|| "unknown".into());
        Environment {
            kernel,
            cpu,
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            commit,
            os: std::env::consts::OS.into(),
            broker: broker.to_owned(),
            generator_threads,
        }
    }
}

/// Microseconds as "812 us", "1.20 ms" or "2.00 s".
pub fn fmt_us(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{us:.0} us")
    }
}

fn rate_label(rate: u64) -> String {
    if rate == 0 {
        "max".into()
    } else {
        format!("{rate} msg/s")
    }
}

/// The live progress line for one finished interval.
pub fn progress_line(
    phase: &str,
    iv_index: u64,
    warmup: bool,
    iv: &IntervalStats,
    cumulative: &IntervalStats,
) -> String {
    let p99 = |h: &hdrhistogram::Histogram<u64>| {
        if h.is_empty() {
            "-".to_string()
        } else {
            fmt_us(h.value_at_quantile(0.99) as f64 / 1e3)
        }
    };
    format!(
        "[{phase}] {:>3}s{} sent {:>8} msg/s  acked {:>8} msg/s  consumed {:>8} msg/s  p99 so far: publish {:>9}  e2e {:>9}{}",
        iv_index + 1,
        if warmup { " warmup" } else { "       " },
        iv.sent_msgs,
        iv.acked_msgs,
        iv.consumed_msgs,
        if warmup { p99(&iv.publish) } else { p99(&cumulative.publish) },
        if warmup { p99(&iv.e2e) } else { p99(&cumulative.e2e) },
        if iv.errors > 0 { format!("  errors {}", iv.errors) } else { String::new() },
    )
}

/// One run of every phase (`--repeat` makes several) and the device probe made before it.
pub struct Run {
    pub results: Vec<PhaseResult>,
    pub device: ProbeOutcome,
}

/// The head of the table: workload, broker and machine, and where CPU figures come from.
pub fn header(w: &Workload, env: &Environment, broker: &BrokerSource) -> String {
    let mut s = String::new();
    let size = if w.message_size_max > w.message_size {
        format!("{}-{}", w.message_size, w.message_size_max)
    } else {
        w.message_size.to_string()
    };
    let _ = writeln!(
        s,
        "\nsluice bench: {} | {} topic(s) x {} partitions, {} B messages, keys {}, acks={}, compression={}, batch {} B, linger {} ms",
        w.name, w.topics, w.partitions_per_topic, size, w.key_distribution, w.acks, w.compression, w.batch_bytes, w.linger_ms
    );
    let _ = writeln!(
        s,
        "broker: {} | kernel {} | {} | {} cores | commit {}",
        env.broker, env.kernel, env.cpu, env.cores, env.commit
    );
    let _ = writeln!(
        s,
        "CPU per phase (start of its threads to their end): generator = its {} threads + the main thread; broker = {}",
        env.generator_threads,
        broker.describe()
    );
    s
}

/// One run's device line and phases. `broker_syncs`: the broker is known to fdatasync before
/// it acknowledges acks=all (the embedded Sluice), for the wording of the device note.
pub fn run_lines(w: &Workload, run: &Run, broker_syncs: bool) -> String {
    let mut s = String::new();
    if let Some(l) = run.device.line() {
        let _ = writeln!(s, "{l}");
    }
    for r in &run.results {
        let _ = writeln!(
            s,
            "\nphase {} (target {}, {:.0} s measured after {:.0} s warm-up)",
            r.phase.name,
            rate_label(r.phase.rate),
            r.measured_s,
            w.warmup_s
        );
        let _ = writeln!(
            s,
            "  throughput: {:.0} msgs/s, {:.2} MB/s acknowledged; consumed {:.0} msgs/s",
            r.msgs_per_s, r.mb_per_s, r.consumed_msgs_per_s
        );
        if r.unsent_total > 0 {
            let _ = writeln!(
                s,
                "  TARGET RATE NOT REACHED: {} messages fell due but were never sent (generator or broker too slow)",
                r.unsent_total
            );
        }
        let _ = writeln!(
            s,
            "  {:<12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "latency", "p50", "p90", "p99", "p99.9", "p99.99", "max"
        );
        for (name, l, n) in [
            ("publish", &r.publish, r.measured.publish.len()),
            ("request", &r.request, r.measured.request.len()),
            ("end-to-end", &r.e2e, r.measured.e2e.len()),
        ] {
            if n == 0 {
                let _ = writeln!(s, "  {name:<12} {:>10}", "(not measured)");
                continue;
            }
            let _ = writeln!(
                s,
                "  {:<12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
                name,
                fmt_us(l.p50),
                fmt_us(l.p90),
                fmt_us(l.p99),
                fmt_us(l.p999),
                fmt_us(l.p9999),
                fmt_us(l.max)
            );
        }
        let _ = write!(s, "{}", cpu_lines(r));
        let _ = writeln!(
            s,
            "  messages: acked {} / consumed {}{}",
            r.acked_total,
            r.consumed_total,
            match (&r.first_error, r.errors) {
                (Some(e), n) => format!("; {n} errors, first: {e}"),
                (None, 0) => String::new(),
                (None, n) => format!("; {n} errors"),
            }
        );
        if let Some(note) = device_note(w, r, &run.device, broker_syncs) {
            let _ = writeln!(s, "  {note}");
        }
    }
    s
}

/// The note on the device's sync time after an acks=all phase, when it applies.
fn device_note(
    w: &Workload,
    r: &PhaseResult,
    device: &ProbeOutcome,
    broker_syncs: bool,
) -> Option<String> {
    if w.acks != "all" || r.measured.publish.is_empty() {
        return None;
    }
    durable_floor_note(device.probe()?, r.publish.p50 / 1e3, w.linger_ms as f64, broker_syncs)
}

fn fmt_per_gb(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into())
}

/// The generator and broker CPU lines, the broker's context switches and its produce stages
/// of one phase.
fn cpu_lines(r: &PhaseResult) -> String {
    let mut s = usage_lines(r);
    if let Some(b) = &r.broker_stages {
        let _ = writeln!(s, "{}", b.line(r.usage.window_s));
    }
    s
}

fn usage_lines(r: &PhaseResult) -> String {
    let mut s = String::new();
    let c = r.cpu();
    let _ = writeln!(
        s,
        "  generator CPU: {:.2} s = {:.2} cores; {} s/GB produced, {} s/GB consumed ({:.1} s window)",
        c.generator_s,
        c.generator_cores,
        fmt_per_gb(c.generator_s_per_gb_produced),
        fmt_per_gb(c.generator_s_per_gb_consumed),
        c.window_s
    );
    let Some(b) = &r.usage.broker else {
        let _ = writeln!(s, "  broker CPU: {}", r.usage.broker_source);
        return s;
    };
    let _ = writeln!(
        s,
        "  broker CPU:    {:.2} s = {:.2} cores; {} s/GB produced, {} s/GB consumed",
        b.cpu_s,
        c.broker_cores.unwrap_or(0.0),
        fmt_per_gb(c.broker_s_per_gb_produced),
        fmt_per_gb(c.broker_s_per_gb_consumed),
    );
    let switches = b.voluntary_switches + b.involuntary_switches;
    let per = |n: u64, what: &str| {
        (n > 0).then(|| format!(", {:.2} per {what}", switches as f64 / n as f64))
    };
    let _ = writeln!(
        s,
        "  broker context switches: {switches} ({} voluntary, {} involuntary){}{}; {} iou-wrk threads at the end",
        b.voluntary_switches,
        b.involuntary_switches,
        per(r.acked_total, "message").unwrap_or_default(),
        per(r.produce_requests_total, "produce request").unwrap_or_default(),
        b.iou_workers
    );
    s
}

/// The final human-readable table of one run.
pub fn table(
    w: &Workload,
    env: &Environment,
    broker: &BrokerSource,
    run: &Run,
    broker_syncs: bool,
) -> String {
    header(w, env, broker) + &run_lines(w, run, broker_syncs)
}

/// Percentiles in microseconds; every key null when nothing was measured (e.g. no consumers).
fn latency_json(l: &LatencySummary, count: u64) -> Value {
    if count == 0 {
        return json!({"p50": null, "p90": null, "p99": null, "p999": null, "p9999": null, "max": null});
    }
    json!({"p50": l.p50, "p90": l.p90, "p99": l.p99, "p999": l.p999, "p9999": l.p9999, "max": l.max})
}

/// Per-second rows of `results`; each tagged with `repeat` (1-based) when given.
fn timeline_json(results: &[PhaseResult], repeat: Option<usize>, out: &mut Vec<Value>) {
    for r in results {
        for iv in &r.intervals {
            let s = &iv.stats;
            let pct = |h: &hdrhistogram::Histogram<u64>, q: f64| {
                if h.is_empty() {
                    Value::Null
                } else {
                    json!(h.value_at_quantile(q) as f64 / 1e3)
                }
            };
            let max = |h: &hdrhistogram::Histogram<u64>| {
                if h.is_empty() {
                    Value::Null
                } else {
                    json!(h.max() as f64 / 1e3)
                }
            };
            let mut row = json!({
                "phase": r.phase.name,
                "t_s": iv.index + 1,
                "warmup": iv.warmup,
                "sent_msgs_per_s": s.sent_msgs,
                "msgs_per_s": s.acked_msgs,
                "mb_per_s": s.acked_bytes as f64 / 1e6,
                "consumed_msgs_per_s": s.consumed_msgs,
                "publish_p50_us": pct(&s.publish, 0.5),
                "publish_p99_us": pct(&s.publish, 0.99),
                "publish_max_us": max(&s.publish),
                "e2e_p50_us": pct(&s.e2e, 0.5),
                "e2e_p99_us": pct(&s.e2e, 0.99),
                "e2e_max_us": max(&s.e2e),
                "errors": s.errors,
                "backpressure_waits": s.backpressure_waits,
                "unsent_msgs": s.unsent_msgs,
            });
            if let (Some(k), Value::Object(m)) = (repeat, &mut row) {
                m.insert("repeat".into(), json!(k));
            }
            out.push(row);
        }
    }
}

/// CPU, context switches and the device note of one phase, for its `results`.
fn usage_json(r: &PhaseResult) -> serde_json::Map<String, Value> {
    let c = r.cpu();
    let mut m = serde_json::Map::new();
    m.insert(
        "cpu".into(),
        json!({
            "window_s": c.window_s,
            "generator_s": c.generator_s,
            "generator_cores": c.generator_cores,
            "generator_s_per_gb_produced": c.generator_s_per_gb_produced,
            "generator_s_per_gb_consumed": c.generator_s_per_gb_consumed,
            "broker_s": c.broker_s,
            "broker_cores": c.broker_cores,
            "broker_s_per_gb_produced": c.broker_s_per_gb_produced,
            "broker_s_per_gb_consumed": c.broker_s_per_gb_consumed,
            "broker_source": r.usage.broker_source,
        }),
    );
    let switches = r.usage.broker.as_ref().map(|b| {
        let total = b.voluntary_switches + b.involuntary_switches;
        let per = |n: u64| (n > 0).then(|| total as f64 / n as f64);
        json!({
            "voluntary": b.voluntary_switches,
            "involuntary": b.involuntary_switches,
            "per_message": per(r.acked_total),
            "per_produce_request": per(r.produce_requests_total),
        })
    });
    m.insert("broker_context_switches".into(), switches.unwrap_or(Value::Null));
    m.insert(
        "iou_wrk_threads".into(),
        json!(r.usage.broker.as_ref().map(|b| b.iou_workers)),
    );
    m.insert("acked_bytes".into(), json!(r.acked_bytes_total));
    m.insert("consumed_bytes".into(), json!(r.consumed_bytes_total));
    m.insert("produce_requests".into(), json!(r.produce_requests_total));
    m.insert("broker_produce_path".into(), json!(r.broker_stages));
    m
}

/// The phases of one run as in `workload.phases`.
fn phases_json(w: &Workload, run: &Run, broker_syncs: bool) -> Vec<Value> {
    run.results
        .iter()
        .map(|r| {
            let mut v = json!({
                "name": r.phase.name,
                "rate": r.phase.rate,
                "duration_s": r.phase.duration_s,
                "results": {
                    "throughput": {"msgs_per_s": r.msgs_per_s, "mb_per_s": r.mb_per_s, "consumed_msgs_per_s": r.consumed_msgs_per_s},
                    "publish_latency_us": latency_json(&r.publish, r.measured.publish.len()),
                    "request_latency_us": latency_json(&r.request, r.measured.request.len()),
                    "e2e_latency_us": latency_json(&r.e2e, r.measured.e2e.len()),
                    "generator_cpu_s": r.generator_cpu_s,
                    "wall_s": r.wall_s,
                    "acked_msgs": r.acked_total,
                    "consumed_msgs": r.consumed_total,
                    "errors": r.errors,
                    "first_error": r.first_error,
                    "unsent_msgs": r.unsent_total,
                    "device_note": device_note(w, r, &run.device, broker_syncs),
                }
            });
            if let Some(Value::Object(m)) = v.get_mut("results") {
                m.extend(usage_json(r));
            }
            v
        })
        .collect()
}

/// The `--json` document. Top-level throughput and latency are those of the first
/// phase of the first run; every phase's own numbers are under `workload.phases[i].results`
/// (first run) and the first run's device probe under `environment.device_probe`. With
/// several runs (`--repeat`) the document also holds `repeats` (every run's device probe and
/// phases) and `summary` (per phase: median, min, max and spread of each figure), and
/// `timeline` rows carry their run's number in `repeat`.
pub fn to_json(
    w: &Workload,
    env: &Environment,
    runs: &[Run],
    broker_syncs: bool,
    topics: &str,
) -> Value {
    let empty = Run {
        results: Vec::new(),
        device: ProbeOutcome::Skipped,
    };
    let first = runs.first().unwrap_or(&empty);
    let results = &first.results;
    let mut workload = serde_json::to_value(w).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut workload {
        m.insert(
            "phases".into(),
            Value::Array(phases_json(w, first, broker_syncs)),
        );
    }
    let head = results.first();
    let cpu_s: f64 = results.iter().map(|r| r.generator_cpu_s).sum();
    let wall_s: f64 = results.iter().map(|r| r.wall_s).sum();
    let mut environment = serde_json::to_value(env).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut environment {
        m.insert("generator_cpu_s".into(), json!(cpu_s));
        m.insert(
            "generator_cpu_cores".into(),
            json!(cpu_s / wall_s.max(1e-9)),
        );
        m.insert("device_probe".into(), first.device.to_json());
    }
    let mut timeline = Vec::new();
    let repeated = runs.len() > 1;
    for (k, run) in runs.iter().enumerate() {
        timeline_json(&run.results, repeated.then_some(k + 1), &mut timeline);
    }
    let mut doc = json!({
        "workload": workload,
        "environment": environment,
        "throughput": {
            "msgs_per_s": head.map(|r| r.msgs_per_s).unwrap_or(0.0),
            "mb_per_s": head.map(|r| r.mb_per_s).unwrap_or(0.0),
        },
        "publish_latency_us": latency_json(
            &head.map(|r| r.publish).unwrap_or_default(),
            head.map(|r| r.measured.publish.len()).unwrap_or(0),
        ),
        "e2e_latency_us": latency_json(
            &head.map(|r| r.e2e).unwrap_or_default(),
            head.map(|r| r.measured.e2e.len()).unwrap_or(0),
        ),
        "timeline": timeline,
    });
    if let (true, Value::Object(m)) = (repeated, &mut doc) {
        let repeats: Vec<Value> = runs
            .iter()
            .enumerate()
            .map(|(k, run)| {
                json!({
                    "repeat": k + 1,
                    "device_probe": run.device.to_json(),
                    "phases": phases_json(w, run, broker_syncs),
                })
            })
            .collect();
        m.insert("repeats".into(), Value::Array(repeats));
        let all: Vec<&[PhaseResult]> = runs.iter().map(|r| r.results.as_slice()).collect();
        let devices: Vec<_> = runs.iter().map(|r| r.device.probe().cloned()).collect();
        m.insert("summary".into(), super::summary::to_json(&all, &devices, topics));
    }
    doc
}

/// Writes an HdrHistogram V2 interval log: one publish and one e2e histogram per second
/// (tags `<phase>-publish` / `<phase>-e2e`, prefixed `r<run>-` when there are several runs),
/// values in nanoseconds; runs follow each other on the time axis.
pub fn write_hdr_log(path: &Path, runs: &[&[PhaseResult]]) -> anyhow::Result<()> {
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    // The compressed V2 encoding ("HISTFAAA..."), which the Java HdrHistogram log tools read.
    let mut ser = V2DeflateSerializer::new();
    let mut builder = IntervalLogWriterBuilder::new();
    builder
        .add_comment(
            "sluice bench latency log; histogram values in nanoseconds, interval max column in ms",
        )
        .with_start_time(std::time::SystemTime::now())
        .with_max_value_divisor(1e6);
    let mut log = builder.begin_log_with(&mut file, &mut ser)?;
    let mut phase_offset = 0u64;
    let several = runs.len() > 1;
    let tagged = runs.iter().enumerate().flat_map(|(k, results)| {
        let prefix = if several { format!("r{}-", k + 1) } else { String::new() };
        results.iter().map(move |r| (prefix.clone(), r))
    });
    for (prefix, r) in tagged {
        let name = r.phase.name.replace([' ', ','], "_");
        let pub_tag = format!("{prefix}{name}-publish");
        let e2e_tag = format!("{prefix}{name}-e2e");
        let mut last = 0u64;
        for iv in &r.intervals {
            let start = Duration::from_secs(phase_offset + iv.index);
            for (tag, h) in [(&pub_tag, &iv.stats.publish), (&e2e_tag, &iv.stats.e2e)] {
                log.write_histogram(h, start, Duration::from_secs(1), Tag::new(tag))
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            }
            last = last.max(iv.index + 1);
        }
        phase_offset += last;
    }
    drop(log);
    file.flush()?;
    Ok(())
}

/// Writes `<prefix>-percentiles.svg` (latency by percentile, log scale) and
/// `<prefix>-timeline.svg` (throughput and p99 per second). Returns the files written.
pub fn write_plots(
    prefix: &Path,
    results: &[PhaseResult],
) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let spectra: Vec<(String, Vec<(f64, f64)>)> = results
        .iter()
        .flat_map(|r| {
            [
                (
                    format!("{} publish", r.phase.name),
                    spectrum(&r.measured.publish),
                ),
                (format!("{} e2e", r.phase.name), spectrum(&r.measured.e2e)),
            ]
        })
        .filter(|(_, v)| !v.is_empty())
        .collect();
    let p1 = prefix.with_file_name(format!("{}-percentiles.svg", file_stem(prefix)));
    plot_spectrum(&p1, "latency by percentile", &spectra)?;
    let p2 = prefix.with_file_name(format!("{}-timeline.svg", file_stem(prefix)));
    plot_timeline(&p2, results)?;
    Ok(vec![p1, p2])
}

fn file_stem(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bench".into())
}

/// (x = log10(1/(1-q)), latency in ms) points of a histogram's percentile spectrum.
fn spectrum(h: &hdrhistogram::Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut pts = Vec::new();
    // 0%, 50%, 90%, 99%, ... up to 99.9999%, 20 steps per decade.
    let mut x = 0.0f64;
    while x <= 6.0 {
        let q = 1.0 - 10f64.powf(-x);
        pts.push((x, h.value_at_quantile(q) as f64 / 1e6));
        x += 0.05;
    }
    pts.push((6.0, h.max() as f64 / 1e6));
    pts
}

const COLORS: [plotters::style::RGBColor; 6] = [
    plotters::style::RGBColor(31, 119, 180),
    plotters::style::RGBColor(255, 127, 14),
    plotters::style::RGBColor(44, 160, 44),
    plotters::style::RGBColor(214, 39, 40),
    plotters::style::RGBColor(148, 103, 189),
    plotters::style::RGBColor(140, 86, 75),
];

fn plot_err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("plot failed: {e}")
}

/// Latency-by-percentile chart of several series.
pub fn plot_spectrum(
    path: &Path,
    title: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let ymax = series
        .iter()
        .flat_map(|(_, v)| v.iter().map(|p| p.1))
        .fold(0.001f64, f64::max);
    let ymin = series
        .iter()
        .flat_map(|(_, v)| v.iter().map(|p| p.1))
        .filter(|v| *v > 0.0)
        .fold(ymax, f64::min)
        .max(0.001)
        / 1.5;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..6f64, (ymin..ymax * 1.2).log_scale())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| {
            let q = 100.0 * (1.0 - 10f64.powf(-*x));
            let t = format!("{q:.4}");
            format!("{}%", t.trim_end_matches('0').trim_end_matches('.'))
        })
        .draw()
        .map_err(plot_err)?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|p| (p.0, p.1.max(ymin))),
                color.stroke_width(2),
            ))
            .map_err(plot_err)?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

fn plot_timeline(path: &Path, results: &[PhaseResult]) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let mut rate: Vec<(f64, f64)> = Vec::new();
    let mut pub99: Vec<(f64, f64)> = Vec::new();
    let mut e2e99: Vec<(f64, f64)> = Vec::new();
    let mut offset = 0.0;
    for r in results {
        let mut last = 0.0;
        for iv in &r.intervals {
            let t = offset + iv.index as f64 + 1.0;
            rate.push((t, iv.stats.acked_msgs as f64));
            if !iv.stats.publish.is_empty() {
                pub99.push((t, iv.stats.publish.value_at_quantile(0.99) as f64 / 1e6));
            }
            if !iv.stats.e2e.is_empty() {
                e2e99.push((t, iv.stats.e2e.value_at_quantile(0.99) as f64 / 1e6));
            }
            last = iv.index as f64 + 1.0;
        }
        offset += last;
    }
    let tmax = offset.max(1.0);
    let root = SVGBackend::new(path, (900, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let (top, bottom) = root.split_vertically(350);
    let rmax = rate.iter().map(|p| p.1).fold(1.0f64, f64::max);
    let mut c1 = ChartBuilder::on(&top)
        .caption("acknowledged msgs/s", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..tmax, 0f64..rmax * 1.1)
        .map_err(plot_err)?;
    c1.configure_mesh().x_desc("s").draw().map_err(plot_err)?;
    c1.draw_series(LineSeries::new(rate, COLORS[0].stroke_width(2)))
        .map_err(plot_err)?;
    let lmax = pub99
        .iter()
        .chain(e2e99.iter())
        .map(|p| p.1)
        .fold(0.01f64, f64::max);
    let mut c2 = ChartBuilder::on(&bottom)
        .caption("p99 latency per second (ms)", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..tmax, 0f64..lmax * 1.1)
        .map_err(plot_err)?;
    c2.configure_mesh().x_desc("s").draw().map_err(plot_err)?;
    c2.draw_series(LineSeries::new(pub99, COLORS[1].stroke_width(2)))
        .map_err(plot_err)?
        .label("publish p99")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], COLORS[1].stroke_width(2)));
    c2.draw_series(LineSeries::new(e2e99, COLORS[2].stroke_width(2)))
        .map_err(plot_err)?
        .label("e2e p99")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], COLORS[2].stroke_width(2)));
    c2.configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

/// `sluice bench compare A.json B.json`: side-by-side numbers and B/A ratios of the first
/// phase. A file written with `--repeat N` (N > 1) is compared by its medians over the runs
/// (`summary`); a file without them by its single run.
pub fn compare(a: &Value, b: &Value, a_name: &str, b_name: &str) -> String {
    let mut s = String::new();
    let at = |v: &Value, path: &[&str]| -> Option<f64> {
        let mut cur = v;
        for p in path {
            cur = cur.get(p)?;
        }
        cur.as_f64()
    };
    // The summary key of a row's figure, if the summary has it.
    let summary_key = |path: &[&str]| -> Option<String> {
        match path {
            ["throughput", k] => Some((*k).to_owned()),
            ["publish_latency_us", k] => Some(format!("publish_{k}_us")),
            ["e2e_latency_us", k] => Some(format!("e2e_{k}_us")),
            ["workload", "phases", "0", "results", "cpu", k] => {
                Some(k.replacen("_s_per", "_cpu_s_per", 1))
            }
            _ => None,
        }
    };
    let get = |v: &Value, path: &[&str]| -> Option<f64> {
        let summary = &v["summary"]["phases"][0];
        if let Some(k) = summary_key(path).filter(|_| summary.is_object()) {
            return summary[k.as_str()]["median"].as_f64();
        }
        match path {
            ["workload", "phases", "0", rest @ ..] => {
                at(v["workload"]["phases"].get(0)?, rest)
            }
            _ => at(v, path),
        }
    };
    let _ = writeln!(
        s,
        "{:<28} {:>16} {:>16} {:>10}",
        "metric", a_name, b_name, "B/A"
    );
    let mut rows: Vec<(String, Vec<&str>)> = vec![
        ("throughput msgs/s".into(), vec!["throughput", "msgs_per_s"]),
        ("throughput MB/s".into(), vec!["throughput", "mb_per_s"]),
    ];
    for k in ["p50", "p90", "p99", "p999", "p9999", "max"] {
        rows.push((format!("publish {k} (us)"), vec!["publish_latency_us", k]));
    }
    for k in ["p50", "p90", "p99", "p999", "p9999", "max"] {
        rows.push((format!("e2e {k} (us)"), vec!["e2e_latency_us", k]));
    }
    rows.push((
        "generator CPU (cores)".into(),
        vec!["environment", "generator_cpu_cores"],
    ));
    for who in ["broker", "generator"] {
        rows.push((
            format!("{who} CPU s/GB produced"),
            vec!["workload", "phases", "0", "results", "cpu", if who == "broker" {
                "broker_s_per_gb_produced"
            } else {
                "generator_s_per_gb_produced"
            }],
        ));
    }
    for (name, path) in rows {
        let (x, y) = (get(a, &path), get(b, &path));
        let fmt = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
        let ratio = match (x, y) {
            (Some(x), Some(y)) if x != 0.0 => format!("{:.2}x", y / x),
            _ => "-".into(),
        };
        let _ = writeln!(
            s,
            "{:<28} {:>16} {:>16} {:>10}",
            name,
            fmt(x),
            fmt(y),
            ratio
        );
    }
    for (label, v) in [(a_name, a), (b_name, b)] {
        let env = &v["environment"];
        let runs = match v["summary"]["repeats"].as_u64() {
            Some(n) => format!(" | median of {n} runs (generator CPU cores: first run)"),
            None => String::new(),
        };
        let _ = writeln!(
            s,
            "{label}: broker {} | commit {} | kernel {} | {} cores{runs}",
            env["broker"].as_str().unwrap_or("?"),
            env["commit"].as_str().unwrap_or("?"),
            env["kernel"].as_str().unwrap_or("?"),
            env["cores"].as_u64().unwrap_or(0)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn compare_prints_ratios() {
        let a = json!({"throughput": {"msgs_per_s": 1000.0, "mb_per_s": 1.0},
            "publish_latency_us": {"p50": 100.0, "p90": 1.0, "p99": 1.0, "p999": 1.0, "p9999": 1.0, "max": 1.0},
            "e2e_latency_us": {"p50": 1.0, "p90": 1.0, "p99": 1.0, "p999": 1.0, "p9999": 1.0, "max": 1.0},
            "environment": {"broker": "x"}});
        let mut b = a.clone();
        b["throughput"]["msgs_per_s"] = json!(2500.0);
        b["publish_latency_us"]["p50"] = json!(50.0);
        let out = compare(&a, &b, "A", "B");
        assert!(out.contains("2.50x"), "{out}");
        assert!(out.contains("0.50x"), "{out}");
    }

    #[test]
    fn spectrum_is_monotonic() {
        let mut h = super::super::stats::new_histogram();
        for v in 1..10_000u64 {
            super::super::stats::record(&mut h, v * 1000);
        }
        let s = spectrum(&h);
        assert!(s.windows(2).all(|w| w[0].1 <= w[1].1));
        assert!(s.len() > 100);
    }

    #[test]
    fn hdr_log_reads_back_with_every_histogram() {
        use super::super::runner::{Interval, PhaseResult};
        use super::super::stats::{record, IntervalStats};
        use super::super::workload::Phase;
        let mut intervals = Vec::new();
        let mut measured = IntervalStats::default();
        for i in 0..3u64 {
            let mut st = IntervalStats::default();
            for v in 1..=100u64 {
                record(&mut st.publish, v * 1_000 * (i + 1));
                record(&mut st.e2e, v * 2_000 * (i + 1));
            }
            measured.merge(&st);
            intervals.push(Interval {
                index: i,
                warmup: i == 0,
                stats: st,
            });
        }
        let r = PhaseResult {
            phase: Phase {
                name: "p".into(),
                rate: 10,
                duration_s: 2.0,
            },
            intervals,
            publish: LatencySummary::of(&measured.publish),
            request: LatencySummary::of(&measured.request),
            e2e: LatencySummary::of(&measured.e2e),
            measured,
            measured_s: 2.0,
            msgs_per_s: 1.0,
            mb_per_s: 1.0,
            consumed_msgs_per_s: 1.0,
            generator_cpu_s: 0.0,
            wall_s: 3.0,
            acked_total: 300,
            consumed_total: 300,
            errors: 0,
            first_error: None,
            unsent_total: 0,
            acked_bytes_total: 0,
            consumed_bytes_total: 0,
            produce_requests_total: 0,
            usage: Default::default(),
            broker_stages: None,
        };
        let path = std::env::temp_dir().join(format!(
            "sluice-hlog-{}.hlog",
            uuid::Uuid::new_v4().simple()
        ));
        write_hdr_log(&path, &[std::slice::from_ref(&r)]).unwrap();
        let text = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let mut deser = hdrhistogram::serialization::Deserializer::new();
        let mut seen = Vec::new();
        for entry in hdrhistogram::serialization::interval_log::IntervalLogIterator::new(&text) {
            if let Ok(hdrhistogram::serialization::interval_log::LogEntry::Interval(ilh)) = entry {
                let bytes = base64_decode(ilh.encoded_histogram());
                let h: hdrhistogram::Histogram<u64> =
                    deser.deserialize(&mut bytes.as_slice()).unwrap();
                seen.push((ilh.tag().map(|t| t.as_str().to_owned()), h.len(), h.max()));
            }
        }
        assert_eq!(seen.len(), 6, "{seen:?}");
        assert_eq!(seen[0].0.as_deref(), Some("p-publish"));
        assert_eq!(seen[1].0.as_deref(), Some("p-e2e"));
        assert!(seen.iter().all(|s| s.1 == 100));
    }

    fn base64_decode(s: &str) -> Vec<u8> {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u32, 0u32);
        for c in s.bytes().filter(|c| *c != b'=') {
            let v = A.iter().position(|a| *a == c).unwrap() as u32;
            acc = (acc << 6) | v;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        out
    }
}
