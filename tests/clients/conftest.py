"""pytest fixtures for the client tests: a real `sluice serve` per test, or Apache Kafka.

`broker` starts the built binary on free 127.0.0.1 ports with a fresh data directory, waits
(bounded) until it accepts TCP, yields a `sluicetest.Broker` (`.bootstrap` is "127.0.0.1:PORT";
`.restart_after_crash()` kills it with SIGKILL and starts it again on the same data directory
and ports), and stops it with SIGTERM (SIGKILL after a timeout) at the end. A test fails at
teardown if the broker died on its own, did not stop cleanly, or logged a panic; the broker's
log is attached to the report of any failed test.

`pytest --broker kafka` runs the same tests against Apache Kafka 4.x instead: a single-node
KRaft broker started by scripts/kafka.sh (`sluicetest.KafkaPeer`: bootstrap, host, port,
restart_after_crash, restart_with, stop, as Broker). A Kafka start costs seconds, so the tests
share one (started on first use, stopped at the end of the session), reset between tests (every
topic and consumer group deleted); a test marked `@pytest.mark.own_broker` (it stops, kills or
restarts the broker) gets a Kafka of its own in its tmp_path. The tests are the compatibility
spec, so they pass against both; a test about a Sluice-only thing (its CLI, its files, its
/metrics, its cluster, kill -9 and ENOSPC of its process) is marked
`@pytest.mark.sluice_only(reason=...)` and skipped under `--broker kafka` with that reason.
"""

import pytest

from sluicetest import Broker, KafkaPeer, SharedKafka

# Tests of features not built yet (the `sluice topic` CLI); move a file up to tests/clients/
# in the commit that builds its feature, so the suite stays green at every commit.
collect_ignore = ["pending"]


def pytest_addoption(parser):
    parser.addoption("--broker", choices=["sluice", "kafka"], default="sluice",
                     help="the broker the tests run against: the built sluice binary (default) "
                          "or Apache Kafka 4.x started by scripts/kafka.sh")


def pytest_report_header(config):
    return f"broker under test: {config.getoption('--broker')}"


def pytest_collection_modifyitems(config, items):
    if config.getoption("--broker") == "sluice":
        return
    for item in items:
        marker = item.get_closest_marker("sluice_only")
        if marker is not None:
            reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            item.add_marker(pytest.mark.skip(reason=f"sluice only: {reason}"))


@pytest.fixture
def broker_kind(request):
    return request.config.getoption("--broker")


@pytest.fixture(scope="session")
def shared_kafka(tmp_path_factory):
    k = SharedKafka(tmp_path_factory.mktemp("shared-kafka"), name="shared-kafka")
    k.start()
    try:
        yield k
    finally:
        k.stop()


@pytest.fixture
def broker(request, tmp_path, broker_kind):
    if broker_kind == "kafka" and request.node.get_closest_marker("own_broker") is None:
        b = request.getfixturevalue("shared_kafka")
        request.node.sluice_brokers = getattr(request.node, "sluice_brokers", []) + [b]
        yield b
        if not b.alive():
            b.problems.append("the shared Kafka died during this test")
            pytest.fail("broker misbehaved: " + "; ".join(b.problems) + "\n--- broker log ---\n"
                        + b.log_tail(), pytrace=False)
        b.reset()
        return
    if broker_kind == "kafka":
        b = KafkaPeer(tmp_path / "kafka")
    else:
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
            report.sections.append((f"{b.name} broker log ({b.log_path})", b.log_tail()))
    return report
