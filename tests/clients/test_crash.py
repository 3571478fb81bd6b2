"""Crash safety (issue 7): the broker is SIGKILLed at random points under idempotent acks=all load
and restarted on the same data directory, many cycles. After every cycle:

- every acknowledged message is readable, exactly once, at the offset it was acknowledged with;
- per partition, offsets are dense and each producer's messages keep their send order;
- no message is stored twice (idempotence across the crash), nothing appears that nobody sent;
- the high watermark of every partition never goes backwards across restarts;
- the broker restarts on its own data without manual help.

Each value is b"<producer>:<seq>" (producer = cycle number, seq = send order). Cycles default
to 20 (CI); SLUICE_CRASH_CYCLES raises it (scripts/crash-soak.sh runs 100). SLUICE_CRASH_SEED
fixes the random kill points (the seed in use is printed and in the failure message).

Consumer-group committed offsets: during the load a standalone group ("crash-group": explicit
synchronous OffsetCommits, no subscription) commits increasing offsets per partition every
200 messages or 100 ms, up to moments before the kill. After
every restart the committed offsets are fetched: each is at least the highest commit the broker
acknowledged, and never below what was fetched after the previous restart.
"""

import os
import random
import time

import pytest
from confluent_kafka import KafkaException, Producer, TopicPartition

from sluicetest import LIBRDKAFKA_LOGGER, consume_all, consumer, create_topic

pytestmark = pytest.mark.sluice_only(reason='20 kill -9 cycles of the sluice process on its data directory')

TOPIC = "crash"
PARTITIONS = 3
CYCLES = int(os.environ.get("SLUICE_CRASH_CYCLES", "20"))
# Load per cycle before the kill: a random duration in this range (s), bounded in messages too.
LOAD_S_MIN, LOAD_S_MAX = 0.2, 1.5
MESSAGES_PER_CYCLE_MAX = int(os.environ.get("SLUICE_CRASH_MESSAGES_PER_CYCLE", "4000"))
# After the restart the producer gets this long to deliver (or fail) what was in flight.
FLUSH_AFTER_RESTART_S = 30.0
GROUP = "crash-group"
COMMIT_INTERVAL_S = 0.1
COMMIT_EVERY_MESSAGES = 200
TEST_TIMEOUT_S = 60 + CYCLES * 25


def new_producer(bootstrap):
    return Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        "message.timeout.ms": 20000,
        # Reconnect quickly to the restarted broker.
        "reconnect.backoff.ms": 20,
        "reconnect.backoff.max.ms": 200,
        "logger": LIBRDKAFKA_LOGGER,
    })


def committed_offsets(bootstrap):
    c = consumer(bootstrap, **{"group.id": GROUP})
    try:
        got = c.committed([TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=15)
        # No committed offset (OFFSET_INVALID, -1001) counts as -1, below any commit.
        return {tp.partition: max(tp.offset, -1) for tp in got}
    finally:
        c.close()


def parse(value):
    producer, seq = value.decode().split(":")
    return int(producer), int(seq)


def high_watermarks(bootstrap):
    c = consumer(bootstrap)
    try:
        return {p: c.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)[1]
                for p in range(PARTITIONS)}
    finally:
        c.close()


def check(messages, acked, sent, where):
    """acked: {value: (partition, offset)}; sent: every value ever handed to a producer."""
    seen = {}
    for m in messages:
        v = m.value()
        assert v not in seen, f"{where}: {v!r} stored twice: {seen[v]} and {(m.partition(), m.offset())}"
        seen[v] = (m.partition(), m.offset())
    missing = [v for v in acked if v not in seen]
    assert not missing, f"{where}: {len(missing)} acknowledged messages lost, e.g. {missing[:3]}"
    moved = [(v, acked[v], seen[v]) for v in acked if seen[v] != acked[v]]
    assert not moved, f"{where}: acknowledged messages at other offsets: {moved[:3]}"
    unknown = [v for v in seen if v not in sent]
    assert not unknown, f"{where}: messages nobody sent: {unknown[:3]}"
    for p in range(PARTITIONS):
        in_p = sorted((off, v) for v, (part, off) in seen.items() if part == p)
        assert [off for off, _ in in_p] == list(range(len(in_p))), f"{where}: partition {p} has offset gaps"
        last = {}
        for _, v in in_p:
            producer, seq = parse(v)
            assert seq > last.get(producer, -1), \
                f"{where}: partition {p}: {v!r} after seq {last[producer]} of producer {producer}"
            last[producer] = seq
    return len(seen)


@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_kill9_cycles_keep_every_acknowledged_message(broker):
    seed = int(os.environ.get("SLUICE_CRASH_SEED", str(random.randrange(2**32))))
    print(f"crash test: seed {seed}, {CYCLES} cycles")
    rng = random.Random(seed)
    create_topic(broker.bootstrap, TOPIC, PARTITIONS)
    acked, sent, failed = {}, set(), 0
    last_hw = {p: 0 for p in range(PARTITIONS)}
    stats = {"killed_with_unacked": 0, "checked": 0, "commits_acked": 0, "commits_failed": 0}
    commit_acked = {p: -1 for p in range(PARTITIONS)}  # highest commit the broker acknowledged
    last_committed = {p: -1 for p in range(PARTITIONS)}  # fetched after the previous restart

    for cycle in range(CYCLES):
        where = f"cycle {cycle} (seed {seed})"
        producer = new_producer(broker.bootstrap)
        cycle_failed = []

        def on_delivery(err, msg):
            if err is None:
                acked[msg.value()] = (msg.partition(), msg.offset())
            else:
                cycle_failed.append(err)

        kill_at = time.monotonic() + rng.uniform(LOAD_S_MIN, LOAD_S_MAX)
        committer = consumer(broker.bootstrap, **{"group.id": GROUP})
        next_commit = time.monotonic()
        seq = 0
        while time.monotonic() < kill_at and seq < MESSAGES_PER_CYCLE_MAX:
            if seq % COMMIT_EVERY_MESSAGES == 0 or time.monotonic() >= next_commit:
                # A synchronous commit of increasing offsets (up to the last checked end).
                p = rng.randrange(PARTITIONS)
                target = min(last_hw[p], max(commit_acked[p], 0) + rng.randrange(1, 50))
                if target > commit_acked[p]:
                    try:
                        committer.commit(offsets=[TopicPartition(TOPIC, p, target)], asynchronous=False)
                        commit_acked[p] = target
                        stats["commits_acked"] += 1
                    except KafkaException:
                        stats["commits_failed"] += 1
                next_commit = time.monotonic() + COMMIT_INTERVAL_S
            v = f"{cycle}:{seq}".encode()
            try:
                producer.produce(TOPIC, key=str(seq % 11).encode(), value=v, on_delivery=on_delivery)
            except BufferError:
                producer.poll(0.01)
                continue
            sent.add(v)
            seq += 1
            producer.poll(0)
        # SIGKILL with whatever the producer has in flight or queued.
        if len(producer) > 0:
            stats["killed_with_unacked"] += 1
        broker.restart_after_crash()
        committer.close()

        committed = committed_offsets(broker.bootstrap)
        for p in range(PARTITIONS):
            assert committed[p] >= commit_acked[p], \
                f"{where}: partition {p} committed offset {committed[p]} below the acknowledged commit {commit_acked[p]}"
            assert committed[p] >= last_committed[p], \
                f"{where}: partition {p} committed offset went back {last_committed[p]} -> {committed[p]}"
        last_committed = committed

        # The producer reconnects and delivers (or fails) the rest; idempotence must keep each
        # message at most once even when a batch was written but not acknowledged before the kill.
        left = producer.flush(FLUSH_AFTER_RESTART_S)
        assert left == 0, f"{where}: {left} messages neither delivered nor failed after restart"
        failed += len(cycle_failed)

        hw = high_watermarks(broker.bootstrap)
        for p in range(PARTITIONS):
            assert hw[p] >= last_hw[p], f"{where}: partition {p} high watermark went back {last_hw[p]} -> {hw[p]}"
        last_hw = hw
        for v, (p, off) in acked.items():
            assert off < hw[p], f"{where}: acknowledged {v!r} at {p}/{off} above high watermark {hw[p]}"

        messages = consume_all(broker.bootstrap, TOPIC, PARTITIONS, timeout_s=60)
        stats["checked"] += check(messages, acked, sent, where)

    print(f"crash test: {CYCLES} kill -9 cycles, {len(sent)} sent, {len(acked)} acknowledged, "
          f"{failed} failed deliveries, {stats['killed_with_unacked']} kills with unacknowledged "
          f"messages in flight, {stats['checked']} message reads checked, final high watermarks "
          f"{last_hw}; {stats['commits_acked']} group commits acknowledged "
          f"({stats['commits_failed']} failed), final committed offsets {last_committed}")
    assert len(acked) > 0
    # The load must actually race the kills, or the test proves little.
    assert stats["killed_with_unacked"] >= CYCLES // 2, stats
    assert stats["commits_acked"] >= CYCLES // 2, stats
