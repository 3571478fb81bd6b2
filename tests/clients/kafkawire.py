"""A tiny Kafka wire encoder/decoder for the raw-socket tests (no dependencies).

Only what tests/clients needs: CRC32C, RecordBatch v2, request framing, ApiVersions v0..v3 and
Produce v3. Field layouts follow the Kafka protocol guide and the message JSON schemas of
Apache Kafka (clients/src/main/resources/common/message/*.json).
"""

import socket
import struct
import time

# --- CRC32C (Castagnoli), reflected polynomial 0x82F63B78, as Kafka's RecordBatch v2 uses ------------

_CRC32C_POLY = 0x82F63B78


def _crc32c_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ _CRC32C_POLY if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data, crc=0):
    """CRC32C of `data` (bytes-like); pass a previous result as `crc` to continue a checksum."""
    crc ^= 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# --- varints ---------------------------------------------------------------------------------------


def uvarint(n):
    """Unsigned LEB128, as used by compact (flexible-version) lengths and tagged fields."""
    assert n >= 0
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint(n):
    """Signed zig-zag varint (Kafka `varint`/`varlong` inside records)."""
    return uvarint((n << 1) ^ (n >> 63))


def read_uvarint(buf, pos):
    shift = 0
    result = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


# --- RecordBatch v2 ------------------------------------------------------------------------------

# baseOffset, batchLength, partitionLeaderEpoch, magic, crc
_BATCH_PREFIX = struct.Struct(">qiibI")
# attributes, lastOffsetDelta, baseTimestamp, maxTimestamp, producerId, producerEpoch,
# baseSequence, recordCount
_BATCH_CRC_COVERED_HEADER = struct.Struct(">hiqqqhii")
BATCH_HEADER_BYTES = _BATCH_PREFIX.size + _BATCH_CRC_COVERED_HEADER.size  # 61


def _bytes_field(b):
    if b is None:
        return varint(-1)
    return varint(len(b)) + bytes(b)


def encode_record(offset_delta, timestamp_delta, key, value, headers=()):
    """One record of a v2 batch: length varint, then attributes..headers."""
    body = bytearray(b"\x00")  # attributes: unused, always 0
    body += varint(timestamp_delta)
    body += varint(offset_delta)
    body += _bytes_field(key)
    body += _bytes_field(value)
    body += varint(len(headers))
    for h_key, h_value in headers:
        body += _bytes_field(h_key.encode("utf-8"))
        body += _bytes_field(h_value)
    return varint(len(body)) + bytes(body)


def encode_record_batch(records, base_timestamp_ms, *, producer_id=-1, producer_epoch=-1,
                        base_sequence=-1, attributes=0, partition_leader_epoch=0,
                        timestamp_step_ms=0, corrupt_crc=False, declared_count=None):
    """An uncompressed RecordBatch v2 as a producer sends it (baseOffset 0).

    `records` is a list of (key, value) or (key, value, headers); record i gets offset delta i
    and timestamp base_timestamp_ms + i * timestamp_step_ms. With corrupt_crc the stored CRC is
    wrong (bit-flipped), everything else valid. `declared_count` makes the header lie about the
    number of records (with a CRC that matches the lie).
    """
    assert records, "a batch holds at least one record"
    body = bytearray()
    for i, rec in enumerate(records):
        key, value = rec[0], rec[1]
        headers = rec[2] if len(rec) > 2 else ()
        body += encode_record(i, i * timestamp_step_ms, key, value, headers)
    max_timestamp = base_timestamp_ms + (len(records) - 1) * timestamp_step_ms
    covered = _BATCH_CRC_COVERED_HEADER.pack(
        attributes, len(records) - 1, base_timestamp_ms, max_timestamp,
        producer_id, producer_epoch, base_sequence,
        len(records) if declared_count is None else declared_count) + bytes(body)
    crc = crc32c(covered)
    if corrupt_crc:
        crc ^= 0x00010000
    # batchLength counts everything after itself: leader epoch (4) + magic (1) + crc (4) + covered.
    batch_length = 4 + 1 + 4 + len(covered)
    return _BATCH_PREFIX.pack(0, batch_length, partition_leader_epoch, 2, crc) + covered


# --- requests and responses --------------------------------------------------------------------

API_PRODUCE = 0
API_FETCH = 1
API_METADATA = 3
API_API_VERSIONS = 18

ERROR_NONE = 0
ERROR_CORRUPT_MESSAGE = 2
ERROR_UNKNOWN_TOPIC_OR_PARTITION = 3
ERROR_NOT_LEADER_OR_FOLLOWER = 6
ERROR_MESSAGE_TOO_LARGE = 10
ERROR_UNSUPPORTED_VERSION = 35
ERROR_INVALID_RECORD = 87


def _string(s):
    if s is None:
        return struct.pack(">h", -1)
    raw = s.encode("utf-8")
    return struct.pack(">h", len(raw)) + raw


def _compact_string(s):
    raw = s.encode("utf-8")
    return uvarint(len(raw) + 1) + raw


def request_header(api_key, api_version, correlation_id, client_id="sluice-tests", flexible=False):
    """Request header v1 (v2 when `flexible`: followed by an empty tagged-field section)."""
    header = struct.pack(">hhi", api_key, api_version, correlation_id) + _string(client_id)
    if flexible:
        header += uvarint(0)
    return header


def frame(payload):
    return struct.pack(">i", len(payload)) + payload


def api_versions_request(version, correlation_id):
    """A framed ApiVersions request. v3+ is flexible: header v2 and a compact body."""
    if version >= 3:
        body = _compact_string("sluice-tests") + _compact_string("1.0") + uvarint(0)
        return frame(request_header(API_API_VERSIONS, version, correlation_id, flexible=True) + body)
    return frame(request_header(API_API_VERSIONS, version, correlation_id))


def parse_api_versions_response(body, version):
    """Body after the correlation id (ApiVersions responses always use response header v0).

    Returns (error_code, {api_key: (min_version, max_version)}).
    """
    (error_code,) = struct.unpack_from(">h", body, 0)
    pos = 2
    ranges = {}
    if version >= 3:
        count_plus_one, pos = read_uvarint(body, pos)
        count = count_plus_one - 1
        for _ in range(max(count, 0)):
            key, lo, hi = struct.unpack_from(">hhh", body, pos)
            pos += 6
            pos = _skip_tagged_fields(body, pos)
            ranges[key] = (lo, hi)
    else:
        (count,) = struct.unpack_from(">i", body, pos)
        pos += 4
        for _ in range(max(count, 0)):
            key, lo, hi = struct.unpack_from(">hhh", body, pos)
            pos += 6
            ranges[key] = (lo, hi)
    return error_code, ranges


def _skip_tagged_fields(buf, pos):
    count, pos = read_uvarint(buf, pos)
    for _ in range(count):
        _tag, pos = read_uvarint(buf, pos)
        size, pos = read_uvarint(buf, pos)
        pos += size
    return pos


def produce_request_v3(correlation_id, topic, partition, records, acks=-1, timeout_ms=10000):
    """A framed Produce v3 request for one partition (no transactional id)."""
    body = _string(None) + struct.pack(">hi", acks, timeout_ms)
    body += struct.pack(">i", 1) + _string(topic)
    body += struct.pack(">i", 1) + struct.pack(">i", partition)
    body += struct.pack(">i", len(records)) + records
    return frame(request_header(API_PRODUCE, 3, correlation_id) + body)


def parse_produce_response_v3(body):
    """Returns [(topic, partition, error_code, base_offset)] from a Produce v3 response body."""
    pos = 0
    out = []
    (n_topics,) = struct.unpack_from(">i", body, pos)
    pos += 4
    for _ in range(n_topics):
        (name_len,) = struct.unpack_from(">h", body, pos)
        pos += 2
        name = body[pos:pos + name_len].decode("utf-8")
        pos += name_len
        (n_parts,) = struct.unpack_from(">i", body, pos)
        pos += 4
        for _ in range(n_parts):
            index, error_code, base_offset, _log_append_time = struct.unpack_from(">ihqq", body, pos)
            pos += 4 + 2 + 8 + 8
            out.append((name, index, error_code, base_offset))
    return out


class Connection:
    """A blocking TCP connection to a broker with a per-operation timeout."""

    def __init__(self, host, port, timeout_s=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def read_response(self, correlation_id):
        """Reads one response frame; checks the correlation id; returns the rest (header v0)."""
        (size,) = struct.unpack(">i", self.recv_exact(4))
        if size < 4 or size > 64 * 1024 * 1024:
            raise ValueError(f"implausible response size {size}")
        payload = self.recv_exact(size)
        (got,) = struct.unpack_from(">i", payload, 0)
        if got != correlation_id:
            raise ValueError(f"correlation id {got}, expected {correlation_id}")
        return payload[4:]

    def closed_by_peer(self, timeout_s=10.0):
        """True if the peer closes (EOF or reset) within timeout_s; any bytes it sends first are
        skipped. False if the connection is still open when the time is up."""
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.sock.settimeout(remaining)
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
