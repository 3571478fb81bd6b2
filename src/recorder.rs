//! Recording primitives: per-shard counters and histograms that the request path, the storage
//! flusher and the runtime update with one call each, and that the exporter (`crate::metrics`)
//! reads at scrape time through [`recorded`] on each shard's own thread.
//!
//! Every shard is one OS thread, so each shard's recorders live in a thread-local (plain
//! `Cell`/`RefCell`, no atomics, no locks). The hooks: [`request_done`] (handlers::dispatch),
//! [`topic_in`] (Produce, on the owning shard), [`topic_out`] (Fetch, on the connection's
//! shard), [`fsync_done`] (the storage flusher), [`inbox_full`] (`Shard::run_on` when the
//! target's inbox is full: back-pressure), [`raft_message_dropped`], [`connection_accepted`]
//! (accept loop) and [`stall_ticker`] (one task per shard); [`log_allowed`] rate-limits
//! repeated warnings.
//!
//! Architecture invariant: this module imports no other module of the crate but `limits`, so
//! every layer may record (tests/it/layers.rs).
//!
//! Layer (ARCHITECTURE.md "Layers", kept by tests/it/layers.rs): `recorder` uses `limits`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;

use crate::limits;

/// Upper bounds (seconds) of the latency histogram buckets (request, fsync, stall lateness).
pub const LATENCY_BUCKETS_S: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// A fixed-bucket latency histogram (non-cumulative counts; the last slot is +Inf).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hist {
    buckets: [u64; LATENCY_BUCKETS_S.len() + 1],
    sum_s: f64,
    count: u64,
}

impl Hist {
    pub fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BUCKETS_S
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(LATENCY_BUCKETS_S.len());
        self.buckets[i] += 1;
        self.sum_s += s;
        self.count += 1;
    }

    pub fn merge(&mut self, o: &Hist) {
        for (a, b) in self.buckets.iter_mut().zip(o.buckets.iter()) {
            *a += b;
        }
        self.sum_s += o.sum_s;
        self.count += o.count;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the observed values, in seconds.
    pub fn sum_s(&self) -> f64 {
        self.sum_s
    }

    /// (upper bound, count in this bucket) pairs, not cumulative: prometheus-client accumulates
    /// them when encoding. The last bound is `f64::MAX` (encoded as +Inf).
    pub fn bucket_counts(&self) -> Vec<(f64, u64)> {
        debug_assert_eq!(self.buckets.iter().sum::<u64>(), self.count);
        self.buckets
            .iter()
            .enumerate()
            .map(|(i, c)| (LATENCY_BUCKETS_S.get(i).copied().unwrap_or(f64::MAX), *c))
            .collect()
    }
}

/// Requests of one Kafka API seen by one shard.
#[derive(Debug, Clone, Default)]
pub struct ApiStats {
    pub requests: u64,
    pub errors: u64,
    pub latency: Hist,
}

/// Bytes and records in/out of one topic seen by one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicIo {
    pub bytes_in: u64,
    pub records_in: u64,
    pub bytes_out: u64,
    pub records_out: u64,
}

/// One shard's recorders (thread-local: one shard per thread).
#[derive(Default)]
struct Local {
    apis: RefCell<BTreeMap<i16, ApiStats>>,
    topics: RefCell<HashMap<String, TopicIo>>,
    fsync: RefCell<Hist>,
    inbox_full_total: Cell<u64>,
    raft_dropped_total: Cell<u64>,
    connections_accepted_total: Cell<u64>,
    stalls_total: Cell<u64>,
    stall_lateness: RefCell<Hist>,
    produce_stages: RefCell<[Hist; ProduceStage::ALL.len()]>,
    fsync_batch: RefCell<BatchSizes>,
}

thread_local! {
    static LOCAL: Local = Local::default();
}

/// A request finished (its reply is ready); `error`: it was answered by closing the connection.
pub fn request_done(api: ApiKey, elapsed: Duration, error: bool) {
    LOCAL.with(|l| {
        let mut apis = l.apis.borrow_mut();
        let s = apis.entry(api as i16).or_default();
        s.requests += 1;
        s.errors += u64::from(error);
        s.latency.observe(elapsed);
    });
}

/// Records appended to a topic (called on the partition's owning shard).
pub fn topic_in(topic: &str, bytes: u64, records: u64) {
    with_topic(topic, |t| {
        t.bytes_in += bytes;
        t.records_in += records;
    });
}

/// Record batches sent to a consumer; records are counted from the batch headers.
pub fn topic_out(topic: &str, batches: &[u8]) {
    let records = count_records(batches);
    with_topic(topic, |t| {
        t.bytes_out += batches.len() as u64;
        t.records_out += records;
    });
}

/// A byte range sent zero-copy (file to socket): its bytes are counted, its records are not
/// (they are never in memory here).
pub fn topic_out_zero_copy(topic: &str, bytes: u32) {
    with_topic(topic, |t| t.bytes_out += u64::from(bytes));
}

fn with_topic(topic: &str, f: impl FnOnce(&mut TopicIo)) {
    LOCAL.with(|l| {
        let mut topics = l.topics.borrow_mut();
        match topics.get_mut(topic) {
            Some(t) => f(t),
            None => f(topics.entry(topic.to_string()).or_default()),
        }
    });
}

/// Records in a run of RecordBatch v2 (batchLength at byte 8, recordCount at byte 57).
/// A truncated trailing batch (Fetch may cut one) is not counted.
pub fn count_records(mut b: &[u8]) -> u64 {
    let mut n = 0u64;
    while b.len() >= 61 {
        let len = i32::from_be_bytes([b[8], b[9], b[10], b[11]]);
        let count = i32::from_be_bytes([b[57], b[58], b[59], b[60]]);
        let total = 12usize.saturating_add(len.max(0) as usize);
        if len < 49 || total > b.len() {
            break;
        }
        n += count.max(0) as u64;
        b = &b[total..];
    }
    n
}

/// One group commit's fdatasyncs finished (storage flusher).
pub fn fsync_done(elapsed: Duration) {
    LOCAL.with(|l| l.fsync.borrow_mut().observe(elapsed));
}

/// One stage of an acks=all produce on a single-node broker, timed per partition of a request
/// (`sluice_produce_stage_seconds{stage}`; the latency budget of issue #16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProduceStage {
    /// Request read and decoded → its append starts on the partition's owning shard (handler,
    /// validation, the cross-shard hop when the connection's shard is not the owner).
    Queued,
    /// The append: producer checks and the segment write (page cache).
    Write,
    /// Written → the group-commit fdatasync that covers it starts.
    FsyncWait,
    /// That fdatasync.
    Fsync,
    /// Durable → the response is built on the connection's shard (the hop back included).
    Respond,
}

impl ProduceStage {
    pub const ALL: [ProduceStage; 5] = [
        ProduceStage::Queued,
        ProduceStage::Write,
        ProduceStage::FsyncWait,
        ProduceStage::Fsync,
        ProduceStage::Respond,
    ];
    pub fn name(self) -> &'static str {
        match self {
            ProduceStage::Queued => "queued",
            ProduceStage::Write => "write",
            ProduceStage::FsyncWait => "fsync_wait",
            ProduceStage::Fsync => "fsync",
            ProduceStage::Respond => "respond",
        }
    }
}

/// A produce stage took `elapsed` (recorded on the shard where the stage ended).
pub fn produce_stage(stage: ProduceStage, elapsed: Duration) {
    LOCAL.with(|l| l.produce_stages.borrow_mut()[stage as usize].observe(elapsed));
}

/// Upper bounds of the group-commit batch histogram (appends covered by one fsync).
pub const BATCH_BUCKETS: [u64; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/// How many appends each group commit covered (non-cumulative counts; the last slot is +Inf).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchSizes {
    pub buckets: [u64; BATCH_BUCKETS.len() + 1],
    pub sum: u64,
    pub count: u64,
}

impl BatchSizes {
    pub fn observe(&mut self, n: u64) {
        let i = BATCH_BUCKETS.iter().position(|&b| n <= b).unwrap_or(BATCH_BUCKETS.len());
        self.buckets[i] += 1;
        self.sum += n;
        self.count += 1;
    }
    /// (upper bound, count) pairs, not cumulative, the last bound `f64::MAX` (+Inf).
    pub fn bucket_counts(&self) -> Vec<(f64, u64)> {
        self.buckets
            .iter()
            .enumerate()
            .map(|(i, c)| (BATCH_BUCKETS.get(i).map_or(f64::MAX, |b| *b as f64), *c))
            .collect()
    }

    pub fn merge(&mut self, o: &BatchSizes) {
        for (a, b) in self.buckets.iter_mut().zip(o.buckets.iter()) {
            *a += b;
        }
        self.sum += o.sum;
        self.count += o.count;
    }
}

/// One group commit covered `appends` appends (storage flusher).
pub fn fsync_batch(appends: u64) {
    LOCAL.with(|l| l.fsync_batch.borrow_mut().observe(appends));
}

/// A cross-shard send found the target's inbox full and had to wait (back-pressure).
pub fn inbox_full() {
    LOCAL.with(|l| l.inbox_full_total.set(l.inbox_full_total.get() + 1));
}

/// Cluster mode: a Raft message to a peer was dropped (its queue was full; Raft resends).
pub fn raft_message_dropped() {
    LOCAL.with(|l| l.raft_dropped_total.set(l.raft_dropped_total.get() + 1));
}

pub fn connection_accepted() {
    LOCAL.with(|l| {
        l.connections_accepted_total
            .set(l.connections_accepted_total.get() + 1)
    });
}

/// Whether a repeated warning (identified by `key`) may be logged now: at most once per
/// [`limits::LOG_REPEAT_INTERVAL_MS`] per shard, so a failing partition cannot flood the log.
pub fn log_allowed(key: &'static str) -> bool {
    thread_local! {
        static LAST: RefCell<HashMap<&'static str, Instant>> = RefCell::new(HashMap::new());
    }
    let now = Instant::now();
    LAST.with(|m| {
        let mut m = m.borrow_mut();
        match m.get(key) {
            Some(t)
                if now.duration_since(*t)
                    < Duration::from_millis(limits::LOG_REPEAT_INTERVAL_MS) =>
            {
                false
            }
            _ => {
                m.insert(key, now);
                true
            }
        }
    })
}

/// Runs forever on a shard, counting executor stalls (see the module docs).
pub async fn stall_ticker(shard: usize) {
    let tick = Duration::from_millis(limits::STALL_TICK_MS);
    let threshold = Duration::from_micros(limits::STALL_LATENESS_US_MIN);
    let mut last_log: Option<Instant> = None;
    let mut unlogged = 0u64;
    loop {
        let (t0, cpu0) = (Instant::now(), thread_cpu_seconds());
        compio::time::sleep(tick).await;
        let late = t0.elapsed().saturating_sub(tick);
        LOCAL.with(|l| l.stall_lateness.borrow_mut().observe(late));
        // Late and the thread was on the CPU for that long: a task ran without yielding (not
        // the thread waiting for a core, which only shows in the lateness histogram).
        let cpu = Duration::from_secs_f64((thread_cpu_seconds() - cpu0).max(0.0));
        if late > threshold && cpu > threshold {
            LOCAL.with(|l| l.stalls_total.set(l.stalls_total.get() + 1));
            unlogged += 1;
            let now = Instant::now();
            if last_log.is_none_or(|t| {
                now.duration_since(t) >= Duration::from_millis(limits::LOG_REPEAT_INTERVAL_MS)
            }) {
                tracing::warn!(
                    shard,
                    lateness_us = late.as_micros() as u64,
                    stalls = unlogged,
                    "executor stall: a task ran without yielding"
                );
                last_log = Some(now);
                unlogged = 0;
            }
        }
    }
}

pub fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if r != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// What this thread's (shard's) recorders hold now. Must run on the shard's own thread.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    pub apis: Vec<(i16, ApiStats)>,
    pub topics: Vec<(String, TopicIo)>,
    pub fsync: Hist,
    pub inbox_full_total: u64,
    pub raft_dropped_total: u64,
    pub connections_accepted_total: u64,
    pub stalls_total: u64,
    pub stall_lateness: Hist,
    /// By `ProduceStage as usize`.
    pub produce_stages: Vec<Hist>,
    pub fsync_batch: BatchSizes,
}

pub fn recorded() -> Recorded {
    LOCAL.with(|l| Recorded {
        apis: l.apis.borrow().iter().map(|(k, v)| (*k, v.clone())).collect(),
        topics: l.topics.borrow().iter().map(|(k, v)| (k.clone(), *v)).collect(),
        fsync: l.fsync.borrow().clone(),
        inbox_full_total: l.inbox_full_total.get(),
        raft_dropped_total: l.raft_dropped_total.get(),
        connections_accepted_total: l.connections_accepted_total.get(),
        stalls_total: l.stalls_total.get(),
        stall_lateness: l.stall_lateness.borrow().clone(),
        produce_stages: l.produce_stages.borrow().to_vec(),
        fsync_batch: l.fsync_batch.borrow().clone(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// A task that keeps the thread busy for 30 ms of CPU without yielding is a stall.
    #[test]
    fn stall_counted_when_a_task_hogs_the_thread() {
        let rt = compio::runtime::Runtime::new().unwrap();
        let before = LOCAL.with(|l| l.stalls_total.get());
        rt.block_on(async {
            compio::runtime::spawn(stall_ticker(0)).detach();
            compio::time::sleep(Duration::from_millis(20)).await;
            let cpu0 = thread_cpu_seconds();
            let wall0 = Instant::now();
            while thread_cpu_seconds() - cpu0 < 0.030 && wall0.elapsed() < Duration::from_secs(10) {
                std::hint::spin_loop();
            }
            compio::time::sleep(Duration::from_millis(20)).await;
        });
        assert!(LOCAL.with(|l| l.stalls_total.get()) > before);
        assert!(LOCAL.with(|l| l.stall_lateness.borrow().count()) >= 2);
    }

}
