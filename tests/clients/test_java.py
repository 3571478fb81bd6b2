"""Apache Kafka's own Java client (kafka-clients 4.x) against the broker: the JUnit 5 suite in
tests/java (idempotent producer with every codec, classic and KIP-848 consumer groups, static
membership, the Admin client), run by Maven against this test's broker. Under `--broker kafka`
the same suite runs against Apache Kafka, where every test must pass.

Needs `mvn` and a JDK 17+; scripts/test.sh installs Maven and resolves the dependencies first
(`mvn -B -q -f tests/java/pom.xml test-compile dependency:go-offline surefire:test
-Dgroups=resolve-only`), so this run needs no network."""

import os
import re
import shutil
import subprocess

import pytest

from sluicetest import REPO_ROOT

JAVA_DIR = REPO_ROOT / "tests" / "java"
MVN_TIMEOUT_S = 540
SUMMARY = re.compile(r"Tests run: (\d+), Failures: (\d+), Errors: (\d+), Skipped: (\d+)(?!.* -- in )")


@pytest.mark.timeout(MVN_TIMEOUT_S + 60)
def test_java_client_suite(bootstrap, request, tmp_path, capsys):
    mvn = shutil.which("mvn")
    if mvn is None:
        pytest.fail("mvn is not installed (scripts/test.sh installs Debian's maven)")
    kind = request.config.getoption("--broker", default="sluice")
    env = dict(os.environ)
    env.setdefault("MAVEN_OPTS", "-Xmx384m -XX:TieredStopAtLevel=1")
    cmd = [mvn, "-B", "-ntp", "-f", str(JAVA_DIR / "pom.xml"), "test",
           f"-Dbootstrap={bootstrap}", f"-Dbroker={kind}", f"-Djava.tests.build={tmp_path / 'target'}"]
    try:
        done = subprocess.run(cmd, cwd=JAVA_DIR, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=MVN_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace")
        pytest.fail(f"mvn test did not finish within {MVN_TIMEOUT_S} s; its output:\n{out[-30000:]}")
    out = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
    lines = [line for line in out.splitlines() if "Tests run:" in line]
    with capsys.disabled():  # surefire's summary in pytest's own output, for CI logs
        print()
        for line in lines:
            print(f"[java {kind}] {line.strip()}")
    assert done.returncode == 0, (f"{' '.join(cmd)} exited {done.returncode}; surefire's output "
                                  f"(reports in {tmp_path / 'target' / 'surefire-reports'}):\n"
                                  f"{out[-30000:]}")
    totals = [SUMMARY.search(line) for line in lines]
    totals = [m for m in totals if m]
    assert totals, f"no surefire summary in mvn's output:\n{out[-30000:]}"
    run, failures, errors, _skipped = (int(x) for x in totals[-1].groups())
    assert run > 0 and failures == 0 and errors == 0, lines
