"""/metrics on the admin port of a real `sluice serve`: kafka_exporter-compatible offsets and
consumer-group lag after producing and committing with confluent-kafka, the exposition checked
by Prometheus' own `promtool check metrics`, and a real Prometheus server scraping the broker
whose query API returns the series."""

import http.client
import json
import re
import shutil
import signal
import subprocess
import time
import urllib.parse

import pytest

from sluicetest import (LIBRDKAFKA_LOGGER, create_topic, free_port, wait_until)

pytestmark = pytest.mark.sluice_only(reason="sluice's /metrics endpoint on its admin port")

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')
PROMETHEUS_START_TIMEOUT_S = 30.0
PROMETHEUS_QUERY_TIMEOUT_S = 30.0


def scrape(broker, accept="text/plain"):
    conn = http.client.HTTPConnection(broker.host, broker.admin_port, timeout=10)
    try:
        conn.request("GET", "/metrics", headers={"Accept": accept})
        response = conn.getresponse()
        body = response.read().decode()
        assert response.status == 200, body
        return response.getheader("Content-Type"), body
    finally:
        conn.close()


def parse(text):
    """series (name + labels as written) -> float; every sample line must parse."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def produce(bootstrap, topic, counts):
    """counts: {partition: number of messages}; all acknowledged (acks=all) before returning."""
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "logger": LIBRDKAFKA_LOGGER})
    errors = []
    for partition, n in counts.items():
        for i in range(n):
            p.produce(topic, value=f"{partition}-{i}".encode(), partition=partition,
                      on_delivery=lambda err, msg: err and errors.append(err))
    assert p.flush(30) == 0, "messages left unsent"
    assert not errors, errors


def group_consumer(bootstrap, group):
    from confluent_kafka import Consumer
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                     "enable.auto.commit": False, "auto.offset.reset": "earliest",
                     "session.timeout.ms": 10000, "logger": LIBRDKAFKA_LOGGER})


def join_and_commit(bootstrap, topic, group, committed):
    """Subscribes (JoinGroup/SyncGroup), waits for the assignment, commits `committed`
    ({partition: offset}) synchronously. Returns the consumer, still a member."""
    from confluent_kafka import TopicPartition
    c = group_consumer(bootstrap, group)
    c.subscribe([topic])
    deadline = time.monotonic() + 30
    while not c.assignment():
        assert time.monotonic() < deadline, "no assignment within 30 s"
        c.poll(0.2)
    c.commit(offsets=[TopicPartition(topic, p, o) for p, o in committed.items()],
             asynchronous=False)
    return c


def test_offsets_lag_and_promtool(broker):
    topic = "metered"
    create_topic(broker.bootstrap, topic, 3)
    counts = {0: 5, 1: 12, 2: 0}
    produce(broker.bootstrap, topic, counts)

    content_type, text = scrape(broker)
    assert content_type.startswith("text/plain; version=0.0.4"), content_type
    m = parse(text)
    assert m["kafka_brokers"] == 1
    assert m[f'kafka_topic_partitions{{topic="{topic}"}}'] == 3
    for p, n in counts.items():
        assert m[f'kafka_topic_partition_current_offset{{topic="{topic}",partition="{p}"}}'] == n
        assert m[f'kafka_topic_partition_oldest_offset{{topic="{topic}",partition="{p}"}}'] == 0
    assert m[f'sluice_topic_records_in_total{{topic="{topic}"}}'] == sum(counts.values())
    assert m['sluice_requests_total{api="Produce"}'] >= 1

    committed = {0: 2, 1: 12}
    c = join_and_commit(broker.bootstrap, topic, "metrics-group", committed)
    try:
        text = scrape(broker)[1]
        m = parse(text)
        for p, off in committed.items():
            labels = f'consumergroup="metrics-group",topic="{topic}",partition="{p}"'
            assert m[f"kafka_consumergroup_current_offset{{{labels}}}"] == off
            assert m[f"kafka_consumergroup_lag{{{labels}}}"] == counts[p] - off, text
        assert f'kafka_consumergroup_lag{{consumergroup="metrics-group",topic="{topic}",partition="2"}}' not in m, \
            "no commit, no lag series"
        assert m[f'kafka_consumergroup_lag_sum{{consumergroup="metrics-group",topic="{topic}"}}'] == 3
        assert m['kafka_consumergroup_members{consumergroup="metrics-group"}'] == 1
    finally:
        c.close()

    promtool = shutil.which("promtool")
    assert promtool, "promtool not installed (Debian package prometheus; scripts/test.sh installs it)"
    text = scrape(broker)[1]
    check = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=30)
    # promtool's lint objects to a gauge named *_sum, and kafka_exporter's own
    # kafka_consumergroup_lag_sum is one; dashboards depend on that name, so it stays.
    # Exit code 3 is "lint problems"; any problem other than that one fails the test.
    problems = [line for line in (check.stdout + check.stderr).decode().splitlines() if line.strip()]
    expected = 'kafka_consumergroup_lag_sum non-histogram and non-summary metrics should not have "_sum" suffix'
    unexpected = [line for line in problems if line != expected]
    assert check.returncode in (0, 3) and not unexpected, "\n".join(problems)
    # OpenMetrics when the scraper asks for it.
    content_type, om = scrape(broker, "application/openmetrics-text;version=1.0.0")
    assert content_type.startswith("application/openmetrics-text"), content_type
    assert om.endswith("# EOF\n")


class Prometheus:
    """A real Prometheus server scraping one broker's admin port every second."""

    def __init__(self, workdir, target):
        self.binary = shutil.which("prometheus")
        assert self.binary, "prometheus not installed (Debian package prometheus)"
        self.port = free_port()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.dir / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: sluice\n    static_configs:\n"
            f"      - targets: ['{target}']\n")
        self.log = open(self.dir / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={config}", f"--storage.tsdb.path={self.dir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, cwd=self.dir)

    def get(self, path):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.read().decode()
        finally:
            conn.close()

    def ready(self):
        assert self.proc.poll() is None, "prometheus exited:\n" + self.log_text()
        try:
            return self.get("/-/ready")[0] == 200
        except OSError:
            return False

    def query(self, expr):
        """Instant query; the result vector as {frozenset(labels.items()): value}."""
        status, body = self.get("/api/v1/query?query=" + urllib.parse.quote(expr))
        assert status == 200, body
        data = json.loads(body)
        assert data["status"] == "success", body
        return {frozenset(r["metric"].items()): float(r["value"][1]) for r in data["data"]["result"]}

    def log_text(self):
        self.log.flush()
        return (self.dir / "prometheus.log").read_text(errors="replace")[-8000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


@pytest.mark.timeout(120)
def test_prometheus_scrapes_lag(broker, tmp_path):
    topic = "scraped"
    create_topic(broker.bootstrap, topic, 2)
    produce(broker.bootstrap, topic, {0: 7, 1: 3})
    consumer = join_and_commit(broker.bootstrap, topic, "scraped-group", {0: 4, 1: 3})
    prom = Prometheus(tmp_path / "prometheus", f"{broker.host}:{broker.admin_port}")
    try:
        wait_until(prom.ready, PROMETHEUS_START_TIMEOUT_S, "prometheus ready")
        offsets = wait_until(
            lambda: (lambda r: r if len(r) == 2 else None)(
                prom.query(f'kafka_topic_partition_current_offset{{topic="{topic}"}}')),
            PROMETHEUS_QUERY_TIMEOUT_S, "prometheus to have scraped the partition offsets")
        by_partition = {dict(k)["partition"]: v for k, v in offsets.items()}
        assert by_partition == {"0": 7.0, "1": 3.0}
        up = prom.query('up{job="sluice"}')
        assert list(up.values()) == [1.0], up
        lag = wait_until(
            lambda: (lambda r: r if len(r) == 2 else None)(
                prom.query('kafka_consumergroup_lag{consumergroup="scraped-group"}')),
            PROMETHEUS_QUERY_TIMEOUT_S, "prometheus to have scraped the group lag")
        by_partition = {dict(k)["partition"]: v for k, v in lag.items()}
        assert by_partition == {"0": 3.0, "1": 0.0}
        lag_sum = prom.query('kafka_consumergroup_lag_sum{consumergroup="scraped-group"}')
        assert list(lag_sum.values()) == [3.0], lag_sum
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- prometheus log ---\n{prom.log_text()}") from None
    finally:
        prom.stop()
        consumer.close()
