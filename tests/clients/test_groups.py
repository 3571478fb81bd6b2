"""Consumer groups with real clients (kafka-python and confluent-kafka): members split a topic's
partitions disjointly and completely, committed offsets survive a broker crash, auto-commit works.

Each group member runs in its own thread (a member blocked in JoinGroup must not starve the
others). Every wait is bounded.
"""

import threading
import time

import pytest

from sluicetest import LIBRDKAFKA_LOGGER, create_topic, wait_until

# The broker's group.initial.rebalance.delay.ms is Kafka's default (3 s), so forming a group
# takes a few seconds; rebalances after members join late take a few more.
GROUP_STABLE_TIMEOUT_S = 40.0


def produce(bootstrap, topic, partitions, per_partition, prefix="m"):
    """Sends per_partition messages to every partition; returns the set of values sent."""
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "logger": LIBRDKAFKA_LOGGER})
    sent = set()
    for part in range(partitions):
        for i in range(per_partition):
            v = f"{prefix}-{part}-{i}"
            p.produce(topic, value=v.encode(), partition=part)
            sent.add(v)
    assert p.flush(15) == 0, "messages left unsent"
    return sent


class Member(threading.Thread):
    """One group member polling in its own thread; records its assignment and what it read."""

    def __init__(self, client, bootstrap, group, topic, name, **conf):
        super().__init__(daemon=True, name=name)
        self.client, self.bootstrap, self.group, self.topic = client, bootstrap, group, topic
        self.conf = conf
        self.lock = threading.Lock()
        self.assigned = frozenset()
        self.values = []
        self.error = None
        self.stop_flag = threading.Event()
        self.commit_on_stop = False
        self.started = threading.Event()

    def _make(self):
        if self.client == "kafka-python":
            from kafka import KafkaConsumer
            conf = dict(bootstrap_servers=self.bootstrap, group_id=self.group, client_id=self.name,
                        auto_offset_reset="earliest", enable_auto_commit=False)
            conf.update(self.conf)
            c = KafkaConsumer(**conf)
            c.subscribe([self.topic])
            return c
        from confluent_kafka import Consumer
        conf = {"bootstrap.servers": self.bootstrap, "group.id": self.group, "client.id": self.name,
                "auto.offset.reset": "earliest", "enable.auto.commit": False,
                "logger": LIBRDKAFKA_LOGGER}
        if self.client == "confluent-kafka-consumer-protocol":
            conf["group.protocol"] = "consumer"  # KIP-848: server-side assignment
        conf.update(self.conf)
        c = Consumer(conf)
        c.subscribe([self.topic])
        return c

    def _poll(self, c):
        if self.client == "kafka-python":
            batch = c.poll(timeout_ms=200)
            vals = [r.value.decode() for recs in batch.values() for r in recs]
            assigned = frozenset(tp.partition for tp in c.assignment())
        else:
            msg = c.poll(0.2)
            vals = []
            if msg is not None:
                if msg.error() is not None:
                    raise AssertionError(f"consumer error: {msg.error()}")
                vals.append(msg.value().decode())
            assigned = frozenset(tp.partition for tp in c.assignment())
        with self.lock:
            self.values.extend(vals)
            self.assigned = assigned

    def run(self):
        c = None
        try:
            c = self._make()
            self.started.set()
            while not self.stop_flag.is_set():
                self._poll(c)
            if self.commit_on_stop:
                if self.client == "kafka-python":
                    c.commit()
                else:
                    c.commit(asynchronous=False)
        except Exception as e:  # reported by the test thread
            self.error = e
        finally:
            self.started.set()
            if c is not None:
                c.close()

    def snapshot(self):
        with self.lock:
            return self.assigned, list(self.values)

    def stop(self):
        self.stop_flag.set()
        self.join(timeout=30)
        assert not self.is_alive(), f"{self.name} did not stop"
        if self.error is not None:
            raise self.error


def wait_for_split(members, partitions, timeout_s=GROUP_STABLE_TIMEOUT_S):
    """Bounded wait until the members' assignments are pairwise disjoint, cover every partition,
    and are balanced (sizes differ by at most one); returns the assignments."""
    def split():
        for m in members:
            if m.error is not None:
                raise m.error
        sets = [m.snapshot()[0] for m in members]
        union = frozenset().union(*sets)
        if union != frozenset(range(partitions)) or sum(len(s) for s in sets) != partitions:
            return None
        if max(len(s) for s in sets) - min(len(s) for s in sets) > 1:
            return None
        return sets
    return wait_until(split, timeout_s, f"{len(members)} members to split {partitions} partitions")


CLIENTS = ["kafka-python", "confluent-kafka", "confluent-kafka-consumer-protocol"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("members,partitions", [(2, 3), (3, 12)])
def test_members_split_partitions_disjointly_and_completely(bootstrap, client, members, partitions):
    topic = f"split-{members}-{partitions}"
    create_topic(bootstrap, topic, partitions)
    sent = produce(bootstrap, topic, partitions, 5)
    group = f"g-split-{client}-{members}-{partitions}"
    ms = [Member(client, bootstrap, group, topic, f"{client}-{i}") for i in range(members)]
    for m in ms:
        m.start()
    try:
        sets = wait_for_split(ms, partitions)
        # Stable: the split holds, and together the members read every message.
        def all_read():
            got = set()
            for m in ms:
                got.update(m.snapshot()[1])
            return got >= sent
        wait_until(all_read, 30, "every message read by some member")
        assert [m.snapshot()[0] for m in ms] == sets, "assignment changed without a membership change"
    finally:
        for m in ms:
            m.stop()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("client", CLIENTS)
def test_member_leaving_hands_its_partitions_over(bootstrap, client):
    topic = "handover"
    create_topic(bootstrap, topic, 4)
    group = f"g-handover-{client}"
    a = Member(client, bootstrap, group, topic, f"{client}-a")
    b = Member(client, bootstrap, group, topic, f"{client}-b")
    a.start()
    b.start()
    try:
        wait_for_split([a, b], 4)
        b.stop()  # close() sends LeaveGroup
        wait_until(lambda: a.snapshot()[0] == frozenset(range(4)), GROUP_STABLE_TIMEOUT_S,
                   "the remaining member to own every partition")
    finally:
        a.stop()
        if b.is_alive():
            b.stop()


def committed(client, bootstrap, group, topic, partitions):
    """The group's committed offsets, read through the client's own API."""
    if client == "confluent-kafka-consumer-protocol":
        client = "confluent-kafka"
    if client == "kafka-python":
        from kafka import KafkaConsumer, TopicPartition
        c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        try:
            return {p: c.committed(TopicPartition(topic, p)) for p in range(partitions)}
        finally:
            c.close()
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "logger": LIBRDKAFKA_LOGGER})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=15)
        return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in tps}
    finally:
        c.close()


def committed_or_none(client, bootstrap, group, topic, partitions):
    """committed(), or None while the broker's group coordinator is not available yet."""
    try:
        return committed(client, bootstrap, group, topic, partitions)
    except Exception:  # noqa: BLE001 (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS, timeouts)
        return None


@pytest.mark.own_broker
@pytest.mark.timeout(120)
@pytest.mark.parametrize("client", CLIENTS)
def test_commits_survive_broker_crash(broker, client):
    bootstrap = broker.bootstrap
    topic = "durable-commits"
    partitions = 3
    create_topic(bootstrap, topic, partitions)
    first = produce(bootstrap, topic, partitions, 4, prefix="old")
    group = f"g-durable-{client}"
    m = Member(client, bootstrap, group, topic, f"{client}-1")
    m.commit_on_stop = True
    m.start()
    wait_until(lambda: set(m.snapshot()[1]) >= first, GROUP_STABLE_TIMEOUT_S, "the first messages")
    m.stop()  # commits synchronously, then leaves
    assert committed(client, bootstrap, group, topic, partitions) == {p: 4 for p in range(partitions)}

    broker.restart_after_crash()
    # A restarted Kafka answers before its group coordinator has loaded __consumer_offsets
    # (NOT_COORDINATOR meanwhile, which confluent-kafka's committed() does not retry): bounded wait.
    wait_until(lambda: committed_or_none(client, bootstrap, group, topic, partitions) == {p: 4 for p in range(partitions)},
               GROUP_STABLE_TIMEOUT_S, "the committed offsets after the restart")
    second = produce(bootstrap, topic, partitions, 2, prefix="new")
    m2 = Member(client, bootstrap, group, topic, f"{client}-2")
    m2.start()
    try:
        wait_until(lambda: set(m2.snapshot()[1]) >= second, GROUP_STABLE_TIMEOUT_S, "the new messages")
        # Each partition is read in offset order: a replay from before the committed offset
        # would have delivered old messages before the new ones.
        read = m2.snapshot()[1]
        assert not (set(read) & first), "messages before the committed offsets were read again"
    finally:
        m2.stop()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("client", CLIENTS)
def test_auto_commit(bootstrap, client):
    topic = "auto-commit"
    partitions = 2
    create_topic(bootstrap, topic, partitions)
    sent = produce(bootstrap, topic, partitions, 5)
    group = f"g-auto-{client}"
    if client == "kafka-python":
        conf = dict(enable_auto_commit=True, auto_commit_interval_ms=200)
    else:
        conf = {"enable.auto.commit": True, "auto.commit.interval.ms": 200}
    m = Member(client, bootstrap, group, topic, f"{client}-auto", **conf)
    m.start()
    try:
        wait_until(lambda: set(m.snapshot()[1]) >= sent, GROUP_STABLE_TIMEOUT_S, "every message")
        # Committed in the background, without any explicit commit call.
        wait_until(lambda: committed(client, bootstrap, group, topic, partitions) == {0: 5, 1: 5}, 20,
                   "auto-committed offsets at the end of each partition")
    finally:
        m.stop()


MEMBER_SCRIPT = r"""
import sys
from confluent_kafka import Consumer
bootstrap, group, topic, instance = sys.argv[1:5]
conf = {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
if instance != "-":
    conf["group.instance.id"] = instance
c = Consumer(conf)
c.subscribe([topic])
reported = None
while True:
    c.poll(0.2)
    now = sorted(tp.partition for tp in c.assignment())
    if now != reported:
        reported = now
        print("assigned", ",".join(map(str, now)), flush=True)
"""


class ProcessMember:
    """A confluent-kafka member in its own process, so it can be killed without leaving."""

    def __init__(self, bootstrap, group, topic, instance="-"):
        import subprocess
        import sys
        self.proc = subprocess.Popen([sys.executable, "-c", MEMBER_SCRIPT, bootstrap, group, topic, instance],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.lock = threading.Lock()
        self.assignments = []  # every assignment it reported, in order
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("assigned"):
                parts = line.split()[1:] or [""]
                with self.lock:
                    self.assignments.append(frozenset(int(p) for p in parts[0].split(",") if p))

    def assigned(self):
        with self.lock:
            return self.assignments[-1] if self.assignments else frozenset()

    def kill9(self):
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.mark.timeout(120)
def test_killed_member_loses_partitions_after_session_timeout(bootstrap):
    topic = "killed-member"
    create_topic(bootstrap, topic, 4)
    group = "g-killed"
    a = Member("confluent-kafka", bootstrap, group, topic, "survivor")
    a.start()
    b = ProcessMember(bootstrap, group, topic)
    try:
        # Disjoint too: right after b reports its share, a may not have polled its own (eager)
        # revocation yet and still show all four.
        wait_until(lambda: a.snapshot()[0] and b.assigned() and not (a.snapshot()[0] & b.assigned())
                   and a.snapshot()[0] | b.assigned() == frozenset(range(4)),
                   GROUP_STABLE_TIMEOUT_S, "two members sharing 4 partitions")
        killed_at = time.monotonic()
        b.kill9()  # no LeaveGroup: only the session timeout (6 s) can remove it
        wait_until(lambda: a.snapshot()[0] == frozenset(range(4)), 30, "the survivor to own every partition")
        assert time.monotonic() - killed_at >= 5.0, "partitions moved before the session timeout"
    finally:
        if b.proc.poll() is None:
            b.kill9()
        a.stop()


@pytest.mark.timeout(120)
def test_static_member_restart_keeps_its_partitions_without_rebalance(bootstrap):
    topic = "static-members"
    create_topic(bootstrap, topic, 4)
    group = "g-static"
    a = ProcessMember(bootstrap, group, topic, instance="static-a")
    b = ProcessMember(bootstrap, group, topic, instance="static-b")
    try:
        wait_until(lambda: a.assigned() and b.assigned() and a.assigned() | b.assigned() == frozenset(range(4)),
                   GROUP_STABLE_TIMEOUT_S, "two static members sharing 4 partitions")
        before_a, before_b = a.assigned(), b.assigned()
        a_reports = len(a.assignments)
        b.kill9()
        b2 = ProcessMember(bootstrap, group, topic, instance="static-b")
        wait_until(lambda: b2.assigned(), GROUP_STABLE_TIMEOUT_S, "the restarted static member's assignment")
        assert b2.assigned() == before_b, "the restarted member got different partitions"
        assert a.assigned() == before_a and len(a.assignments) == a_reports, "the other member saw a rebalance"
        b2.kill9()
    finally:
        for m in (a, b):
            if m.proc.poll() is None:
                m.kill9()


@pytest.mark.timeout(120)
def test_admin_group_apis(bootstrap):
    """confluent-kafka's AdminClient: list, describe, offsets (list/alter = reset), delete."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    topic = "admin-groups"
    admin = create_topic(bootstrap, topic, 2)
    produce(bootstrap, topic, 2, 3)
    group = "g-admin"
    m = Member("confluent-kafka", bootstrap, group, topic, "admin-member")
    m.commit_on_stop = True
    m.start()
    try:
        wait_until(lambda: len(m.snapshot()[1]) >= 6, GROUP_STABLE_TIMEOUT_S, "every message")
        listed = admin.list_consumer_groups(request_timeout=15).result()
        assert group in [g.group_id for g in listed.valid]
        desc = admin.describe_consumer_groups([group], request_timeout=15)[group].result()
        assert str(desc.state).endswith("STABLE")
        assert len(desc.members) == 1
        assert sorted(tp.partition for tp in desc.members[0].assignment.topic_partitions) == [0, 1]
        # A non-empty group cannot be deleted.
        with pytest.raises(Exception):
            admin.delete_consumer_groups([group], request_timeout=15)[group].result()
    finally:
        m.stop()
    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result()
    assert sorted((tp.partition, tp.offset) for tp in offsets.topic_partitions) == [(0, 3), (1, 3)]
    # Rewind (what reset-offsets does), then read it back.
    admin.alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 1), TopicPartition(topic, 1, 0)])])[group].result()
    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result()
    assert sorted((tp.partition, tp.offset) for tp in offsets.topic_partitions) == [(0, 1), (1, 0)]
    admin.delete_consumer_groups([group], request_timeout=15)[group].result()
    offsets = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])])[group].result()
    assert [tp.offset for tp in offsets.topic_partitions] == [-1001]  # OFFSET_INVALID: nothing committed


@pytest.mark.timeout(120)
def test_kcat_balanced_consumer_commits(bootstrap):
    """Debian's kcat (librdkafka 2.0.2) as a balanced-group consumer: it joins, reads every
    partition to its end (-e), and its auto-commits land."""
    import shutil
    import subprocess
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if kcat is None:
        pytest.fail("kcat is not installed (scripts/test.sh installs Debian's kcat)")
    topic = "kcat-group"
    create_topic(bootstrap, topic, 3)
    sent = produce(bootstrap, topic, 3, 4)
    group = "g-kcat"
    cmd = [kcat, "-b", bootstrap, "-G", group, "-o", "beginning", "-e", "-q", "-f", "%s\\n",
           "-X", "auto.commit.interval.ms=100", topic]
    done = subprocess.run(cmd, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert set(done.stdout.decode().split()) == sent
    wait_until(lambda: committed("confluent-kafka", bootstrap, group, topic, 3) == {0: 4, 1: 4, 2: 4}, 20,
               "kcat's committed offsets")


@pytest.mark.sluice_only(reason="resets the offsets with Sluice's own CLI (`sluice group reset-offsets`)")
@pytest.mark.timeout(120)
@pytest.mark.parametrize("client", ["kafka-python", "confluent-kafka"])
def test_reset_offsets_replays_exactly_the_expected_messages(bootstrap, client):
    """`sluice group reset-offsets --shift-by -2 --execute` after the group read everything: the
    next member reads exactly the last two messages of each partition again."""
    import subprocess
    from sluicetest import sluice_binary
    topic = f"replay-{client}"
    create_topic(bootstrap, topic, 2)
    sent = produce(bootstrap, topic, 2, 5)
    group = f"g-replay-{client}"
    m = Member(client, bootstrap, group, topic, f"{client}-first")
    m.commit_on_stop = True
    m.start()
    wait_until(lambda: set(m.snapshot()[1]) >= sent, GROUP_STABLE_TIMEOUT_S, "every message")
    m.stop()
    cmd = [str(sluice_binary()), "group", "--bootstrap", bootstrap, "reset-offsets", group, "--topic", topic]
    dry = subprocess.run(cmd + ["--shift-by", "-2"], capture_output=True, text=True, timeout=30)
    assert dry.returncode == 0, dry.stderr
    assert "Dry run" in dry.stdout
    assert committed(client, bootstrap, group, topic, 2) == {0: 5, 1: 5}
    done = subprocess.run(cmd + ["--shift-by", "-2", "--execute"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert committed(client, bootstrap, group, topic, 2) == {0: 3, 1: 3}
    expected = {f"m-{p}-{i}" for p in range(2) for i in (3, 4)}
    again = Member(client, bootstrap, group, topic, f"{client}-again")
    again.start()
    try:
        wait_until(lambda: set(again.snapshot()[1]) >= expected, GROUP_STABLE_TIMEOUT_S, "the replayed messages")
        assert sorted(again.snapshot()[1]) == sorted(expected), "replayed more or fewer than expected"
    finally:
        again.stop()
