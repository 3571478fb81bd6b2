"""`sluice group list|describe|delete|reset-offsets` against groups made by real consumers.

The tool speaks only the Kafka protocol; here it reads and rewrites the offsets a
confluent-kafka consumer group committed, and the same consumer then replays exactly the
messages the reset points it to.
"""

import subprocess
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from sluicetest import create_topic, sluice_binary

pytestmark = pytest.mark.sluice_only(reason="Sluice's own CLI (`sluice group ...`)")

CLI_TIMEOUT_S = 30
TOPIC = "replay"
GROUP = "replayers"


def sluice(*args):
    return subprocess.run([str(sluice_binary()), *args], capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S, stdin=subprocess.DEVNULL)


def produce(bootstrap, n):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    base = int(time.time() * 1000) - 100_000
    for i in range(n):
        # 10 per partition, with timestamps one second apart per message.
        p.produce(TOPIC, value=f"m{i}".encode(), partition=i % 2, timestamp=base + i * 1000)
    assert p.flush(15) == 0
    return base


def consume_group(bootstrap, want, timeout_s=20):
    """Reads `want` messages with the group, commits synchronously, closes (leaves)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "session.timeout.ms": 6000})
    c.subscribe([TOPIC])
    got = []
    deadline = time.time() + timeout_s
    while len(got) < want and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        got.append((m.partition(), m.offset(), m.value().decode()))
    if got:
        c.commit(asynchronous=False)
    c.close()
    return got


def describe_rows(bootstrap):
    done = sluice("group", "describe", GROUP, "--bootstrap", bootstrap)
    assert done.returncode == 0, done.stderr
    rows = {}
    for line in done.stdout.splitlines():
        f = line.split()
        if len(f) >= 5 and f[0] == TOPIC:
            rows[int(f[1])] = (f[2], f[3], f[4])  # current, log end, lag
    return rows


def test_describe_lag_reset_and_replay(bootstrap):
    create_topic(bootstrap, TOPIC, 2)
    base = produce(bootstrap, 20)
    got = consume_group(bootstrap, 20)
    assert len(got) == 20

    done = sluice("group", "list", "--bootstrap", bootstrap)
    assert done.returncode == 0, done.stderr
    assert GROUP in done.stdout

    assert describe_rows(bootstrap) == {0: ("10", "10", "0"), 1: ("10", "10", "0")}

    # Dry run: prints the plan, changes nothing.
    done = sluice("group", "reset-offsets", GROUP, "--topic", TOPIC, "--to-earliest", "--bootstrap", bootstrap)
    assert done.returncode == 0, done.stderr
    assert "Dry run" in done.stdout
    assert describe_rows(bootstrap)[0][0] == "10"

    # Shift back by 3 on each partition: the group replays exactly the last 3 of each.
    done = sluice("group", "reset-offsets", GROUP, "--topic", TOPIC, "--shift-by", "-3", "--execute",
                  "--bootstrap", bootstrap)
    assert done.returncode == 0, done.stderr
    assert describe_rows(bootstrap) == {0: ("7", "10", "3"), 1: ("7", "10", "3")}
    replay = consume_group(bootstrap, 6)
    assert sorted((p, o) for p, o, _ in replay) == [(p, o) for p in (0, 1) for o in (7, 8, 9)]

    # By time: message i has timestamp base + i*1000 and sits on partition i % 2 at offset i // 2.
    # From base + 12 000 ms on: messages 12..19, i.e. offset 6.. on both partitions.
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((base + 12_000) // 1000)) + f".{(base + 12_000) % 1000:03d}Z"
    done = sluice("group", "reset-offsets", GROUP, "--topic", TOPIC, "--to-datetime", iso, "--execute",
                  "--bootstrap", bootstrap)
    assert done.returncode == 0, done.stderr
    assert describe_rows(bootstrap) == {0: ("6", "10", "4"), 1: ("6", "10", "4")}

    done = sluice("group", "reset-offsets", GROUP, "--topic", TOPIC, "--to-offset", "2", "--execute",
                  "--bootstrap", bootstrap)
    assert done.returncode == 0, done.stderr
    replay = consume_group(bootstrap, 16)
    assert sorted(v for _, _, v in replay) == sorted(f"m{i}" for i in range(4, 20))

    done = sluice("group", "reset-offsets", GROUP, "--topic", TOPIC, "--to-latest", "--execute",
                  "--bootstrap", bootstrap)
    assert done.returncode == 0, done.stderr
    assert describe_rows(bootstrap) == {0: ("10", "10", "0"), 1: ("10", "10", "0")}

    done = sluice("group", "delete", GROUP, "--bootstrap", bootstrap)
    assert done.returncode == 0, done.stderr
    done = sluice("group", "describe", GROUP, "--bootstrap", bootstrap)
    assert done.returncode != 0 and "does not exist" in done.stderr


def test_reset_refused_while_members_are_active(bootstrap):
    create_topic(bootstrap, "busy", 1)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "busy-group", "auto.offset.reset": "earliest",
                  "session.timeout.ms": 6000})
    c.subscribe(["busy"])
    try:
        deadline = time.time() + 20
        while time.time() < deadline and not c.assignment():
            c.poll(0.2)
        assert c.assignment(), "the consumer never got its partition"
        c.commit(offsets=[TopicPartition("busy", 0, 0)], asynchronous=False)
        done = sluice("group", "reset-offsets", "busy-group", "--topic", "busy", "--to-latest", "--execute",
                      "--bootstrap", bootstrap)
        assert done.returncode != 0
        assert "active members" in done.stderr, done.stderr
        done = sluice("group", "describe", "busy-group", "--bootstrap", bootstrap)
        assert done.returncode == 0, done.stderr
        assert "rdkafka" in done.stdout or "consumer" in done.stdout.lower(), done.stdout
    finally:
        c.close()
