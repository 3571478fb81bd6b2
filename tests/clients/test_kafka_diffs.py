"""Differences from Apache Kafka seen when Sluice was tried as a new user would (issue 14, §3).

Each test states Kafka's behaviour and passes against Kafka too (`pytest --broker kafka`), except
the one about Sluice's own CLI, which is marked sluice_only.
"""

import struct
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

import kafkawire
from sluicetest import create_topic, sluice_binary, wait_until


def _name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _broker_id(admin):
    md = admin.list_topics(timeout=10)
    assert len(md.brokers) == 1, md.brokers
    return next(iter(md.brokers))


def _committed(c, topic):
    """The committed offset of partition 0, retrying while the coordinator is not ready."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
        except KafkaException as e:
            retriable = e.args[0].name() in ("NOT_COORDINATOR", "COORDINATOR_LOAD_IN_PROGRESS",
                                             "COORDINATOR_NOT_AVAILABLE", "_TIMED_OUT")
            if not retriable or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_async_commits_of_one_connection_apply_in_order(bootstrap):
    """librdkafka commit(asynchronous=True) after each of 50 messages, then committed(): Kafka
    applies a connection's requests in arrival order, so the last commit (50) wins."""
    topic, group = _name("commits"), _name("g")
    create_topic(bootstrap, topic, 1)
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i in range(50):
        p.produce(topic, value=str(i).encode())
    assert p.flush(15) == 0
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        _committed(c, topic)  # the group coordinator is up (Kafka creates __consumer_offsets first)
        seen = 0
        deadline = time.monotonic() + 30
        while seen < 50 and time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is None or m.error():
                continue
            seen += 1
            c.commit(message=m, asynchronous=True)
        assert seen == 50
        # committed() is one more request on the coordinator connection: it must see every
        # commit sent before it.
        assert _committed(c, topic) == 50
    finally:
        c.close()


def test_manual_replica_assignment_naming_the_broker(bootstrap):
    """CreateTopics and CreatePartitions with a replica assignment that names live brokers are
    accepted (kafka-topics --replica-assignment); an unknown broker is INVALID_REPLICA_ASSIGNMENT."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    me = _broker_id(admin)
    topic = _name("assigned")
    fs = admin.create_topics([NewTopic(topic, num_partitions=2, replica_assignment=[[me], [me]])], operation_timeout=15)
    fs[topic].result(timeout=20)
    wait_until(lambda: len(admin.list_topics(topic, timeout=5).topics[topic].partitions) == 2, 15,
               "two partitions")
    fs = admin.create_partitions([NewPartitions(topic, 3, replica_assignment=[[me]])])
    fs[topic].result(timeout=20)
    wait_until(lambda: len(admin.list_topics(topic, timeout=5).topics[topic].partitions) == 3, 15,
               "three partitions")
    p = Producer({"bootstrap.servers": bootstrap})
    for part in range(3):
        p.produce(topic, value=b"x", partition=part)
    assert p.flush(15) == 0

    bad = _name("unknown-broker")
    fs = admin.create_topics([NewTopic(bad, num_partitions=1, replica_assignment=[[me + 17]])], operation_timeout=15)
    with pytest.raises(KafkaException) as e:
        fs[bad].result(timeout=20)
    assert e.value.args[0].name() == "INVALID_REPLICA_ASSIGNMENT", e.value


def _fetch_v4(host, port, topic, partition=0, offset=0):
    """A raw Fetch v4; returns the partition's record bytes (whole batches)."""
    body = struct.pack(">iiiib", -1, 500, 1, 1 << 20, 0)
    body += struct.pack(">i", 1) + kafkawire._string(topic)
    body += struct.pack(">i", 1) + struct.pack(">iqi", partition, offset, 1 << 20)
    with kafkawire.Connection(host, port) as conn:
        conn.send(kafkawire.frame(kafkawire.request_header(1, 4, 7) + body))
        resp = conn.read_response(7)
    pos = 4  # throttle_time_ms
    (n_topics,) = struct.unpack_from(">i", resp, pos)
    pos += 4
    assert n_topics == 1
    (name_len,) = struct.unpack_from(">h", resp, pos)
    pos += 2 + name_len
    pos += 4  # partitions count (1)
    _part, error, _hw, _lso = struct.unpack_from(">ihqq", resp, pos)
    pos += 4 + 2 + 8 + 8
    assert error == 0, error
    (n_aborted,) = struct.unpack_from(">i", resp, pos)
    pos += 4 + max(n_aborted, 0) * 16
    (size,) = struct.unpack_from(">i", resp, pos)
    pos += 4
    return resp[pos:pos + size]


def _batch_codecs(records):
    codecs, pos = [], 0
    while pos + 61 <= len(records):
        (length,) = struct.unpack_from(">i", records, pos + 8)
        (attributes,) = struct.unpack_from(">h", records, pos + 21)
        codecs.append(attributes & 0x7)
        pos += 12 + length
    return codecs


@pytest.mark.parametrize("codec,codec_id", [("lz4", 3), ("zstd", 4), ("gzip", 1), ("snappy", 2)])
def test_topic_compression_type_recompresses_on_the_broker(broker, codec, codec_id):
    """A topic with compression.type=lz4 (or any codec) stores what an uncompressed producer
    sends compressed with that codec, as Kafka does; consumers read the same values."""
    bootstrap = broker.bootstrap
    topic = _name(f"recompress-{codec}")
    create_topic(bootstrap, topic, 1, config={"compression.type": codec})
    p = Producer({"bootstrap.servers": bootstrap, "compression.type": "none", "linger.ms": 5})
    values = [f"value-{i}-{'x' * (i % 50)}".encode() for i in range(200)]
    for i, v in enumerate(values):
        p.produce(topic, key=str(i).encode(), value=v)
    assert p.flush(15) == 0
    host, port = bootstrap.rsplit(":", 1)
    stored = _fetch_v4(host, int(port), topic)
    codecs = _batch_codecs(stored)
    assert codecs and set(codecs) == {codec_id}, codecs
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": _name("g"), "auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < len(values) and time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is not None and not m.error():
                got.append(m.value())
        assert got == values
    finally:
        c.close()


def test_legacy_alter_configs_replaces_the_whole_set(bootstrap):
    """The legacy AlterConfigs API (key 33, librdkafka's alter_configs) replaces a topic's
    configs: a config not named goes back to its default."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = _name("legacy-alter")
    create_topic(bootstrap, topic, 1, config={"retention.ms": "86400000", "segment.bytes": "1048576"})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"retention.ms": "3600000"})
    admin.alter_configs([res])[res].result(timeout=20)

    def described():
        d = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)])
        return next(iter(d.values())).result(timeout=20)

    def settled():
        c = described()
        return c["retention.ms"].value == "3600000" and c["segment.bytes"].is_default

    wait_until(settled, 15, "retention.ms set and segment.bytes back to its default")
    c = described()
    assert not c["retention.ms"].is_default

    missing = ConfigResource(ConfigResource.Type.TOPIC, _name("no-such-topic"), set_config={"retention.ms": "1"})
    with pytest.raises(KafkaException) as e:
        admin.alter_configs([missing])[missing].result(timeout=20)
    assert e.value.args[0].name() == "UNKNOWN_TOPIC_OR_PART", e.value


@pytest.mark.sluice_only(reason="Sluice's own CLI (Kafka's tools take the same list: test_kafka_tools.py)")
def test_cli_takes_a_comma_separated_bootstrap_list(bootstrap):
    """Kafka's tools take `--bootstrap-server h1:p1,h2:p2`; so do `sluice topic|produce|consume`:
    a dead first address is skipped."""
    from sluicetest import free_port
    dead = f"127.0.0.1:{free_port()}"
    both = f"{dead}, {bootstrap}"
    topic = _name("bootstrap-list")
    run = lambda *a, **kw: subprocess.run([str(sluice_binary()), *a], capture_output=True, text=True,
                                          timeout=60, **kw)
    r = run("topic", "create", topic, "--partitions", "2", "--bootstrap", both)
    assert r.returncode == 0, r.stderr
    r = run("produce", "--topic", topic, "--bootstrap", both, input="a\nb\n")
    assert r.returncode == 0, r.stderr
    r = run("consume", "--topic", topic, "--from-beginning", "--max-messages", "2", "--timeout-ms", "10000",
            "--bootstrap", both)
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split()) == ["a", "b"]
    r = run("topic", "describe", topic, "--bootstrap", f"{bootstrap},{dead}")
    assert r.returncode == 0, r.stderr
