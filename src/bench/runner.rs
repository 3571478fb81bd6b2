//! Runs one phase of a workload: one thread per executor (a compio runtime each),
//! producers and consumers spread over them, stats reported every second.
//!
//! Timing: all threads share one `Instant` epoch; a message's value starts with its
//! intended send time (u64 LE nanoseconds since that epoch). Publish latency is
//! ack time minus intended time; end-to-end latency is the time the consumer
//! received it minus intended time.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Barrier};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::Compression;
use rand::{Rng, RngCore};

use super::schedule::RateSchedule;
use super::stats::{record, IntervalStats, LatencySummary};
use super::usage::{self, BrokerSource, CpuFigures, PhaseUsage, Rusage};
use super::workload::{KeyDistribution, Phase, Workload};
use crate::client::records::{encode_batch, visit_values, NewRecord};
use crate::client::{flatten_fetch, submit_fetch_on, submit_produce_on, Acks, Client, Connection};
use crate::limits;

/// Length of one reporting interval.
const INTERVAL_NS: u64 = 1_000_000_000;
/// Longest time a consumer's Fetch waits at the broker.
const FETCH_MAX_WAIT_MS: i32 = 100;
/// Delay between the threads being ready and the first intended send time.
const START_DELAY_NS: u64 = 50_000_000;

/// One producer: a topic, its partitions (written round-robin per batch) and its rate share.
#[derive(Debug, Clone)]
struct ProducerSpec {
    topic: String,
    partitions: Vec<i32>,
    rate: u64,
    /// Offset of this producer's schedule, so producers do not fire in lockstep.
    stagger_ns: u64,
}

/// One consumer: a topic and the partitions it reads.
#[derive(Debug, Clone)]
struct ConsumerSpec {
    topic: String,
    /// Fixed partitions; with `group`, the partition count the group assigns from.
    partitions: Vec<i32>,
    /// Consumer group to join (its leader assigns the partitions), if any.
    group: Option<String>,
}

/// Aggregated stats of one interval over all threads.
#[derive(Debug, Clone)]
pub struct Interval {
    pub index: u64,
    pub warmup: bool,
    pub stats: IntervalStats,
}

/// Everything one phase measured.
#[derive(Debug, Clone)]
pub struct PhaseResult {
    pub phase: Phase,
    /// Per-second intervals, warm-up included (flagged).
    pub intervals: Vec<Interval>,
    /// Merged post-warm-up histograms and counters.
    pub measured: IntervalStats,
    /// Length of the throughput window in seconds.
    pub measured_s: f64,
    pub msgs_per_s: f64,
    pub mb_per_s: f64,
    pub consumed_msgs_per_s: f64,
    pub publish: LatencySummary,
    /// Produce request sent → response (no linger).
    pub request: LatencySummary,
    pub e2e: LatencySummary,
    /// CPU seconds used by the generator's own threads (getrusage RUSAGE_THREAD).
    pub generator_cpu_s: f64,
    /// Wall time of the phase (start of sending to the end of draining).
    pub wall_s: f64,
    /// Messages acknowledged and messages consumed over the whole phase, per subscription.
    pub acked_total: u64,
    pub consumed_total: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Messages due at the target rate that were never sent before the phase ended.
    pub unsent_total: u64,
    /// Value bytes acknowledged and consumed, and Produce requests sent, over the whole phase.
    pub acked_bytes_total: u64,
    pub consumed_bytes_total: u64,
    pub produce_requests_total: u64,
    /// Generator and broker CPU and context switches over the phase's window (`usage.rs`).
    pub usage: PhaseUsage,
    /// The broker's produce stages over the phase (`stages.rs`), when its /metrics has them.
    pub broker_stages: Option<super::stages::Breakdown>,
}

impl PhaseResult {
    /// CPU seconds, cores and seconds per GB of the generator and the broker.
    pub fn cpu(&self) -> CpuFigures {
        self.usage
            .figures(self.acked_bytes_total, self.consumed_bytes_total)
    }
}

enum Report {
    Interval {
        index: u64,
        stats: Box<IntervalStats>,
    },
    Done {
        cpu_s: f64,
        /// The thread's usage over its whole life (setup and runtime teardown included).
        lifetime: Rusage,
        error: Option<String>,
        /// Errors counted after the last interval report (setup, leaving groups).
        late_errors: u64,
    },
}

fn now_ns(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// CPU time (user + system) of the calling thread, in seconds.
pub fn thread_cpu_s() -> f64 {
    rusage_s(libc::RUSAGE_THREAD)
}

/// CPU time (user + system) of the whole process, in seconds.
pub fn process_cpu_s() -> f64 {
    rusage_s(libc::RUSAGE_SELF)
}

fn rusage_s(who: libc::c_int) -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own; no other effects.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(who, &mut ru) };
    if rc != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Runs one phase of `w` against `bootstrap` on topics `topics`, calling `progress`
/// with each completed interval (for the live line); `broker` says where the broker's CPU
/// time and context switches are read.
#[allow(clippy::too_many_arguments)]
pub fn run_phase(
    bootstrap: &str,
    w: &Workload,
    topics: &[String],
    phase: &Phase,
    epoch: Instant,
    broker: &BrokerSource,
    metrics: Option<std::net::SocketAddr>,
    progress: &mut dyn FnMut(&Phase, &Interval, &IntervalStats),
) -> anyhow::Result<PhaseResult> {
    let threads = w.threads.max(1);
    let acks: Acks = w.acks.parse().map_err(anyhow::Error::msg)?;
    let compression =
        crate::client::records::parse_compression(&w.compression).map_err(anyhow::Error::msg)?;

    // Assign producers and consumers to threads.
    let total_producers = topics.len() * w.producers_per_topic;
    if phase.rate > 0 && phase.rate < total_producers as u64 {
        anyhow::bail!(
            "rate {} is below one message per second per producer ({total_producers} producers)",
            phase.rate
        );
    }
    let mut producers: Vec<Vec<ProducerSpec>> = vec![Vec::new(); threads];
    let mut consumers: Vec<Vec<ConsumerSpec>> = vec![Vec::new(); threads];
    let all_partitions: Vec<i32> = (0..w.partitions_per_topic as i32).collect();
    let mut g = 0usize;
    for t in topics {
        for _ in 0..w.producers_per_topic {
            let base = phase.rate / total_producers as u64;
            let extra = u64::from((g as u64) < phase.rate % total_producers as u64);
            let rate = base + extra;
            let stagger_ns =
                1_000_000_000u64.checked_div(rate).unwrap_or(0) * g as u64 / total_producers as u64;
            producers[g % threads].push(ProducerSpec {
                topic: t.clone(),
                partitions: all_partitions.clone(),
                rate,
                stagger_ns,
            });
            g += 1;
        }
    }
    let mut c = 0usize;
    for t in topics {
        for sub in 0..w.subscriptions_per_topic {
            let n = w.consumers_per_subscription;
            if w.consumer_groups {
                let group = format!("{t}-{}-sub{sub}", phase.name);
                for _ in 0..n {
                    consumers[threads - 1 - (c % threads)].push(ConsumerSpec {
                        topic: t.clone(),
                        partitions: all_partitions.clone(),
                        group: Some(group.clone()),
                    });
                    c += 1;
                }
                continue;
            }
            for k in 0..n {
                let parts: Vec<i32> = all_partitions
                    .iter()
                    .copied()
                    .filter(|p| (*p as usize) % n == k)
                    .collect();
                if parts.is_empty() {
                    continue;
                }
                // Consumers fill threads from the last one, producers from the first.
                consumers[threads - 1 - (c % threads)].push(ConsumerSpec {
                    topic: t.clone(),
                    partitions: parts,
                    group: None,
                });
                c += 1;
            }
        }
    }

    let warmup_ns = (w.warmup_s.ceil() as u64) * INTERVAL_NS;
    let duration_ns = (phase.duration_s * 1e9) as u64;
    let barrier = Arc::new(Barrier::new(threads + 1));
    let start_ns = Arc::new(AtomicU64::new(0));
    let producers_running = Arc::new(AtomicUsize::new(total_producers));
    let (tx, rx) = sync_channel::<Report>(threads * 4096);
    let stages_start = super::stages::read(metrics);
    let usage_window = usage::start_window(broker);
    let mut generator_threads = Rusage::default();
    let mut handles = Vec::new();
    for (id, (ps, cs)) in producers.into_iter().zip(consumers).enumerate() {
        let ctx = WorkerCtx {
            key_distribution: w.key_distribution()?,
            bootstrap: bootstrap.to_owned(),
            epoch,
            producers: ps,
            consumers: cs,
            acks,
            compression,
            batch_bytes: w.batch_bytes,
            linger_ns: w.linger_ms * 1_000_000,
            message_size: w.message_size,
            message_size_max: w.message_bytes_max(),
            in_flight: w.in_flight,
            barrier: barrier.clone(),
            start_ns: start_ns.clone(),
            producers_running: producers_running.clone(),
            tx: tx.clone(),
            warmup_ns,
            duration_ns,
        };
        let h = std::thread::Builder::new()
            .name(format!("bench-{id}"))
            .spawn(move || worker_thread(ctx))
            .context("cannot start a bench thread")?;
        handles.push(h);
    }
    drop(tx);
    barrier.wait();
    let start = now_ns(epoch) + START_DELAY_NS;
    start_ns.store(start, Ordering::SeqCst);
    barrier.wait();
    let wall_start = Instant::now();

    // Aggregate per-interval reports as they arrive.
    let mut pending: BTreeMap<u64, (usize, IntervalStats)> = BTreeMap::new();
    let mut intervals: Vec<Interval> = Vec::new();
    let mut cumulative = IntervalStats::default();
    let mut done = 0usize;
    let mut cpu_s = 0.0;
    let mut first_error: Option<String> = None;
    let mut late_errors = 0u64;
    let warmup_intervals = warmup_ns / INTERVAL_NS;
    let mut finish = |idx: u64,
                      stats: IntervalStats,
                      intervals: &mut Vec<Interval>,
                      cumulative: &mut IntervalStats| {
        let warmup = idx < warmup_intervals;
        if !warmup {
            cumulative.merge(&stats);
        }
        let iv = Interval {
            index: idx,
            warmup,
            stats,
        };
        progress(phase, &iv, cumulative);
        intervals.push(iv);
    };
    let hard_deadline = Duration::from_nanos(START_DELAY_NS + warmup_ns + duration_ns)
        + Duration::from_millis(
            limits::BENCH_DRAIN_MS_MAX + limits::CLIENT_REQUEST_TIMEOUT_MS + 10_000,
        );
    while done < threads {
        let msg = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => {
                if wall_start.elapsed() > hard_deadline {
                    return Err(anyhow!(
                        "bench threads did not finish within {hard_deadline:?}"
                    ));
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        match msg {
            Report::Interval { index, stats } => {
                let e = pending
                    .entry(index)
                    .or_insert_with(|| (0, IntervalStats::default()));
                e.0 += 1;
                e.1.merge(&stats);
                // Intervals are sent in order by every thread; complete ones are final.
                while let Some((&idx, (count, _))) = pending.iter().next() {
                    if *count < threads - done {
                        break;
                    }
                    if let Some((_, st)) = pending.remove(&idx) {
                        finish(idx, st, &mut intervals, &mut cumulative);
                    }
                }
            }
            Report::Done {
                cpu_s: c,
                lifetime,
                error,
                late_errors: late,
            } => {
                done += 1;
                cpu_s += c;
                generator_threads = generator_threads.plus(lifetime);
                late_errors += late;
                if first_error.is_none() {
                    first_error = error;
                }
            }
        }
    }
    for (idx, (_, st)) in std::mem::take(&mut pending) {
        finish(idx, st, &mut intervals, &mut cumulative);
    }
    for h in handles {
        if h.join().is_err() {
            first_error.get_or_insert_with(|| "a bench thread panicked".into());
        }
    }
    let wall_s = wall_start.elapsed().as_secs_f64();
    let usage = usage::end_window(broker, usage_window, generator_threads);
    let broker_stages = stages_start
        .zip(super::stages::read(metrics))
        .and_then(|(a, b)| super::stages::between(&a, &b));

    // Throughput over the measured window only; latency over everything after warm-up.
    let measured_s = phase.duration_s;
    let window_end = warmup_intervals + (duration_ns.div_ceil(INTERVAL_NS));
    let mut window = IntervalStats::default();
    let mut all = IntervalStats::default();
    for iv in &intervals {
        all.merge(&iv.stats);
        if !iv.warmup && iv.index < window_end {
            window.merge(&iv.stats);
        }
    }
    let per_s = |v: u64| v as f64 / measured_s;
    Ok(PhaseResult {
        phase: phase.clone(),
        msgs_per_s: per_s(window.acked_msgs),
        mb_per_s: per_s(window.acked_bytes) / 1e6,
        consumed_msgs_per_s: per_s(window.consumed_msgs),
        publish: LatencySummary::of(&cumulative.publish),
        request: LatencySummary::of(&cumulative.request),
        e2e: LatencySummary::of(&cumulative.e2e),
        measured: cumulative,
        measured_s,
        intervals,
        generator_cpu_s: cpu_s,
        wall_s,
        acked_total: all.acked_msgs,
        consumed_total: all.consumed_msgs,
        errors: all.errors + late_errors,
        unsent_total: all.unsent_msgs,
        acked_bytes_total: all.acked_bytes,
        consumed_bytes_total: all.consumed_bytes,
        produce_requests_total: all.produce_requests,
        usage,
        broker_stages,
        first_error,
    })
}

struct WorkerCtx {
    key_distribution: KeyDistribution,
    bootstrap: String,
    epoch: Instant,
    producers: Vec<ProducerSpec>,
    consumers: Vec<ConsumerSpec>,
    acks: Acks,
    compression: Compression,
    batch_bytes: usize,
    linger_ns: u64,
    message_size: usize,
    message_size_max: usize,
    in_flight: usize,
    barrier: Arc<Barrier>,
    start_ns: Arc<AtomicU64>,
    producers_running: Arc<AtomicUsize>,
    tx: SyncSender<Report>,
    warmup_ns: u64,
    duration_ns: u64,
}

fn worker_thread(ctx: WorkerCtx) {
    let tx = ctx.tx.clone();
    let producers_here = ctx.producers.len();
    let producers_running = ctx.producers_running.clone();
    let rt = match compio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            // Keep the barrier protocol so the other threads are not stuck.
            ctx.barrier.wait();
            ctx.barrier.wait();
            producers_running.fetch_sub(producers_here, Ordering::SeqCst);
            let _ = tx.send(Report::Done {
                cpu_s: 0.0,
                lifetime: Rusage::thread(),
                error: Some(format!("cannot start runtime: {e}")),
                late_errors: 1,
            });
            return;
        }
    };
    let (cpu_s, error, late_errors) = rt.block_on(worker_main(ctx));
    drop(rt);
    let _ = tx.send(Report::Done {
        cpu_s,
        lifetime: Rusage::thread(),
        error,
        late_errors,
    });
}

/// In-flight window of one producer.
struct Window {
    max: usize,
    used: Cell<usize>,
    waiters: RefCell<Vec<Waker>>,
}

impl Window {
    fn new(max: usize) -> Window {
        Window {
            max,
            used: Cell::new(0),
            waiters: RefCell::new(Vec::new()),
        }
    }
    fn has_slot(&self) -> bool {
        self.used.get() < self.max
    }
    fn acquire(&self) {
        assert!(self.has_slot(), "window acquired while full");
        self.used.set(self.used.get() + 1);
    }
    fn release(&self) {
        assert!(self.used.get() > 0, "window released while empty");
        self.used.set(self.used.get() - 1);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }
    async fn wait_until(&self, ready: impl Fn(&Window) -> bool) {
        std::future::poll_fn(|cx| {
            if ready(self) {
                Poll::Ready(())
            } else {
                self.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

struct Shared {
    epoch: Instant,
    stats: RefCell<IntervalStats>,
    first_error: RefCell<Option<String>>,
    tasks_running: Cell<usize>,
}

impl Shared {
    fn error(&self, e: impl std::fmt::Display) {
        self.stats.borrow_mut().errors += 1;
        let mut fe = self.first_error.borrow_mut();
        if fe.is_none() {
            *fe = Some(e.to_string());
        }
    }
}

/// Runs one thread's producers and consumers; returns its CPU seconds, its first error and
/// the errors counted after its last interval report.
async fn worker_main(ctx: WorkerCtx) -> (f64, Option<String>, u64) {
    let producers_here = ctx.producers.len();
    // Setup: connect, find leaders, consumers' start offsets; errors still pass the barriers.
    let setup = setup(&ctx).await;
    ctx.barrier.wait();
    ctx.barrier.wait();
    let (client, prod_conns, cons_parts, members) = match setup {
        Ok(s) => s,
        Err(e) => {
            ctx.producers_running
                .fetch_sub(producers_here, Ordering::SeqCst);
            return (0.0, Some(format!("{e:#}")), 1);
        }
    };
    let start_ns = ctx.start_ns.load(Ordering::SeqCst);
    let end_ns = start_ns + ctx.warmup_ns + ctx.duration_ns;
    let cpu0 = thread_cpu_s();
    let shared = Rc::new(Shared {
        epoch: ctx.epoch,
        stats: RefCell::new(IntervalStats::default()),
        first_error: RefCell::new(None),
        tasks_running: Cell::new(0),
    });
    let mut rng = rand::rng();
    let mut handles = Vec::new();
    for (spec, conns) in ctx.producers.iter().cloned().zip(prod_conns) {
        let mut filler = vec![0u8; ctx.message_size_max.saturating_sub(8)];
        rng.fill_bytes(&mut filler);
        let p = ProducerTask {
            spec,
            conns,
            shared: shared.clone(),
            acks: ctx.acks,
            compression: ctx.compression,
            max_batch_msgs: max_batch_msgs(ctx.batch_bytes, ctx.message_size_max),
            message_size_min: ctx.message_size,
            linger_ns: ctx.linger_ns,
            filler: Bytes::from(filler),
            key_distribution: ctx.key_distribution,
            keys: (ctx.key_distribution != KeyDistribution::NoKey)
                .then(|| Rc::new(make_keys(&mut rng))),
            window: Rc::new(Window::new(ctx.in_flight)),
            start_ns,
            end_ns,
            producers_running: ctx.producers_running.clone(),
        };
        shared.tasks_running.set(shared.tasks_running.get() + 1);
        handles.push(compio::runtime::spawn(p.run()));
    }
    for (conn, parts) in cons_parts {
        let c = ConsumerTask {
            conn,
            parts,
            shared: shared.clone(),
            end_ns,
            producers_running: ctx.producers_running.clone(),
        };
        shared.tasks_running.set(shared.tasks_running.get() + 1);
        handles.push(compio::runtime::spawn(c.run()));
    }
    // Group members heartbeat while producers run. Once every producer has finished the
    // consumers only drain (well inside the 30 s session), and members of other threads
    // leaving then would make the heartbeats report a rebalance that no longer matters.
    let heartbeats_stop = Rc::new(Cell::new(false));
    let heartbeats = (!members.is_empty()).then(|| {
        let (stop, shared, members) = (heartbeats_stop.clone(), shared.clone(), members.clone());
        let producers_running = ctx.producers_running.clone();
        compio::runtime::spawn(async move {
            'outer: loop {
                for m in &members {
                    if producers_running.load(Ordering::SeqCst) == 0 {
                        break 'outer;
                    }
                    if let Err(e) = m.heartbeat().await {
                        shared.error(format!("consumer group: {e:#}"));
                        break 'outer;
                    }
                }
                let wake = Instant::now() + HEARTBEAT_INTERVAL;
                while Instant::now() < wake {
                    if stop.get() {
                        break 'outer;
                    }
                    compio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        })
    });
    // Reporter: one message per interval until every task has finished.
    let mut index = 0u64;
    loop {
        let boundary = start_ns + (index + 1) * INTERVAL_NS;
        compio::time::sleep_until(ctx.epoch + Duration::from_nanos(boundary)).await;
        let stats = std::mem::take(&mut *shared.stats.borrow_mut());
        if ctx
            .tx
            .send(Report::Interval {
                index,
                stats: Box::new(stats),
            })
            .is_err()
        {
            break;
        }
        index += 1;
        if shared.tasks_running.get() == 0 {
            break;
        }
    }
    for h in handles {
        let _ = h.await;
    }
    heartbeats_stop.set(true);
    if let Some(h) = heartbeats {
        let _ = h.await;
    }
    for m in &members {
        if let Err(e) = m.leave().await {
            shared.error(format!("consumer group: {e:#}"));
        }
    }
    drop(client);
    let cpu = thread_cpu_s() - cpu0;
    let err = shared.first_error.borrow().clone();
    let late = shared.stats.borrow().errors;
    (cpu, err, late)
}

type Setup = (
    Client,
    Vec<Vec<Rc<Connection>>>,
    Vec<(Rc<Connection>, Vec<(String, i32, i64)>)>,
    Vec<Rc<super::group::Member>>,
);
async fn setup(ctx: &WorkerCtx) -> anyhow::Result<Setup> {
    let client = Client::connect(&ctx.bootstrap, "sluice-bench").await?;
    let mut prod_conns = Vec::new();
    for p in &ctx.producers {
        let mut conns = Vec::new();
        for &part in &p.partitions {
            conns.push(client.leader(&p.topic, part).await?);
        }
        prod_conns.push(conns);
    }
    let mut cons = Vec::new();
    // Group members of this thread join together (a late joiner would start a rebalance).
    let joins = ctx.consumers.iter().filter_map(|c| {
        let group = c.group.as_ref()?;
        Some(super::group::join_settled(
            &client,
            group,
            &c.topic,
            c.partitions.len(),
            GROUP_SETTLE,
        ))
    });
    let mut joined = futures::future::try_join_all(joins).await?.into_iter();
    let mut members = Vec::new();
    for c in &ctx.consumers {
        let assigned: Vec<i32> = match &c.group {
            Some(_) => match joined.next() {
                Some((member, parts)) => {
                    members.push(Rc::new(member));
                    parts
                }
                None => anyhow::bail!("group join results out of step"),
            },
            None => c.partitions.clone(),
        };
        let mut by_leader: HashMap<SocketAddr, Vec<(String, i32, i64)>> = HashMap::new();
        for &part in &assigned {
            let off = client.list_offset_when_led(&c.topic, part, -1).await?;
            let conn = client.leader(&c.topic, part).await?;
            by_leader
                .entry(conn.addr())
                .or_default()
                .push((c.topic.clone(), part, off));
        }
        // A consumer gets its own connection per leader so its long-polls do not queue
        // behind the producers' requests on a shared socket.
        for (addr, parts) in by_leader {
            let own = Connection::connect(addr, "sluice-bench-consumer").await?;
            cons.push((own, parts));
        }
    }
    Ok((client, prod_conns, cons, members))
}

/// Pause after joining before checking that the group did not rebalance again.
const GROUP_SETTLE: Duration = Duration::from_millis(500);
/// Heartbeat period of group members during the run (sessions are 30 s).
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);

/// Keys per producer and their length, as OpenMessaging Benchmark's key distributor.
const KEYS_PER_PRODUCER: usize = 10_000;
const KEY_BYTES: usize = 7;

fn make_keys(rng: &mut impl rand::Rng) -> Vec<Bytes> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..KEYS_PER_PRODUCER)
        .map(|_| {
            Bytes::from(
                (0..KEY_BYTES)
                    .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
                    .collect::<Vec<u8>>(),
            )
        })
        .collect()
}

struct ProducerTask {
    spec: ProducerSpec,
    conns: Vec<Rc<Connection>>,
    shared: Rc<Shared>,
    acks: Acks,
    compression: Compression,
    max_batch_msgs: usize,
    linger_ns: u64,
    filler: Bytes,
    /// Smallest value; values are `message_size_min..=8 + filler.len()` bytes.
    message_size_min: usize,
    key_distribution: KeyDistribution,
    /// The producer's key set (None for NO_KEY).
    keys: Option<Rc<Vec<Bytes>>>,
    window: Rc<Window>,
    start_ns: u64,
    end_ns: u64,
    producers_running: Arc<AtomicUsize>,
}

impl ProducerTask {
    async fn run(self) {
        if let Err(e) = self.produce().await {
            self.shared
                .error(format!("producer on {}: {e:#}", self.spec.topic));
        }
        // Wait for every outstanding acknowledgement before declaring this producer done.
        self.window.wait_until(|w| w.used.get() == 0).await;
        self.producers_running.fetch_sub(1, Ordering::SeqCst);
        self.shared
            .tasks_running
            .set(self.shared.tasks_running.get() - 1);
    }

    /// The key of message `i` and its partition index (Kafka's murmur2 partitioner), or
    /// None without keys.
    fn key_for(&self, i: u64, rng: &mut impl rand::Rng) -> Option<(u32, usize)> {
        let keys = self.keys.as_ref()?;
        let k = match self.key_distribution {
            KeyDistribution::RoundRobin => (i % keys.len() as u64) as usize,
            _ => rng.random_range(0..keys.len()),
        };
        let p = crate::client::partitioner::partition_for_key(&keys[k], self.spec.partitions.len()) as usize;
        Some((k as u32, p))
    }

    async fn produce(&self) -> anyhow::Result<()> {
        let epoch = self.shared.epoch;
        let sched = (self.spec.rate > 0)
            .then(|| RateSchedule::new(self.start_ns + self.spec.stagger_ns, self.spec.rate));
        let nparts = self.spec.partitions.len();
        let mut next_i = 0u64;
        // One open batch per partition: (intended send time, key index) per message.
        let mut batches: Vec<Vec<(u64, u32)>> = vec![Vec::new(); nparts];
        // Without keys, batches go to one partition at a time, rotating after each send
        // (Kafka's sticky partitioner).
        let mut sticky = 0usize;
        let mut rng = rand::rng();
        if sched.is_none() {
            compio::time::sleep_until(epoch + Duration::from_nanos(self.start_ns)).await;
        }
        loop {
            let now = now_ns(epoch);
            let mut full: Option<usize> = None;
            let finished = match &sched {
                Some(s) => {
                    let due = s.due_count(now.min(self.end_ns.saturating_sub(1)));
                    while next_i < due && full.is_none() {
                        let (k, p) = self.key_for(next_i, &mut rng).unwrap_or((0, sticky));
                        batches[p].push((s.intended_ns(next_i), k));
                        next_i += 1;
                        if batches[p].len() >= self.max_batch_msgs {
                            full = Some(p);
                        }
                    }
                    if full.is_none() && now >= self.end_ns && s.intended_ns(next_i) < self.end_ns {
                        // Behind schedule at the end: the phase ends on time; what was due
                        // and never sent is counted, not silently dropped.
                        let unsent = s.due_count(self.end_ns - 1).saturating_sub(next_i);
                        self.shared.stats.borrow_mut().unsent_msgs += unsent;
                        next_i += unsent;
                    }
                    s.intended_ns(next_i) >= self.end_ns
                }
                None => {
                    if now < self.end_ns && self.window.has_slot() {
                        while full.is_none() {
                            let (k, p) = self.key_for(next_i, &mut rng).unwrap_or((0, sticky));
                            batches[p].push((now, k));
                            next_i += 1;
                            if batches[p].len() >= self.max_batch_msgs {
                                full = Some(p);
                            }
                        }
                    }
                    now >= self.end_ns
                }
            };
            // Which batch goes next: a full one, else one whose linger expired, else (at the
            // end or at max rate) any non-empty one.
            let ready = full.or_else(|| {
                (0..nparts).find(|&p| {
                    batches[p]
                        .first()
                        .is_some_and(|f| now >= f.0 + self.linger_ns)
                })
            });
            let ready = ready.or_else(|| {
                if finished || sched.is_none() {
                    (0..nparts).find(|&p| !batches[p].is_empty())
                } else {
                    None
                }
            });
            if let Some(p) = ready {
                if !self.window.has_slot() {
                    self.shared.stats.borrow_mut().backpressure_waits += 1;
                    self.window.wait_until(Window::has_slot).await;
                    continue;
                }
                let batch = std::mem::take(&mut batches[p]);
                if self.keys.is_none() {
                    sticky = (sticky + 1) % nparts;
                }
                self.send(p, batch).await?;
                continue;
            }
            let oldest = batches.iter().filter_map(|b| b.first().map(|f| f.0)).min();
            if finished && oldest.is_none() {
                return Ok(());
            }
            if sched.is_none() {
                // Max rate: wait for a free slot.
                self.window.wait_until(Window::has_slot).await;
                continue;
            }
            let next_due = sched.as_ref().map(|s| s.intended_ns(next_i)).unwrap_or(now);
            let wake = match oldest {
                Some(f) => next_due.min(f + self.linger_ns),
                None => next_due,
            }
            .min(self.end_ns);
            if wake > now {
                compio::time::sleep_until(epoch + Duration::from_nanos(wake)).await;
            }
        }
    }

    async fn send(&self, idx: usize, intended: Vec<(u64, u32)>) -> anyhow::Result<()> {
        let partition = self.spec.partitions[idx];
        let conn = &self.conns[idx];
        let ts_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let size_max = 8 + self.filler.len();
        let size_min = self.message_size_min.clamp(8, size_max);
        let mut rng = rand::rng();
        let mut bytes = 0u64;
        let records: Vec<NewRecord> = intended
            .iter()
            .map(|(t, k)| {
                let size = if size_min == size_max {
                    size_max
                } else {
                    rng.random_range(size_min..=size_max)
                };
                bytes += size as u64;
                let mut v = BytesMut::with_capacity(size);
                v.put_u64_le(*t);
                v.extend_from_slice(&self.filler[..size - 8]);
                let key = self
                    .keys
                    .as_ref()
                    .and_then(|ks| ks.get(*k as usize).cloned());
                NewRecord {
                    key,
                    value: Some(v.freeze()),
                    timestamp_ms: ts_ms,
                }
            })
            .collect();
        let encoded = encode_batch(&records, self.compression)?;
        drop(records);
        let n = intended.len() as u64;
        self.window.acquire();
        let sent = now_ns(self.shared.epoch);
        let pending = match submit_produce_on(
            conn,
            &self.spec.topic,
            partition,
            encoded,
            self.acks,
            30_000,
        )
        .await
        {
            Ok(p) => p,
            Err(e) => {
                self.window.release();
                return Err(e.into());
            }
        };
        {
            let mut s = self.shared.stats.borrow_mut();
            s.sent_msgs += n;
            s.sent_bytes += bytes;
            s.produce_requests += 1;
        }
        if self.acks == Acks::None {
            let mut s = self.shared.stats.borrow_mut();
            s.acked_msgs += n;
            s.acked_bytes += bytes;
            drop(s);
            self.window.release();
            return Ok(());
        }
        let shared = self.shared.clone();
        let window = self.window.clone();
        compio::runtime::spawn(async move {
            let r = pending.wait().await;
            let t = now_ns(shared.epoch);
            match r {
                Ok(_) => {
                    let mut s = shared.stats.borrow_mut();
                    for (it, _) in &intended {
                        record(&mut s.publish, t.saturating_sub(*it));
                    }
                    record(&mut s.request, t.saturating_sub(sent));
                    s.acked_msgs += n;
                    s.acked_bytes += bytes;
                }
                Err(e) => shared.error(format!("produce: {e}")),
            }
            window.release();
        })
        .detach();
        Ok(())
    }
}

struct ConsumerTask {
    conn: Rc<Connection>,
    parts: Vec<(String, i32, i64)>,
    shared: Rc<Shared>,
    end_ns: u64,
    producers_running: Arc<AtomicUsize>,
}

impl ConsumerTask {
    async fn run(mut self) {
        if let Err(e) = self.consume().await {
            self.shared.error(format!("consumer: {e:#}"));
        }
        self.shared
            .tasks_running
            .set(self.shared.tasks_running.get() - 1);
    }

    async fn consume(&mut self) -> anyhow::Result<()> {
        let epoch = self.shared.epoch;
        let drain_deadline = self.end_ns + limits::BENCH_DRAIN_MS_MAX * 1_000_000;
        let mut high_watermarks: Vec<i64> = vec![0; self.parts.len()];
        loop {
            if now_ns(epoch) > drain_deadline {
                let behind: i64 = self
                    .parts
                    .iter()
                    .zip(&high_watermarks)
                    .map(|(p, hw)| (hw - p.2).max(0))
                    .sum();
                if behind > 0 {
                    anyhow::bail!(
                        "consumer still {behind} messages behind {} ms after the producers stopped",
                        limits::BENCH_DRAIN_MS_MAX
                    );
                }
                return Ok(());
            }
            let producers_done = self.producers_running.load(Ordering::SeqCst) == 0;
            let fut = submit_fetch_on(&self.conn, &self.parts, FETCH_MAX_WAIT_MS, 1).await?;
            let resp = flatten_fetch(fut.wait().await?)?;
            let t = now_ns(epoch);
            let mut got_any = false;
            let mut s = self.shared.stats.borrow_mut();
            for pf in resp {
                let Some(i) = self
                    .parts
                    .iter()
                    .position(|p| p.0 == pf.topic && p.1 == pf.partition)
                else {
                    continue;
                };
                if pf.error_code != 0 {
                    drop(s);
                    let e = crate::client::ClientError::check(
                        "Fetch",
                        || format!("{}-{}", pf.topic, pf.partition),
                        pf.error_code,
                        None,
                    );
                    self.shared
                        .error(e.err().map(|e| e.to_string()).unwrap_or_default());
                    s = self.shared.stats.borrow_mut();
                    continue;
                }
                high_watermarks[i] = pf.high_watermark;
                let from = self.parts[i].2;
                let mut last = None;
                let stats = &mut *s;
                let next = visit_values(&pf.records, from, |off, v| {
                    if v.len() >= 8 {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&v[..8]);
                        record(&mut stats.e2e, t.saturating_sub(u64::from_le_bytes(b)));
                    }
                    stats.consumed_msgs += 1;
                    got_any = true;
                    stats.consumed_bytes += v.len() as u64;
                    last = Some(off);
                })?;
                let mut pos = self.parts[i].2;
                if let Some(l) = last {
                    pos = pos.max(l + 1);
                }
                if let Some(n) = next {
                    pos = pos.max(n);
                }
                self.parts[i].2 = pos;
            }
            drop(s);
            // Drained: a long-poll sent after every producer finished came back empty with
            // every partition at its high watermark. (Caught up alone is not enough: with
            // acks=0/1 the high watermark may still trail acknowledged messages.)
            if producers_done
                && !got_any
                && self
                    .parts
                    .iter()
                    .zip(&high_watermarks)
                    .all(|(p, hw)| p.2 >= *hw)
            {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn window_bounds_in_flight() {
        let w = Window::new(2);
        w.acquire();
        assert!(w.has_slot());
        w.acquire();
        assert!(!w.has_slot());
        w.release();
        assert!(w.has_slot());
    }

    #[test]
    fn thread_cpu_time_advances_with_work() {
        let before = thread_cpu_s();
        let mut x = 0u64;
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        assert!(x != 1);
        assert!(thread_cpu_s() > before);
    }
}

/// Per-record bytes besides the value, at most: the varints (length, timestamp and offset
/// deltas, key and value lengths, header count), attributes, and a bench key (<= 20 bytes).
const RECORD_OVERHEAD_BYTES_MAX: usize = 64;

/// Messages per batch so that an uncompressed batch of the largest messages stays within
/// `batch_bytes` (a broker refuses batches over its `message.max.bytes`).
fn max_batch_msgs(batch_bytes: usize, message_size_max: usize) -> usize {
    (batch_bytes.saturating_sub(crate::storage::batch::HEADER_BYTES) / (message_size_max + RECORD_OVERHEAD_BYTES_MAX)).max(1)
}

#[cfg(test)]
mod batch_size_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// A batch of `max_batch_msgs` of the largest messages, with the longest keys, encodes within
    /// `batch_bytes` (the bench once sent 1 058 813-byte batches for --batch-bytes 1048576).
    #[test]
    fn full_batch_fits_in_batch_bytes() {
        for (batch_bytes, size) in [(1_048_576usize, 1024usize), (65_536, 1024), (65_536, 100), (16_384, 8), (1_000_000, 4096)] {
            let n = max_batch_msgs(batch_bytes, size);
            let records: Vec<crate::client::records::NewRecord> = (0..n)
                .map(|i| crate::client::records::NewRecord {
                    key: Some(bytes::Bytes::from(format!("key-{:016}", i))),
                    value: Some(bytes::Bytes::from(vec![7u8; size])),
                    timestamp_ms: 1_700_000_000_000 + i as i64 * 1000,
                })
                .collect();
            let b = crate::client::records::encode_batch(&records, kafka_protocol::records::Compression::None).unwrap();
            assert!(b.len() <= batch_bytes, "{n} x {size} B -> {} > {batch_bytes}", b.len());
        }
    }
}
