"""The raw-socket encoder of kafkawire.py checked without a broker: CRC32C against the standard
check value and kafka-python's implementation, RecordBatch bytes against kafka-python's own
DefaultRecordBatchBuilder."""

import os
import struct

from kafka.record.default_records import DefaultRecordBatchBuilder, DefaultRecordBatch
from kafka.record.util import calc_crc32c

import kafkawire


def test_crc32c_check_value():
    assert kafkawire.crc32c(b"123456789") == 0xE3069283
    assert kafkawire.crc32c(b"") == 0


def test_crc32c_matches_kafka_python():
    for size in (1, 7, 64, 1000, 4099):
        data = os.urandom(size)
        assert kafkawire.crc32c(data) == calc_crc32c(data)
    # Continuing a checksum equals checksumming the concatenation.
    assert kafkawire.crc32c(b"56789", kafkawire.crc32c(b"1234")) == 0xE3069283


def test_varints():
    assert kafkawire.varint(0) == b"\x00"
    assert kafkawire.varint(-1) == b"\x01"
    assert kafkawire.varint(1) == b"\x02"
    assert kafkawire.varint(300) == b"\xd8\x04"
    assert kafkawire.uvarint(300) == b"\xac\x02"
    assert kafkawire.read_uvarint(b"\xac\x02", 0) == (300, 2)


def _kafka_python_batch(records, base_ts, step, producer_id=-1, producer_epoch=-1, base_sequence=-1):
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=False, producer_id=producer_id,
        producer_epoch=producer_epoch, base_sequence=base_sequence, batch_size=1 << 20)
    for i, (key, value, headers) in enumerate(records):
        assert builder.append(i, base_ts + i * step, key, value, headers) is not None
    return bytes(builder.build())


RECORDS = [
    (b"k1", b"v1", [("h", b"x")]),
    (None, b"value-two" * 50, []),
    (b"k3", None, [("a", None), ("b", b"")]),
    (b"", b"", []),
]


def test_record_batch_matches_kafka_python():
    mine = kafkawire.encode_record_batch(RECORDS, 1_700_000_000_000, timestamp_step_ms=7)
    assert mine == _kafka_python_batch(RECORDS, 1_700_000_000_000, 7)


def test_record_batch_with_producer_state_matches_kafka_python():
    mine = kafkawire.encode_record_batch(RECORDS, 1_700_000_000_000, producer_id=4242,
                                         producer_epoch=3, base_sequence=17, timestamp_step_ms=1)
    theirs = _kafka_python_batch(RECORDS, 1_700_000_000_000, 1, 4242, 3, 17)
    assert mine == theirs


def test_record_batch_decodes_with_kafka_python():
    raw = kafkawire.encode_record_batch(RECORDS, 1_700_000_000_000, timestamp_step_ms=5)
    batch = DefaultRecordBatch(raw)
    assert batch.validate_crc()
    got = [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in batch]
    assert got == [(i, 1_700_000_000_000 + 5 * i, k, v, h) for i, (k, v, h) in enumerate(RECORDS)]


def test_corrupt_crc_is_detected_by_kafka_python():
    raw = kafkawire.encode_record_batch(RECORDS, 1_700_000_000_000, corrupt_crc=True)
    assert not DefaultRecordBatch(raw).validate_crc()
    good = kafkawire.encode_record_batch(RECORDS, 1_700_000_000_000)
    # Only the CRC field (bytes 17..21) differs.
    diff = [i for i in range(len(raw)) if raw[i] != good[i]]
    assert diff and all(17 <= i < 21 for i in diff)


def test_produce_request_v3_layout():
    records = kafkawire.encode_record_batch([(None, b"x")], 0)
    framed = kafkawire.produce_request_v3(7, "t", 2, records, acks=-1, timeout_ms=1000)
    (size,) = struct.unpack_from(">i", framed, 0)
    assert size == len(framed) - 4
    api_key, version, corr = struct.unpack_from(">hhi", framed, 4)
    assert (api_key, version, corr) == (0, 3, 7)
    assert framed.endswith(struct.pack(">i", len(records)) + records)


def test_api_versions_response_parsing():
    # v0 body: error, [key, min, max]
    v0 = struct.pack(">hi", 35, 1) + struct.pack(">hhh", 18, 0, 4)
    assert kafkawire.parse_api_versions_response(v0, 0) == (35, {18: (0, 4)})
    # v3 body: error, compact array (len+1), each entry + tagged fields, throttle, tagged fields
    v3 = struct.pack(">h", 0) + kafkawire.uvarint(3)
    v3 += struct.pack(">hhh", 0, 3, 11) + b"\x00" + struct.pack(">hhh", 18, 0, 4) + b"\x00"
    v3 += struct.pack(">i", 0) + b"\x00"
    assert kafkawire.parse_api_versions_response(v3, 3) == (0, {0: (3, 11), 18: (0, 4)})
