"""Overload: producers that send faster than the broker can make their data durable are slowed
by back-pressure (the shard's request memory budget, `queued.max.request.bytes`), the broker's
memory stays bounded, and no request is dropped silently: every message the load generator
sent is either acknowledged and then consumed, or counted as an error (here: none)."""

import json
import subprocess
import threading
import time

import pytest

from sluicetest import Broker, sluice_binary

pytestmark = pytest.mark.sluice_only(
    reason="sluice's per-shard request memory budget, its /metrics and RSS (starts `sluice serve` itself)")

BUDGET_BYTES = 1024 * 1024  # about one ~1 MB produce request per shard at a time


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def scrape(broker):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", broker.admin_port, timeout=10)
    conn.request("GET", "/metrics")
    return conn.getresponse().read().decode()


def metric_sum(text, name):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_flood_is_slowed_by_the_budget_not_dropped(tmp_path):
    b = Broker(tmp_path / "broker")
    b.extra_args = ["--set", f"queued.max.request.bytes={BUDGET_BYTES}"]
    b.start()
    try:
        rss_start = rss_bytes(b.proc.pid)
        peak = [rss_start]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], rss_bytes(b.proc.pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out = tmp_path / "flood.json"
        # 4 producers x 8 requests in flight x ~1 MB batches = ~32 MB offered at once, 32x the
        # budget; acks=all, so each request also waits for its fdatasync.
        bench = subprocess.run(
            [str(sluice_binary()), "bench", "--bootstrap", b.bootstrap, "--partitions", "3",
             "--producers", "4", "--in-flight", "8", "--message-size", "16384",
             "--batch-bytes", "1000000", "--linger-ms", "5", "--rate", "0", "--acks", "all",
             "--warmup", "0s", "--duration", "4s", "--json", str(out), "--quiet"],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        done.set()
        sampler.join(5)
        assert bench.returncode == 0, bench.stdout + bench.stderr
        result = json.loads(out.read_text())
        phase = result["workload"]["phases"][0]["results"]
        assert phase["errors"] == 0, phase
        assert phase["acked_msgs"] > 0
        assert phase["consumed_msgs"] == phase["acked_msgs"], phase

        metrics = scrape(b)
        waits = metric_sum(metrics, "sluice_request_memory_waits_total")
        assert waits > 0, "the flood never hit the request memory budget: the test did not overload"
        grown = peak[0] - rss_start
        print(f"overload: {phase['acked_msgs']} acknowledged, {waits:.0f} budget waits, "
              f"RSS {rss_start >> 20} MiB -> peak {peak[0] >> 20} MiB (+{grown >> 20} MiB)")
        # The budget bounds request bytes held per shard; the rest of the growth is buffers
        # that do not scale with the offered load (socket read chunks, response frames, caches).
        assert grown < 256 * 1024 * 1024, f"RSS grew by {grown >> 20} MiB under a {BUDGET_BYTES >> 20} MiB budget"
    finally:
        b.stop()
