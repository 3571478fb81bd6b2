//! CPU time and context switches of the broker and of the generator over one phase.
//!
//! The window of a phase runs from just before its generator threads start to just after they
//! have all been joined (setup, warm-up, measured time and drain).
//!
//! - Generator: every `bench-*` thread over its whole life (getrusage RUSAGE_THREAD as it
//!   ends) plus the calling thread (which collects their reports) over the window.
//! - Embedded broker: every other thread of this process: the `sluice-shard-*` threads, the
//!   blocking-pool threads they start (which inherit their name) and all io_uring workers
//!   (`iou-wrk-*`; a worker's ring cannot be told from /proc, so the generator's are counted
//!   too). Computed as the process's usage (getrusage RUSAGE_SELF, which keeps the time of
//!   threads that exited during the window, as io_uring workers do) minus the generator's.
//!   This equals summing /proc/self/task/*/stat over the non-generator threads, except that
//!   the sum would miss threads that exited.
//! - External broker (`--broker-pid`): /proc/PID/stat fields 14 and 15 (utime, stime of all its
//!   threads, exited ones included); context switches summed over /proc/PID/task/*/status
//!   (threads that exited during the window are missed there).
//!
//! The `iou-wrk-*` threads are counted at the end of the window, after the generator threads
//! (and so their io_uring workers) have exited.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;

/// Where the broker's usage comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum BrokerSource {
    /// The broker runs in this process (`sluice bench` without `--bootstrap`).
    Embedded,
    /// An external broker process (`--broker-pid`).
    Pid(u32),
    /// An external broker whose process is not known: broker usage n/a.
    Unknown,
}

impl BrokerSource {
    /// How the broker's figures are obtained, for the table and the JSON.
    pub fn describe(&self) -> String {
        match self {
            BrokerSource::Embedded => {
                "this process minus the generator threads (shards, their blocking pools, all iou-wrk workers)".into()
            }
            BrokerSource::Pid(p) => format!("/proc/{p}"),
            BrokerSource::Unknown => "n/a (pass --broker-pid)".into(),
        }
    }

    /// Checks that the broker's usage can be read (an external pid that exists).
    pub fn check(&self) -> anyhow::Result<()> {
        if let BrokerSource::Pid(p) = self {
            read_pid_cpu_ticks(*p)
                .with_context(|| format!("--broker-pid {p}: cannot read /proc/{p}/stat"))?;
        }
        Ok(())
    }
}

/// getrusage figures: CPU seconds (user + system) and context switches.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rusage {
    pub cpu_s: f64,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
}

impl Rusage {
    /// `getrusage(who)`; all zero if the call fails.
    pub fn of(who: libc::c_int) -> Rusage {
        // SAFETY: getrusage writes into the zeroed struct we own; no other effects.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(who, &mut ru) } != 0 {
            return Rusage::default();
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Rusage {
            cpu_s: tv(ru.ru_utime) + tv(ru.ru_stime),
            voluntary_switches: u64::try_from(ru.ru_nvcsw).unwrap_or(0),
            involuntary_switches: u64::try_from(ru.ru_nivcsw).unwrap_or(0),
        }
    }

    /// The calling thread's usage so far.
    pub fn thread() -> Rusage {
        Rusage::of(libc::RUSAGE_THREAD)
    }

    /// The whole process's usage so far, threads that exited included.
    pub fn process() -> Rusage {
        Rusage::of(libc::RUSAGE_SELF)
    }

    /// Field-wise sum.
    pub fn plus(self, o: Rusage) -> Rusage {
        Rusage {
            cpu_s: self.cpu_s + o.cpu_s,
            voluntary_switches: self.voluntary_switches + o.voluntary_switches,
            involuntary_switches: self.involuntary_switches + o.involuntary_switches,
        }
    }

    /// Field-wise `self - o`, never below zero.
    pub fn minus(self, o: Rusage) -> Rusage {
        Rusage {
            cpu_s: (self.cpu_s - o.cpu_s).max(0.0),
            voluntary_switches: self.voluntary_switches.saturating_sub(o.voluntary_switches),
            involuntary_switches: self
                .involuntary_switches
                .saturating_sub(o.involuntary_switches),
        }
    }
}

/// Clock ticks per second of /proc's time fields (`sysconf(_SC_CLK_TCK)`, usually 100).
pub fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf reads a constant; no memory is passed.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// The command name and utime + stime (clock ticks, fields 14 and 15) of a /proc `stat` line.
/// The name sits in parentheses and may itself hold spaces and parentheses, so the fields are
/// counted from the last ')'.
pub fn parse_stat(text: &str) -> Option<(String, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let comm = text[open + 1..close].to_owned();
    // After ')' come fields 3 (state), 4, ...: field n is at index n - 3.
    let mut fields = text[close + 1..].split_whitespace();
    let utime: u64 = fields.nth(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((comm, utime + stime))
}

/// (voluntary, involuntary) context switches from a /proc `status` file.
pub fn parse_ctxt_switches(status: &str) -> Option<(u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim_start_matches(':').trim().parse().ok())
    };
    Some((
        field("voluntary_ctxt_switches")?,
        field("nonvoluntary_ctxt_switches")?,
    ))
}

/// utime + stime (ticks) of process `pid`, all its threads (exited ones included).
fn read_pid_cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_stat(&text)
        .map(|(_, t)| t)
        .with_context(|| format!("cannot parse {path}"))
}

/// One thread of a process, as /proc shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadSample {
    pub comm: String,
    /// (voluntary, involuntary) context switches.
    pub switches: (u64, u64),
}

/// Every thread of the process whose /proc directory is `proc_dir` (e.g. /proc/self), by tid.
/// Threads that exit while being read are skipped.
pub fn read_threads(proc_dir: &Path) -> HashMap<u64, ThreadSample> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir(proc_dir.join("task")) else {
        return out;
    };
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat"));
        let status = std::fs::read_to_string(e.path().join("status"));
        let (Ok(stat), Ok(status)) = (stat, status) else {
            continue;
        };
        if let (Some((comm, _)), Some(switches)) = (parse_stat(&stat), parse_ctxt_switches(&status))
        {
            out.insert(tid, ThreadSample { comm, switches });
        }
    }
    out
}

/// Threads named like io_uring workers (`iou-wrk-<tid>`).
pub fn iou_workers(threads: &HashMap<u64, ThreadSample>) -> usize {
    threads
        .values()
        .filter(|t| t.comm.starts_with("iou-wrk-"))
        .count()
}

/// Context switches of `end` minus `start`, per thread: threads new in `end` count in full,
/// threads gone from it are not counted.
pub fn switches_between(
    start: &HashMap<u64, ThreadSample>,
    end: &HashMap<u64, ThreadSample>,
) -> (u64, u64) {
    let mut sum = (0u64, 0u64);
    for (tid, e) in end {
        let s = start
            .get(tid)
            .filter(|s| s.comm == e.comm)
            .map(|s| s.switches)
            .unwrap_or((0, 0));
        sum.0 += e.switches.0.saturating_sub(s.0);
        sum.1 += e.switches.1.saturating_sub(s.1);
    }
    sum
}

/// Usage read at the start of a phase's window.
pub struct WindowStart {
    wall: Instant,
    caller: Rusage,
    process: Rusage,
    pid_ticks: Option<u64>,
    pid_threads: HashMap<u64, ThreadSample>,
}

/// The broker's usage over one phase's window.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerUsage {
    pub cpu_s: f64,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    /// `iou-wrk-*` threads at the end of the window.
    pub iou_workers: usize,
}

/// Generator and broker usage over one phase's window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhaseUsage {
    pub window_s: f64,
    pub generator: Rusage,
    /// None when the broker's process is unknown.
    pub broker: Option<BrokerUsage>,
    /// `BrokerSource::describe` of where `broker` came from.
    pub broker_source: String,
}

/// CPU figures of one phase: seconds, cores (seconds / window) and seconds per GB (1e9 bytes
/// of message values) produced and consumed over the window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuFigures {
    pub window_s: f64,
    pub generator_s: f64,
    pub generator_cores: f64,
    pub generator_s_per_gb_produced: Option<f64>,
    pub generator_s_per_gb_consumed: Option<f64>,
    pub broker_s: Option<f64>,
    pub broker_cores: Option<f64>,
    pub broker_s_per_gb_produced: Option<f64>,
    pub broker_s_per_gb_consumed: Option<f64>,
}

impl PhaseUsage {
    /// The CPU figures given the bytes acknowledged and consumed over the window.
    pub fn figures(&self, produced_bytes: u64, consumed_bytes: u64) -> CpuFigures {
        let per_gb = |s: f64, bytes: u64| (bytes > 0).then(|| s / (bytes as f64 / 1e9));
        let cores = |s: f64| s / self.window_s.max(1e-9);
        let broker = self.broker.as_ref().map(|b| b.cpu_s);
        CpuFigures {
            window_s: self.window_s,
            generator_s: self.generator.cpu_s,
            generator_cores: cores(self.generator.cpu_s),
            generator_s_per_gb_produced: per_gb(self.generator.cpu_s, produced_bytes),
            generator_s_per_gb_consumed: per_gb(self.generator.cpu_s, consumed_bytes),
            broker_s: broker,
            broker_cores: broker.map(cores),
            broker_s_per_gb_produced: broker.and_then(|b| per_gb(b, produced_bytes)),
            broker_s_per_gb_consumed: broker.and_then(|b| per_gb(b, consumed_bytes)),
        }
    }
}

/// Reads the start of a window; call on the thread that later calls `end_window`, before the
/// generator threads start.
pub fn start_window(source: &BrokerSource) -> WindowStart {
    let caller = Rusage::thread();
    let process = Rusage::process();
    let (pid_ticks, pid_threads) = match source {
        BrokerSource::Pid(p) => (
            read_pid_cpu_ticks(*p).ok(),
            read_threads(Path::new(&format!("/proc/{p}"))),
        ),
        _ => (None, HashMap::new()),
    };
    WindowStart {
        wall: Instant::now(),
        caller,
        process,
        pid_ticks,
        pid_threads,
    }
}

/// Ends a window after the generator threads were joined; `generator_threads` is the sum of
/// their whole-life usage.
pub fn end_window(
    source: &BrokerSource,
    start: WindowStart,
    generator_threads: Rusage,
) -> PhaseUsage {
    let process = Rusage::process().minus(start.process);
    let caller = Rusage::thread().minus(start.caller);
    let generator = generator_threads.plus(caller);
    let broker = match source {
        BrokerSource::Embedded => {
            let b = process.minus(generator);
            Some(BrokerUsage {
                cpu_s: b.cpu_s,
                voluntary_switches: b.voluntary_switches,
                involuntary_switches: b.involuntary_switches,
                iou_workers: iou_workers(&read_threads(Path::new("/proc/self"))),
            })
        }
        BrokerSource::Pid(p) => {
            let end_ticks = read_pid_cpu_ticks(*p).ok();
            let threads = read_threads(Path::new(&format!("/proc/{p}")));
            match (start.pid_ticks, end_ticks) {
                (Some(a), Some(b)) => {
                    let (v, i) = switches_between(&start.pid_threads, &threads);
                    Some(BrokerUsage {
                        cpu_s: b.saturating_sub(a) as f64 / clock_ticks_per_s(),
                        voluntary_switches: v,
                        involuntary_switches: i,
                        iou_workers: iou_workers(&threads),
                    })
                }
                // The broker exited during the phase: its usage is unknown.
                _ => None,
            }
        }
        BrokerSource::Unknown => None,
    };
    PhaseUsage {
        window_s: start.wall.elapsed().as_secs_f64(),
        generator,
        broker,
        broker_source: source.describe(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // A real line of a thread with spaces and parentheses in its name.
        let line = "4242 (we (ir) d name) S 1 4242 4242 0 -1 4194560 2961 0 0 0 137 42 0 0 20 0 9 0 171 2359295 2208 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(parse_stat(line), Some(("we (ir) d name".into(), 137 + 42)));
        let shard =
            "11801 (sluice-shard-0) R 1 11790 9 0 -1 4194368 10 0 0 0 9 37 0 0 20 0 7 0 5 0 0";
        assert_eq!(parse_stat(shard), Some(("sluice-shard-0".into(), 46)));
        assert_eq!(parse_stat("12 (x) S 1 2 3"), None, "too few fields");
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn status_context_switches_are_read() {
        let status = "Name:\tsluice-shard-1\nState:\tS (sleeping)\nvoluntary_ctxt_switches:\t1234\nnonvoluntary_ctxt_switches:\t56\n";
        assert_eq!(parse_ctxt_switches(status), Some((1234, 56)));
        assert_eq!(parse_ctxt_switches("Name:\tx\n"), None);
    }

    #[test]
    fn per_thread_switches_count_new_threads_and_skip_reused_tids() {
        let t = |comm: &str, v, i| ThreadSample {
            comm: comm.into(),
            switches: (v, i),
        };
        let start = HashMap::from([
            (1, t("sluice-shard-0", 10, 1)),
            (2, t("iou-wrk-1", 5, 0)),
            (3, t("gone", 7, 7)),
        ]);
        let end = HashMap::from([
            (1, t("sluice-shard-0", 15, 3)),
            // tid 2 reused by a new thread: counted from zero.
            (2, t("iou-wrk-9", 4, 1)),
            (4, t("iou-wrk-1", 2, 0)),
        ]);
        assert_eq!(switches_between(&start, &end), (5 + 4 + 2, 2 + 1));
        assert_eq!(iou_workers(&end), 2);
    }

    #[test]
    fn this_process_reads_as_a_broker_source() {
        let me = std::process::id();
        BrokerSource::Pid(me).check().unwrap();
        let threads = read_threads(Path::new("/proc/self"));
        assert!(!threads.is_empty());
        assert!(BrokerSource::Pid(u32::MAX).check().is_err());
        // Work on another thread of this process shows up as the "broker" of an embedded run.
        let start = start_window(&BrokerSource::Embedded);
        std::thread::spawn(|| {
            let t = Instant::now();
            let mut x = 1u64;
            while t.elapsed() < std::time::Duration::from_millis(50) {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            assert_ne!(x, 0);
        })
        .join()
        .unwrap();
        let u = end_window(&BrokerSource::Embedded, start, Rusage::default());
        let b = u.broker.clone().unwrap();
        assert!(b.cpu_s >= 0.03, "{u:?}");
        assert!(u.window_s >= 0.05);
        let u = end_window(
            &BrokerSource::Unknown,
            start_window(&BrokerSource::Unknown),
            Rusage::default(),
        );
        assert_eq!(u.broker, None);
    }

    #[test]
    fn cpu_per_gb_and_cores() {
        let u = PhaseUsage {
            window_s: 4.0,
            generator: Rusage {
                cpu_s: 2.0,
                ..Rusage::default()
            },
            broker: Some(BrokerUsage {
                cpu_s: 3.0,
                voluntary_switches: 0,
                involuntary_switches: 0,
                iou_workers: 0,
            }),
            broker_source: String::new(),
        };
        let f = u.figures(500_000_000, 0);
        assert_eq!((f.generator_cores, f.broker_cores), (0.5, Some(0.75)));
        assert_eq!(f.broker_s_per_gb_produced, Some(6.0));
        assert_eq!(f.generator_s_per_gb_produced, Some(4.0));
        assert_eq!(f.broker_s_per_gb_consumed, None, "nothing consumed");
        let none = PhaseUsage { broker: None, ..u };
        assert_eq!(none.figures(1, 1).broker_s_per_gb_produced, None);
    }

    #[test]
    fn rusage_arithmetic_never_goes_negative() {
        let a = Rusage {
            cpu_s: 1.0,
            voluntary_switches: 3,
            involuntary_switches: 1,
        };
        let b = Rusage {
            cpu_s: 2.0,
            voluntary_switches: 1,
            involuntary_switches: 4,
        };
        assert_eq!(
            a.minus(b),
            Rusage {
                cpu_s: 0.0,
                voluntary_switches: 2,
                involuntary_switches: 0
            }
        );
        assert_eq!(a.plus(b).voluntary_switches, 4);
    }
}
