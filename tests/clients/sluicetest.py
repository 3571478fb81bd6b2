"""Helpers for the client tests: a real `sluice serve` process, and client conveniences.

The broker is the built binary ($SLUICE_BIN, else $CARGO_TARGET_DIR/debug/sluice, else
target/debug/sluice), started on free loopback ports with a fresh data directory; with
`pytest --broker kafka`, Apache Kafka instead (KafkaPeer, started by scripts/kafka.sh).
"""

import atexit
import ctypes
import gc
import http.client
import json
import logging
import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# Bounds (seconds) for everything that waits on the broker.
BROKER_START_TIMEOUT_S = 20.0
BROKER_STOP_TIMEOUT_S = 10.0
LOG_TAIL_BYTES = 64 * 1024


def sluice_binary():
    env_bin = os.environ.get("SLUICE_BIN")
    if env_bin:
        return Path(env_bin)
    target = os.environ.get("CARGO_TARGET_DIR")
    target_dir = Path(target) if target else REPO_ROOT / "target"
    if not target_dir.is_absolute():
        target_dir = REPO_ROOT / target_dir
    return target_dir / "debug" / "sluice"


def _die_with_parent():
    """In the child before exec: SIGKILL us if pytest dies, so no broker outlives its test run."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _ephemeral_range():
    try:
        lo, hi = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def free_port():
    """A port on 127.0.0.1 that was free a moment ago, chosen below the kernel's ephemeral range:
    a port from bind(0) is an ephemeral one, which any outgoing connection on the machine (a
    client of this test, another test run) may take as its local port meanwhile, and a broker
    restarted on it would then fail to bind. Falls back to the kernel's choice if no port below
    the range is free."""
    lo, _ = _ephemeral_range()
    candidates = list(range(max(1024, lo - 20000), lo))
    for port in random.sample(candidates, min(50, len(candidates))):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def broker_cores():
    """Shards for a test broker: 2 (so cross-shard paths run) unless the machine has fewer."""
    wanted = int(os.environ.get("SLUICE_TEST_CORES", "2"))
    return max(1, min(wanted, os.cpu_count() or 1))


class BrokerError(AssertionError):
    pass


class _BrokerLog:
    """The broker's log file (`self.log_path`): all of it, or its tail for a test report."""

    def log_text(self):
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self):
        text = self.log_text()
        if len(text) > LOG_TAIL_BYTES:
            return f"[... {len(text) - LOG_TAIL_BYTES} bytes cut ...]\n" + text[-LOG_TAIL_BYTES:]
        return text


class Broker(_BrokerLog):
    """One `sluice serve` process; restartable on the same data directory and ports."""

    def __init__(self, workdir, name="broker"):
        self.name = name
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{name}.log"
        self.host = "127.0.0.1"
        self.port = free_port()
        self.admin_port = free_port()
        while self.admin_port == self.port:
            self.admin_port = free_port()
        self.binary = sluice_binary()
        self.proc = None
        self.starts = 0
        self.extra_args = []  # more `sluice serve` arguments, e.g. ["--config", path]
        self.problems = []  # found at stop: not a clean exit, a panic in the log, ...

    @property
    def bootstrap(self):
        return f"{self.host}:{self.port}"

    def command(self):
        return [
            str(self.binary), "serve",
            "--data-dir", str(self.data_dir),
            "--listen", self.bootstrap,
            "--admin-listen", f"{self.host}:{self.admin_port}",
            "--cores", str(broker_cores()),
        ] + list(self.extra_args)

    def start(self):
        self.spawn()
        self._wait_ready()
        return self

    def spawn(self):
        """Starts the process without waiting for it to be ready."""
        assert self.proc is None, "broker already running"
        if not self.binary.is_file():
            raise BrokerError(f"sluice binary not found at {self.binary}: run `cargo build` "
                              "(scripts/test.sh does) or set SLUICE_BIN")
        self.starts += 1
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env.setdefault("RUST_BACKTRACE", "1")
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env, cwd=self.workdir,
                                         preexec_fn=_die_with_parent)

    def _wait_ready(self):
        """Bounded wait until the Kafka port accepts TCP and the admin endpoint's /readyz answers
        200 (every shard recovered its partitions and listens)."""
        deadline = time.monotonic() + BROKER_START_TIMEOUT_S
        last = "no answer yet"
        while True:
            code = self.proc.poll()
            if code is not None:
                self.proc = None
                raise BrokerError(f"sluice serve exited with code {code} before it was ready "
                                  f"({last}); its log:\n{self.log_tail()}")
            last = self._readiness()
            if last is None:
                return
            if time.monotonic() > deadline:
                self.kill9()
                raise BrokerError(f"sluice serve not ready within {BROKER_START_TIMEOUT_S:.0f} s "
                                  f"({last}); its log:\n{self.log_tail()}")
            time.sleep(0.05)

    def _readiness(self):
        """None when ready, else what is missing."""
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0):
                pass
        except OSError as e:
            return f"Kafka port {self.port}: {e}"
        conn = http.client.HTTPConnection(self.host, self.admin_port, timeout=2.0)
        try:
            conn.request("GET", "/readyz")
            response = conn.getresponse()
            body = response.read(256).decode("utf-8", "replace").strip()
            if response.status == 200:
                return None
            return f"GET /readyz on {self.admin_port}: {response.status} {body}"
        except (OSError, http.client.HTTPException) as e:
            return f"GET /readyz on {self.admin_port}: {e}"
        finally:
            conn.close()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        """SIGKILL, as a crash or power cut would end it; waits for the process to be gone."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=BROKER_STOP_TIMEOUT_S)
        self._append_log(f"===== killed with SIGKILL (exit {self.proc.returncode})\n")
        self.proc = None
        self._wait_ports_released()

    def _wait_ports_released(self):
        """After the process is gone its listening sockets can outlive it for a moment (the
        kernel tears an io_uring instance down asynchronously, and pending accepts hold the
        socket), still completing handshakes nobody will serve. Wait (bounded) until both ports
        refuse connections, so a restart binds and serves on its own sockets."""
        began = time.monotonic()
        deadline = began + BROKER_STOP_TIMEOUT_S
        for port in (self.port, self.admin_port):
            while True:
                try:
                    with socket.create_connection((self.host, port), timeout=1.0):
                        pass
                except OSError:
                    break
                if time.monotonic() > deadline:
                    raise BrokerError(f"port {port} still accepts connections "
                                      f"{BROKER_STOP_TIMEOUT_S:.0f} s after the broker was killed")
                time.sleep(0.02)
        self._append_log(f"===== ports released {1000 * (time.monotonic() - began):.0f} ms after exit\n")

    def restart_after_crash(self):
        """kill -9, then start again on the same data directory and ports."""
        self.kill9()
        return self.start()

    def restart_with(self, settings):
        """Clean stop, then start again (same data directory and ports) with broker settings
        {name: value} (Kafka's names; a config file, as `--config` reads it)."""
        conf = self.workdir / f"{self.name}-settings.toml"
        conf.write_text("".join(f"{json.dumps(k)} = {json.dumps(v)}\n" for k, v in settings.items()))
        self.stop()
        self.extra_args = ["--config", str(conf)]
        return self.start()

    def stop(self):
        """SIGTERM and wait for a clean exit; SIGKILL after BROKER_STOP_TIMEOUT_S.

        Records a problem (reported by the fixture) if the broker had died on its own, did not
        stop in time, or exited non-zero."""
        if self.proc is None:
            return
        code = self.proc.poll()
        if code is not None:
            self.problems.append(f"broker exited on its own during the test (exit code {code})")
        else:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=BROKER_STOP_TIMEOUT_S)
                if code != 0:
                    self.problems.append(f"broker exited with code {code} after SIGTERM")
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(timeout=BROKER_STOP_TIMEOUT_S)
                self.problems.append(f"broker still running {BROKER_STOP_TIMEOUT_S:.0f} s "
                                     "after SIGTERM; killed with SIGKILL")
        self._append_log(f"===== stopped (exit {self.proc.returncode})\n")
        self.proc = None
        log = self.log_text()
        at = log.find("panicked at")
        if at >= 0:
            excerpt = log[max(0, at - 2000):at + 4000]
            self.problems.append(f"the broker log reports a panic:\n{excerpt}\n--- end of panic excerpt")

    def _append_log(self, line):
        with open(self.log_path, "ab") as log:
            log.write(line.encode())


KAFKA_SH = REPO_ROOT / "scripts" / "kafka.sh"
KAFKA_START_TIMEOUT_S = 90.0  # scripts/kafka.sh waits up to 60 s for readiness, plus format
KAFKA_STOP_TIMEOUT_S = 45.0


def _pid_alive(pid):
    """Exists and is not a zombie (a Kafka started by scripts/kafka.sh is no child of ours)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:][:1] != "Z"


class KafkaPeer(_BrokerLog):
    """Apache Kafka (single-node KRaft, scripts/kafka.sh) behind the same interface as Broker, for
    `pytest tests/clients --broker kafka`: start, stop, kill9, restart_after_crash (same
    directory and ports), alive, bootstrap/host/port, log_text/log_tail, problems."""

    def __init__(self, workdir, name="kafka", settings=None):
        self.name = name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "kafka.log"
        self.host = "127.0.0.1"
        self.port = None
        self.settings = dict(settings or {})  # server.properties entries for `--set`
        self.starts = 0
        self.problems = []

    @property
    def bootstrap(self):
        return f"{self.host}:{self.port}"

    @property
    def pid(self):
        try:
            return int((self.workdir / "kafka.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def start(self):
        args = [str(KAFKA_SH), "start", str(self.workdir)]
        for key, value in self.settings.items():
            args += ["--set", f"{key}={value}"]
        self.starts += 1
        done = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=KAFKA_START_TIMEOUT_S)
        if done.returncode != 0:
            raise BrokerError(f"scripts/kafka.sh start failed (exit {done.returncode}):\n"
                              f"{done.stderr}\n--- kafka.log ---\n{self.log_tail()}")
        host, _, port = done.stdout.strip().splitlines()[-1].rpartition(":")
        port = int(port)
        if self.port is not None and port != self.port:
            raise BrokerError(f"Kafka restarted on port {port}, not on its old port {self.port}")
        self.host, self.port = host, port
        _running_peers.add(self)
        return self

    def alive(self):
        pid = self.pid
        return pid is not None and _pid_alive(pid)

    def kill9(self):
        pid = self.pid
        if pid is None:
            return
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not _pid_alive(pid), BROKER_STOP_TIMEOUT_S, f"Kafka pid {pid} to exit")
        (self.workdir / "kafka.pid").unlink(missing_ok=True)

    def restart_after_crash(self):
        self.kill9()
        return self.start()

    def restart_with(self, settings):
        """Clean stop, then start again (same directory and ports) with server.properties
        entries {name: value} added."""
        self.stop()
        self.settings.update({k: str(v).lower() if isinstance(v, bool) else str(v)
                              for k, v in settings.items()})
        return self.start()

    def stop(self):
        if self.pid is None:
            return
        if not self.alive():
            self.problems.append("Kafka exited on its own during the test")
        done = subprocess.run([str(KAFKA_SH), "stop", str(self.workdir)], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=KAFKA_STOP_TIMEOUT_S)
        if done.returncode != 0 or "SIGKILL" in done.stderr:
            self.problems.append(f"scripts/kafka.sh stop: exit {done.returncode} {done.stderr.strip()}")
        _running_peers.discard(self)

    def reset(self, timeout_s=30.0):
        """Between two tests on a shared Kafka: deletes every non-internal topic and every
        consumer group, and waits (bounded) until Metadata lists no topic, so the next test
        starts as on a fresh broker (a new topic of the same name is a new topic)."""
        from confluent_kafka import KafkaError, KafkaException
        admin = admin_client(self.bootstrap)
        groups = admin.list_consumer_groups(request_timeout=timeout_s).result(timeout_s)
        group_ids = [g.group_id for g in groups.valid]
        if group_ids:
            for future in admin.delete_consumer_groups(group_ids, request_timeout=timeout_s).values():
                try:
                    future.result(timeout_s)
                except Exception:  # noqa: BLE001 (a group with members left: reported below)
                    pass

        def user_topics():
            md = admin.list_topics(timeout=timeout_s)
            return [t for t in md.topics if not t.startswith("__")]
        # Clients the test dropped without closing may still be collected and, until then, ask
        # for their topics' metadata, which auto-creates them again: collect them first, and
        # check that the empty state holds for a moment (bounded rounds).
        gc.collect()
        for _ in range(5):
            topics = user_topics()
            if topics:
                for future in admin.delete_topics(topics, operation_timeout=timeout_s,
                                                  request_timeout=timeout_s).values():
                    try:
                        future.result(timeout_s)
                    except KafkaException as e:
                        if e.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                            raise
            wait_until(lambda: not user_topics(), timeout_s, "the shared Kafka to list no topic")
            time.sleep(0.5)
            if not user_topics():
                return
        raise BrokerError(f"topics keep coming back on the shared Kafka: {user_topics()}")


class SharedKafka(KafkaPeer):
    """One Kafka for the tests that only talk to it (no stop, kill or restart): a start costs
    Kafka seconds, a reset between tests a fraction of one. Tests that stop or restart the broker
    are marked `own_broker` and get a KafkaPeer of their own."""

    def _refuse(self, *args, **kwargs):
        raise BrokerError("this test stops or restarts the broker: mark it "
                          "@pytest.mark.own_broker so it gets a broker of its own under --broker kafka")

    kill9 = restart_after_crash = restart_with = _refuse


_running_peers = set()


def _stop_leftover_peers():
    """Kafka runs detached from pytest (scripts/kafka.sh uses setsid): if pytest ends without a
    fixture's teardown (an interrupted run), kill what it started, by pid."""
    for peer in list(_running_peers):
        pid = peer.pid
        if pid is not None and _pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


atexit.register(_stop_leftover_peers)


def wait_until(predicate, timeout_s, what):
    """Bounded wait for a condition that no event announces (e.g. metadata propagation on a real
    Kafka broker). Returns the predicate's last truthy value; fails with `what` after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


# --- confluent-kafka conveniences ----------------------------------------------------------------

# librdkafka's own log lines go to Python logging (shown with a failed test) instead of stderr,
# where clients still reconnecting to a killed broker would print them long after their test.
LIBRDKAFKA_LOGGER = logging.getLogger("librdkafka")



def admin_client(bootstrap):
    from confluent_kafka.admin import AdminClient
    return AdminClient({"bootstrap.servers": bootstrap, "logger": LIBRDKAFKA_LOGGER})


def create_topic(bootstrap, name, partitions, config=None, timeout_s=15.0):
    """CreateTopics through confluent-kafka's AdminClient; waits until Metadata shows the topic
    with all its partitions led."""
    from confluent_kafka.admin import NewTopic
    admin = admin_client(bootstrap)
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=timeout_s, request_timeout=timeout_s)
    futures[name].result(timeout=timeout_s)
    wait_for_partitions(admin, name, partitions, timeout_s)
    return admin


def wait_for_partitions(admin, name, partitions, timeout_s=15.0):
    def ready():
        md = admin.list_topics(topic=name, timeout=timeout_s)
        topic = md.topics.get(name)
        if topic is None or topic.error is not None or len(topic.partitions) != partitions:
            return None
        if any(p.leader < 0 or p.error is not None for p in topic.partitions.values()):
            return None
        return topic
    return wait_until(ready, timeout_s, f"topic {name} with {partitions} led partitions")


def consumer(bootstrap, **extra):
    """An assign()-style confluent consumer: no commits, no subscription. (The Python binding
    insists on a group.id even when the group is never joined.)"""
    from confluent_kafka import Consumer
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": "sluice-tests-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "logger": LIBRDKAFKA_LOGGER,
    }
    conf.update(extra)
    return Consumer(conf)


def consume_all(bootstrap, topic, partitions, timeout_s=30.0, start=None, **extra):
    """Reads every partition of `topic` from the beginning (or `start`: {partition: offset}) up
    to its end; returns the messages in arrival order. Ends on partition-EOF events, bounded by
    timeout_s. Fails on any consumer error other than EOF."""
    from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition
    c = consumer(bootstrap, **extra)
    try:
        start = start or {}
        c.assign([TopicPartition(topic, p, start.get(p, OFFSET_BEGINNING)) for p in range(partitions)])
        at_eof = set()
        messages = []
        deadline = time.monotonic() + timeout_s
        while len(at_eof) < partitions:
            if time.monotonic() > deadline:
                raise AssertionError(f"consume_all({topic}): only partitions {sorted(at_eof)} "
                                     f"reached their end within {timeout_s} s "
                                     f"({len(messages)} messages read)")
            msg = c.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_eof.add(msg.partition())
                    continue
                raise AssertionError(f"consumer error on {topic}: {err}")
            at_eof.discard(msg.partition())
            messages.append(msg)
        return messages
    finally:
        c.close()
