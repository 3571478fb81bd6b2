#!/usr/bin/env python3
"""Failover times of a three-node Sluice cluster on loopback, under acks=all load.

    .venv/bin/python scripts/failover-times.py [--cycles 10] [--election-ms 1000]

Starts three `sluice serve` nodes (release build) on 127.0.0.1, creates a topic with one
partition and replication factor 3, keeps an idempotent acks=all confluent-kafka producer
sending 500 msg/s, and `--cycles` times kills the partition leader with SIGKILL, then restarts
it. For each cycle it prints: the time until Metadata names a new leader, and the producer's
longest gap between two acknowledgements around the kill (what an application sees). Bounded:
every wait has a timeout; everything is killed at the end.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def leader_of(admin):
    md = admin.list_topics(topic="failover", timeout=5)
    t = md.topics.get("failover")
    return t.partitions[0].leader if t is not None and 0 in t.partitions else -1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=10)
    ap.add_argument("--election-ms", type=int, default=1000)
    ap.add_argument("--base-port", type=int, default=38100)
    args = ap.parse_args()
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    binary = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "sluice"
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    work = Path(tempfile.mkdtemp(prefix="sluice-failover-"))
    base = args.base_port
    voters = ",".join(f"{i}@127.0.0.1:{base + 10 + i}" for i in (1, 2, 3))
    procs = {}

    def start(i):
        cmd = [str(binary), "serve", "--node-id", str(i), "--cluster", voters, "--cores", "1",
               "--listen", f"127.0.0.1:{base + i}", "--admin-listen", f"127.0.0.1:{base + 20 + i}",
               "--data-dir", str(work / f"n{i}"), "--set", f"raft.election.timeout.ms={args.election_ms}"]
        log = open(work / f"n{i}.log", "ab")
        procs[i] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)

    bootstrap = ",".join(f"127.0.0.1:{base + i}" for i in (1, 2, 3))
    try:
        for i in (1, 2, 3):
            start(i)
        import urllib.request
        deadline = time.monotonic() + 30
        for i in (1, 2, 3):  # ready = registered in the cluster
            while True:
                try:
                    if urllib.request.urlopen(f"http://127.0.0.1:{base + 20 + i}/readyz", timeout=2).status == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"node {i} not ready; see {work}/n{i}.log")
                time.sleep(0.1)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        try:
            admin.create_topics([NewTopic("failover", 1, 3)])["failover"].result(30)
        except Exception as e:
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise
        while leader_of(admin) <= 0:
            time.sleep(0.1)

        def leader():
            return leader_of(admin)

        acks = []
        p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                      "linger.ms": 0, "message.timeout.ms": 60000})
        stop = threading.Event()

        def produce():
            n = 0
            while not stop.is_set():
                p.produce("failover", json.dumps({"n": n}).encode(),
                          on_delivery=lambda err, msg: err is None and acks.append(time.monotonic()))
                n += 1
                p.poll(0)
                time.sleep(0.002)
        t = threading.Thread(target=produce, daemon=True)
        t.start()
        time.sleep(3)
        rows = []
        for c in range(args.cycles):
            old = leader()
            killed = time.monotonic()
            procs[old].send_signal(signal.SIGKILL)
            procs[old].wait(10)
            new = None
            while time.monotonic() - killed < 30:
                try:
                    lid = leader()
                except Exception:
                    lid = -1
                if lid > 0 and lid != old:
                    new = lid
                    break
                time.sleep(0.05)
            elected = time.monotonic() - killed
            time.sleep(3)
            window = [a for a in acks if killed - 2 <= a <= killed + 8]
            gap = max((b - a for a, b in zip(window, window[1:])), default=float("nan"))
            rows.append((c + 1, old, new, elected, gap))
            print(f"cycle {c + 1}: killed node {old}, new leader {new} in {elected:.2f} s, "
                  f"longest gap between acks {gap * 1000:.0f} ms", flush=True)
            start(old)
            time.sleep(4)
        stop.set()
        t.join(5)
        left = p.flush(60)
        el = [r[3] for r in rows]
        gaps = [r[4] for r in rows]
        print(f"\nnew leader visible in Metadata: median {statistics.median(el):.2f} s, max {max(el):.2f} s")
        print(f"longest producer gap: median {statistics.median(gaps) * 1000:.0f} ms, max {max(gaps) * 1000:.0f} ms")
        print(f"acknowledged {len(acks)}, unacknowledged at the end {left}")
    finally:
        for pr in procs.values():
            if pr.poll() is None:
                pr.kill()
                pr.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
