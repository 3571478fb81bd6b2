"""Durability across a crash: what the broker acknowledged with acks=all survives kill -9,
exactly once, in order; and the restarted broker takes writes again."""

import time

import pytest
from confluent_kafka import Producer

from sluicetest import LIBRDKAFKA_LOGGER, consume_all, create_topic

pytestmark = pytest.mark.own_broker  # every test here kills or stops the broker

TOPIC = "durable"
PARTITIONS = 3
N = 2000


def value_of(run, i):
    return f"{run}-{i:06d}".encode() + b"." * (i % 300)


def parse_value(raw):
    run, rest = raw.decode().split("-", 1)
    return run, int(rest.rstrip("."))


def new_producer(bootstrap, **extra):
    conf = {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
            "linger.ms": 2, "logger": LIBRDKAFKA_LOGGER}
    conf.update(extra)
    return Producer(conf)


def produce(producer, run, indices, acked, failed):
    """Sends messages `indices` of `run` (keys spread over partitions); delivery reports land in
    `acked` {value: (partition, offset)} or `failed` {value: error}."""
    def on_delivery(err, msg):
        if err is None:
            acked[msg.value()] = (msg.partition(), msg.offset())
        else:
            failed[msg.value()] = err

    for i in indices:
        deadline = time.monotonic() + 30
        while True:
            try:
                producer.produce(TOPIC, key=f"k{i % 17}".encode(), value=value_of(run, i),
                                 on_delivery=on_delivery)
                break
            except BufferError:
                assert time.monotonic() < deadline, "producer queue stayed full"
                producer.poll(0.05)
        producer.poll(0)


def check_log(messages, acked, maybe=frozenset()):
    """Every acknowledged message exactly once at its acknowledged offset; nothing else but
    messages whose fate is unknown (`maybe`), at most once each; per-partition order kept."""
    seen = {}
    for m in messages:
        value = m.value()
        assert value not in seen, f"{value!r} stored twice: {seen[value]} and {(m.partition(), m.offset())}"
        seen[value] = (m.partition(), m.offset())
    missing = [v for v in acked if v not in seen]
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {missing[:3]}"
    moved = [(v, acked[v], seen[v]) for v in acked if seen[v] != acked[v]]
    assert not moved, f"acknowledged messages at other offsets: {moved[:3]}"
    unexpected = [v for v in seen if v not in acked and v not in maybe]
    assert not unexpected, f"messages nobody sent: {unexpected[:3]}"
    # Per partition: offsets dense from 0, and each run's messages in send order.
    for p in range(PARTITIONS):
        in_p = sorted((off, v) for v, (part, off) in seen.items() if part == p)
        assert [off for off, _ in in_p] == list(range(len(in_p))), f"partition {p} has offset gaps"
        last = {}
        for _, v in in_p:
            run, i = parse_value(v)
            assert i > last.get(run, -1), f"partition {p}: {v!r} after {run}-{last[run]}"
            last[run] = i


@pytest.mark.timeout(180)
def test_acknowledged_messages_survive_kill9(broker):
    create_topic(broker.bootstrap, TOPIC, PARTITIONS)
    acked, failed = {}, {}
    producer = new_producer(broker.bootstrap)
    produce(producer, "a", range(N), acked, failed)
    assert producer.flush(60) == 0
    assert not failed, f"{len(failed)} deliveries failed, e.g. {list(failed.items())[:3]}"
    assert len(acked) == N
    producer.close()

    broker.restart_after_crash()

    check_log(consume_all(broker.bootstrap, TOPIC, PARTITIONS, timeout_s=60), acked)

    # The recovered broker appends after the recovered end.
    ends = {p: 1 + max(off for part, off in acked.values() if part == p) for p in range(PARTITIONS)}
    after = {}
    producer2 = new_producer(broker.bootstrap)
    produce(producer2, "b", range(30), after, failed)
    assert producer2.flush(30) == 0 and not failed
    producer2.close()
    for part, off in after.values():
        assert off >= ends.get(part, 0)
    acked.update(after)
    check_log(consume_all(broker.bootstrap, TOPIC, PARTITIONS, timeout_s=60), acked)


@pytest.mark.timeout(180)
def test_kill9_while_producing(broker):
    """kill -9 with messages in flight: acknowledged ones survive exactly once; the ones whose
    delivery failed (or was never confirmed) may or may not be stored, but never twice."""
    create_topic(broker.bootstrap, TOPIC, PARTITIONS)
    acked, failed = {}, {}
    producer = new_producer(broker.bootstrap, **{"message.timeout.ms": 5000})

    # First half; once a quarter is acknowledged, queue the second half and kill at once, so
    # the crash meets batches in flight and queued.
    produce(producer, "c", range(N // 2), acked, failed)
    deadline = time.monotonic() + 60
    while len(acked) < N // 4:
        assert time.monotonic() < deadline, f"only {len(acked)} acknowledged"
        producer.poll(0.05)
    produce(producer, "c", range(N // 2, N), acked, failed)
    broker.kill9()
    acked_at_kill = len(acked)
    # The broker is down: what is still unconfirmed fails by message.timeout.ms.
    remaining = producer.flush(30)
    assert remaining == 0, "messages neither delivered nor failed after the timeout"
    assert len(acked) + len(failed) == N
    assert len(acked) >= acked_at_kill >= N // 4
    producer.close()

    broker.start()
    sent = {value_of("c", i) for i in range(N)}
    check_log(consume_all(broker.bootstrap, TOPIC, PARTITIONS, timeout_s=60), acked,
              maybe=sent - set(acked))


@pytest.mark.timeout(120)
def test_clean_shutdown_keeps_acks1_messages(broker):
    """acks=1 is acknowledged before fdatasync; a clean stop (SIGTERM) must still flush all of it."""
    create_topic(broker.bootstrap, TOPIC, PARTITIONS)
    acked, failed = {}, {}
    producer = new_producer(broker.bootstrap, **{"enable.idempotence": False, "acks": 1,
                                                "max.in.flight.requests.per.connection": 1})
    produce(producer, "d", range(N), acked, failed)
    assert producer.flush(60) == 0 and not failed and len(acked) == N
    producer.close()

    broker.stop()  # SIGTERM; the fixture fails the test if this is not a clean, zero exit
    broker.start()

    check_log(consume_all(broker.bootstrap, TOPIC, PARTITIONS, timeout_s=60), acked)
