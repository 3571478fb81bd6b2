"""A Sluice cluster for tests: N `sluice serve` nodes, each in its own network namespace.

Every node's namespace has two links (veth pairs) to two bridges that the test creates in the
root namespace:
- the client network 10.<k>.1.0/24: each node's Kafka listener (10.<k>.1.1<i>:9092) and admin
  listener; the test's clients (root namespace, 10.<k>.1.1) reach every node here;
- the replication network 10.<k>.2.0/24: each node's Raft listener (10.<k>.2.1<i>:9093),
  named in `--cluster`.

`partition(i)` takes node i's replication link down: a real network partition between node i
and the other nodes, while clients still reach node i (so a test can check that an isolated
old leader acknowledges nothing). `heal(i)` brings it back. `delay(i, ms)` adds latency on it
(tc netem). Everything is removed at `close()` (and leftovers of an earlier run at start).

Needs root (network namespaces, veth, bridges): `scripts/test.sh` runs as root in CI.
"""

import os
import random
import subprocess
import time
from pathlib import Path

from sluicetest import Broker, BrokerError, broker_cores

KAFKA_PORT = 9092
ADMIN_PORT = 9644
RAFT_PORT = 9093


def sh(*args, check=True):
    try:
        r = subprocess.run(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except FileNotFoundError as e:
        if check:
            raise RuntimeError(f"{args[0]} is not installed (iproute2): {e}") from e
        return subprocess.CompletedProcess(list(args), 127, "", str(e))
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def netns_available():
    """Whether this process may create network namespaces (root with CAP_SYS_ADMIN/NET_ADMIN)."""
    if os.geteuid() != 0:
        return False
    name = f"slprobe{os.getpid()}"
    r = sh("ip", "netns", "add", name, check=False)
    if r.returncode != 0:
        return False
    sh("ip", "netns", "del", name, check=False)
    return True


def netem_available():
    """Whether tc's netem qdisc (delay, loss) exists in this kernel (not on every machine)."""
    name = f"slq{os.getpid() % 100000}"
    if sh("ip", "link", "add", name, "type", "veth", "peer", "name", name + "p", check=False).returncode != 0:
        return False
    try:
        return sh("tc", "qdisc", "add", "dev", name, "root", "netem", "delay", "1ms", check=False).returncode == 0
    finally:
        sh("ip", "link", "del", name, check=False)


class Node(Broker):
    """One cluster node: a Broker run inside its network namespace."""

    def __init__(self, workdir, node_id, ns, client_ip, raft_ip, voters):
        super().__init__(workdir, name=f"node{node_id}")
        self.node_id = node_id
        self.ns = ns
        self.host = client_ip
        self.port = KAFKA_PORT
        self.admin_port = ADMIN_PORT
        self.raft_ip = raft_ip
        self.voters = voters

    def command(self):
        return ["ip", "netns", "exec", self.ns, str(self.binary), "serve",
                "--node-id", str(self.node_id),
                "--cluster", self.voters,
                "--data-dir", str(self.data_dir),
                "--listen", f"{self.host}:{self.port}",
                "--admin-listen", f"{self.host}:{self.admin_port}",
                "--cores", str(broker_cores())] + self.join_args() + list(self.extra_args)

    def join_args(self):
        # A node that is not among the voters joins a running cluster: it names its own
        # replication listener.
        voter = any(v.split("@")[0] == str(self.node_id) for v in self.voters.split(","))
        return [] if voter else ["--replication-listen", f"{self.raft_ip}:{RAFT_PORT}"]

    def partition_dir(self, topic, partition):
        return self.data_dir / f"{topic}-{partition}"

    def log_bytes(self, topic, partition):
        """The partition's segments concatenated (the whole replicated log as stored)."""
        d = self.partition_dir(topic, partition)
        if not d.is_dir():
            return b""
        return b"".join(p.read_bytes() for p in sorted(d.glob("*.log")))


class Cluster:
    def __init__(self, workdir, size=3, extra_args=None, voters=None):
        """`size` nodes; the first `voters` (default all) form the Raft voter set, the others
        join as brokers (metadata learners) with --replication-listen."""
        self.workdir = Path(workdir)
        self.size = size
        # A /16 of our own per test run: 10.(100..199).x.x
        self.k = 100 + (os.getpid() + random.randrange(100)) % 100
        self.tag = f"sl{self.k}"
        self.br_client = f"{self.tag}c"
        self.br_raft = f"{self.tag}r"
        self._cleanup()
        sh("ip", "link", "add", self.br_client, "type", "bridge")
        sh("ip", "link", "add", self.br_raft, "type", "bridge")
        sh("ip", "addr", "add", f"10.{self.k}.1.1/24", "dev", self.br_client)
        sh("ip", "link", "set", self.br_client, "up")
        sh("ip", "link", "set", self.br_raft, "up")
        voters = ",".join(f"{i}@10.{self.k}.2.{10 + i}:{RAFT_PORT}" for i in range(1, (voters or size) + 1))
        self.nodes = []
        for i in range(1, size + 1):
            ns = f"{self.tag}n{i}"
            sh("ip", "netns", "add", ns)
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
            for net, bridge, octet in (("c", self.br_client, 1), ("r", self.br_raft, 2)):
                outer, inner = f"{self.tag}{net}{i}", f"{self.tag}{net}{i}p"
                sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
                sh("ip", "link", "set", inner, "netns", ns)
                sh("ip", "link", "set", outer, "master", bridge)
                sh("ip", "link", "set", outer, "up")
                sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"10.{self.k}.{octet}.{10 + i}/24", "dev", inner)
                sh("ip", "netns", "exec", ns, "ip", "link", "set", inner, "up")
            node = Node(self.workdir / f"node{i}", i, ns, f"10.{self.k}.1.{10 + i}", f"10.{self.k}.2.{10 + i}", voters)
            node.extra_args = list(extra_args or [])
            self.nodes.append(node)

    @property
    def bootstrap(self):
        return ",".join(n.bootstrap for n in self.nodes)

    def node(self, node_id):
        return self.nodes[node_id - 1]

    def start(self, count=None):
        """Starts the first `count` nodes (all by default); the others can join later."""
        # From this thread (a node is killed when the thread that started it ends:
        # PR_SET_PDEATHSIG); all processes first, since a node is ready only once a quorum has
        # committed its registration.
        nodes = self.nodes[:count]
        for n in nodes:
            n.spawn()
        for n in nodes:
            n._wait_ready()
        return self

    def partition(self, node_id):
        """Cuts node `node_id` off from the other nodes (its replication link goes down)."""
        sh("ip", "link", "set", f"{self.tag}r{node_id}", "down")

    def heal(self, node_id):
        sh("ip", "link", "set", f"{self.tag}r{node_id}", "up")

    def delay(self, node_id, ms):
        sh("tc", "qdisc", "replace", "dev", f"{self.tag}r{node_id}", "root", "netem", "delay", f"{ms}ms")

    def undelay(self, node_id):
        sh("tc", "qdisc", "del", "dev", f"{self.tag}r{node_id}", "root", check=False)

    def stop(self):
        for n in self.nodes:
            n.stop()

    def close(self):
        for n in self.nodes:
            if n.alive():
                n.kill9_quietly()
        self._cleanup()

    def _cleanup(self):
        for i in range(1, 10):
            sh("ip", "netns", "del", f"{self.tag}n{i}", check=False)
            for net in ("c", "r"):
                sh("ip", "link", "del", f"{self.tag}{net}{i}", check=False)
        sh("ip", "link", "del", self.br_client, check=False)
        sh("ip", "link", "del", self.br_raft, check=False)

    def problems(self):
        return [f"node {n.node_id}: {p}" for n in self.nodes for p in n.problems]


def _kill9_quietly(self):
    """SIGKILL without waiting for the ports (used at teardown)."""
    if self.proc is not None and self.proc.poll() is None:
        self.proc.kill()
        self.proc.wait(timeout=10)
    self.proc = None


Node.kill9_quietly = _kill9_quietly


def wait_for_leaders(admin, topic, partitions, timeout_s=20.0):
    """Waits until every partition of `topic` has a leader in Metadata; returns {p: leader}."""
    deadline = time.monotonic() + timeout_s
    while True:
        md = admin.list_topics(topic=topic, timeout=5)
        t = md.topics.get(topic)
        if t is not None and t.error is None and len(t.partitions) == partitions \
                and all(p.leader > 0 and p.error is None for p in t.partitions.values()):
            return {p.id: p.leader for p in t.partitions.values()}
        if time.monotonic() > deadline:
            raise AssertionError(f"no leader for every partition of {topic} within {timeout_s} s: {t and t.partitions}")
        time.sleep(0.1)


def wait_replicas_identical(cluster, topic, partitions, timeout_s=30.0):
    """Bounded wait until every node holds byte-identical logs for each partition (the Raft log
    is the segment log; control batches are deterministic, so equal logs are equal bytes)."""
    deadline = time.monotonic() + timeout_s
    while True:
        diffs = []
        for p in range(partitions):
            logs = [n.log_bytes(topic, p) for n in cluster.nodes]
            if any(l != logs[0] for l in logs):
                diffs.append((p, [len(l) for l in logs]))
        if not diffs:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"replicas still differ after {timeout_s} s (partition, bytes per node): {diffs}")
        time.sleep(0.2)
