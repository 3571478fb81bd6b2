//! What a bench run does: topics, producers, consumers, rates, phases.
//!
//! Built from defaults, then an OpenMessaging Benchmark workload YAML (`--workload`),
//! then explicit command-line flags, in that order.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::limits;

/// How producers key their messages (OpenMessaging Benchmark's `keyDistributor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDistribution {
    /// No key; batches rotate over partitions (sticky partitioner).
    NoKey,
    /// Cycle through the producer's 10 000 random 7-byte keys; partition by murmur2(key).
    RoundRobin,
    /// A random key of the producer's 10 000 for each message; partition by murmur2(key).
    Random,
}

impl std::str::FromStr for KeyDistribution {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "NO_KEY" | "none" => Ok(KeyDistribution::NoKey),
            "KEY_ROUND_ROBIN" | "round-robin" => Ok(KeyDistribution::RoundRobin),
            "RANDOM_NANO" | "random" => Ok(KeyDistribution::Random),
            other => Err(format!(
                "unknown key distribution '{other}' (NO_KEY, KEY_ROUND_ROBIN, RANDOM_NANO)"
            )),
        }
    }
}

/// One measured step at one target rate.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Phase {
    pub name: String,
    /// Target messages per second over all producers; 0 = as fast as the broker acknowledges.
    pub rate: u64,
    /// Measured time, after the warm-up.
    pub duration_s: f64,
}

/// A full description of a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Workload {
    pub name: String,
    pub topics: usize,
    pub partitions_per_topic: usize,
    pub message_size: usize,
    /// When above `message_size`: sizes uniform in message_size..=message_size_max.
    pub message_size_max: usize,
    pub producers_per_topic: usize,
    pub subscriptions_per_topic: usize,
    pub consumers_per_subscription: usize,
    /// Subscriptions are consumer groups (JoinGroup/SyncGroup/Heartbeat; the group leader
    /// assigns partitions) instead of a static split of the partitions.
    pub consumer_groups: bool,
    /// "0", "1" or "all".
    pub acks: String,
    /// NO_KEY, KEY_ROUND_ROBIN or RANDOM_NANO.
    pub key_distribution: String,
    pub batch_bytes: usize,
    pub linger_ms: u64,
    pub compression: String,
    /// Warm-up before each phase, excluded from the results.
    pub warmup_s: f64,
    /// Produce requests in flight per producer.
    pub in_flight: usize,
    /// Executor threads of the generator (one compio runtime each).
    pub threads: usize,
    pub phases: Vec<Phase>,
}

impl Default for Workload {
    /// 1 topic, 3 partitions, 1 KiB messages, acks=all: 10k msg/s, then max rate; ~30 s.
    fn default() -> Self {
        Workload {
            name: "default".into(),
            topics: 1,
            partitions_per_topic: 3,
            message_size: 1024,
            message_size_max: 0,
            producers_per_topic: 1,
            subscriptions_per_topic: 1,
            consumers_per_subscription: 1,
            consumer_groups: false,
            acks: "all".into(),
            key_distribution: "NO_KEY".into(),
            batch_bytes: 64 * 1024,
            linger_ms: 1,
            compression: "none".into(),
            warmup_s: 2.0,
            in_flight: 5,
            threads: default_threads(),
            phases: vec![
                Phase {
                    name: "fixed-10k".into(),
                    rate: 10_000,
                    duration_s: 10.0,
                },
                Phase {
                    name: "max-rate".into(),
                    rate: 0,
                    duration_s: 10.0,
                },
            ],
        }
    }
}

/// One executor per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// OpenMessaging Benchmark workload fields (plus Sluice's optional extensions).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OmbWorkload {
    name: Option<String>,
    topics: Option<usize>,
    partitions_per_topic: Option<usize>,
    message_size: Option<usize>,
    producers_per_topic: Option<usize>,
    subscriptions_per_topic: Option<usize>,
    consumer_per_subscription: Option<usize>,
    producer_rate: Option<u64>,
    test_duration_minutes: Option<f64>,
    warmup_duration_minutes: Option<f64>,
    key_distributor: Option<String>,
    // Sluice extensions (ignored by OMB).
    acks: Option<String>,
    batch_bytes: Option<usize>,
    linger_ms: Option<u64>,
    compression: Option<String>,
    in_flight: Option<usize>,
    consumer_groups: Option<bool>,
    /// Warm-up as a duration ("2s"); wins over warmupDurationMinutes.
    warmup: Option<String>,
    phases: Option<Vec<OmbPhase>>,
    #[serde(flatten)]
    other: std::collections::BTreeMap<String, serde_norway::Value>,
}

#[derive(Debug, Deserialize)]
struct OmbPhase {
    name: String,
    rate: u64,
    duration: String,
}

impl Workload {
    /// Applies an OMB workload file on top of `self`.
    pub fn apply_file(&mut self, path: &Path) -> anyhow::Result<()> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read workload {}", path.display()))?;
        if meta.len() > limits::BENCH_WORKLOAD_FILE_BYTES_MAX {
            bail!(
                "workload file {} is larger than {} bytes",
                path.display(),
                limits::BENCH_WORKLOAD_FILE_BYTES_MAX
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read workload {}", path.display()))?;
        self.apply_yaml(&text)
            .with_context(|| format!("bad workload {}", path.display()))
    }

    /// Applies OMB workload YAML text on top of `self`.
    pub fn apply_yaml(&mut self, text: &str) -> anyhow::Result<()> {
        let w: OmbWorkload = serde_norway::from_str(text)?;
        for k in w.other.keys() {
            tracing::info!("workload key '{k}' is not used by sluice bench");
        }
        if let Some(k) = w.key_distributor {
            self.key_distribution = k;
        }
        if let Some(v) = w.name {
            self.name = v;
        }
        if let Some(v) = w.topics {
            self.topics = v;
        }
        if let Some(v) = w.partitions_per_topic {
            self.partitions_per_topic = v;
        }
        if let Some(v) = w.message_size {
            self.message_size = v;
            self.message_size_max = 0;
        }
        if let Some(v) = w.producers_per_topic {
            self.producers_per_topic = v;
        }
        if let Some(v) = w.subscriptions_per_topic {
            self.subscriptions_per_topic = v;
        }
        if let Some(v) = w.consumer_per_subscription {
            self.consumers_per_subscription = v;
        }
        if let Some(v) = w.warmup_duration_minutes {
            self.warmup_s = v * 60.0;
        }
        if let Some(v) = &w.warmup {
            self.warmup_s = parse_duration(v)?.as_secs_f64();
        }
        if let Some(v) = w.acks {
            self.acks = v;
        }
        if let Some(v) = w.batch_bytes {
            self.batch_bytes = v;
        }
        if let Some(v) = w.linger_ms {
            self.linger_ms = v;
        }
        if let Some(v) = w.compression {
            self.compression = v;
        }
        if let Some(v) = w.in_flight {
            self.in_flight = v;
        }
        if let Some(v) = w.consumer_groups {
            self.consumer_groups = v;
        }
        if let Some(phases) = w.phases {
            self.phases = phases
                .into_iter()
                .map(|p| {
                    Ok(Phase {
                        name: p.name,
                        rate: p.rate,
                        duration_s: parse_duration(&p.duration)?.as_secs_f64(),
                    })
                })
                .collect::<anyhow::Result<_>>()?;
        } else if w.producer_rate.is_some() || w.test_duration_minutes.is_some() {
            let rate = w.producer_rate.unwrap_or(0);
            let duration_s = w.test_duration_minutes.map(|m| m * 60.0).unwrap_or(60.0);
            let name = if rate == 0 {
                "max-rate".to_string()
            } else {
                format!("rate-{rate}")
            };
            self.phases = vec![Phase {
                name,
                rate,
                duration_s,
            }];
        }
        Ok(())
    }

    /// Largest message the workload sends.
    pub fn message_bytes_max(&self) -> usize {
        self.message_size.max(self.message_size_max)
    }

    /// Mean message size.
    pub fn message_bytes_mean(&self) -> usize {
        (self.message_size + self.message_bytes_max()) / 2
    }

    /// The parsed key distribution.
    pub fn key_distribution(&self) -> anyhow::Result<KeyDistribution> {
        self.key_distribution.parse().map_err(anyhow::Error::msg)
    }

    /// Replaces the phases with one phase at `rate` (0 = max) for `duration_s`.
    pub fn single_phase(&mut self, rate: u64, duration_s: f64) {
        let name = if rate == 0 {
            "max-rate".to_string()
        } else {
            format!("rate-{rate}")
        };
        self.phases = vec![Phase {
            name,
            rate,
            duration_s,
        }];
    }

    /// Checks every value against its bound.
    pub fn validate(&self) -> anyhow::Result<()> {
        let n = limits::BENCH_ENTITIES_MAX;
        for (what, v) in [
            ("topics", self.topics),
            ("partitions", self.partitions_per_topic),
            ("producers", self.producers_per_topic),
            ("subscriptions", self.subscriptions_per_topic),
            ("consumers", self.consumers_per_subscription),
            ("threads", self.threads),
        ] {
            if v > n {
                bail!("{what} = {v} is above the limit of {n}");
            }
        }
        if self.topics == 0 || self.partitions_per_topic == 0 || self.threads == 0 {
            bail!("topics, partitions and threads must be at least 1");
        }
        if self.producers_per_topic == 0 {
            bail!("at least one producer per topic is needed");
        }
        if self.topics * self.partitions_per_topic > n {
            bail!(
                "{} partitions in total is above the limit of {n}",
                self.topics * self.partitions_per_topic
            );
        }
        if self.message_size_max != 0 && self.message_size_max < self.message_size {
            bail!(
                "message size range {}-{} is empty",
                self.message_size,
                self.message_size_max
            );
        }
        if !(limits::BENCH_MESSAGE_BYTES_MIN..=limits::BENCH_MESSAGE_BYTES_MAX)
            .contains(&self.message_size)
            || self.message_size_max > limits::BENCH_MESSAGE_BYTES_MAX
        {
            bail!(
                "message size must be between {} and {} bytes (the first 8 bytes carry the send time)",
                limits::BENCH_MESSAGE_BYTES_MIN,
                limits::BENCH_MESSAGE_BYTES_MAX
            );
        }
        if self.batch_bytes == 0 || self.batch_bytes > limits::BENCH_BATCH_BYTES_MAX {
            bail!(
                "batch bytes must be between 1 and {}",
                limits::BENCH_BATCH_BYTES_MAX
            );
        }
        if self.in_flight == 0 || self.in_flight > limits::BENCH_PRODUCER_IN_FLIGHT_MAX {
            bail!(
                "in-flight requests per producer must be between 1 and {}",
                limits::BENCH_PRODUCER_IN_FLIGHT_MAX
            );
        }
        if self.phases.is_empty() {
            bail!("the workload has no phase");
        }
        for p in &self.phases {
            if p.duration_s.is_nan()
                || p.duration_s <= 0.0
                || p.duration_s > limits::BENCH_DURATION_S_MAX as f64
            {
                bail!(
                    "phase '{}' duration must be above 0 and at most {} s",
                    p.name,
                    limits::BENCH_DURATION_S_MAX
                );
            }
        }
        if self.warmup_s.is_nan()
            || self.warmup_s < 0.0
            || self.warmup_s > limits::BENCH_DURATION_S_MAX as f64
        {
            bail!(
                "warm-up must be between 0 and {} s",
                limits::BENCH_DURATION_S_MAX
            );
        }
        self.acks
            .parse::<crate::client::Acks>()
            .map_err(anyhow::Error::msg)?;
        self.key_distribution()?;
        crate::client::records::parse_compression(&self.compression).map_err(anyhow::Error::msg)?;
        Ok(())
    }
}

/// Parses "8s", "500ms", "2m", "1h", "1.5s" or a bare number of seconds.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let v: f64 = num
        .trim()
        .parse()
        .with_context(|| format!("bad duration '{s}'"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        _ => bail!("bad duration unit in '{s}' (use ms, s, m or h)"),
    };
    if secs.is_nan() || secs < 0.0 || secs > limits::BENCH_DURATION_S_MAX as f64 {
        bail!("duration '{s}' out of range");
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("8s").unwrap(), Duration::from_secs(8));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("3 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn omb_workload_yaml_is_read() {
        let yaml = r#"
name: 1 topic / 16 partitions / 1kb
topics: 1
partitionsPerTopic: 16
keyDistributor: "NO_KEY"
messageSize: 1024
payloadFile: "payload/payload-1Kb.data"
subscriptionsPerTopic: 1
consumerPerSubscription: 1
producersPerTopic: 1
producerRate: 50000
consumerBacklogSizeGB: 0
testDurationMinutes: 15
"#;
        let mut w = Workload::default();
        w.apply_yaml(yaml).unwrap();
        assert_eq!(w.partitions_per_topic, 16);
        assert_eq!(w.message_size, 1024);
        assert_eq!(
            w.phases,
            vec![Phase {
                name: "rate-50000".into(),
                rate: 50_000,
                duration_s: 900.0
            }]
        );
        w.validate().unwrap();
    }

    #[test]
    fn default_workload_is_valid_and_short() {
        let w = Workload::default();
        w.validate().unwrap();
        let total: f64 = w.phases.iter().map(|p| p.duration_s + w.warmup_s).sum();
        assert!(total <= 30.0, "{total}");
    }

    #[test]
    fn bad_values_are_rejected() {
        let mut w = Workload {
            message_size: 4,
            ..Default::default()
        };
        assert!(w.validate().is_err());
        w.message_size = 100;
        w.acks = "2".into();
        assert!(w.validate().is_err());
    }
}

#[cfg(test)]
mod file_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn shipped_workload_files_parse_and_default_yaml_matches_the_code() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("perf/workloads");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
                continue;
            }
            let mut w = Workload::default();
            w.apply_file(&path).unwrap();
            w.validate().unwrap();
            n += 1;
        }
        assert!(n >= 2);
        let mut from_file = Workload::default();
        from_file.apply_file(&dir.join("default.yaml")).unwrap();
        let code = Workload::default();
        assert_eq!(from_file, code);
    }
}
