"""Hostile and malformed input on raw sockets. The broker must answer with a Kafka error code or
close the connection: never panic (the fixture fails a test whose broker log shows a panic),
never stop serving other clients, never store a corrupt batch."""

import errno
import random
import socket
import struct
import time

import pytest

import kafkawire as kw
from sluicetest import admin_client, consume_all, create_topic

CLOSE_TIMEOUT_S = 10


def connect(broker):
    return kw.Connection(broker.host, broker.port, timeout_s=CLOSE_TIMEOUT_S)


def api_versions(conn, version, correlation_id=1):
    conn.send(kw.api_versions_request(version, correlation_id))
    return kw.parse_api_versions_response(conn.read_response(correlation_id), version)


def assert_serving(broker):
    """The broker still answers a raw ApiVersions and a real client's Metadata request."""
    with connect(broker) as conn:
        error, ranges = api_versions(conn, 3, correlation_id=77)
    assert error == kw.ERROR_NONE
    assert kw.API_PRODUCE in ranges and kw.API_FETCH in ranges and kw.API_METADATA in ranges
    md = admin_client(broker.bootstrap).list_topics(timeout=10)
    assert len(md.brokers) == 1


@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_api_versions_each_version(broker, version):
    with connect(broker) as conn:
        error, ranges = api_versions(conn, version, correlation_id=1000 + version)
        # A second request on the same connection is answered too (in order).
        error2, ranges2 = api_versions(conn, version, correlation_id=2000 + version)
    assert (error, error2) == (kw.ERROR_NONE, kw.ERROR_NONE)
    assert ranges == ranges2
    lo, hi = ranges[kw.API_API_VERSIONS]
    assert lo == 0 and hi >= 3
    for key in (kw.API_PRODUCE, kw.API_FETCH, kw.API_METADATA):
        lo, hi = ranges[key]
        assert 0 <= lo <= hi, (key, lo, hi)
    # Produce v3 is what the raw produce test below speaks (Kafka 4 still serves v3..).
    assert ranges[kw.API_PRODUCE][0] <= 3 <= ranges[kw.API_PRODUCE][1]


def test_api_versions_newer_than_supported_gets_v0_error_response(broker):
    with connect(broker) as conn:
        _, supported = api_versions(conn, 0, correlation_id=5)
        too_new = supported[kw.API_API_VERSIONS][1] + 1
        # A future client sends a flexible header and body; the broker must not need to parse it.
        conn.send(kw.api_versions_request(too_new, correlation_id=6))
        body = conn.read_response(6)
    # Answered in the v0 layout: UNSUPPORTED_VERSION plus (at least) the ApiVersions range.
    error, ranges = kw.parse_api_versions_response(body, 0)
    assert error == kw.ERROR_UNSUPPORTED_VERSION
    assert ranges[kw.API_API_VERSIONS] == supported[kw.API_API_VERSIONS]
    assert_serving(broker)


@pytest.mark.parametrize("length", [-1, -2147483648, 0x7FFFFFFF, 1 << 30])
def test_bad_frame_length_closes_connection(broker, length):
    with connect(broker) as conn:
        conn.send(struct.pack(">i", length) + b"\x00\x12\x00\x00\x00\x00\x00\x01")
        assert conn.closed_by_peer(CLOSE_TIMEOUT_S), f"frame length {length}: connection left open"
    assert_serving(broker)


def test_truncated_frame_then_close(broker):
    request = kw.api_versions_request(2, correlation_id=9)
    for cut in (1, 3, 4, 7, len(request) - 1):
        with connect(broker) as conn:
            conn.send(request[:cut])
            conn.sock.shutdown(socket.SHUT_WR)
            assert conn.closed_by_peer(CLOSE_TIMEOUT_S), f"cut at {cut}: connection left open"
    assert_serving(broker)


def test_unknown_api_key_is_refused(broker):
    with connect(broker) as conn:
        header = kw.request_header(api_key=9999, api_version=0, correlation_id=42)
        conn.send(kw.frame(header + b"\x00" * 16))
        # Kafka closes the connection; an error response is also acceptable, but then the
        # connection must still answer the next request.
        try:
            conn.read_response(42)
            answered = True
        except socket.timeout:
            pytest.fail("unknown API key: no answer, connection left open")
        except (ConnectionError, OSError):
            answered = False
        if answered:
            error, _ = api_versions(conn, 0, correlation_id=43)
            assert error == kw.ERROR_NONE
    assert_serving(broker)


def test_known_api_with_garbage_body(broker):
    """A Metadata request whose body lies about its array length."""
    with connect(broker) as conn:
        header = kw.request_header(kw.API_METADATA, 1, correlation_id=50)
        conn.send(kw.frame(header + struct.pack(">i", 1_000_000) + b"\x00\x03abc"))
        try:
            conn.read_response(50)  # an error response is fine, so is a closed connection
        except socket.timeout:
            pytest.fail("lying Metadata request: no answer, connection left open")
        except (ConnectionError, OSError):
            pass
    assert_serving(broker)


def test_random_bytes(broker):
    rng = random.Random(20261125)
    for round_ in range(25):
        size = rng.choice([1, 3, 4, 5, 16, 64, 1024, 8192])
        junk = bytes(rng.getrandbits(8) for _ in range(size))
        if round_ % 2:
            # A plausible length prefix followed by junk, so the junk reaches the header decoder.
            junk = struct.pack(">i", len(junk)) + junk
        with connect(broker) as conn:
            try:
                conn.send(junk)
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError as e:
                # Closed on us already: a broken pipe, a reset, or (Kafka closes this fast) the
                # socket no longer connected when we shut down our side.
                if e.errno in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                    continue
                raise
            assert conn.closed_by_peer(CLOSE_TIMEOUT_S), f"round {round_}: connection left open"
    assert_serving(broker)


def produce_v3(conn, correlation_id, topic, batch):
    conn.send(kw.produce_request_v3(correlation_id, topic, 0, batch, acks=-1, timeout_ms=10000))
    ((name, partition, error, base_offset),) = kw.parse_produce_response_v3(conn.read_response(correlation_id))
    assert (name, partition) == (topic, 0)
    return error, base_offset


def produce_until_writable(conn, topic, batch, correlation_id):
    """Produces `batch`, retrying (bounded) while a fresh partition's leadership settles, which
    real Kafka reports with NOT_LEADER / UNKNOWN_TOPIC errors for a moment after creation."""
    deadline = time.monotonic() + 15
    while True:
        error, base_offset = produce_v3(conn, correlation_id, topic, batch)
        if error not in (kw.ERROR_NOT_LEADER_OR_FOLLOWER, kw.ERROR_UNKNOWN_TOPIC_OR_PARTITION):
            return error, base_offset
        assert time.monotonic() < deadline, f"partition not writable: error {error}"
        correlation_id += 1


def check_bad_batch_rejected(broker, topic, bad_batch, expected_errors):
    """good batch A, the bad batch, good batch B on one connection: the bad one gets one of
    expected_errors, takes no offsets, and the log holds exactly A then B."""
    create_topic(broker.bootstrap, topic, 1)
    now = int(time.time() * 1000)
    good_a = kw.encode_record_batch([(b"a", f"a{i}".encode()) for i in range(3)], now)
    good_b = kw.encode_record_batch([(None, f"b{i}".encode()) for i in range(3)], now)
    with connect(broker) as conn:
        assert produce_until_writable(conn, topic, good_a, 100) == (kw.ERROR_NONE, 0)
        error, _ = produce_v3(conn, 200, topic, bad_batch)
        assert error in expected_errors, f"error code {error}, expected one of {expected_errors}"
        # The same connection goes on working, and the bad batch took no offsets.
        assert produce_v3(conn, 201, topic, good_b) == (kw.ERROR_NONE, 3)

    messages = consume_all(broker.bootstrap, topic, 1)
    assert [(m.offset(), m.value()) for m in messages] == \
        [(i, f"a{i}".encode()) for i in range(3)] + [(3 + i, f"b{i}".encode()) for i in range(3)]
    assert_serving(broker)


def test_produce_with_bad_crc_is_rejected(broker):
    now = int(time.time() * 1000)
    corrupt = kw.encode_record_batch([(b"c", f"c{i}".encode()) for i in range(4)], now, corrupt_crc=True)
    check_bad_batch_rejected(broker, "raw-crc", corrupt, {kw.ERROR_CORRUPT_MESSAGE})


def test_produce_with_lying_record_count_is_rejected(broker):
    now = int(time.time() * 1000)
    lying = kw.encode_record_batch([(b"c", f"c{i}".encode()) for i in range(3)], now, declared_count=5)
    # Kafka answers INVALID_RECORD (87); CORRUPT_MESSAGE (2) says the same.
    check_bad_batch_rejected(broker, "raw-count", lying,
                             {kw.ERROR_INVALID_RECORD, kw.ERROR_CORRUPT_MESSAGE})


def test_produce_batch_over_message_max_bytes_is_rejected(broker):
    now = int(time.time() * 1000)
    # One 2 MiB record: above the default message.max.bytes (1 MiB + 12), far below the request
    # size limit, so the request is read and the batch refused.
    big = kw.encode_record_batch([(None, bytes(2 * 1024 * 1024))], now)
    check_bad_batch_rejected(broker, "raw-big", big, {kw.ERROR_MESSAGE_TOO_LARGE})
