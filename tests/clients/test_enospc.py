"""A real ENOSPC (issue 7): the broker's data directory on an 8 MiB tmpfs made by the test.

Produce (acks=all) until the broker answers KAFKA_STORAGE_ERROR (56); then every acknowledged
message still reads back, nothing earlier is lost, further produces are refused while the disk is
full, and once space is freed (deleting a filler file written to the same tmpfs before the broker
started) writes resume right after the last acknowledged offset. Needs root for mount(8); skipped
with the reason otherwise.
"""

import os
import subprocess

import pytest

import kafkawire as kw
from sluicetest import Broker, consume_all, create_topic

pytestmark = pytest.mark.sluice_only(reason="ENOSPC on a tmpfs holding sluice's data directory (starts `sluice serve` itself)")

TMPFS_BYTES = 8 * 1024 * 1024
FILLER_BYTES = 2 * 1024 * 1024
RECORD_BYTES = 8 * 1024
RECORDS_PER_BATCH = 8
# 8 MiB / 64 KiB batches = 128: the bound leaves room for tmpfs accounting, never loops forever.
PRODUCE_ATTEMPTS_MAX = 400
ERROR_KAFKA_STORAGE_ERROR = 56
TOPIC = "full"


def value(batch, i):
    head = f"{batch}:{i}:".encode()
    return head + bytes([batch % 251]) * (RECORD_BYTES - len(head))


@pytest.fixture
def tmpfs_dir(tmp_path):
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root / CAP_SYS_ADMIN): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def full_broker(request, tmp_path, tmpfs_dir):
    b = Broker(tmp_path / "b")  # log file outside the tmpfs
    b.data_dir = tmpfs_dir / "data"
    b.data_dir.mkdir()
    request.node.sluice_brokers = [b]
    b.start()
    try:
        yield b
    finally:
        b.stop()
    if b.problems:
        pytest.fail("broker misbehaved: " + "; ".join(b.problems), pytrace=False)


def produce(conn, cid, batch_no):
    records = kw.encode_record_batch(
        [(None, value(batch_no, i)) for i in range(RECORDS_PER_BATCH)], 1_700_000_000_000)
    conn.send(kw.produce_request_v3(cid, TOPIC, 0, records, acks=-1))
    [(_, _, error, base)] = kw.parse_produce_response_v3(conn.read_response(cid))
    return error, base


@pytest.mark.timeout(120)
def test_enospc_refuses_writes_keeps_reads_and_resumes(full_broker, tmpfs_dir):
    b = full_broker
    filler = tmpfs_dir / "filler"
    create_topic(b.bootstrap, TOPIC, 1)
    with open(filler, "wb") as f:
        f.write(b"\xff" * FILLER_BYTES)
        os.fsync(f.fileno())

    acked = {}  # batch number -> base offset
    errors = []
    with kw.Connection(b.host, b.port) as conn:
        for n in range(PRODUCE_ATTEMPTS_MAX):
            error, base = produce(conn, n + 1, n)
            if error == kw.ERROR_NONE:
                acked[n] = base
                continue
            errors.append(error)
            break
        assert errors == [ERROR_KAFKA_STORAGE_ERROR], \
            f"expected KAFKA_STORAGE_ERROR after {len(acked)} acknowledged batches, got {errors}"
        assert len(acked) >= 10, f"the disk filled after only {len(acked)} batches"
        # Still full: refused again; the partition is not offline (same error, nothing stored).
        error, _ = produce(conn, 10_001, 10_001)
        assert error == ERROR_KAFKA_STORAGE_ERROR

        # Reads work while the disk is full: every acknowledged record, in order, intact.
        msgs = consume_all(b.bootstrap, TOPIC, 1, timeout_s=60)
        expect = [value(n, i) for n in sorted(acked) for i in range(RECORDS_PER_BATCH)]
        assert [m.value() for m in msgs] == expect
        assert [m.offset() for m in msgs] == list(range(len(expect)))

        # Free space: writes resume at the next offset.
        filler.unlink()
        error, base = produce(conn, 20_001, 20_001)
        assert error == kw.ERROR_NONE, f"writes did not resume after freeing space: error {error}"
        assert base == len(expect)
        acked[20_001] = base
    msgs = consume_all(b.bootstrap, TOPIC, 1, timeout_s=60)
    expect = [value(n, i) for n in sorted(acked) for i in range(RECORDS_PER_BATCH)]
    assert [m.value() for m in msgs] == expect
    print(f"enospc: {len(acked) - 1} batches ({(len(acked) - 1) * RECORDS_PER_BATCH} records) "
          f"acknowledged before KAFKA_STORAGE_ERROR; resumed at offset {base}")
    log = b.log_text()
    assert "no space left on device" in log.lower()

    # And after a kill -9 everything acknowledged is still there.
    b.restart_after_crash()
    msgs = consume_all(b.bootstrap, TOPIC, 1, timeout_s=60)
    assert [m.value() for m in msgs] == expect
