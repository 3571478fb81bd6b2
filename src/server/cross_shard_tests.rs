//! Full cross-shard inboxes, on a real two-shard broker (the production inbox loop).
//!
//! A shard thread is blocked with a job that waits on a std channel (a shard busy with a long
//! task: its inbox loop cannot run). The other shard then sends more `run_on` calls than the
//! inbox holds. What must hold: the inbox fills to exactly its bound and stays there; the excess
//! senders are suspended (not dropped, no panic, no error); the sending shard keeps running other
//! work (a ticker task keeps counting, a job sent to it is answered); once the target is released
//! every call runs exactly once, in the order it was sent, and returns its result. Then the same
//! in both directions at once: both inboxes full, each shard with senders suspended on the other,
//! and it drains without deadlock (a shard's inbox loop never waits on its own sends).
//!
//! Bug this found (fixed in runtime::Shard::run_on): phase 2 hung. Shard 1, released, drained 65
//! jobs and then its thread spun: each `recv` on its inbox woke one of shard 0's suspended
//! senders, a cross-thread wake, and compio's executor holds those in a fixed ring of 64 and
//! spins the waking thread while it is full. Shard 0 was busy, so shard 1 stopped too (no ticks,
//! no jobs); with shard 0 doing the same to shard 1 it is a deadlock.
//! Waits poll shared state with a generous deadline that only turns a hang into a failure; no
//! assertion depends on timing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::BrokerConfig;
use crate::limits::CROSS_SHARD_QUEUE_JOBS_MAX as CAP;
use crate::runtime::{Job, Shard};
use crate::server::Broker;

const DEADLINE: Duration = Duration::from_secs(60);

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Runs `f` on shard `target`'s thread (from the test thread, through its inbox) and waits.
fn on_shard<R: Send + 'static>(
    b: &Broker,
    target: usize,
    f: impl FnOnce(Rc<Shard>) -> R + Send + 'static,
) -> R {
    let (tx, rx) = mpsc::channel();
    let job: Job = Box::new(move |s| {
        let _ = tx.send(f(s));
    });
    b.shared.inboxes[target].send_blocking(job).unwrap();
    rx.recv_timeout(DEADLINE).expect("shard did not answer")
}

/// Blocks shard `target`'s thread until the returned sender is used (or dropped).
fn block_shard(b: &Broker, target: usize) -> mpsc::Sender<()> {
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let (ack_tx, ack_rx) = mpsc::channel();
    let job: Job = Box::new(move |_| {
        ack_tx.send(()).unwrap();
        let _ = gate_rx.recv();
    });
    b.shared.inboxes[target].send_blocking(job).unwrap();
    ack_rx.recv_timeout(DEADLINE).expect("shard did not block");
    gate_tx
}

/// A task on shard `target` that counts 1 ms ticks for as long as the shard runs.
fn start_ticker(b: &Broker, target: usize) -> Arc<AtomicU64> {
    let ticks = Arc::new(AtomicU64::new(0));
    let t = ticks.clone();
    on_shard(b, target, move |_| {
        compio::runtime::spawn(async move {
            loop {
                compio::time::sleep(Duration::from_millis(1)).await;
                t.fetch_add(1, Ordering::Relaxed);
            }
        })
        .detach();
    });
    ticks
}

fn ticks_advance(ticks: &AtomicU64, by: u64, what: &str) {
    let from = ticks.load(Ordering::Relaxed);
    wait_until(what, || ticks.load(Ordering::Relaxed) >= from + by);
}

#[test]
fn full_inboxes_suspend_senders_lose_nothing_keep_order_and_do_not_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        cores: 2,
        ..BrokerConfig::default()
    };
    let b = Broker::start(config).unwrap();
    let ticks0 = start_ticker(&b, 0);
    let ticks1 = start_ticker(&b, 1);

    // Phase 1: shard 1 busy; shard 0 sends CAP + EXTRA calls to it.
    const EXTRA: usize = 300;
    let n = CAP + EXTRA;
    let gate1 = block_shard(&b, 1);
    // Order in which the calls ran on shard 1; results as seen by the senders on shard 0.
    let ran_on_1 = Arc::new(Mutex::new(Vec::<usize>::new()));
    let results = Arc::new(Mutex::new(
        Vec::<(usize, Result<(usize, usize), String>)>::new(),
    ));
    // Phase 2 (below) makes every call, once on shard 1, call shard 0 twice before answering.
    let nested_back_to_0 = Arc::new(AtomicU64::new(0));
    {
        let (ran_on_1, results, nested) =
            (ran_on_1.clone(), results.clone(), nested_back_to_0.clone());
        on_shard(&b, 0, move |s0| {
            for i in 0..n {
                let (s0, ran_on_1, results, nested) = (
                    s0.clone(),
                    ran_on_1.clone(),
                    results.clone(),
                    nested.clone(),
                );
                compio::runtime::spawn(async move {
                    let r = s0
                        .run_on(1, move |s1| async move {
                            ran_on_1.lock().unwrap().push(i);
                            let a = s1.run_on(0, move |_| async move { 2 * i });
                            let b = s1.run_on(0, move |_| async move { 2 * i + 1 });
                            let (a, b) = futures::join!(a, b);
                            nested.fetch_add(2, Ordering::Relaxed);
                            (a.unwrap(), b.unwrap())
                        })
                        .await;
                    results
                        .lock()
                        .unwrap()
                        .push((i, r.map_err(|e| e.to_string())));
                })
                .detach();
            }
        });
    }
    let inbox1 = &b.shared.inboxes[1];
    wait_until("shard 1's inbox to fill", || inbox1.len() == CAP);
    // Shard 0 keeps working while EXTRA of its tasks wait for room: its ticker runs, it answers
    // a job, and the inbox it is sending to stays at its bound.
    ticks_advance(&ticks0, 50, "shard 0's ticker while its senders wait");
    assert_eq!(on_shard(&b, 0, |s| s.id), 0);
    assert_eq!(inbox1.len(), CAP, "a full inbox never grows past its bound");
    assert!(results.lock().unwrap().is_empty() && ran_on_1.lock().unwrap().is_empty());

    // Phase 2: block shard 0 too, then release shard 1. Shard 1 runs the queued calls; each
    // calls shard 0 twice, so shard 0's inbox fills while shard 1 has senders suspended on it
    // and shard 0 still has senders suspended on shard 1: both directions full at once.
    let gate0 = block_shard(&b, 0);
    gate1.send(()).unwrap();
    let inbox0 = &b.shared.inboxes[0];
    wait_until("shard 0's inbox to fill", || inbox0.len() == CAP);
    wait_until("shard 1 to run the queued calls", || {
        ran_on_1.lock().unwrap().len() == CAP
    });
    ticks_advance(&ticks1, 50, "shard 1's ticker while its senders wait");
    assert_eq!(on_shard(&b, 1, |s| s.id), 1);
    assert_eq!(inbox0.len(), CAP);
    assert!(
        results.lock().unwrap().is_empty(),
        "nothing can finish while shard 0 is blocked"
    );
    gate0.send(()).unwrap();

    wait_until("every call to complete", || {
        results.lock().unwrap().len() == n
    });
    let ran = ran_on_1.lock().unwrap().clone();
    assert_eq!(
        ran,
        (0..n).collect::<Vec<_>>(),
        "calls ran once each, in the order they were sent"
    );
    let mut results = results.lock().unwrap().clone();
    results.sort_by_key(|r| r.0);
    for (i, r) in results {
        assert_eq!(r, Ok((2 * i, 2 * i + 1)), "call {i}");
    }
    assert_eq!(nested_back_to_0.load(Ordering::Relaxed), 2 * n as u64);
    assert_eq!((inbox0.len(), inbox1.len()), (0, 0));
    // Both shards still run.
    ticks_advance(&ticks0, 10, "shard 0's ticker after the flood");
    ticks_advance(&ticks1, 10, "shard 1's ticker after the flood");
    b.shutdown().unwrap();
}
