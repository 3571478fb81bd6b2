//! Metrics: the Prometheus exporter. The request path records into per-shard recorders
//! ([`crate::recorder`], thread-local, no locks); this module reads them, and the services
//! (partition logs, group coordinators, the request memory budget), only when `/metrics` is
//! scraped.
//!
//! Scraping ([`gather`] then [`render`]): the admin task asks every shard for a
//! [`ShardSnapshot`] through `Shard::run_on` (the snapshot is taken on the shard's own thread),
//! merges them and encodes them with `prometheus-client`: OpenMetrics text when the scraper asks
//! for `application/openmetrics-text`, else the Prometheus text format 0.0.4.
//!
//! Consumer-group series (`kafka_consumergroup_*`) come from each shard's group coordinator
//! ([`group_snapshots`]: members and committed offsets of the groups that shard coordinates).
//! Lag is computed at scrape time against the partitions' high watermarks, which live on
//! other shards: lag = high watermark − committed offset.
//!
//! Stalls: a ticker task per shard sleeps [`limits::STALL_TICK_MS`] and measures how late it wakes
//! (all lateness goes to `sluice_shard_tick_lateness_seconds`). A stall is counted when the tick is
//! more than [`limits::STALL_LATENESS_US_MIN`] late *and* the shard thread used more CPU than that
//! during the sleep: some task ran without yielding. Lateness without CPU use is the thread
//! waiting for a core (an oversubscribed machine), not a stall. This samples: a stall is seen
//! when it overlaps a tick.
//! Busy time is the shard thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), read at scrape.
//!
//! Layer (ARCHITECTURE.md "Layers", kept by tests/it/layers.rs): `metrics` uses everything below it: it reads recorders and services at scrape.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::limits;
use crate::recorder;
pub use crate::recorder::{count_records, ApiStats, BatchSizes, Hist, ProduceStage, TopicIo, LATENCY_BUCKETS_S};
use crate::runtime::Shard;
use crate::cluster::ClusterOf;
use crate::group::GroupShard;

/// One committed offset of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// What the group coordinator reports about one group it owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOffsetsSnapshot {
    pub group: String,
    pub members: u64,
    pub offsets: Vec<CommittedOffset>,
}

/// The groups a shard's coordinator knows (with members or only committed offsets): members
/// and committed offsets, read through the coordinator's public API on the shard's thread.
pub fn group_snapshots(groups: &crate::group::Coordinator) -> Vec<GroupOffsetsSnapshot> {
    let mut ids: Vec<String> = groups.list().into_iter().map(|(id, ..)| id).collect();
    ids.sort();
    ids.dedup();
    ids.into_iter()
        .map(|group| {
            let members = groups.describe(&group).members.len() as u64;
            let offsets = groups
                .fetch(&group, None)
                .into_iter()
                .flat_map(|(topic, rows)| {
                    rows.into_iter().filter_map(move |(partition, c)| {
                        c.map(|c| CommittedOffset {
                            topic: topic.clone(),
                            partition,
                            offset: c.offset,
                        })
                    })
                })
                .collect();
            GroupOffsetsSnapshot {
                group,
                members,
                offsets,
            }
        })
        .collect()
}

/// One partition's offsets and size, as its owning shard sees them.
#[derive(Debug, Clone)]
pub struct PartitionSnapshot {
    pub topic: String,
    pub partition: i32,
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub log_end_offset: i64,
    pub size_bytes: u64,
    pub segments: usize,
    pub offline: bool,
}

/// Everything one shard contributes to a scrape. `Send`: built on the shard, merged elsewhere.
#[derive(Debug, Clone, Default)]
pub struct ShardSnapshot {
    pub shard: usize,
    pub apis: Vec<(String, ApiStats)>,
    pub topics: Vec<(String, TopicIo)>,
    pub partitions: Vec<PartitionSnapshot>,
    pub fsync: Hist,
    /// By `recorder::ProduceStage as usize`.
    pub produce_stages: Vec<Hist>,
    pub fsync_batch: BatchSizes,
    pub inbox_full_total: u64,
    pub raft_dropped_total: u64,
    pub connections_accepted_total: u64,
    pub stalls_total: u64,
    pub stall_lateness: Hist,
    pub cpu_seconds: f64,
    /// The shard's request memory budget (`queued.max.request.bytes`): in use, limit, waits.
    pub request_memory_used_bytes: u64,
    pub request_memory_budget_bytes: u64,
    pub request_memory_waits_total: u64,
    pub groups: Vec<GroupOffsetsSnapshot>,
}

fn api_name(key: i16) -> String {
    match ApiKey::try_from(key) {
        Ok(k) => format!("{k:?}"),
        Err(_) => key.to_string(),
    }
}

/// This shard's snapshot; must run on the shard's own thread.
pub fn snapshot(shard: &Shard) -> ShardSnapshot {
    let partitions = shard
        .logs()
        .into_iter()
        .map(|((topic, partition), log)| PartitionSnapshot {
            topic,
            partition,
            log_start_offset: log.log_start_offset(),
            high_watermark: log.high_watermark(),
            log_end_offset: log.log_end_offset(),
            size_bytes: log.size_bytes(),
            segments: log.segment_count(),
            offline: log.is_offline(),
        })
        .collect();
    let r = recorder::recorded();
    ShardSnapshot {
        shard: shard.id,
        apis: r.apis.into_iter().map(|(k, v)| (api_name(k), v)).collect(),
        topics: r.topics,
        partitions,
        fsync: r.fsync,
        produce_stages: r.produce_stages,
        fsync_batch: r.fsync_batch,
        inbox_full_total: r.inbox_full_total,
        raft_dropped_total: r.raft_dropped_total,
        connections_accepted_total: r.connections_accepted_total,
        stalls_total: r.stalls_total,
        stall_lateness: r.stall_lateness,
        cpu_seconds: recorder::thread_cpu_seconds(),
        request_memory_used_bytes: shard.budget.used_bytes() as u64,
        request_memory_budget_bytes: shard.budget.limit_bytes() as u64,
        request_memory_waits_total: shard.budget.waits_total.get(),
        groups: group_snapshots(&shard.groups()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("shard {0} did not answer within {1} ms")]
    Timeout(usize, u64),
    #[error(transparent)]
    ShardGone(#[from] crate::runtime::ShardGone),
}

/// Asks every shard for its snapshot (concurrently, each on its own thread), bounded in time.
pub async fn gather(shard: &Rc<Shard>) -> Result<Vec<ShardSnapshot>, ScrapeError> {
    let n = shard.shared.shard_count();
    let asks = (0..n).map(|i| {
        let shard = shard.clone();
        async move {
            let ask = shard.run_on(i, |s| async move { snapshot(&s) });
            match compio::time::timeout(Duration::from_millis(limits::SCRAPE_SHARD_MS_MAX), ask)
                .await
            {
                Ok(r) => Ok(r?),
                Err(_) => Err(ScrapeError::Timeout(i, limits::SCRAPE_SHARD_MS_MAX)),
            }
        }
    });
    futures::future::join_all(asks).await.into_iter().collect()
}

/// Process memory in use: resident set size from /proc/self/statm (bytes), if readable.
pub fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page.max(0) as u64)
}

/// Broker-wide values the scrape reads directly (atomics and the catalog).
#[derive(Debug, Clone, Default)]
pub struct BrokerView {
    pub brokers: i64,
    /// (topic, partition count) from the catalog.
    pub topics: Vec<(String, i32)>,
    pub connections_open: u64,
    pub connections_rejected_total: u64,
    pub ready: bool,
    pub uptime_s: f64,
    pub rss_bytes: Option<u64>,
    /// Per partition of the catalog: leadership and replication as this node knows them.
    pub replication: Vec<PartitionReplication>,
}

/// kafka_exporter's replication view of one partition.
#[derive(Debug, Clone, Default)]
pub struct PartitionReplication {
    pub topic: String,
    pub partition: i32,
    /// Leader broker id, -1 when none is known.
    pub leader: i64,
    pub replicas: i64,
    pub in_sync: i64,
    /// The leader is the preferred replica (the first of the assignment).
    pub leader_is_preferred: bool,
}

impl BrokerView {
    pub fn of(shared: &crate::runtime::Shared) -> BrokerView {
        use std::sync::atomic::Ordering;
        let snap = shared.catalog.snapshot();
        let mut replication = Vec::new();
        for t in snap.topics() {
            for p in 0..t.partitions {
                let r = match shared.cluster() {
                    None => PartitionReplication {
                        topic: t.name.clone(),
                        partition: p,
                        leader: i64::from(shared.config.node_id),
                        replicas: 1,
                        in_sync: 1,
                        leader_is_preferred: true,
                    },
                    Some(c) => {
                        let assigned = t.replicas.get(p as usize).cloned().unwrap_or_default();
                        let info = c.leader(&(t.id, p)).filter(|l| l.leader != 0);
                        PartitionReplication {
                            topic: t.name.clone(),
                            partition: p,
                            leader: info.as_ref().map_or(-1, |l| l.leader as i64),
                            replicas: assigned.len() as i64,
                            in_sync: info.as_ref().map_or(0, |l| l.isr.len() as i64),
                            leader_is_preferred: info.as_ref().is_some_and(|l| assigned.first() == Some(&l.leader)),
                        }
                    }
                };
                replication.push(r);
            }
        }
        BrokerView {
            replication,
            brokers: match shared.cluster() {
                Some(_) => snap.data.brokers.len() as i64,
                None => 1,
            },
            topics: snap
                .topics()
                .map(|t| (t.name.clone(), t.partitions))
                .collect(),
            connections_open: shared.connections_open.load(Ordering::Relaxed) as u64,
            connections_rejected_total: shared.connections_rejected_total.load(Ordering::Relaxed),
            ready: shared.is_ready(),
            uptime_s: shared.started_at.elapsed().as_secs_f64(),
            rss_bytes: rss_bytes(),
        }
    }
}

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Clone)]
enum Value {
    Gauge(i64),
    GaugeF(f64),
    Counter(u64),
    CounterF(f64),
    Hist(Hist),
    Sizes(BatchSizes),
}

#[derive(Debug, Clone)]
struct Family {
    name: &'static str,
    help: &'static str,
    samples: Vec<(Labels, Value)>,
}

/// The merged scrape, encoded by prometheus-client as one collector.
#[derive(Debug, Default)]
struct Exposition {
    families: Vec<Family>,
}

impl Exposition {
    fn add(&mut self, name: &'static str, help: &'static str, samples: Vec<(Labels, Value)>) {
        self.families.push(Family {
            name,
            help,
            samples,
        });
    }
}

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.families {
            let Some((_, first)) = f.samples.first() else {
                continue;
            };
            let kind = match first {
                Value::Gauge(_) | Value::GaugeF(_) => MetricType::Gauge,
                Value::Counter(_) | Value::CounterF(_) => MetricType::Counter,
                Value::Hist(_) | Value::Sizes(_) => MetricType::Histogram,
            };
            let mut me = encoder.encode_descriptor(f.name, f.help, None, kind)?;
            for (labels, v) in &f.samples {
                if labels.is_empty() {
                    encode_value(&mut me, v)?;
                } else {
                    encode_value(&mut me.encode_family(labels)?, v)?;
                }
            }
        }
        Ok(())
    }
}

fn encode_value(e: &mut MetricEncoder, v: &Value) -> Result<(), std::fmt::Error> {
    match v {
        Value::Gauge(x) => e.encode_gauge(x),
        Value::GaugeF(x) => e.encode_gauge(x),
        Value::Counter(x) => e.encode_counter::<NoLabelSet, u64, u64>(x, None),
        Value::CounterF(x) => e.encode_counter::<NoLabelSet, f64, f64>(x, None),
        Value::Hist(h) => {
            e.encode_histogram::<NoLabelSet>(h.sum_s(), h.count(), &h.bucket_counts(), None)
        }
        Value::Sizes(b) => {
            e.encode_histogram::<NoLabelSet>(b.sum as f64, b.count, &b.bucket_counts(), None)
        }
    }
}

/// Content type of the OpenMetrics exposition.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the Prometheus text exposition.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Merges the shards' snapshots and encodes them. `openmetrics`: OpenMetrics 1.0 text, else the
/// Prometheus text format 0.0.4.
pub fn render(view: &BrokerView, shards: &[ShardSnapshot], openmetrics: bool) -> String {
    let mut x = Exposition::default();
    let one = |v: Value| vec![(Labels::new(), v)];

    // ---- kafka_exporter-compatible series ----
    x.add(
        "kafka_brokers",
        "Number of brokers in the cluster.",
        one(Value::Gauge(view.brokers)),
    );
    let mut topics: Vec<_> = view.topics.clone();
    topics.sort();
    x.add(
        "kafka_topic_partitions",
        "Number of partitions of a topic.",
        topics
            .iter()
            .map(|(t, n)| (vec![("topic", t.clone())], Value::Gauge(i64::from(*n))))
            .collect(),
    );
    let mut parts: Vec<&PartitionSnapshot> =
        shards.iter().flat_map(|s| s.partitions.iter()).collect();
    parts.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    let tp = |p: &PartitionSnapshot| {
        vec![
            ("topic", p.topic.clone()),
            ("partition", p.partition.to_string()),
        ]
    };
    x.add(
        "kafka_topic_partition_current_offset",
        "Current offset (high watermark: the next offset consumers can read) of a partition.",
        parts
            .iter()
            .map(|p| (tp(p), Value::Gauge(p.high_watermark)))
            .collect(),
    );
    x.add(
        "kafka_topic_partition_oldest_offset",
        "Oldest offset (log start offset) of a partition.",
        parts
            .iter()
            .map(|p| (tp(p), Value::Gauge(p.log_start_offset)))
            .collect(),
    );
    let mut repl: Vec<&PartitionReplication> = view.replication.iter().collect();
    repl.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    let rl = |r: &PartitionReplication| vec![("topic", r.topic.clone()), ("partition", r.partition.to_string())];
    x.add(
        "kafka_topic_partition_leader",
        "Leader broker id of a partition (-1: none known).",
        repl.iter().map(|r| (rl(r), Value::Gauge(r.leader))).collect(),
    );
    x.add(
        "kafka_topic_partition_replicas",
        "Number of replicas of a partition.",
        repl.iter().map(|r| (rl(r), Value::Gauge(r.replicas))).collect(),
    );
    x.add(
        "kafka_topic_partition_in_sync_replica",
        "Number of in-sync replicas of a partition.",
        repl.iter().map(|r| (rl(r), Value::Gauge(r.in_sync))).collect(),
    );
    x.add(
        "kafka_topic_partition_under_replicated_partition",
        "1 if the partition has fewer in-sync replicas than replicas.",
        repl.iter().map(|r| (rl(r), Value::Gauge(i64::from(r.in_sync < r.replicas)))).collect(),
    );
    x.add(
        "kafka_topic_partition_leader_is_preferred",
        "1 if the partition's leader is its preferred replica.",
        repl.iter().map(|r| (rl(r), Value::Gauge(i64::from(r.leader_is_preferred)))).collect(),
    );
    let hwm: HashMap<(&str, i32), i64> = parts
        .iter()
        .map(|p| ((p.topic.as_str(), p.partition), p.high_watermark))
        .collect();
    // group -> (members, [(topic, partition, committed)])
    let mut groups: BTreeMap<&str, (u64, Vec<&CommittedOffset>)> = BTreeMap::new();
    for g in shards.iter().flat_map(|s| s.groups.iter()) {
        let e = groups.entry(g.group.as_str()).or_default();
        e.0 += g.members;
        e.1.extend(g.offsets.iter().filter(|o| o.offset >= 0));
    }
    let mut current = Vec::new();
    let mut lag = Vec::new();
    let mut lag_sum = Vec::new();
    let mut members = Vec::new();
    for (group, (m, offsets)) in &mut groups {
        members.push((
            vec![("consumergroup", group.to_string())],
            Value::Gauge(*m as i64),
        ));
        offsets.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        let mut sums: BTreeMap<&str, i64> = BTreeMap::new();
        for o in offsets.iter() {
            let labels = vec![
                ("consumergroup", group.to_string()),
                ("topic", o.topic.clone()),
                ("partition", o.partition.to_string()),
            ];
            current.push((labels.clone(), Value::Gauge(o.offset)));
            if let Some(end) = hwm.get(&(o.topic.as_str(), o.partition)) {
                let l = end - o.offset;
                lag.push((labels, Value::Gauge(l)));
                *sums.entry(o.topic.as_str()).or_default() += l;
            }
        }
        for (topic, s) in sums {
            lag_sum.push((
                vec![
                    ("consumergroup", group.to_string()),
                    ("topic", topic.to_string()),
                ],
                Value::Gauge(s),
            ));
        }
    }
    x.add(
        "kafka_consumergroup_current_offset",
        "Committed offset of a consumer group in a partition.",
        current,
    );
    x.add("kafka_consumergroup_lag", "Lag of a consumer group in a partition: current offset (high watermark) minus committed offset.", lag);
    x.add(
        "kafka_consumergroup_lag_sum",
        "Lag of a consumer group summed over a topic's partitions.",
        lag_sum,
    );
    x.add(
        "kafka_consumergroup_members",
        "Members of a consumer group.",
        members,
    );

    // ---- sluice_* series ----
    let mut apis: BTreeMap<&str, ApiStats> = BTreeMap::new();
    for (name, s) in shards.iter().flat_map(|s| s.apis.iter()) {
        let e = apis.entry(name.as_str()).or_default();
        e.requests += s.requests;
        e.errors += s.errors;
        e.latency.merge(&s.latency);
    }
    let api = |n: &str| vec![("api", n.to_string())];
    x.add(
        "sluice_requests",
        "Kafka requests answered, by API.",
        apis.iter()
            .map(|(n, s)| (api(n), Value::Counter(s.requests)))
            .collect(),
    );
    x.add(
        "sluice_request_errors",
        "Kafka requests that could not be answered (connection closed: malformed, unsupported, failed), by API.",
        apis.iter().map(|(n, s)| (api(n), Value::Counter(s.errors))).collect(),
    );
    x.add(
        "sluice_request_duration_seconds",
        "Time from a request's header being decoded to its response being ready, by API.",
        apis.iter()
            .map(|(n, s)| (api(n), Value::Hist(s.latency.clone())))
            .collect(),
    );
    let mut tio: BTreeMap<&str, TopicIo> = BTreeMap::new();
    for (t, io) in shards.iter().flat_map(|s| s.topics.iter()) {
        let e = tio.entry(t.as_str()).or_default();
        e.bytes_in += io.bytes_in;
        e.records_in += io.records_in;
        e.bytes_out += io.bytes_out;
        e.records_out += io.records_out;
    }
    let topic = |t: &str| vec![("topic", t.to_string())];
    x.add(
        "sluice_topic_bytes_in",
        "Record batch bytes appended to a topic.",
        tio.iter()
            .map(|(t, io)| (topic(t), Value::Counter(io.bytes_in)))
            .collect(),
    );
    x.add(
        "sluice_topic_records_in",
        "Records appended to a topic.",
        tio.iter()
            .map(|(t, io)| (topic(t), Value::Counter(io.records_in)))
            .collect(),
    );
    x.add(
        "sluice_topic_bytes_out",
        "Record batch bytes sent to consumers of a topic.",
        tio.iter()
            .map(|(t, io)| (topic(t), Value::Counter(io.bytes_out)))
            .collect(),
    );
    x.add(
        "sluice_topic_records_out",
        "Records sent to consumers of a topic, counted in responses read into memory (ranges sent zero-copy add to bytes_out only).",
        tio.iter()
            .map(|(t, io)| (topic(t), Value::Counter(io.records_out)))
            .collect(),
    );
    x.add(
        "sluice_partition_size_bytes",
        "Bytes of a partition's segment files.",
        parts
            .iter()
            .map(|p| (tp(p), Value::Gauge(p.size_bytes as i64)))
            .collect(),
    );
    x.add(
        "sluice_partition_segments",
        "Segment files of a partition.",
        parts
            .iter()
            .map(|p| (tp(p), Value::Gauge(p.segments as i64)))
            .collect(),
    );
    x.add(
        "sluice_partition_log_end_offset",
        "Next offset to be written to a partition (may be above the high watermark until fsynced).",
        parts
            .iter()
            .map(|p| (tp(p), Value::Gauge(p.log_end_offset)))
            .collect(),
    );
    x.add(
        "sluice_partition_offline",
        "1 when a partition's log is offline after a failed write or fsync.",
        parts
            .iter()
            .map(|p| (tp(p), Value::Gauge(i64::from(p.offline))))
            .collect(),
    );
    let mut fsync = Hist::default();
    for s in shards {
        fsync.merge(&s.fsync);
    }
    x.add(
        "sluice_fsync_duration_seconds",
        "Duration of one group commit's fdatasyncs.",
        one(Value::Hist(fsync)),
    );
    let mut batch = BatchSizes::default();
    for s in shards {
        batch.merge(&s.fsync_batch);
    }
    x.add(
        "sluice_fsync_batch_appends",
        "Appends (produce batches) covered by one group commit.",
        one(Value::Sizes(batch)),
    );
    x.add(
        "sluice_produce_stage_seconds",
        "Stages of a produce on a single-node broker, per partition: queued (request decoded to append start on the owning shard), write, fsync_wait (written to the covering fsync's start), fsync, respond (durable to response built).",
        ProduceStage::ALL
            .iter()
            .map(|st| {
                let mut h = Hist::default();
                for s in shards {
                    if let Some(x) = s.produce_stages.get(*st as usize) {
                        h.merge(x);
                    }
                }
                (vec![("stage", st.name().to_string())], Value::Hist(h))
            })
            .collect(),
    );
    let shard = |s: &ShardSnapshot| vec![("shard", s.shard.to_string())];
    x.add(
        "sluice_cross_shard_inbox_full",
        "Cross-shard sends that found the target shard's inbox full and waited (back-pressure), by sending shard.",
        shards.iter().map(|s| (shard(s), Value::Counter(s.inbox_full_total))).collect(),
    );
    x.add(
        "sluice_raft_messages_dropped",
        "Cluster mode: Raft messages to peers dropped because the peer's queue was full (Raft resends), by shard.",
        shards.iter().map(|s| (shard(s), Value::Counter(s.raft_dropped_total))).collect(),
    );
    x.add(
        "sluice_connections_open",
        "Client connections open.",
        one(Value::Gauge(view.connections_open as i64)),
    );
    x.add(
        "sluice_connections_accepted",
        "Client connections accepted, by shard.",
        shards
            .iter()
            .map(|s| (shard(s), Value::Counter(s.connections_accepted_total)))
            .collect(),
    );
    x.add(
        "sluice_connections_rejected",
        "Client connections refused (max.connections reached).",
        one(Value::Counter(view.connections_rejected_total)),
    );
    x.add(
        "sluice_shard_busy_seconds",
        "CPU time of a shard's thread (time its executor was not waiting).",
        shards
            .iter()
            .map(|s| (shard(s), Value::CounterF(s.cpu_seconds)))
            .collect(),
    );
    x.add(
        "sluice_shard_stalls",
        "Times a shard's tick woke more than 1 ms late: a task ran that long without yielding.",
        shards
            .iter()
            .map(|s| (shard(s), Value::Counter(s.stalls_total)))
            .collect(),
    );
    x.add(
        "sluice_shard_tick_lateness_seconds",
        "How late a shard's periodic tick woke (executor responsiveness).",
        shards
            .iter()
            .map(|s| (shard(s), Value::Hist(s.stall_lateness.clone())))
            .collect(),
    );
    x.add(
        "sluice_request_memory_used_bytes",
        "Bytes of request frames a shard has read and not yet answered.",
        shards
            .iter()
            .map(|s| (shard(s), Value::Gauge(s.request_memory_used_bytes as i64)))
            .collect(),
    );
    x.add(
        "sluice_request_memory_budget_bytes",
        "A shard's request memory budget (queued.max.request.bytes).",
        shards
            .iter()
            .map(|s| (shard(s), Value::Gauge(s.request_memory_budget_bytes as i64)))
            .collect(),
    );
    x.add(
        "sluice_request_memory_waits",
        "Times a connection waited for the shard's request memory budget (back-pressure).",
        shards
            .iter()
            .map(|s| (shard(s), Value::Counter(s.request_memory_waits_total)))
            .collect(),
    );
    if let Some(rss) = view.rss_bytes {
        x.add(
            "sluice_memory_rss_bytes",
            "Resident memory of the process (/proc/self/statm).",
            one(Value::Gauge(rss as i64)),
        );
    }
    x.add(
        "sluice_shards",
        "Shards (pinned executor threads).",
        one(Value::Gauge(shards.len() as i64)),
    );
    x.add(
        "sluice_ready",
        "1 when every shard has recovered its partitions and listens.",
        one(Value::Gauge(i64::from(view.ready))),
    );
    x.add(
        "sluice_uptime_seconds",
        "Seconds since the broker started.",
        one(Value::GaugeF(view.uptime_s)),
    );

    let mut registry = Registry::default();
    registry.register_collector(Box::new(x));
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        return String::new();
    }
    if openmetrics {
        out
    } else {
        to_prometheus_text(&out)
    }
}

/// Converts prometheus-client's OpenMetrics text into the Prometheus text format 0.0.4: no
/// `# EOF` or `# UNIT` lines, and a counter's HELP/TYPE name carries its `_total` suffix.
fn to_prometheus_text(om: &str) -> String {
    let mut counters: Vec<&str> = Vec::new();
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.strip_suffix(" counter") {
                counters.push(name);
            }
        }
    }
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = line
            .strip_prefix("# HELP ")
            .map(|r| ("# HELP ", r))
            .or_else(|| line.strip_prefix("# TYPE ").map(|r| ("# TYPE ", r)));
        if let Some((prefix, rest)) = meta {
            let name = rest.split(' ').next().unwrap_or("");
            if counters.contains(&name) {
                out.push_str(prefix);
                out.push_str(name);
                out.push_str("_total");
                out.push_str(&rest[name.len()..]);
                out.push('\n');
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Whether an HTTP Accept header asks for OpenMetrics.
pub fn wants_openmetrics(accept: &str) -> bool {
    accept
        .to_ascii_lowercase()
        .contains("application/openmetrics-text")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn part(topic: &str, p: i32, hwm: i64) -> PartitionSnapshot {
        PartitionSnapshot {
            topic: topic.into(),
            partition: p,
            log_start_offset: 0,
            high_watermark: hwm,
            log_end_offset: hwm,
            size_bytes: 100,
            segments: 1,
            offline: false,
        }
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| {
            l.strip_prefix(series)
                .and_then(|r| r.strip_prefix(' '))
                .map(|v| v.parse().unwrap())
        })
    }

    /// Lag from one shard's group offsets against partitions on several shards: high watermark
    /// minus committed, summed per topic; a partition without a commit has no lag series.
    #[test]
    fn lag_across_shards() {
        let groups = vec![GroupOffsetsSnapshot {
            group: "g1".into(),
            members: 2,
            offsets: vec![
                CommittedOffset {
                    topic: "t".into(),
                    partition: 0,
                    offset: 4,
                },
                CommittedOffset {
                    topic: "t".into(),
                    partition: 1,
                    offset: 10,
                },
                CommittedOffset {
                    topic: "t".into(),
                    partition: 2,
                    offset: -1,
                },
            ],
        }];
        let shards = vec![
            ShardSnapshot {
                shard: 0,
                partitions: vec![part("t", 0, 10), part("t", 2, 3)],
                groups,
                ..Default::default()
            },
            ShardSnapshot {
                shard: 1,
                partitions: vec![part("t", 1, 25)],
                ..Default::default()
            },
        ];
        let view = BrokerView {
            brokers: 1,
            topics: vec![("t".into(), 3)],
            ..Default::default()
        };
        for om in [false, true] {
            let text = render(&view, &shards, om);
            assert_eq!(
                value(
                    &text,
                    r#"kafka_consumergroup_lag{consumergroup="g1",topic="t",partition="0"}"#
                ),
                Some(6.0),
                "{text}"
            );
            assert_eq!(
                value(
                    &text,
                    r#"kafka_consumergroup_lag{consumergroup="g1",topic="t",partition="1"}"#
                ),
                Some(15.0)
            );
            assert_eq!(
                value(
                    &text,
                    r#"kafka_consumergroup_lag{consumergroup="g1",topic="t",partition="2"}"#
                ),
                None,
                "no commit, no lag"
            );
            assert_eq!(
                value(
                    &text,
                    r#"kafka_consumergroup_lag_sum{consumergroup="g1",topic="t"}"#
                ),
                Some(21.0)
            );
            assert_eq!(
                value(
                    &text,
                    r#"kafka_consumergroup_current_offset{consumergroup="g1",topic="t",partition="1"}"#
                ),
                Some(10.0)
            );
            assert_eq!(
                value(&text, r#"kafka_consumergroup_members{consumergroup="g1"}"#),
                Some(2.0)
            );
            assert_eq!(
                value(&text, r#"kafka_topic_partitions{topic="t"}"#),
                Some(3.0)
            );
            assert_eq!(
                value(
                    &text,
                    r#"kafka_topic_partition_current_offset{topic="t",partition="1"}"#
                ),
                Some(25.0)
            );
            assert_eq!(text.contains("# EOF"), om);
        }
    }

    #[test]
    fn histogram_and_counter_text() {
        let mut h = Hist::default();
        h.observe(Duration::from_micros(30));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(30));
        let shards = vec![ShardSnapshot {
            apis: vec![(
                "Produce".into(),
                ApiStats {
                    requests: 3,
                    errors: 1,
                    latency: h,
                },
            )],
            ..Default::default()
        }];
        let text = render(&BrokerView::default(), &shards, false);
        assert!(
            text.contains("# TYPE sluice_requests_total counter\n"),
            "{text}"
        );
        assert_eq!(
            value(&text, r#"sluice_requests_total{api="Produce"}"#),
            Some(3.0)
        );
        assert_eq!(
            value(&text, r#"sluice_request_errors_total{api="Produce"}"#),
            Some(1.0)
        );
        assert_eq!(
            value(
                &text,
                r#"sluice_request_duration_seconds_bucket{le="0.00005",api="Produce"}"#
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            value(
                &text,
                r#"sluice_request_duration_seconds_bucket{le="0.005",api="Produce"}"#
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            value(
                &text,
                r#"sluice_request_duration_seconds_bucket{le="10.0",api="Produce"}"#
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            value(
                &text,
                r#"sluice_request_duration_seconds_bucket{le="+Inf",api="Produce"}"#
            ),
            Some(3.0),
            "{text}"
        );
        assert!(!text.contains("{}"), "{text}");
        assert_eq!(
            value(
                &text,
                r#"sluice_request_duration_seconds_count{api="Produce"}"#
            ),
            Some(3.0)
        );
    }

    #[test]
    fn records_counted_from_batch_headers() {
        let mut b = vec![0u8; 61 + 10];
        b[8..12].copy_from_slice(&(61i32 + 10 - 12).to_be_bytes());
        b[57..61].copy_from_slice(&7i32.to_be_bytes());
        let mut two = b.clone();
        two.extend_from_slice(&b);
        assert_eq!(count_records(&two), 14);
        assert_eq!(
            count_records(&two[..two.len() - 1]),
            7,
            "a cut batch is not counted"
        );
        assert_eq!(count_records(&[]), 0);
    }

    /// Every series the Grafana dashboard queries is one Sluice exports.
    #[test]
    fn dashboard_uses_exported_series() {
        let dashboard = include_str!("../../docs/grafana/sluice-dashboard.json");
        let mut h = Hist::default();
        h.observe(Duration::from_millis(1));
        let shards = vec![ShardSnapshot {
            apis: vec![(
                "Produce".into(),
                ApiStats {
                    requests: 1,
                    errors: 0,
                    latency: h.clone(),
                },
            )],
            topics: vec![("t".into(), TopicIo::default())],
            partitions: vec![part("t", 0, 5)],
            fsync: h,
            groups: vec![GroupOffsetsSnapshot {
                group: "g".into(),
                members: 1,
                offsets: vec![CommittedOffset {
                    topic: "t".into(),
                    partition: 0,
                    offset: 1,
                }],
            }],
            ..Default::default()
        }];
        let view = BrokerView {
            brokers: 1,
            topics: vec![("t".into(), 1)],
            rss_bytes: Some(1),
            replication: vec![PartitionReplication {
                topic: "t".into(),
                partition: 0,
                leader: 1,
                replicas: 3,
                in_sync: 2,
                leader_is_preferred: true,
            }],
            ..Default::default()
        };
        let text = render(&view, &shards, false);
        let exported: std::collections::HashSet<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .collect();
        fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, v) in m {
                        match (k.as_str(), v) {
                            ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                            _ => exprs(v, out),
                        }
                    }
                }
                serde_json::Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        exprs(&serde_json::from_str(dashboard).unwrap(), &mut all);
        let mut used = 0;
        for e in &all {
            for (i, _) in e.match_indices(['k', 's']) {
                let rest = &e[i..];
                if !(rest.starts_with("kafka_") || rest.starts_with("sluice_"))
                    || (i > 0 && e.as_bytes()[i - 1].is_ascii_alphanumeric())
                {
                    continue;
                }
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                    .collect();
                assert!(
                    exported.contains(name.as_str()),
                    "dashboard queries {name}, which is not exported"
                );
                used += 1;
            }
        }
        assert!(used > 20, "{used}");
    }

    #[test]
    fn accept_negotiation() {
        assert!(wants_openmetrics(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        ));
        assert!(!wants_openmetrics("text/plain"));
    }
}
