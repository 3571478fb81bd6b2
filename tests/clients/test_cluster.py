"""A three-node Sluice cluster (Raft replication) with real clients, in network namespaces.

What each test proves:
- the Kafka tutorial (kafka-python) works unchanged against the cluster: Metadata lists three
  brokers, every partition has three replicas and a leader, a group consumes everything, and
  kcat (librdkafka 2.0.2) lists the cluster from any node;
- kill -9 of a partition leader under acks=all idempotent load: a new leader is elected, the
  producer carries on, every acknowledged message is present exactly once in per-partition
  order, `sluice cluster status` shows the partitions under-replicated while the node is down,
  and once the killed node is back every replica's log is byte-identical;
- a leader cut off from the other nodes (its replication link down, clients still reach it)
  acknowledges nothing, the majority elects a new leader that does, and after healing the old
  leader's unacknowledged writes are gone and the replicas agree;
- kafka-python (idempotent) produces across a kill -9 of the leader and reads everything once;
- retention deletes a replicated partition's committed prefix, and a follower that lacks entries
  the leader deleted catches up from a snapshot (its copy restarts at the leader's log start);
- random faults (kill -9 and restart, partitions, and tc netem delay where the kernel has
  netem) for a bounded time under load, then
  a Jepsen-style check of the history: no acknowledged write lost, duplicated or reordered,
  and every value at its acknowledged offset;
- a broker that is not a voter joins a running cluster and takes a partition by reassignment
  under load;
- consumer-group offsets fail over: a group commits offsets (replicated through the metadata
  log), the controller (the group coordinator) is killed with kill -9, and a new consumer of
  the group on the new coordinator starts exactly at the committed offsets: only the messages
  read but not committed come again, none is lost, and the admin API reads the offsets there;
  once the killed node is back, every node but the controller answers NOT_COORDINATOR.
"""

import json
import random
import subprocess
import threading
import time

import pytest

from sluicecluster import Cluster, netem_available, netns_available, wait_for_leaders, wait_replicas_identical
from sluicetest import LIBRDKAFKA_LOGGER, admin_client, sluice_binary, wait_until

pytestmark = [
    pytest.mark.sluice_only(reason="a cluster of sluice nodes, driven by `sluice cluster`/`sluice partition`"),
    pytest.mark.skipif(not netns_available(), reason="needs root to create network namespaces"),
    # Three or four brokers, elections and a 30 s fault schedule: more than the suite's 60 s.
    pytest.mark.timeout(240),
]

ELECTION_MS = 1000


@pytest.fixture
def cluster(request, tmp_path):
    c = Cluster(tmp_path, size=3, extra_args=["--set", f"raft.election.timeout.ms={ELECTION_MS}"])
    request.node.sluice_brokers = c.nodes
    try:
        c.start()
        yield c
        c.stop()
    finally:
        c.close()
    if c.problems():
        pytest.fail("cluster misbehaved: " + "; ".join(c.problems()), pytrace=False)


def create(bootstrap, name, partitions, rf=3):
    from confluent_kafka.admin import NewTopic
    admin = admin_client(bootstrap)
    fs = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=rf)], operation_timeout=20, request_timeout=20)
    fs[name].result(timeout=30)
    wait_for_leaders(admin, name, partitions)
    return admin


def producer(bootstrap, **extra):
    from confluent_kafka import Producer
    conf = {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
            "linger.ms": 2, "message.timeout.ms": 60000, "logger": LIBRDKAFKA_LOGGER}
    conf.update(extra)
    return Producer(conf)


def read_partition(bootstrap, topic, partition, timeout_s=30.0, start=0):
    """Every record of one partition from `start` (-2: the log start) to its end: [(offset, value)]."""
    from confluent_kafka import Consumer, TopicPartition, KafkaError
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False,
                  "enable.partition.eof": True, "logger": LIBRDKAFKA_LOGGER})
    c.assign([TopicPartition(topic, partition, start)])
    out = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    return out
                continue
            out.append((m.offset(), m.value()))
    finally:
        c.close()
    raise AssertionError(f"{topic}-{partition} not read to its end within {timeout_s} s ({len(out)} records)")


def check_history(bootstrap, topic, partitions, acked):
    """Jepsen-style check. `acked`: [(partition, offset, value)] acknowledged to the producer.
    Values are JSON {"seq": n} from one idempotent producer, so within a partition the
    acknowledged values must appear in seq order."""
    logs = {p: read_partition(bootstrap, topic, p) for p in range(partitions)}
    at = {(p, o): v for p in logs for (o, v) in logs[p]}
    seen = {}
    for p, records in logs.items():
        for o, v in records:
            seen.setdefault(v, []).append((p, o))
    lost = [a for a in acked if a[2] not in seen]
    dups = [v for v, where in seen.items() if len(where) > 1]
    moved = [a for a in acked if at.get((a[0], a[1])) != a[2]]
    assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {lost[:5]}"
    assert not dups, f"{len(dups)} values stored twice, e.g. {dups[:5]}"
    assert not moved, f"{len(moved)} acknowledged writes not at their acknowledged offset, e.g. {moved[:5]}"
    for p, records in logs.items():
        seqs = [json.loads(v)["seq"] for _, v in records]
        assert seqs == sorted(seqs), f"partition {p}: values out of producer order"
    return logs


class Load:
    """A background idempotent acks=all producer of {"seq": n} values; records what was acked."""

    def __init__(self, bootstrap, topic, rate_per_s=400):
        self.p = producer(bootstrap)
        self.topic = topic
        self.acked = []
        self.errors = []
        self.rate = rate_per_s
        self.stop_flag = threading.Event()
        self.sent = 0
        self.t = threading.Thread(target=self.run, daemon=True)

    def cb(self, err, msg):
        if err is None:
            self.acked.append((msg.partition(), msg.offset(), msg.value()))
        else:
            self.errors.append(str(err))

    def run(self):
        while not self.stop_flag.is_set():
            v = json.dumps({"seq": self.sent}).encode()
            try:
                self.p.produce(self.topic, v, key=str(self.sent).encode(), on_delivery=self.cb)
                self.sent += 1
            except BufferError:
                pass
            self.p.poll(0)
            time.sleep(1.0 / self.rate)

    def start(self):
        self.t.start()
        return self

    def finish(self, timeout_s=60):
        self.stop_flag.set()
        self.t.join(timeout=10)
        left = self.p.flush(timeout_s)
        assert left == 0, f"{left} messages neither acknowledged nor failed after {timeout_s} s"


def test_kafka_python_tutorial_against_cluster(cluster):
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import NewTopic
    bootstrap = [n.bootstrap for n in cluster.nodes]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic("orders", num_partitions=3, replication_factor=3)])
    wait_for_leaders(admin_client(cluster.bootstrap), "orders", 3)
    md = admin_client(cluster.bootstrap).list_topics(timeout=10)
    assert sorted(md.brokers) == [1, 2, 3]
    for p in md.topics["orders"].partitions.values():
        assert sorted(p.replicas) == [1, 2, 3], p
    # Leadership moves to each partition's preferred replica: one leader per broker.
    def spread():
        m = admin_client(cluster.bootstrap).list_topics(topic="orders", timeout=10)
        return len({p.leader for p in m.topics["orders"].partitions.values()}) == 3
    wait_until(spread, 20, "leadership spread over the three brokers")
    prod = KafkaProducer(bootstrap_servers=bootstrap, value_serializer=lambda v: json.dumps(v).encode("utf-8"), acks="all")
    for i in range(300):
        prod.send("orders", {"order_id": i, "item": "book"})
    prod.flush()
    cons = KafkaConsumer("orders", bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id="tutorial",
                         value_deserializer=lambda b: json.loads(b.decode("utf-8")), consumer_timeout_ms=15000)
    got = sorted(m.value["order_id"] for m in cons)
    cons.close()
    prod.close()
    admin.close()
    assert got == list(range(300))
    # Debian's kcat (librdkafka 2.0.2) sees the same cluster from any node.
    out = subprocess.run(["kcat", "-L", "-b", cluster.node(2).bootstrap], capture_output=True, text=True, timeout=30).stdout
    assert "3 brokers" in out and "(controller)" in out and 'topic "orders" with 3 partitions' in out, out


def test_leader_kill9_under_acks_all_load(cluster):
    topic = "failover"
    admin = create(cluster.bootstrap, topic, 3)
    leaders = wait_for_leaders(admin, topic, 3)
    load = Load(cluster.bootstrap, topic).start()
    time.sleep(3)
    victim = cluster.node(leaders[0])
    killed_at = time.monotonic()
    victim.kill9()
    # A new leader for partition 0 within a few election timeouts.
    new = None
    while time.monotonic() - killed_at < 15:
        md = admin.list_topics(topic=topic, timeout=5)
        p0 = md.topics[topic].partitions[0]
        if p0.leader > 0 and p0.leader != victim.node_id:
            new = p0.leader
            break
        time.sleep(0.1)
    took = time.monotonic() - killed_at
    assert new is not None, "no new leader for partition 0 within 15 s"
    print(f"new leader {new} for partition 0 {took:.2f} s after kill -9 of node {victim.node_id}")
    acked_before = len(load.acked)
    # The dead node drops out of the in-sync replicas: `sluice cluster status` (Metadata) shows
    # the partitions under-replicated, while every partition still has a leader.
    def status():
        r = subprocess.run([str(sluice_binary()), "cluster", "status", "--bootstrap", cluster.node(new).bootstrap],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return r.stdout
    wait_until(lambda: "under-replicated: 3" in status(), 15, "three under-replicated partitions in cluster status")
    out = status()
    assert "without leader: 0" in out, out
    assert len(load.acked) > acked_before, "the producer made no progress on the surviving nodes"
    victim.start()
    time.sleep(2)
    load.finish()
    assert not load.errors, f"producer errors: {load.errors[:5]}"
    check_history(cluster.bootstrap, topic, 3, load.acked)
    wait_replicas_identical(cluster, topic, 3)


def test_partitioned_leader_acknowledges_nothing(cluster):
    topic = "split"
    admin = create(cluster.bootstrap, topic, 1)
    old = cluster.node(wait_for_leaders(admin, topic, 1)[0])
    warm = producer(cluster.bootstrap)
    for i in range(100):
        warm.produce(topic, json.dumps({"seq": i}).encode())
    assert warm.flush(30) == 0
    cluster.partition(old.node_id)
    try:
        # A client that only knows the old leader: nothing it sends may be acknowledged.
        isolated = producer(old.bootstrap, **{"message.timeout.ms": 6000, "enable.idempotence": False, "retries": 0})
        minority_acked, minority_failed = [], []
        for i in range(50):
            isolated.produce(topic, json.dumps({"seq": 1000 + i, "minority": True}).encode(),
                             on_delivery=lambda err, msg: (minority_failed if err else minority_acked).append(msg.value()))
        isolated.flush(20)
        assert minority_acked == [], f"the isolated old leader acknowledged {len(minority_acked)} writes"
        assert len(minority_failed) == 50
        # The majority elects a new leader that takes writes.
        others = ",".join(n.bootstrap for n in cluster.nodes if n is not old)
        majority = producer(others)
        acked = []
        for i in range(100):
            majority.produce(topic, json.dumps({"seq": 2000 + i}).encode(), on_delivery=lambda err, msg: err is None and acked.append(msg.value()))
        assert majority.flush(40) == 0
        assert len(acked) == 100
    finally:
        cluster.heal(old.node_id)
    wait_replicas_identical(cluster, topic, 1)
    records = read_partition(cluster.bootstrap, topic, 0)
    values = [json.loads(v) for _, v in records]
    assert not any(v.get("minority") for v in values), "an unacknowledged write of the isolated leader survived"
    assert [v["seq"] for v in values] == list(range(100)) + list(range(2000, 2100))


def test_random_faults_history_is_linear(cluster):
    topic = "jepsen"
    partitions = 3
    admin = create(cluster.bootstrap, topic, partitions)
    load = Load(cluster.bootstrap, topic, rate_per_s=300).start()
    seed = int(time.time())
    rng = random.Random(seed)
    kinds = ["kill9", "partition"] + (["delay"] if netem_available() else [])
    faults = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        victim = rng.choice(cluster.nodes)
        kind = rng.choice(kinds)
        faults.append((kind, victim.node_id))
        if kind == "kill9":
            victim.kill9()
            time.sleep(rng.uniform(1, 3))
            victim.start()
        elif kind == "partition":
            cluster.partition(victim.node_id)
            time.sleep(rng.uniform(2, 4))
            cluster.heal(victim.node_id)
        else:
            cluster.delay(victim.node_id, rng.choice([20, 50, 100]))
            time.sleep(rng.uniform(1, 3))
            cluster.undelay(victim.node_id)
        time.sleep(rng.uniform(0.5, 2))
    wait_for_leaders(admin, topic, partitions, timeout_s=30)
    load.finish(timeout_s=90)
    print(f"seed {seed}, faults: {faults}; sent {load.sent}, acked {len(load.acked)}, failed {len(load.errors)}")
    assert len(load.acked) > 0
    check_history(cluster.bootstrap, topic, partitions, load.acked)
    wait_replicas_identical(cluster, topic, partitions)


def test_broker_joins_and_takes_partitions_by_reassignment_under_load(tmp_path, request):
    """A three-node cluster runs; node 4, not one of the voters, starts later and joins (it
    names its own replication listener; the metadata leader adds it as a learner of the
    metadata log), registers, and takes replicas: a partition is moved onto it (and off node 1)
    with `sluice partition reassign` while a producer writes with acks=all; CreatePartitions
    places new partitions on the least-loaded broker (the new one). Replicas spread over racks
    (broker.rack)."""
    c = Cluster(tmp_path, size=4, voters=3, extra_args=["--set", f"raft.election.timeout.ms={ELECTION_MS}"])
    request.node.sluice_brokers = c.nodes
    for n in c.nodes:  # racks a, a, b, b
        n.extra_args += ["--set", f"broker.rack={'a' if n.node_id <= 2 else 'b'}"]
    try:
        c.start(count=3)
        bootstrap = ",".join(n.bootstrap for n in c.nodes[:3])
        # Rack awareness: with replication factor 2, every partition has a replica on each rack.
        racked = create(bootstrap, "racked", 4, rf=2).list_topics(topic="racked", timeout=10).topics["racked"]
        for p in racked.partitions.values():
            assert sorted(r <= 2 for r in p.replicas) == [False, True], f"partition {p.id}: {p.replicas}"
        topic = "moving"
        admin = create(bootstrap, topic, 2)
        md = admin.list_topics(topic=topic, timeout=10)
        assert all(4 not in p.replicas for p in md.topics[topic].partitions.values()), "node 4 is not registered yet"
        load = Load(bootstrap, topic, rate_per_s=300).start()
        time.sleep(2)
        c.node(4).start()
        current = sorted(md.topics[topic].partitions[0].replicas)
        target = [b for b in current if b != 1][:2] + [4] if 1 in current else current[:2] + [4]
        r = subprocess.run([str(sluice_binary()), "partition", "reassign", topic, "--partition", "0",
                            "--replicas", ",".join(map(str, target)), "--timeout-s", "60", "--bootstrap", c.node(2).bootstrap],
                           capture_output=True, text=True, timeout=90)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "complete" in r.stdout
        md = admin.list_topics(topic=topic, timeout=10)
        assert sorted(md.topics[topic].partitions[0].replicas) == sorted(target)
        # New partitions go to the least-loaded broker: node 4 holds only one replica so far.
        fs = admin.create_partitions([__import__("confluent_kafka").admin.NewPartitions(topic, 3)])
        fs[topic].result(timeout=30)
        leaders = wait_for_leaders(admin, topic, 3)
        md = admin.list_topics(topic=topic, timeout=10)
        assert 4 in md.topics[topic].partitions[2].replicas, md.topics[topic].partitions[2].replicas
        time.sleep(2)
        load.finish()
        assert not load.errors, load.errors[:5]
        check_history(c.bootstrap, topic, 3, load.acked)
        # The new replica holds the same log; the removed one deleted its copy.
        holders = [n for n in c.nodes if n.node_id in target]
        wait_until(lambda: len({n.log_bytes(topic, 0) for n in holders}) == 1 and holders[0].log_bytes(topic, 0), 30,
                   "identical copies of the moved partition on its new replicas")
        removed = [n for n in c.nodes if n.node_id in current and n.node_id not in target]
        for n in removed:
            wait_until(lambda: not n.partition_dir(topic, 0).exists(), 15, f"node {n.node_id} to delete its copy")
        print(f"moved {topic}-0 from {current} to {target}; leaders now {leaders}")
        c.stop()
    finally:
        c.close()
    if c.problems():
        pytest.fail("cluster misbehaved: " + "; ".join(c.problems()), pytrace=False)


def test_kafka_python_through_a_leader_change(cluster):
    """kafka-python (idempotent, acks=all) keeps producing across a kill -9 of the partition
    leader: every future resolves, and the consumer reads every message exactly once in order."""
    from kafka import KafkaConsumer, KafkaProducer
    topic = "kp-failover"
    admin = create(cluster.bootstrap, topic, 1)
    leader = wait_for_leaders(admin, topic, 1)[0]
    bootstrap = [n.bootstrap for n in cluster.nodes]
    prod = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, retries=20,
                         request_timeout_ms=10000, retry_backoff_ms=200)
    offsets = []
    for i in range(200):
        offsets.append(prod.send(topic, str(i).encode()).get(timeout=30).offset)
    cluster.node(leader).kill9()
    for i in range(200, 400):
        offsets.append(prod.send(topic, str(i).encode()).get(timeout=60).offset)
    prod.close()
    assert offsets == sorted(offsets) and len(set(offsets)) == 400
    cons = KafkaConsumer(topic, bootstrap_servers=[n.bootstrap for n in cluster.nodes if n.node_id != leader],
                         auto_offset_reset="earliest", consumer_timeout_ms=8000)
    got = [int(m.value) for m in cons]
    cons.close()
    assert got == list(range(400))
    cluster.node(leader).start()


def test_retention_on_a_replicated_partition_and_snapshot_catch_up(cluster):
    """retention.bytes deletes a replicated partition's prefix once it is committed and applied;
    a follower that was down meanwhile and lacks entries the leader no longer has gets a Raft
    snapshot: its copy restarts at the leader's log start and then holds the same batches."""
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import NewTopic
    topic = "retained"
    admin = admin_client(cluster.bootstrap)
    fs = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3,
                                       config={"segment.bytes": "65536", "retention.bytes": "200000"})])
    fs[topic].result(timeout=30)
    leader = wait_for_leaders(admin, topic, 1)[0]
    lagging = next(n for n in cluster.nodes if n.node_id != leader)
    lagging.kill9()
    p = producer(cluster.bootstrap)
    pad = b" " * 900
    for i in range(2000):
        p.produce(topic, json.dumps({"seq": i}).encode() + pad)
        if i % 200 == 0:
            p.flush(30)
    assert p.flush(60) == 0

    def log_start():
        c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "unused", "logger": LIBRDKAFKA_LOGGER})
        try:
            return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[0]
        finally:
            c.close()
    wait_until(lambda: log_start() > 0, 30, "retention to delete the replicated log's prefix")
    lagging.start()

    def copy_matches():
        lead = wait_for_leaders(admin, topic, 1)[0]
        a, b = lagging.log_bytes(topic, 0), cluster.node(lead).log_bytes(topic, 0)
        return len(a) > 100_000 and len(b) > 100_000 and (a.endswith(b) or b.endswith(a))
    wait_until(copy_matches, 30, "the restarted follower to hold the leader's batches")
    first_segment = min(int(f.stem) for f in lagging.partition_dir(topic, 0).glob("*.log"))
    assert first_segment > 0, "the follower caught up from a snapshot, not from offset 0"
    start = log_start()
    records = []
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "unused", "enable.partition.eof": True,
                  "logger": LIBRDKAFKA_LOGGER})
    c.assign([TopicPartition(topic, 0, start)])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == -191:  # partition EOF
                break
            continue
        records.append(json.loads(m.value())["seq"])
    c.close()
    assert records and records[-1] == 1999 and records == list(range(records[0], 2000)), records[:3]


def consume(c, n, timeout_s=60.0):
    """Up to `n` messages from consumer `c` (fewer if none come for a while): [Message]."""
    out = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        out.append(m)
    return out


def offset_fetch(node, group):
    """OffsetFetch v2 (every committed offset of `group`) sent to one node over a raw socket:
    (error code, {(topic, partition): offset})."""
    import struct
    import kafkawire as kw
    body = kw.request_header(9, 2, correlation_id=7) + kw._string(group) + struct.pack(">i", -1)
    with kw.Connection(node.host, node.port) as conn:
        conn.send(kw.frame(body))
        b = conn.read_response(7)
    pos, out = 0, {}

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, b, pos)
        pos += struct.calcsize(fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take(">h")
        s = b[pos:pos + max(n, 0)].decode()
        pos += max(n, 0)
        return s

    for _ in range(take(">i")):
        topic = string()
        for _ in range(take(">i")):
            partition, offset = take(">i"), take(">q")
            string()
            take(">h")
            out[(topic, partition)] = offset
    return take(">h"), out


def test_group_offsets_survive_controller_kill9(cluster):
    from confluent_kafka import Consumer, ConsumerGroupTopicPartitions
    topic, group, partitions, total = "grpfail", "grpfail-group", 3, 300
    admin = create(cluster.bootstrap, topic, partitions)
    p = producer(cluster.bootstrap)
    for i in range(total):
        p.produce(topic, json.dumps({"seq": i}).encode(), key=str(i).encode())
    assert p.flush(30) == 0
    conf = {"bootstrap.servers": cluster.bootstrap, "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "logger": LIBRDKAFKA_LOGGER}
    a = Consumer(conf)
    a.subscribe([topic])
    # The first consumer commits every message it processes, synchronously (one OffsetCommit
    # each, replicated through the metadata log before it is answered), then reads a few more
    # that it does not commit.
    first = consume(a, 150)
    assert len(first) == 150, f"the first consumer got {len(first)} of 150 messages"
    committed = {}
    t0 = time.monotonic()
    for m in first[:120]:
        a.commit(message=m, asynchronous=False)
        committed[m.partition()] = m.offset() + 1
    took = time.monotonic() - t0
    print(f"120 synchronous commits in {took:.2f} s: {120 / took:.0f} commits/s")
    seen_a = {(m.partition(), m.offset()) for m in first}
    a.close()
    # The data records' offsets (a new partition leader writes a control batch first, so
    # offsets are not contiguous).
    data = {pp: [o for o, _ in read_partition(cluster.bootstrap, topic, pp)] for pp in range(partitions)}
    assert sum(len(v) for v in data.values()) == total
    controller = admin.list_topics(timeout=10).controller_id
    assert controller > 0
    victim = cluster.node(controller)
    victim.kill9()
    # A new consumer of the group: it starts exactly at the committed offsets, on whichever
    # node coordinates the group now.
    b = Consumer(conf)
    b.subscribe([topic])
    expected = sum(len([o for o in data[pp] if o >= committed.get(pp, 0)]) for pp in range(partitions))
    rest = consume(b, expected, timeout_s=60)
    rest += consume(b, 1, timeout_s=3)  # and nothing more
    new_controller = admin.list_topics(timeout=10).controller_id
    assert new_controller not in (-1, controller), f"controller {new_controller} after killing node {controller}"
    got = {}
    for m in rest:
        got.setdefault(m.partition(), []).append(m.offset())
    for pp in range(partitions):
        start = committed.get(pp, 0)
        want = [o for o in data[pp] if o >= start]
        assert got.get(pp, []) == want, \
            f"partition {pp}: committed {start}; the new consumer read {got.get(pp, [])[:5]}..., not {want[:5]}..."
    redelivered = seen_a & {(m.partition(), m.offset()) for m in rest}
    assert len(redelivered) == 30, f"only the 30 uncommitted messages come again, not {len(redelivered)}"
    # The new coordinator serves the committed offsets to the admin API too.
    b.commit(asynchronous=False)
    cgo = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
    offs = {tp.partition: tp.offset for tp in cgo[group].result(timeout=30).topic_partitions}
    # Past the last record (a control batch after it may be skipped too).
    assert sorted(offs) == list(range(partitions)) and all(offs[pp] > data[pp][-1] for pp in offs), \
        f"committed offsets {offs}, last records {[data[pp][-1] for pp in range(partitions)]}"
    b.close()
    # The killed node comes back (replaying the metadata log, offsets included); only the
    # controller coordinates: the other nodes answer NOT_COORDINATOR (16), so clients look
    # the coordinator up again.
    victim.start()
    controller = admin.list_topics(timeout=10).controller_id
    for n in cluster.nodes:
        code, got_offsets = offset_fetch(n, group)
        if n.node_id == controller:
            assert code == 0 and got_offsets == {(topic, pp): o for pp, o in offs.items()}, (code, got_offsets)
        else:
            assert code == 16, f"node {n.node_id} (not the controller, {controller}) answered {code}"


def test_delete_records_is_replicated(cluster):
    """DeleteRecords (confluent-kafka's AdminClient) on a replicated partition is a Raft entry
    every replica applies: the new log start holds on the leader and, after it is killed, on
    the new leader too."""
    from confluent_kafka import Consumer, TopicPartition
    topic = "trimmed"
    admin = create(cluster.bootstrap, topic, 1)
    p = producer(cluster.bootstrap)
    for i in range(100):
        p.produce(topic, json.dumps({"seq": i}).encode())
    assert p.flush(30) == 0
    fs = admin.delete_records([TopicPartition(topic, 0, 60)], request_timeout=30)
    result = list(fs.values())[0].result(timeout=30)
    assert result.low_watermark == 60, result

    def low_watermark():
        c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "unused", "logger": LIBRDKAFKA_LOGGER})
        try:
            return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)[0]
        finally:
            c.close()
    assert low_watermark() == 60
    leader = wait_for_leaders(admin, topic, 1)[0]
    cluster.node(leader).kill9()
    wait_until(lambda: wait_for_leaders(admin, topic, 1)[0] != leader, 15, "a new leader")
    assert low_watermark() == 60, "the new leader applied the replicated DeleteRecords too"
    records = read_partition(cluster.bootstrap, topic, 0, start=-2)
    # Offset 0 is the first leader's no-op (a control batch), so seq i sits at offset i + 1.
    assert records[0][0] == 60 and [o for o, _ in records] == list(range(60, 101))
    assert [json.loads(v)["seq"] for _, v in records] == list(range(59, 100))
    cluster.node(leader).start()
    wait_replicas_identical(cluster, topic, 1)
