#!/usr/bin/env bash
# scripts/kafka.sh: Apache Kafka 4.x beside Sluice, as a peer for tests and benchmarks.
#
#   scripts/kafka.sh start DIR [--set key=value ...]
#       Formats a single-node KRaft broker+controller in DIR (once), starts it on free
#       127.0.0.1 ports (client and controller listeners), waits (bounded) until it answers
#       Kafka requests and returns with Kafka running in the background: pid in DIR/kafka.pid,
#       log in DIR/kafka.log, bootstrap in DIR/bootstrap and as the LAST line of the output.
#       --set overrides or adds server.properties entries (repeatable).
#   scripts/kafka.sh stop DIR
#       SIGTERM to DIR/kafka.pid, bounded wait, then SIGKILL. Idempotent.
#   scripts/kafka.sh tool NAME ARGS...
#       Runs one of Kafka's command-line tools (kafka-topics, kafka-console-producer, ...; `tool`
#       alone lists them) from the same jars, with a small heap and WARN logging to stderr.
#   scripts/kafka.sh classpath      prints the classpath (broker, tools, clients, log4j2)
#   scripts/kafka.sh resolve        resolves the jars only, prints the version
#
# The jars come from Maven Central through scripts/kafka/pom.xml (cached in ~/.m2, never in the
# repository); the resolved classpath is cached in ~/.cache/sluice-kafka/<version>-<pom hash>/,
# so only the first run on a machine needs the network (`mvn -B -q`), later ones are offline.
#
# Environment: KAFKA_VERSION (default: the pom's, 4.4.0), JAVA_HOME, KAFKA_HEAP_OPTS (broker,
# default -Xms256m -Xmx512m), KAFKA_TOOL_HEAP_OPTS (tools, default -Xmx256m; perf tests
# -Xmx512m), KAFKA_OPTS (extra JVM options for both), KAFKA_START_TIMEOUT_S (default 60),
# KAFKA_STOP_TIMEOUT_S (default 30), SLUICE_KAFKA_CACHE (default ~/.cache/sluice-kafka).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
POM="$ROOT/scripts/kafka/pom.xml"
BROKER_LOG4J="$ROOT/scripts/kafka/log4j2-broker.properties"
TOOLS_LOG4J="$ROOT/scripts/kafka/log4j2-tools.properties"

die() { printf 'scripts/kafka.sh: error: %s\n' "$*" >&2; exit 1; }
note() { printf 'scripts/kafka.sh: %s\n' "$*" >&2; }

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

JAVA="java"
[[ -n "${JAVA_HOME:-}" ]] && JAVA="$JAVA_HOME/bin/java"

pom_version() { sed -n 's|.*<kafka.version>\(.*\)</kafka.version>.*|\1|p' "$POM" | head -n1; }
KAFKA_VERSION="${KAFKA_VERSION:-$(pom_version)}"
[[ -n "$KAFKA_VERSION" ]] || die "no kafka.version in $POM"
CACHE_ROOT="${SLUICE_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice-kafka}"
POM_HASH="$(sha256sum "$POM" | cut -c1-12)"
CACHE="$CACHE_ROOT/$KAFKA_VERSION-$POM_HASH"
CP_FILE="$CACHE/classpath"

# --- the classpath ------------------------------------------------------------------------------

classpath_ok() {
    [[ -s "$CP_FILE" ]] || return 1
    local jar
    local IFS=:
    for jar in $(cat "$CP_FILE"); do [[ -f "$jar" ]] || return 1; done
}

# Resolves the pom with Maven (offline first: quick when ~/.m2 already holds the jars) and caches
# the classpath. Prints nothing on success.
resolve() {
    classpath_ok && return 0
    command -v "$JAVA" >/dev/null 2>&1 || die "java not found: install a JDK 17+ (apt-get install default-jdk-headless)"
    command -v mvn >/dev/null 2>&1 || die "mvn not found: install Maven (apt-get install maven)"
    mkdir -p "$CACHE"
    local tmp="$CACHE/classpath.tmp.$$" out="$CACHE/mvn.log"
    local mvn=(mvn -B -q -f "$POM" -Dkafka.version="$KAFKA_VERSION"
               dependency:build-classpath -Dmdep.outputFile="$tmp" -Dmdep.includeScope=runtime)
    # Maven writes nothing into the repository: build-classpath of a pom project has no target/.
    if ! "${mvn[@]}" -o >"$out" 2>&1; then
        note "resolving Apache Kafka $KAFKA_VERSION with Maven (first run: downloads to ~/.m2)"
        if ! "${mvn[@]}" >"$out" 2>&1; then
            cat "$out" >&2
            rm -f "$tmp"
            die "Maven could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION (see above; KAFKA_VERSION=4.x picks another)"
        fi
    fi
    [[ -s "$tmp" ]] || die "Maven wrote no classpath (see $out)"
    mv -f "$tmp" "$CP_FILE"
    classpath_ok || die "the resolved classpath names missing jars (see $CP_FILE)"
}

classpath() { resolve; cat "$CP_FILE"; }

# --- free loopback ports --------------------------------------------------------------------------

# N distinct ports on 127.0.0.1 that were free a moment ago, chosen below the kernel's ephemeral
# range (an ephemeral port may be taken by any outgoing connection meanwhile), as the client
# tests' free_port() does.
free_ports() {
    python3 - "$1" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
try:
    lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    lo = 32768
candidates = random.sample(range(max(1024, lo - 20000), lo), min(200, max(0, lo - 1024)))
found = []
for port in candidates:
    if len(found) == n:
        break
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
    found.append(port)
while len(found) < n:  # fall back to the kernel's choice
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if port not in found:
        found.append(port)
print(" ".join(map(str, found)))
PY
}

# Exit 0 when every given port can be bound on 127.0.0.1 now (waits up to 10 s for the sockets of
# a killed broker to be released).
ports_free() {
    python3 - "$@" <<'PY'
import socket, sys, time
deadline = time.monotonic() + 10
for port in map(int, sys.argv[1:]):
    while True:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                break
            except OSError:
                pass
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.1)
PY
}

# --- readiness: ApiVersions, then Metadata listing this broker -------------------------------------

# Exit 0 when the broker at 127.0.0.1:$1 answers ApiVersions and a Metadata request that lists at
# least one broker (it registered with its controller and is unfenced).
probe() {
    python3 - "$1" <<'PY'
import socket, struct, sys
port = int(sys.argv[1])

def request(sock, api_key, version, corr, body):
    client = b"sluice-kafka-sh"
    header = struct.pack(">hhih", api_key, version, corr, len(client)) + client
    frame = header + body
    sock.sendall(struct.pack(">i", len(frame)) + frame)
    size = struct.unpack(">i", read(sock, 4))[0]
    payload = read(sock, size)
    assert struct.unpack(">i", payload[:4])[0] == corr, "correlation id mismatch"
    return payload[4:]

def read(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
    return buf

try:
    with socket.create_connection(("127.0.0.1", port), timeout=2.0) as s:
        s.settimeout(2.0)
        r = request(s, 18, 0, 1, b"")                      # ApiVersions v0
        if struct.unpack(">h", r[:2])[0] != 0:
            sys.exit(1)
        r = request(s, 3, 1, 2, struct.pack(">i", 0))       # Metadata v1, no topics
        brokers = struct.unpack(">i", r[:4])[0]
        sys.exit(0 if brokers >= 1 else 1)
except (OSError, AssertionError, struct.error):
    sys.exit(1)
PY
}

# --- start / stop ---------------------------------------------------------------------------------

# Alive: exists and is not a zombie waiting for its (adoptive) parent to reap it.
pid_alive() {
    [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null || return 1
    local state
    state="$(sed -n 's/^[0-9]* (.*) \([A-Z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null || true)"
    [[ "$state" != Z ]]
}

# The pid in DIR/kafka.pid if that process is alive and is a Kafka broker (not a reused pid).
running_pid() {
    local dir="$1" pid
    pid="$(cat "$dir/kafka.pid" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    pid_alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka' || return 1
    echo "$pid"
}

# A random cluster id as Kafka writes them (URL-safe base64 of 16 bytes), never starting with "-"
# (kafka-storage would take it for an option; Kafka's own Uuid.randomUuid avoids it too).
cluster_id() {
    python3 - <<'PY'
import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    if not s.startswith("-"):
        print(s)
        break
PY
}

cmd_start() {
    [[ $# -ge 1 ]] || usage
    local dir="$1"; shift
    local sets=()
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --set) [[ $# -ge 2 && "$2" == *=* ]] || die "--set needs key=value"; sets+=("$2"); shift 2 ;;
            --set=*) sets+=("${1#--set=}"); shift ;;
            *) die "unknown argument to start: $1" ;;
        esac
    done
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    if pid="$(running_pid "$dir")"; then
        die "Kafka already runs from $dir (pid $pid, $(cat "$dir/bootstrap" 2>/dev/null)): stop it first"
    fi
    resolve
    local cp; cp="$(cat "$CP_FILE")"

    # A restart on the same DIR keeps its ports when they are still free, so clients holding the
    # old bootstrap reconnect; otherwise new ones.
    local port="" cport=""
    if [[ -f "$dir/ports" ]]; then
        read -r port cport <"$dir/ports" || true
        if ! [[ "$port" =~ ^[0-9]+$ && "$cport" =~ ^[0-9]+$ ]] || ! ports_free "$port" "$cport"; then
            port="" cport=""
        fi
    fi
    [[ -n "$port" ]] || read -r port cport <<<"$(free_ports 2)"
    echo "$port $cport" >"$dir/ports"
    local props="$dir/server.properties"
    {
        echo "# written by scripts/kafka.sh start; --set entries last (the last entry of a key wins)"
        echo "process.roles=broker,controller"
        echo "node.id=1"
        echo "controller.quorum.voters=1@127.0.0.1:$cport"
        echo "listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport"
        echo "advertised.listeners=PLAINTEXT://127.0.0.1:$port"
        echo "controller.listener.names=CONTROLLER"
        echo "inter.broker.listener.name=PLAINTEXT"
        echo "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
        echo "log.dirs=$dir/data"
        echo "offsets.topic.replication.factor=1"
        echo "transaction.state.log.replication.factor=1"
        echo "transaction.state.log.min.isr=1"
        echo "share.coordinator.state.topic.replication.factor=1"
        echo "share.coordinator.state.topic.min.isr=1"
        echo "group.initial.rebalance.delay.ms=0"
    } >"$props.tmp"
    local kv key
    for kv in ${sets[@]+"${sets[@]}"}; do
        key="${kv%%=*}"
        # drop earlier entries of the key, then append
        awk -v k="$key" 'index($0, k "=") != 1' "$props.tmp" >"$props.tmp2" && mv -f "$props.tmp2" "$props.tmp"
        printf '%s\n' "$kv" >>"$props.tmp"
    done
    mv -f "$props.tmp" "$props"

    local heap=(${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m})
    local jvm=("${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
               -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
               -Dlog4j2.configurationFile="$BROKER_LOG4J" -Dkafka.logs.dir="$dir"
               ${KAFKA_OPTS:-})

    # Format the storage once per DIR (a restart on the same DIR keeps its data).
    local logdir
    logdir="$(sed -n 's/^log\.dirs=//p' "$props" | tail -n1 | cut -d, -f1)"
    if [[ ! -f "$logdir/meta.properties" ]]; then
        if ! "$JAVA" -Xmx256m -Dlog4j2.configurationFile="$TOOLS_LOG4J" -cp "$cp" kafka.tools.StorageTool \
                format -t "$(cluster_id)" -c "$props" >"$dir/format.log" 2>&1; then
            cat "$dir/format.log" >&2
            die "kafka-storage format failed in $dir"
        fi
    fi

    printf '\n===== %s scripts/kafka.sh start: Kafka %s on 127.0.0.1:%s (controller :%s)\n' \
        "$(date -u +%FT%TZ)" "$KAFKA_VERSION" "$port" "$cport" >>"$dir/kafka.log"
    # setsid: Kafka outlives this script and is not hit by the caller's terminal signals.
    setsid "$JAVA" "${jvm[@]}" -cp "$cp" kafka.Kafka "$props" \
        </dev/null >>"$dir/kafka.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$dir/kafka.pid"

    local timeout="${KAFKA_START_TIMEOUT_S:-60}" began=$SECONDS
    while ! probe "$port"; do
        if ! pid_alive "$pid"; then
            tail -n 40 "$dir/kafka.log" >&2
            rm -f "$dir/kafka.pid"
            die "Kafka exited before it was ready (log: $dir/kafka.log)"
        fi
        if ((SECONDS - began >= timeout)); then
            tail -n 40 "$dir/kafka.log" >&2
            cmd_stop "$dir" >/dev/null 2>&1 || true
            die "Kafka not ready within ${timeout} s (log: $dir/kafka.log)"
        fi
        sleep 0.2
    done
    echo "127.0.0.1:$port" >"$dir/bootstrap"
    note "Kafka $KAFKA_VERSION ready in $((SECONDS - began)) s: pid $pid, log $dir/kafka.log"
    echo "127.0.0.1:$port"
}

cmd_stop() {
    [[ $# -eq 1 ]] || usage
    local dir="$1" pid
    [[ -d "$dir" ]] || return 0
    if ! pid="$(running_pid "$dir")"; then
        rm -f "$dir/kafka.pid"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local timeout="${KAFKA_STOP_TIMEOUT_S:-30}" i
    for ((i = 0; i < timeout * 10; i++)); do
        pid_alive "$pid" || break
        sleep 0.1
    done
    if pid_alive "$pid"; then
        note "Kafka (pid $pid) still running ${timeout} s after SIGTERM: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do pid_alive "$pid" || break; sleep 0.1; done
    fi
    rm -f "$dir/kafka.pid"
    printf '===== %s scripts/kafka.sh stop\n' "$(date -u +%FT%TZ)" >>"$dir/kafka.log"
}

# --- tools ----------------------------------------------------------------------------------------

# Main classes as Kafka 4.x's bin/*.sh name them.
tool_class() {
    case "$1" in
        kafka-topics) echo org.apache.kafka.tools.TopicCommand ;;
        kafka-console-producer) echo org.apache.kafka.tools.ConsoleProducer ;;
        kafka-console-consumer) echo org.apache.kafka.tools.consumer.ConsoleConsumer ;;
        kafka-consumer-groups) echo org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
        kafka-configs) echo org.apache.kafka.tools.ConfigCommand ;;
        kafka-get-offsets) echo org.apache.kafka.tools.GetOffsetShell ;;
        kafka-delete-records) echo org.apache.kafka.tools.DeleteRecordsCommand ;;
        kafka-producer-perf-test) echo org.apache.kafka.tools.ProducerPerformance ;;
        kafka-consumer-perf-test) echo org.apache.kafka.tools.ConsumerPerformance ;;
        kafka-e2e-latency) echo org.apache.kafka.tools.EndToEndLatency ;;
        kafka-reassign-partitions) echo org.apache.kafka.tools.reassign.ReassignPartitionsCommand ;;
        kafka-leader-election) echo org.apache.kafka.tools.LeaderElectionCommand ;;
        kafka-log-dirs) echo org.apache.kafka.tools.LogDirsCommand ;;
        kafka-acls) echo org.apache.kafka.tools.AclCommand ;;
        kafka-broker-api-versions) echo org.apache.kafka.tools.BrokerApiVersionsCommand ;;
        kafka-storage) echo kafka.tools.StorageTool ;;
        kafka-metadata-quorum) echo org.apache.kafka.tools.MetadataQuorumCommand ;;
        kafka-features) echo org.apache.kafka.tools.FeatureCommand ;;
        kafka-groups) echo org.apache.kafka.tools.GroupsCommand ;;
        kafka-transactions) echo org.apache.kafka.tools.TransactionsCommand ;;
        kafka-client-metrics) echo org.apache.kafka.tools.ClientMetricsCommand ;;
        kafka-delegation-tokens) echo org.apache.kafka.tools.DelegationTokenCommand ;;
        kafka-share-groups) echo org.apache.kafka.tools.consumer.group.ShareGroupCommand ;;
        kafka-streams-groups) echo org.apache.kafka.tools.streams.StreamsGroupCommand ;;
        *) return 1 ;;
    esac
}
TOOLS="kafka-topics kafka-console-producer kafka-console-consumer kafka-consumer-groups kafka-configs
kafka-get-offsets kafka-delete-records kafka-producer-perf-test kafka-consumer-perf-test
kafka-e2e-latency kafka-reassign-partitions kafka-leader-election kafka-log-dirs kafka-acls
kafka-broker-api-versions kafka-storage kafka-metadata-quorum kafka-features kafka-groups
kafka-transactions kafka-client-metrics kafka-delegation-tokens kafka-share-groups
kafka-streams-groups"

cmd_tool() {
    if [[ $# -lt 1 ]]; then
        echo "tools (scripts/kafka.sh tool NAME ARGS...):" >&2
        echo "$TOOLS" | tr ' ' '\n' | sed 's/^/  /' >&2
        exit 2
    fi
    local name="${1%.sh}"; shift
    local class
    class="$(tool_class "$name")" || die "unknown tool $name (scripts/kafka.sh tool lists them)"
    resolve
    local default_heap="-Xmx256m"
    [[ "$name" == *perf-test || "$name" == kafka-e2e-latency ]] && default_heap="-Xmx512m"
    local heap=(${KAFKA_TOOL_HEAP_OPTS:-$default_heap})
    # shellcheck disable=SC2086 # KAFKA_OPTS is a list of JVM options
    exec "$JAVA" "${heap[@]}" -XX:+UseG1GC -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$TOOLS_LOG4J" ${KAFKA_OPTS:-} \
        -cp "$(cat "$CP_FILE")" "$class" "$@"
}

# --- main -----------------------------------------------------------------------------------------

[[ $# -ge 1 ]] || usage
command="$1"; shift
case "$command" in
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    tool) cmd_tool "$@" ;;
    classpath) [[ $# -eq 0 ]] || usage; classpath ;;
    resolve) [[ $# -eq 0 ]] || usage; resolve; echo "Apache Kafka $KAFKA_VERSION ($CP_FILE)" ;;
    -h|--help|help) usage ;;
    *) die "unknown command $command (start, stop, tool, classpath, resolve)" ;;
esac
