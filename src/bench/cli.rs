//! `sluice bench [flags]` and `sluice bench compare A.json B.json`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use super::device::ProbeOutcome;
use super::report::{self, Environment, Run};
use super::runner::{run_phase, PhaseResult};
use super::usage::BrokerSource;
use super::workload::{parse_duration, Workload};
use crate::client::Client;

/// Open-loop load generator with latency histograms (no coordinated omission).
///
/// With no flags: starts an embedded broker on a temporary directory and runs the
/// default workload (1 topic, 3 partitions, 1 KiB, acks=all; 10k msg/s, then max rate).
/// Precedence: defaults, then --workload FILE (OpenMessaging Benchmark YAML), then flags.
/// The JSON's top-level throughput/latency are the first phase's (of the first run); every
/// phase is under workload.phases[].results; with --repeat N > 1 every run is under repeats[]
/// and the medians over the runs under summary.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// Kafka-compatible broker(s) to test, `host:port[,host:port...]`; without it an embedded
    /// Sluice broker is started.
    #[arg(long)]
    pub bootstrap: Option<String>,
    /// OpenMessaging Benchmark workload YAML.
    #[arg(long)]
    pub workload: Option<PathBuf>,
    /// Topics (each with its own producers and subscriptions).
    #[arg(long)]
    pub topics: Option<usize>,
    /// Partitions per topic.
    #[arg(long)]
    pub partitions: Option<usize>,
    /// Bytes per message (at least 8: the send-time stamp), or a range MIN-MAX for sizes
    /// drawn uniformly from it, e.g. 100-4096.
    #[arg(long)]
    pub message_size: Option<String>,
    /// Producers per topic.
    #[arg(long)]
    pub producers: Option<usize>,
    /// Consumers per subscription.
    #[arg(long)]
    pub consumers: Option<usize>,
    /// Subscriptions (independent readers of every message) per topic.
    #[arg(long)]
    pub subscriptions: Option<usize>,
    /// Make each subscription a consumer group (the broker's group coordinator assigns
    /// partitions) instead of splitting partitions statically.
    #[arg(long)]
    pub consumer_groups: bool,
    /// Target msgs/s over all producers; 0 = max rate. Replaces the workload's phases.
    #[arg(long)]
    pub rate: Option<u64>,
    /// 0, 1 or all.
    #[arg(long)]
    pub acks: Option<String>,
    /// NO_KEY, KEY_ROUND_ROBIN or RANDOM_NANO (keys pick partitions by murmur2, as Kafka).
    #[arg(long)]
    pub key_distribution: Option<String>,
    #[arg(long)]
    pub batch_bytes: Option<usize>,
    #[arg(long)]
    pub linger_ms: Option<u64>,
    /// none, gzip, snappy, lz4, zstd.
    #[arg(long)]
    pub compression: Option<String>,
    /// Warm-up before each phase, e.g. 2s.
    #[arg(long)]
    pub warmup: Option<String>,
    /// Measured time per phase, e.g. 8s (with --rate or alone: one phase).
    #[arg(long)]
    pub duration: Option<String>,
    /// Generator threads (one compio runtime each); default: one per core.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Produce requests in flight per producer.
    #[arg(long)]
    pub in_flight: Option<usize>,
    /// Write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Directory for result.json, latency.hlog and SVG plots
    /// (default bench-results/run-<unix time> when --json is not given).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Keep the bench topics on an external broker instead of deleting them.
    #[arg(long)]
    pub keep_topics: bool,
    /// Replication factor of the bench topics; -1 = the broker's default (on a Sluice cluster
    /// min(3, brokers)).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub replication_factor: i16,
    /// Shards of the embedded broker (default: all cores).
    #[arg(long)]
    pub broker_cores: Option<usize>,
    /// Print no live progress line.
    #[arg(long)]
    pub quiet: bool,
    /// Run the whole bench (every phase) N times back to back against the same broker, each
    /// run on fresh topics, then print per phase the median and spread over the runs.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=REPEATS_MAX as i64))]
    pub repeat: u32,
    /// Process id of the external broker (`--bootstrap`): its CPU time and context switches
    /// are read from /proc/PID over each phase.
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// Admin listener HOST:PORT of an external Sluice broker: its /metrics is read at the start
    /// and end of each phase for the produce path's stages (queued, write, fsync wait, fsync,
    /// respond) and appends per group commit. The embedded broker is always read.
    #[arg(long)]
    pub broker_metrics: Option<SocketAddr>,
    /// Directory for the device probe (write+fdatasync timing) with an external broker;
    /// default: the current directory. The embedded broker is probed in its data directory.
    #[arg(long)]
    pub probe_dir: Option<PathBuf>,
    /// Skip the device probe.
    #[arg(long)]
    pub no_device_probe: bool,
}

/// Largest `--repeat`.
pub const REPEATS_MAX: u32 = 100;

/// `sluice bench` subcommands.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Compare two --json results side by side (B/A ratios); optionally plot both spectra.
    Compare {
        a: PathBuf,
        b: PathBuf,
        /// Write a combined latency-by-percentile SVG here.
        #[arg(long)]
        plot: Option<PathBuf>,
    },
}

impl BenchArgs {
    /// The workload these flags describe.
    pub fn workload(&self) -> anyhow::Result<Workload> {
        let mut w = Workload::default();
        if let Some(p) = &self.workload {
            w.apply_file(p)?;
        }
        macro_rules! set {
            ($flag:ident => $field:ident) => {
                if let Some(v) = self.$flag.clone() {
                    w.$field = v;
                }
            };
        }
        set!(topics => topics);
        set!(partitions => partitions_per_topic);
        if let Some(s) = &self.message_size {
            let parse = |v: &str| {
                v.trim()
                    .parse::<usize>()
                    .with_context(|| format!("bad message size '{s}'"))
            };
            match s.split_once('-') {
                Some((lo, hi)) => {
                    w.message_size = parse(lo)?;
                    w.message_size_max = parse(hi)?;
                }
                None => {
                    w.message_size = parse(s)?;
                    w.message_size_max = 0;
                }
            }
        }
        set!(producers => producers_per_topic);
        set!(consumers => consumers_per_subscription);
        set!(subscriptions => subscriptions_per_topic);
        set!(acks => acks);
        if self.consumer_groups {
            w.consumer_groups = true;
        }
        set!(key_distribution => key_distribution);
        set!(batch_bytes => batch_bytes);
        set!(linger_ms => linger_ms);
        set!(compression => compression);
        set!(threads => threads);
        set!(in_flight => in_flight);
        if let Some(d) = &self.warmup {
            w.warmup_s = parse_duration(d)?.as_secs_f64();
        }
        match (self.rate, &self.duration) {
            (Some(rate), d) => {
                let dur = match d {
                    Some(d) => parse_duration(d)?.as_secs_f64(),
                    None => w.phases.first().map(|p| p.duration_s).unwrap_or(10.0),
                };
                w.single_phase(rate, dur);
            }
            (None, Some(d)) => {
                let dur = parse_duration(d)?.as_secs_f64();
                for p in &mut w.phases {
                    p.duration_s = dur;
                }
            }
            (None, None) => {}
        }
        if (self.workload.is_some() || self.rate.is_some()) && w.name == "default" {
            w.name = "custom".into();
        }
        w.validate()?;
        Ok(w)
    }
}

/// Runs `sluice bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(BenchCommand::Compare { a, b, plot }) = &args.command {
        return compare(a, b, plot.as_deref());
    }
    let w = args.workload()?;
    if args.bootstrap.is_none() && (args.broker_pid.is_some() || args.probe_dir.is_some()) {
        bail!("--broker-pid and --probe-dir are for an external broker (--bootstrap)");
    }
    let (bootstrap, broker_desc, embedded) = match &args.bootstrap {
        Some(b) => (b.clone(), format!("external {b}"), None),
        None => {
            let e = super::embedded::EmbeddedBroker::start(args.broker_cores)?;
            let addr = e.bootstrap().to_string();
            (addr.clone(), format!("embedded sluice {addr}"), Some(e))
        }
    };
    let result = match &embedded {
        Some(e) => {
            let target = Target {
                bootstrap: &bootstrap,
                broker_desc: &broker_desc,
                broker: BrokerSource::Embedded,
                metrics: e.metrics_addr(),
                probe_dir: e.data_dir().to_path_buf(),
                broker_syncs: true,
            };
            run_target(&args, &w, &target)
        }
        None => run_with(&args, &w, &bootstrap, &broker_desc),
    };
    if let Some(e) = embedded {
        let stop = e.stop();
        if result.is_ok() {
            stop?;
        } else if let Err(se) = stop {
            tracing::warn!("embedded broker shutdown: {se:#}");
        }
    }
    result.map(|_| ())
}

/// The broker a bench runs against.
struct Target<'a> {
    bootstrap: &'a str,
    broker_desc: &'a str,
    /// Where its CPU time and context switches are read.
    broker: BrokerSource,
    /// Its /metrics, for the produce path's stages.
    metrics: Option<SocketAddr>,
    /// Where the device probe writes.
    probe_dir: PathBuf,
    /// It is known to fdatasync before acknowledging acks=all (the embedded Sluice).
    broker_syncs: bool,
}

/// What the output says about the topics of repeated runs.
const TOPICS_PER_RUN: &str = "fresh topics per run";

/// Runs the workload against the external broker `bootstrap` (`--repeat` times), prints the
/// tables, writes the files; returns the JSON. Its CPU is read with `--broker-pid`.
pub fn run_with(
    args: &BenchArgs,
    w: &Workload,
    bootstrap: &str,
    broker_desc: &str,
) -> anyhow::Result<serde_json::Value> {
    let target = Target {
        bootstrap,
        broker_desc,
        broker: match args.broker_pid {
            Some(p) => BrokerSource::Pid(p),
            None => BrokerSource::Unknown,
        },
        metrics: args.broker_metrics,
        probe_dir: args.probe_dir.clone().unwrap_or_else(|| PathBuf::from(".")),
        broker_syncs: false,
    };
    run_target(args, w, &target)
}

fn run_target(args: &BenchArgs, w: &Workload, target: &Target) -> anyhow::Result<serde_json::Value> {
    target.broker.check()?;
    let env = Environment::detect(target.broker_desc, w.threads);
    let repeats = args.repeat.max(1) as usize;
    let mut runs: Vec<Run> = Vec::new();
    for k in 0..repeats {
        if repeats > 1 && !args.quiet {
            eprintln!("[run {}/{repeats}]", k + 1);
        }
        let device = ProbeOutcome::run(&target.probe_dir, args.no_device_probe);
        let results = run_once(args, w, target)?;
        let run = Run { results, device };
        if repeats == 1 {
            println!("{}", report::table(w, &env, &target.broker, &run, target.broker_syncs));
        } else {
            if k == 0 {
                print!("{}", report::header(w, &env, &target.broker));
                println!("repeats: {repeats} runs back to back on the same broker, {TOPICS_PER_RUN}");
            }
            println!("
=== run {}/{repeats} ===", k + 1);
            print!("{}", report::run_lines(w, &run, target.broker_syncs));
        }
        runs.push(run);
    }
    if repeats > 1 {
        let all: Vec<&[PhaseResult]> = runs.iter().map(|r| r.results.as_slice()).collect();
        let devices: Vec<_> = runs.iter().map(|r| r.device.probe().cloned()).collect();
        println!("{}", super::summary::table(&all, &devices, TOPICS_PER_RUN));
    }
    let doc = report::to_json(w, &env, &runs, target.broker_syncs, TOPICS_PER_RUN);
    if let Some(path) = &args.json {
        write_json(path, &doc)?;
    }
    let out_dir = match (&args.out, &args.json) {
        (Some(d), _) => Some(d.clone()),
        (None, None) => {
            let ts = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            Some(PathBuf::from(format!("bench-results/run-{ts}")))
        }
        (None, Some(_)) => None,
    };
    if let Some(dir) = out_dir {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        write_json(&dir.join("result.json"), &doc)?;
        let all: Vec<&[PhaseResult]> = runs.iter().map(|r| r.results.as_slice()).collect();
        report::write_hdr_log(&dir.join("latency.hlog"), &all)?;
        let mut plots = Vec::new();
        for (k, run) in runs.iter().enumerate() {
            let prefix = if repeats > 1 { format!("bench-r{}", k + 1) } else { "bench".into() };
            plots.extend(report::write_plots(&dir.join(prefix), &run.results)?);
        }
        println!(
            "results: {} (result.json, latency.hlog, {})",
            dir.display(),
            plots
                .iter()
                .filter_map(|p| p.file_name())
                .map(|f| f.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let failed = runs
        .iter()
        .flat_map(|r| r.results.iter())
        .find(|r| r.errors > 0);
    if let Some(r) = failed {
        bail!(
            "phase {} had {} errors; first: {}",
            r.phase.name,
            r.errors,
            r.first_error.as_deref().unwrap_or("unknown")
        );
    }
    Ok(doc)
}

/// One run of every phase on fresh topics (deleted afterwards unless `--keep-topics`).
fn run_once(args: &BenchArgs, w: &Workload, target: &Target) -> anyhow::Result<Vec<PhaseResult>> {
    let bootstrap = target.bootstrap;
    let run_id = format!("{:08x}", rand::random::<u32>());
    let topics: Vec<String> = (0..w.topics)
        .map(|i| format!("sluice-bench-{run_id}-{i}"))
        .collect();
    create_topics(bootstrap, &topics, w.partitions_per_topic, args.replication_factor)?;
    let epoch = Instant::now();
    let quiet = args.quiet;
    let mut results: Vec<PhaseResult> = Vec::new();
    let mut run_err = None;
    for phase in &w.phases {
        let mut progress = |ph: &super::workload::Phase,
                            iv: &super::runner::Interval,
                            cum: &super::stats::IntervalStats| {
            if !quiet {
                eprintln!(
                    "{}",
                    report::progress_line(&ph.name, iv.index, iv.warmup, &iv.stats, cum)
                );
            }
        };
        match run_phase(bootstrap, w, &topics, phase, epoch, &target.broker, target.metrics, &mut progress) {
            Ok(r) => results.push(r),
            Err(e) => {
                run_err = Some(e);
                break;
            }
        }
    }
    if !args.keep_topics {
        if let Err(e) = delete_topics(bootstrap, &topics) {
            tracing::warn!("could not delete bench topics: {e:#}");
        }
    }
    if let Some(e) = run_err {
        return Err(e);
    }
    Ok(results)
}

fn write_json(path: &Path, doc: &serde_json::Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(doc)?;
    std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
}

fn create_topics(bootstrap: &str, topics: &[String], partitions: usize, replication_factor: i16) -> anyhow::Result<()> {
    crate::client::block_on(async {
        let client = Client::connect(bootstrap, "sluice-bench").await?;
        for t in topics {
            client.create_topic(t, partitions as i32, replication_factor, &[]).await?;
        }
        // Wait until metadata shows every partition with a leader (bounded), and on a cluster
        // preferably its preferred leader (the first replica), where leadership settles: the
        // producers resolve leaders once, so a move during the run would show as errors.
        let started = Instant::now();
        let deadline = started + std::time::Duration::from_secs(10);
        loop {
            let meta = client.metadata(Some(topics)).await;
            let ready = matches!(&meta, Ok(ts) if ts.len() == topics.len()
                && ts.iter().all(|t| t.partitions.len() == partitions && t.partitions.iter().all(|p| p.leader >= 0)));
            let settled = matches!(&meta, Ok(ts) if ts.iter().all(|t| t.partitions.iter().all(|p| p.replicas.first() == Some(&p.leader))));
            if ready && (settled || started.elapsed() > std::time::Duration::from_secs(5)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "topics were created but their partitions have no leader after 10 s: {meta:?}"
                );
            }
            compio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
}

fn delete_topics(bootstrap: &str, topics: &[String]) -> anyhow::Result<()> {
    crate::client::block_on(async {
        let client = Client::connect(bootstrap, "sluice-bench").await?;
        for t in topics {
            client.delete_topic(t).await?;
        }
        Ok(())
    })
}

fn compare(a: &Path, b: &Path, plot: Option<&Path>) -> anyhow::Result<()> {
    let read = |p: &Path| -> anyhow::Result<serde_json::Value> {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a bench JSON file", p.display()))
    };
    let (va, vb) = (read(a)?, read(b)?);
    for (p, v) in [(a, &va), (b, &vb)] {
        for k in [
            "workload",
            "environment",
            "throughput",
            "publish_latency_us",
            "e2e_latency_us",
            "timeline",
        ] {
            if v.get(k).is_none() {
                bail!("{} lacks the key '{k}'", p.display());
            }
        }
    }
    let name = |p: &Path| {
        p.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    print!("{}", report::compare(&va, &vb, &name(a), &name(b)));
    if let Some(out) = plot {
        // Percentile points from the summaries (the JSON keeps no full histogram).
        let pts = |v: &serde_json::Value, key: &str| -> Vec<(f64, f64)> {
            [
                ("p50", 0.301),
                ("p90", 1.0),
                ("p99", 2.0),
                ("p999", 3.0),
                ("p9999", 4.0),
            ]
            .iter()
            .filter_map(|(k, x)| v[key][*k].as_f64().map(|us| (*x, us / 1e3)))
            .collect()
        };
        let series = vec![
            (
                format!("{} publish", name(a)),
                pts(&va, "publish_latency_us"),
            ),
            (format!("{} e2e", name(a)), pts(&va, "e2e_latency_us")),
            (
                format!("{} publish", name(b)),
                pts(&vb, "publish_latency_us"),
            ),
            (format!("{} e2e", name(b)), pts(&vb, "e2e_latency_us")),
        ];
        report::plot_spectrum(out, "latency by percentile: comparison", &series)?;
        println!("plot: {}", out.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        b: BenchArgs,
    }

    fn parse(args: &[&str]) -> BenchArgs {
        T::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .unwrap()
            .b
    }

    #[test]
    fn no_flags_is_the_default_workload() {
        assert_eq!(parse(&[]).workload().unwrap(), Workload::default());
    }

    #[test]
    fn flags_override_the_workload_file() {
        let dir = std::env::temp_dir().join(format!(
            "sluice-bench-test-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("w.yaml");
        std::fs::write(&f, "topics: 2\npartitionsPerTopic: 16\nmessageSize: 512\nproducerRate: 5000\ntestDurationMinutes: 1\n").unwrap();
        let w = parse(&[
            "--workload",
            f.to_str().unwrap(),
            "--partitions",
            "4",
            "--duration",
            "8s",
        ])
        .workload()
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            (w.topics, w.partitions_per_topic, w.message_size),
            (2, 4, 512)
        );
        let ranged = parse(&["--message-size", "100-4096"]).workload().unwrap();
        assert_eq!(
            (
                ranged.message_size,
                ranged.message_size_max,
                ranged.message_bytes_mean()
            ),
            (100, 4096, 2098)
        );
        assert!(parse(&["--message-size", "4096-100"]).workload().is_err());
        assert_eq!(w.phases.len(), 1);
        assert_eq!((w.phases[0].rate, w.phases[0].duration_s), (5000, 8.0));
        let w = parse(&[
            "--rate",
            "0",
            "--duration",
            "3s",
            "--acks",
            "1",
            "--compression",
            "zstd",
        ])
        .workload()
        .unwrap();
        assert_eq!(
            (
                w.phases[0].rate,
                w.phases[0].duration_s,
                w.acks.as_str(),
                w.compression.as_str()
            ),
            (0, 3.0, "1", "zstd")
        );
    }

    #[test]
    fn bad_flags_are_refused_with_a_reason() {
        let e = parse(&["--message-size", "4"]).workload().unwrap_err();
        assert!(e.to_string().contains("message size"), "{e}");
        let e = parse(&["--compression", "brotli"]).workload().unwrap_err();
        assert!(e.to_string().contains("unknown compression"), "{e}");
        assert!(parse(&["--duration", "soon"]).workload().is_err());
    }
}
