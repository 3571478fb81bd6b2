"""pytest fixtures for the client tests: a real `sluice serve` per test.

`broker` starts the built binary on free 127.0.0.1 ports with a fresh data directory, waits
(bounded) until it accepts TCP, yields a `sluicetest.Broker` (`.bootstrap` is "127.0.0.1:PORT";
`.restart_after_crash()` kills it with SIGKILL and starts it again on the same data directory
and ports), and stops it with SIGTERM (SIGKILL after a timeout) at the end. A test fails at
teardown if the broker died on its own, did not stop cleanly, or logged a panic; the broker's
log is attached to the report of any failed test.
"""

import pytest

from sluicetest import Broker

# Tests of features not built yet (the `sluice topic` CLI); move a file up to tests/clients/
# in the commit that builds its feature, so the suite stays green at every commit.
collect_ignore = ["pending"]


@pytest.fixture
def broker(request, tmp_path):
    b = Broker(tmp_path / "broker")
    request.node.sluice_brokers = getattr(request.node, "sluice_brokers", []) + [b]
    b.start()
    try:
        yield b
    finally:
        b.stop()
    if b.problems:
        pytest.fail("broker misbehaved: " + "; ".join(b.problems) + "\n--- broker log ---\n"
                    + b.log_tail(), pytrace=False)


@pytest.fixture
def bootstrap(broker):
    return broker.bootstrap


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed and call.when == "call":  # a failed start already carries the log
        for b in getattr(item, "sluice_brokers", []):
            report.sections.append((f"sluice broker log ({b.log_path})", b.log_tail()))
    return report
