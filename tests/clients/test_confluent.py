"""confluent-kafka 2.x (librdkafka) against Sluice: idempotent acks=all producer, every
compression codec, keyed ordering, consumer positioning (beginning, end, timestamp) and the
AdminClient APIs."""

import time

import pytest
from confluent_kafka import (OFFSET_BEGINNING, OFFSET_END, TIMESTAMP_CREATE_TIME, KafkaError,
                             KafkaException, Producer, TopicPartition)
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions,
                                   NewTopic, OffsetSpec, ResourceType)

from sluicetest import (LIBRDKAFKA_LOGGER, admin_client, consume_all, consumer, create_topic,
                        wait_for_partitions, wait_until)

FLUSH_TIMEOUT_S = 30
ADMIN_TIMEOUT_S = 15


class Delivery:
    """A delivery report, kept as plain values."""

    def __init__(self, err, msg):
        self.err = err
        self.topic = msg.topic()
        self.key = msg.key()
        self.value = msg.value()
        self.partition = msg.partition()
        self.offset = msg.offset()
        self.timestamp = msg.timestamp()


def idempotent_producer(bootstrap, **extra):
    conf = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "logger": LIBRDKAFKA_LOGGER,
    }
    conf.update(extra)
    return Producer(conf)


def produce_items(bootstrap, topic, items, **extra):
    """produce_all with a fresh idempotent producer, closed afterwards."""
    producer = idempotent_producer(bootstrap, **extra)
    try:
        return produce_all(producer, topic, items)
    finally:
        producer.close()


def produce_all(producer, topic, items):
    """Produces (key, value, headers, timestamp_ms|None, partition|None) items; flushes; returns
    the delivery reports in send order. Fails on any delivery error."""
    reports = [None] * len(items)

    def on_delivery(i):
        def cb(err, msg):
            reports[i] = Delivery(err, msg)
        return cb

    for i, (key, value, headers, ts, partition) in enumerate(items):
        kwargs = {"key": key, "value": value, "headers": headers, "on_delivery": on_delivery(i)}
        if ts is not None:
            kwargs["timestamp"] = ts
        if partition is not None:
            kwargs["partition"] = partition
        deadline = time.monotonic() + FLUSH_TIMEOUT_S
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:  # local queue full: serve delivery reports, then retry
                assert time.monotonic() < deadline, "producer queue stayed full"
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(FLUSH_TIMEOUT_S)
    assert remaining == 0, f"{remaining} messages not delivered within {FLUSH_TIMEOUT_S} s"
    errors = [(i, r.err) for i, r in enumerate(reports) if r.err is not None]
    assert not errors, f"delivery errors: {errors[:5]}"
    return reports


def item(key, value, headers=None, ts=None, partition=None):
    return (key, value, headers or [], ts, partition)


CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


@pytest.mark.parametrize("codec", CODECS)
def test_idempotent_producer_round_trips_every_codec(bootstrap, codec):
    topic = f"codec-{codec}"
    create_topic(bootstrap, topic, 2)
    items = []
    for i in range(400):
        # Compressible values of many sizes, a few of them large (~120 KiB).
        body = (f"order {i} for customer {i % 13}; " * (1 + i % 40)).encode()
        if i % 97 == 0:
            body = body * 200
        items.append(item(f"k{i % 10}".encode(), body, [("i", str(i).encode()), ("codec", codec.encode())]))
    items.append(item(None, b"", []))  # null key, empty value
    items.append(item(b"null-value", None, []))

    reports = produce_items(bootstrap, topic, items, **{"compression.type": codec})

    messages = consume_all(bootstrap, topic, 2)
    assert len(messages) == len(items)
    by_position = {(m.partition(), m.offset()): m for m in messages}
    for (key, value, headers, _, _), r in zip(items, reports):
        m = by_position[(r.partition, r.offset)]
        assert (m.key(), m.value()) == (key, value)
        assert (m.headers() or []) == headers
        assert m.timestamp() == r.timestamp
        assert m.timestamp()[0] == TIMESTAMP_CREATE_TIME


def test_keyed_ordering_per_partition(bootstrap):
    topic = "keyed"
    create_topic(bootstrap, topic, 4)
    keys = [f"account-{k}".encode() for k in range(16)]
    items = [item(key, f"{key.decode()}:{seq}".encode()) for seq in range(40) for key in keys]
    reports = produce_items(bootstrap, topic, items)

    offsets_seen = {(r.partition, r.offset) for r in reports}
    assert len(offsets_seen) == len(items), "two messages acknowledged at the same offset"

    messages = consume_all(bootstrap, topic, 4)
    assert len(messages) == len(items)
    partition_of = {}
    next_seq = {}
    last_offset = {}
    for m in messages:
        key = m.key()
        name, seq = m.value().decode().rsplit(":", 1)
        assert name == key.decode()
        assert partition_of.setdefault(key, m.partition()) == m.partition(), f"{key} on two partitions"
        assert m.offset() > last_offset.get(m.partition(), -1)
        last_offset[m.partition()] = m.offset()
        assert int(seq) == next_seq.get(key, 0), f"{key}: got seq {seq}, expected {next_seq.get(key, 0)}"
        next_seq[key] = int(seq) + 1
    assert all(n == 40 for n in next_seq.values()) and len(next_seq) == len(keys)
    # Offsets of a partition are dense: 0..n-1.
    for p in range(4):
        offsets = sorted(m.offset() for m in messages if m.partition() == p)
        assert offsets == list(range(len(offsets)))


def test_consumer_from_beginning_and_end(bootstrap):
    topic = "positions"
    create_topic(bootstrap, topic, 1)
    producer = idempotent_producer(bootstrap)
    produce_all(producer, topic, [item(None, f"old-{i}".encode()) for i in range(10)])

    # From the beginning: all ten, in order.
    assert [m.value() for m in consume_all(bootstrap, topic, 1)] == [f"old-{i}".encode() for i in range(10)]

    # From the end: none of the old ones; everything produced after the position is resolved.
    c = consumer(bootstrap, **{"enable.partition.eof": False})
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_END)])
        received = []
        # The consumer resolves OFFSET_END asynchronously; keep sending probes until one arrives.
        deadline = time.monotonic() + 30
        probe = 0
        while not received:
            assert time.monotonic() < deadline, "consumer at OFFSET_END never received a new message"
            produce_all(producer, topic, [item(None, f"probe-{probe}".encode())])
            probe += 1
            msg = c.poll(0.5)
            if msg is not None:
                assert msg.error() is None, msg.error()
                received.append(msg)
        produce_all(producer, topic, [item(None, f"new-{i}".encode()) for i in range(5)])
        deadline = time.monotonic() + 30
        while not (received and received[-1].value() == b"new-4"):
            assert time.monotonic() < deadline, f"got only {[m.value() for m in received]}"
            msg = c.poll(0.5)
            if msg is not None:
                assert msg.error() is None, msg.error()
                received.append(msg)
    finally:
        c.close()
        producer.close()
    values = [m.value().decode() for m in received]
    assert not any(v.startswith("old-") for v in values), values
    first_probe = int(values[0].split("-")[1])
    assert values == [f"probe-{i}" for i in range(first_probe, probe)] + [f"new-{i}" for i in range(5)]
    offsets = [m.offset() for m in received]
    assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))
    assert offsets[0] == 10 + first_probe


def test_offsets_by_timestamp(bootstrap):
    topic = "times"
    create_topic(bootstrap, topic, 1)
    base = int(time.time() * 1000) - 600_000  # ten minutes ago, one message per second
    # Two produce calls so the log holds more than one batch.
    produce_items(bootstrap, topic, [item(None, f"m{i}".encode(), ts=base + i * 1000) for i in range(20)])
    produce_items(bootstrap, topic, [item(None, f"m{i}".encode(), ts=base + i * 1000) for i in range(20, 30)])

    c = consumer(bootstrap)
    try:
        lookups = {base - 5000: 0, base: 0, base + 4500: 5, base + 5000: 5, base + 19_999: 20,
                   base + 22_000: 22, base + 29_000: 29, base + 30_000: -1}
        for ts, want in lookups.items():  # one lookup per call: a partition appears once per request
            (found,) = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=10)
            assert found.error is None, found.error
            assert found.offset == want, f"timestamp base{ts - base:+d} ms: offset {found.offset}, expected {want}"

        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False) == (0, 30)

        # Start reading at the offset found for a timestamp.
        (start,) = c.offsets_for_times([TopicPartition(topic, 0, base + 12_500)], timeout=10)
        assert start.offset == 13
    finally:
        c.close()
    messages = consume_all(bootstrap, topic, 1, start={0: start.offset})
    assert [m.value() for m in messages] == [f"m{i}".encode() for i in range(13, 30)]
    assert [m.timestamp() for m in messages] == [(TIMESTAMP_CREATE_TIME, base + i * 1000) for i in range(13, 30)]

    # The same through the AdminClient (ListOffsets): earliest, latest, by time, max timestamp.
    admin = admin_client(bootstrap)
    tp = TopicPartition(topic, 0)
    specs = {"earliest": (OffsetSpec.earliest(), 0), "latest": (OffsetSpec.latest(), 30),
             "time": (OffsetSpec.for_timestamp(base + 7000), 7),
             "max": (OffsetSpec.max_timestamp(), 29)}
    for name, (spec, want) in specs.items():
        info = admin.list_offsets({tp: spec}, request_timeout=ADMIN_TIMEOUT_S)[tp].result(ADMIN_TIMEOUT_S)
        assert info.offset == want, f"{name}: offset {info.offset}, expected {want}"
        if name == "max":
            assert info.timestamp == base + 29_000


def _admin_error_code(future):
    with pytest.raises(KafkaException) as raised:
        future.result(ADMIN_TIMEOUT_S)
    return raised.value.args[0].code()


def test_admin_topic_lifecycle(broker):
    admin = admin_client(broker.bootstrap)

    futures = admin.create_topics([NewTopic("adm", num_partitions=2, replication_factor=1,
                                            config={"retention.ms": "3600000"})],
                                  operation_timeout=ADMIN_TIMEOUT_S, request_timeout=ADMIN_TIMEOUT_S)
    assert futures["adm"].result(ADMIN_TIMEOUT_S) is None
    assert _admin_error_code(admin.create_topics([NewTopic("adm", 2, 1)])["adm"]) == \
        KafkaError.TOPIC_ALREADY_EXISTS
    assert _admin_error_code(admin.create_topics([NewTopic("bad/name", 1, 1)])["bad/name"]) == \
        KafkaError.TOPIC_EXCEPTION

    wait_for_partitions(admin, "adm", 2)
    md = admin.list_topics(timeout=10)
    assert "adm" in md.topics and "bad/name" not in md.topics
    assert [(b.host, b.port) for b in md.brokers.values()] == [("127.0.0.1", broker.port)]
    leader_ids = {p.leader for p in md.topics["adm"].partitions.values()}
    assert leader_ids <= set(md.brokers)

    # DescribeConfigs: the value set at creation, and a default.
    resource = ConfigResource(ResourceType.TOPIC, "adm")
    entries = admin.describe_configs([resource])[resource].result(ADMIN_TIMEOUT_S)
    assert entries["retention.ms"].value == "3600000"
    assert entries["cleanup.policy"].value == "delete"

    # IncrementalAlterConfigs, then described again.
    change = ConfigResource(ResourceType.TOPIC, "adm", incremental_configs=[
        ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([change])[change].result(ADMIN_TIMEOUT_S)

    def retention_is_altered():
        found = admin.describe_configs([resource])[resource].result(ADMIN_TIMEOUT_S)
        return found["retention.ms"].value == "7200000"
    wait_until(retention_is_altered, ADMIN_TIMEOUT_S, "retention.ms to read 7200000")

    # CreatePartitions: 2 -> 4; the new partitions take writes.
    assert admin.create_partitions([NewPartitions("adm", 4)])["adm"].result(ADMIN_TIMEOUT_S) is None
    wait_for_partitions(admin, "adm", 4)
    reports = produce_items(broker.bootstrap, "adm",
                            [item(None, f"p{p}".encode(), partition=p) for p in range(4)])
    assert [(r.partition, r.offset) for r in reports] == [(p, 0) for p in range(4)]

    # DeleteTopics.
    assert admin.delete_topics(["adm"], operation_timeout=ADMIN_TIMEOUT_S)["adm"].result(ADMIN_TIMEOUT_S) is None
    wait_until(lambda: "adm" not in admin.list_topics(timeout=10).topics, ADMIN_TIMEOUT_S, "adm to be gone")
    assert _admin_error_code(admin.delete_topics(["adm"])["adm"]) == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_admin_describe_cluster(broker):
    admin = admin_client(broker.bootstrap)
    cluster = admin.describe_cluster(request_timeout=ADMIN_TIMEOUT_S).result(ADMIN_TIMEOUT_S)
    assert cluster.cluster_id
    assert [(n.host, n.port) for n in cluster.nodes] == [("127.0.0.1", broker.port)]
    assert cluster.controller is not None and cluster.controller.id == cluster.nodes[0].id
