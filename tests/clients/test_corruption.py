"""Bit flips at rest (issue 7), broker level: bytes flipped in a sealed segment and in a .index
file of a stopped broker. On restart the damage is detected at recovery and reported in the
broker log with path and position/offset; the partition stays readable up to the damage (and
from the next segment on); the other partitions and topics are served untouched.
"""

import re
import struct

import pytest
from confluent_kafka import Producer

from sluicetest import LIBRDKAFKA_LOGGER, consume_all, create_topic, wait_until

pytestmark = pytest.mark.sluice_only(reason="bit flips in sluice's own segment and index files, and its log messages")

TOPIC = "bits"
OTHER = "intact"
N = 600
SEGMENT_BYTES = 16 * 1024


def value(i):
    return f"m{i:06d}".encode() + b"x" * 100


def fill(bootstrap, topic, partitions):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 0, "batch.num.messages": 1, "logger": LIBRDKAFKA_LOGGER})
    acked = {}

    def on_delivery(err, msg):
        assert err is None, err
        acked[(msg.partition(), msg.offset())] = msg.value()

    for i in range(N):
        p.produce(topic, value=value(i), partition=i % partitions, on_delivery=on_delivery)
        if i % 50 == 0:
            p.flush(30)
    assert p.flush(30) == 0
    assert len(acked) == N
    return acked


def plain_log(broker):
    return re.sub(r"\x1b\[[0-9;]*m", "", broker.log_text())


def segments(broker, topic, partition, ext):
    return sorted((broker.data_dir / f"{topic}-{partition}").glob(f"*.{ext}"))


def crc_covered_byte_near_middle(path):
    """A byte inside the records of the batch in the middle of a segment (covered by the CRC:
    baseOffset and partitionLeaderEpoch, outside it, are rewritten by the broker)."""
    data = path.read_bytes()
    pos = 0
    while True:
        (batch_length,) = struct.unpack_from(">i", data, pos + 8)
        total = 12 + batch_length
        if pos + total >= len(data) // 2:
            assert total > 61 + 8, total
            return pos + 61 + 4
        pos += total


def flip(path, position, mask=0xFF):
    with open(path, "r+b") as f:
        f.seek(position)
        b = f.read(1)
        f.seek(position)
        f.write(bytes([b[0] ^ mask]))


@pytest.mark.timeout(120)
def test_flipped_byte_in_sealed_segment_is_reported_and_partition_readable_up_to_it(broker):
    create_topic(broker.bootstrap, TOPIC, 2, config={"segment.bytes": str(SEGMENT_BYTES)})
    create_topic(broker.bootstrap, OTHER, 1)
    acked = fill(broker.bootstrap, TOPIC, 2)
    other = fill(broker.bootstrap, OTHER, 1)
    segs = segments(broker, TOPIC, 0, "log")
    assert len(segs) >= 3, f"want sealed segments, got {segs}"
    victim = segs[1]  # sealed, in the middle of the log
    # Unclean stop (kill -9) so recovery CRC-checks every batch, then flip a byte in the middle
    # of the segment: inside some batch's records, so its CRC no longer matches.
    broker.kill9()
    position = crc_covered_byte_near_middle(victim)
    flip(victim, position)
    broker.start()

    msgs = consume_all(broker.bootstrap, TOPIC, 2, timeout_s=60)  # recovery has run
    m = wait_until(lambda: re.search(r"corrupt batch in a sealed segment.*", plain_log(broker)),
                   10, "the corruption report in the broker log")
    line = m.group(0)
    assert str(victim) in line or victim.name in line, line
    om = re.search(r"offset[=: ]+(\d+)", line)
    pm = re.search(r"position[=: ]+(\d+)", line)
    assert om and pm, f"report lacks offset/position: {line}"
    damage_offset, damage_pos = int(om.group(1)), int(pm.group(1))
    assert damage_pos <= position, (damage_pos, position)
    victim_base = int(victim.stem)
    next_base = int(segs[2].stem)
    assert victim_base <= damage_offset < next_base

    got = {(m.partition(), m.offset()): m.value() for m in msgs}
    for k, v in got.items():
        assert acked.get(k) == v, f"read back {k} = {v!r}, acknowledged {acked.get(k)!r}"
    # Partition 0: everything below the damage, and everything from the next segment on.
    for (p, off), v in acked.items():
        if p == 1 or off < damage_offset or off >= next_base:
            assert got.get((p, off)) == v, f"lost undamaged message {p}/{off}"
    lost = sum(1 for (p, off) in acked if p == 0 and damage_offset <= off < next_base
               and (p, off) not in got)
    print(f"bit flip at {victim.name}:{position}: reported at position {damage_pos}, offset "
          f"{damage_offset}; {lost} messages of that segment unreadable, all others intact")
    assert {(m.partition(), m.offset()): m.value() for m in consume_all(broker.bootstrap, OTHER, 1)} \
        == other


@pytest.mark.timeout(120)
def test_flipped_index_after_clean_stop_is_rebuilt_and_reads_stay_correct(broker):
    create_topic(broker.bootstrap, TOPIC, 1, config={"segment.bytes": str(SEGMENT_BYTES),
                                                     "index.interval.bytes": "512"})
    acked = fill(broker.bootstrap, TOPIC, 1)
    broker.stop()  # clean: index files are trusted after this, unless they fail their checks
    assert not broker.problems, broker.problems
    index = segments(broker, TOPIC, 0, "index")[0]
    assert index.stat().st_size >= 16, "want an index with entries"
    # Entry 1's position (bytes 12..16, big-endian): its high byte flipped points far past the
    # end of the segment.
    flip(index, 12)
    broker.start()
    msgs = consume_all(broker.bootstrap, TOPIC, 1, timeout_s=60)  # recovery has run
    m = wait_until(lambda: re.search(r".*rebuilding index.*", plain_log(broker)), 10,
                   "the index damage report in the broker log")
    assert index.name in m.group(0), m.group(0)
    assert {(m.partition(), m.offset()): m.value() for m in msgs} == acked
    # Random access through the (rebuilt) index lands on the right messages too.
    for start in (1, 77, 250, N - 1):
        msgs = consume_all(broker.bootstrap, TOPIC, 1, timeout_s=30, start={0: start})
        assert msgs and msgs[0].offset() == start and msgs[0].value() == acked[(0, start)]
