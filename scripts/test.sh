#!/usr/bin/env bash
# scripts/test.sh: the one test command of Sluice (README, CI).
#
# On a fresh Debian 12 machine (as root, or with passwordless sudo) it installs what the
# tests need, then runs every test:
#   1. system packages: kcat (Debian's, on librdkafka 2.0.2), a C compiler for -sys crates,
#      python3 with venv support, prometheus (promtool and the server, for the /metrics tests),
#      iproute2 (ip, tc: the cluster tests run their nodes in network namespaces);
#      `apt-get update` runs only when something is missing;
#   2. a Python venv at .venv with the pinned clients of tests/clients/requirements.txt;
#   3. `cargo build` of the `sluice` binary;
#   4. `cargo test` (unit tests and the tests/it integration binary);
#   5. `pytest tests/clients` against the built binary (real Kafka clients, raw sockets);
#   6. the same tests against Apache Kafka 4.x (`pytest tests/clients --broker kafka`, the broker
#      from scripts/kafka.sh; Java and Maven installed when missing, Kafka's jars resolved into
#      ~/.m2 on the first run), so the suite stays a spec that Kafka itself meets.
# Re-running is quick: every install step is skipped when already satisfied.
# Works from any directory. Exits non-zero on the first failure.
#
# Environment: CARGO_TARGET_DIR (respected), PYTHON (interpreter for the venv, default python3),
# SLUICE_TEST_PYTEST_ARGS (extra pytest arguments, e.g. "-k kcat"; used by steps 5 and 6),
# SLUICE_TEST_KAFKA=0 (skip step 6).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

START_S=$SECONDS
section() { printf '\n========== %s (t=%ds) ==========\n' "$*" "$((SECONDS - START_S))"; }
die() { printf 'scripts/test.sh: error: %s\n' "$*" >&2; exit 1; }

PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"
REQUIREMENTS="$ROOT/tests/clients/requirements.txt"

# Installs Debian packages (root, or passwordless sudo); `apt-get update` first.
apt_install() {
    echo "installing: $*"
    command -v apt-get >/dev/null 2>&1 || die "missing $* and no apt-get: install them by hand"
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "missing $*: run as root or install them"
        sudo=(sudo -n)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "$@"
}

# ---------------------------------------------------------------------------------------------
section "1/6 system packages"
missing=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
# promtool and a Prometheus server for tests/clients/test_metrics.py (~96 MB installed).
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || missing+=(prometheus)
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
# ip (network namespaces, veth, bridges) and tc for tests/clients/test_cluster.py.
{ command -v ip && command -v tc; } >/dev/null 2>&1 || missing+=(iproute2)
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    PYTHON=python3
    missing+=(python3 python3-venv)
elif ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    # Debian's own python3 needs python3-venv for `python3 -m venv`; pyenv builds do not.
    have_pkg python3-venv || missing+=(python3-venv)
fi
if ((${#missing[@]})); then
    apt_install "${missing[@]}"
else
    echo "all present"
fi
command -v cargo >/dev/null 2>&1 || die "cargo not found: install the Rust toolchain (rustup) first"
echo "cargo:   $(cargo --version)"
echo "python:  $("$PYTHON" --version 2>&1) ($(command -v "$PYTHON"))"
echo "kcat:    $(kcat -V 2>&1 | grep -m1 Version || true)"

# ---------------------------------------------------------------------------------------------
section "2/6 python venv (.venv)"
stamp_want="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1) $("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"
stamp_file="$VENV/.sluice-requirements"
venv_ok() {
    [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1
}
if ! venv_ok; then
    echo "creating $VENV"
    "$PYTHON" -m venv --clear "$VENV"
fi
if [[ "$(cat "$stamp_file" 2>/dev/null || true)" == "$stamp_want" ]] \
    && "$VENV/bin/python" -c 'import kafka, confluent_kafka, pytest, pytest_timeout' >/dev/null 2>&1; then
    echo "requirements already installed"
else
    # A venv made by another interpreter version would hold wrong wheels: start it over.
    if [[ -f "$stamp_file" && "$(cut -d' ' -f2 "$stamp_file")" != "$(cut -d' ' -f2 <<<"$stamp_want")" ]]; then
        "$PYTHON" -m venv --clear "$VENV"
    fi
    "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$REQUIREMENTS"
    printf '%s\n' "$stamp_want" >"$stamp_file"
fi
"$VENV/bin/python" - <<'PY'
import confluent_kafka, kafka, pytest
print(f"kafka-python {kafka.__version__}, confluent-kafka {confluent_kafka.__version__} "
      f"(librdkafka {confluent_kafka.libversion()[0]}), pytest {pytest.__version__}")
PY

# ---------------------------------------------------------------------------------------------
# tests/clients/test_java.py runs the Java client suite of tests/java with Maven: install a JDK
# and Maven when missing, and resolve the suite's jars and plugins now (online, first run only;
# cached in ~/.m2) so that the pytest step runs it without the network.
section "java client tests: JDK, Maven, tests/java dependencies"
java_missing=()
command -v javac >/dev/null 2>&1 || java_missing+=(default-jdk-headless)
command -v mvn >/dev/null 2>&1 || java_missing+=(maven)
if ((${#java_missing[@]})); then apt_install "${java_missing[@]}"; fi
mvn -B -q -Dstyle.color=never -f "$ROOT/tests/java/pom.xml" test-compile dependency:go-offline surefire:test -Dgroups=resolve-only
echo "java:    $(javac -version 2>&1), $(mvn -v 2>/dev/null | head -n1 | sed 's/\x1b\[[0-9;]*m//g')"

# ---------------------------------------------------------------------------------------------
section "3/6 cargo build"
cargo build --locked --bin sluice
TARGET_DIR="$(cargo metadata --locked --format-version 1 --no-deps \
    | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
SLUICE_BIN="$TARGET_DIR/debug/sluice"
[[ -x "$SLUICE_BIN" ]] || die "built binary not found at $SLUICE_BIN"
export SLUICE_BIN
echo "binary: $SLUICE_BIN"

# ---------------------------------------------------------------------------------------------
section "4/6 cargo test (unit + tests/it)"
cargo test --locked

# ---------------------------------------------------------------------------------------------
section "5/6 pytest tests/clients (real clients against $SLUICE_BIN)"
# shellcheck disable=SC2086 # word splitting of the extra arguments is intended
set +e
"$VENV/bin/python" -m pytest "$ROOT/tests/clients" -v ${SLUICE_TEST_PYTEST_ARGS:-}
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
    die "pytest collected no tests (exit 5): that is a failure"
elif [[ $rc -ne 0 ]]; then
    die "pytest failed (exit $rc)"
fi

# ---------------------------------------------------------------------------------------------
if [[ "${SLUICE_TEST_KAFKA:-1}" == 0 ]]; then
    section "6/6 pytest tests/clients --broker kafka: skipped (SLUICE_TEST_KAFKA=0)"
else
    section "6/6 pytest tests/clients --broker kafka (the same tests against Apache Kafka)"
    kafka_missing=()
    command -v java >/dev/null 2>&1 || kafka_missing+=(default-jdk-headless)
    command -v mvn >/dev/null 2>&1 || kafka_missing+=(maven)
    if ((${#kafka_missing[@]})); then apt_install "${kafka_missing[@]}"; fi
    echo "java:    $(java -version 2>&1 | head -n1)"
    "$ROOT/scripts/kafka.sh" resolve
    # shellcheck disable=SC2086 # word splitting of the extra arguments is intended
    set +e
    "$VENV/bin/python" -m pytest "$ROOT/tests/clients" -v --broker kafka ${SLUICE_TEST_PYTEST_ARGS:-}
    rc=$?
    if [[ $rc -ne 0 && $rc -ne 5 ]]; then
        # Kafka is the reference here, not the system under test, and its timing on a loaded
        # 2-core machine (a leader named before it serves, a coordinator still loading, a
        # connection closed faster than our shutdown) failed single tests now and then that pass
        # on a rerun. The failed tests run once more; a test that fails twice fails the run.
        # The Sluice pass above gets no rerun.
        echo "scripts/test.sh: pytest --broker kafka failed (exit $rc); running the failed tests once more" >&2
        "$VENV/bin/python" -m pytest "$ROOT/tests/clients" -v --broker kafka --last-failed ${SLUICE_TEST_PYTEST_ARGS:-}
        rc=$?
        [[ $rc -eq 0 ]] && echo "scripts/test.sh: WARNING: tests above failed once against Kafka and passed on the rerun" >&2
    fi
    set -e
    if [[ $rc -eq 5 ]]; then
        die "pytest --broker kafka collected no tests (exit 5): that is a failure"
    elif [[ $rc -ne 0 ]]; then
        die "pytest --broker kafka failed (exit $rc)"
    fi
fi

section "all tests passed"
