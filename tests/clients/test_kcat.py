"""kcat (Debian's, built on librdkafka 2.0.2, strict about ApiVersions) against Sluice:
metadata listing, producing keyed lines from stdin, consuming them back."""

import json
import shutil
import subprocess

import pytest

from sluicetest import create_topic

KCAT_TIMEOUT_S = 30


def kcat_binary():
    path = shutil.which("kcat") or shutil.which("kafkacat")
    if path is None:
        pytest.fail("kcat is not installed (scripts/test.sh installs Debian's kcat)")
    return path


def kcat(bootstrap, *args, stdin=None):
    cmd = [kcat_binary(), "-b", bootstrap, *args]
    done = subprocess.run(cmd, input=stdin, capture_output=True, timeout=KCAT_TIMEOUT_S)
    assert done.returncode == 0, (f"{' '.join(cmd)} exited {done.returncode}\n"
                                  f"stdout:\n{done.stdout.decode(errors='replace')}\n"
                                  f"stderr:\n{done.stderr.decode(errors='replace')}")
    assert b"ERROR" not in done.stderr, done.stderr.decode(errors="replace")
    return done.stdout.decode()


def consume_json(bootstrap, topic):
    out = kcat(bootstrap, "-C", "-t", topic, "-e", "-o", "beginning", "-J", "-q")
    # One JSON envelope per message; parse them one after another, whatever separates them.
    decoder = json.JSONDecoder()
    records, pos = [], 0
    while True:
        while pos < len(out) and out[pos].isspace():
            pos += 1
        if pos == len(out):
            return records
        record, pos = decoder.raw_decode(out, pos)
        records.append(record)


def test_metadata_lists_topic_and_partitions(broker):
    create_topic(broker.bootstrap, "kc-meta", 3)

    text = kcat(broker.bootstrap, "-L")
    assert 'topic "kc-meta" with 3 partitions:' in text, text
    assert f"127.0.0.1:{broker.port}" in text, text

    md = json.loads(kcat(broker.bootstrap, "-L", "-J"))
    assert [b["name"] for b in md["brokers"]] == [f"127.0.0.1:{broker.port}"]
    broker_id = md["brokers"][0]["id"]
    (topic,) = [t for t in md["topics"] if t["topic"] == "kc-meta"]
    assert "error" not in topic, topic
    assert sorted(p["partition"] for p in topic["partitions"]) == [0, 1, 2]
    for p in topic["partitions"]:
        assert p["leader"] == broker_id, p
        assert [r["id"] for r in p["replicas"]] == [broker_id]
        assert [r["id"] for r in p["isrs"]] == [broker_id]


def test_produce_and_consume_keyed_lines(bootstrap):
    create_topic(bootstrap, "kc", 3)
    keys = [f"user{k}" for k in range(9)]
    lines = [f"{key}:{key}-event-{seq}" for seq in range(30) for key in keys]
    half = len(lines) // 2
    # First half plain, second half zstd-compressed (librdkafka 2.0.2's codec path).
    kcat(bootstrap, "-P", "-t", "kc", "-K:", stdin=("\n".join(lines[:half]) + "\n").encode())
    kcat(bootstrap, "-P", "-t", "kc", "-K:", "-z", "zstd", stdin=("\n".join(lines[half:]) + "\n").encode())

    records = consume_json(bootstrap, "kc")
    assert sorted(f"{r['key']}:{r['payload']}" for r in records) == sorted(lines)

    partition_of = {}
    next_seq = {}
    for r in sorted(records, key=lambda r: (r["partition"], r["offset"])):
        key = r["key"]
        assert partition_of.setdefault(key, r["partition"]) == r["partition"], f"{key} on two partitions"
        seq = int(r["payload"].rsplit("-", 1)[1])
        assert seq == next_seq.get(key, 0), f"{key}: seq {seq} out of order"
        next_seq[key] = seq + 1
    for p in range(3):
        offsets = sorted(r["offset"] for r in records if r["partition"] == p)
        assert offsets == list(range(len(offsets)))


def test_produce_unkeyed_to_auto_created_topic(bootstrap):
    values = [f"line {i}" for i in range(50)]
    kcat(bootstrap, "-P", "-t", "kc-auto", stdin=("\n".join(values) + "\n").encode())
    records = consume_json(bootstrap, "kc-auto")
    assert [r["payload"] for r in records] == values
    assert {r["partition"] for r in records} == {0}
    assert all(r["key"] is None for r in records)
