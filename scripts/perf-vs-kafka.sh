#!/usr/bin/env bash
# Sluice and Apache Kafka side by side, in one run on this machine (issue 14 §4): writes
# perf/results/<date>-vs-kafka.md and the raw output beside it (perf/results/<date>-vs-kafka/).
#
#   scripts/perf-vs-kafka.sh              # full run: 3 repeats of everything, ~25 min on 2 cores
#   scripts/perf-vs-kafka.sh --quick      # smoke test (~4 min, 1 repeat, tiny loads), report in
#                                         # /tmp/perf-vs-kafka-quick/ unless REPORT= is given
#   scripts/perf-vs-kafka.sh --no-cluster # leave out the 3-node part
#   REPORT=X.md scripts/perf-vs-kafka.sh --report-only   # rewrite X.md from the raw files in X/
#
# Per comparison class, both brokers run at the same time and every load alternates between
# them (Kafka first in odd repeats, Sluice first in even ones), so both see the same hour:
#   1 node  durable : Sluice default (fdatasync before ack)  vs Kafka log.flush.interval.messages=1
#   1 node  relaxed : Sluice log.flush.interval.messages=RELAXED_FLUSH vs Kafka default (no fsync)
#   3 nodes durable : Sluice cluster (Raft, majority fdatasync, --cores 1 per node) vs a KRaft
#                     cluster of 3 Kafka brokers (each broker+controller) with
#                     log.flush.interval.messages=1, min.insync.replicas=2, topics with RF 3
#   3 nodes relaxed : the same Sluice cluster (it always fsyncs) vs that Kafka cluster with its
#                     default flush (Kafka's usual deployment: durability by replication only)
# Loads (1 KiB messages, acks=all, 3 partitions), each bounded in count and in time:
#   producer : Kafka's kafka-producer-perf-test (Java client, its defaults but acks=all),
#              N_RECORDS records as fast as it can; broker CPU s per GB from /proc/<pid>/stat
#   max      : sluice bench --rate 0 (produce + consume, open loop)
#   latency  : sluice bench --rate R at 10 % and 50 % of Kafka's median max (the `max` load)
#   consumer : kafka-consumer-perf-test reading N_RECORDS of what `producer` wrote (page cache)
#
# Environment: REPEATS (3; quick 1), N_RECORDS (200000; quick 20000), DURATION (5s; quick 3s),
# WARMUP (2s; quick 1s), RELAXED_FLUSH (1000000000000), REPORT (the .md to write), KEEP=1
# (keep the scratch directory), NOTE (a paragraph for the top of the report), LOAD_TIMEOUT (45:
# seconds, the bound of any one load). Brokers only on 127.0.0.1 free ports; every broker this
# script starts is stopped by pid at exit; data lives in a temp dir removed at exit. BUILD=0 uses
# the existing target/release/sluice without `cargo build --release --locked`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

QUICK=0 CLUSTER=1 REPORT_ONLY=0
for a in "$@"; do
  case "$a" in
    --quick) QUICK=1 ;;
    --report-only) REPORT_ONLY=1 ;;
    --no-cluster) CLUSTER=0 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "perf-vs-kafka.sh: unknown argument $a" >&2; exit 2 ;;
  esac
done
if ((QUICK)); then
  REPEATS=${REPEATS:-1} N_RECORDS=${N_RECORDS:-20000} DURATION=${DURATION:-3s} WARMUP=${WARMUP:-1s}
  REPORT=${REPORT:-/tmp/perf-vs-kafka-quick/$(date -u +%F)-vs-kafka.md}
else
  REPEATS=${REPEATS:-3} N_RECORDS=${N_RECORDS:-200000} DURATION=${DURATION:-5s} WARMUP=${WARMUP:-2s}
  REPORT=${REPORT:-perf/results/$(date -u +%F)-vs-kafka.md}
fi
RELAXED_FLUSH=${RELAXED_FLUSH:-1000000000000}
SIZE=1024
PARTS=3
LOAD_TIMEOUT=${LOAD_TIMEOUT:-45}
# --- the report (also written by the EXIT trap when a run stops early) ---------------------------
write_report() {
python3 - "$RAW" "$REPORT" "$SIZE" "$N_RECORDS" "$WARMUP" "$DURATION" <<'PY'
import json, os, statistics, sys
raw, report, size, n_records = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
secs = lambda t: float(t[:-2]) / 1000 if t.endswith("ms") else float(t.rstrip("s"))
span = secs(sys.argv[5]) + secs(sys.argv[6])
rows = [json.loads(l) for l in open(f"{raw}/measurements.jsonl")]
rows = [r for r in rows if not r.get("void")]  # marked by hand, with the reason in the report's note
machine = dict(l.rstrip("\n").split(": ", 1) for l in open(f"{raw}/machine.txt") if ": " in l)
labels = {
    "kafka-flush1": "Kafka, `log.flush.interval.messages=1`",
    "sluice-durable": "Sluice, default (fdatasync before ack)",
    "kafka-default": "Kafka, default (no fsync)",
    "sluice-relaxed": "Sluice, `log.flush.interval.messages` huge (no fsync)",
    "kafka3-flush1": "Kafka ×3, `log.flush.interval.messages=1`",
    "kafka3-default": "Kafka ×3, default flush",
    "sluice3": "Sluice ×3 (Raft, majority fdatasync)",
}

def fmt(v, nd=0):
    if v is None: return "-"
    return f"{v:,.{nd}f}"

def stat(vals, nd=0):
    n = len(vals)
    vals = [v for v in vals if v is not None]
    if not vals: return "failed"
    m = statistics.median(vals)
    short = f" [{len(vals)} of {n}]" if len(vals) < n else ""
    if len(vals) == 1: return fmt(m, nd) + short
    return f"{fmt(m, nd)} ({fmt(min(vals), nd)}–{fmt(max(vals), nd)}){short}"

def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None

def parse_producer(path):
    # "300000 records sent, 85000.1 records/sec (83.01 MB/sec), ..."
    lines = open(path, errors="replace").read().splitlines()
    for line in reversed(lines):
        if "records sent" in line and "99.9th" in line:
            p = line.split()
            return {"msgs": int(p[0]), "msgs_s": float(p[3]), "mb_s": float(p[5].strip("("))}
    # timed out: the periodic lines (records acknowledged in each window and their rate)
    n = t = 0.0
    for line in lines:
        if "records sent" in line:
            p = line.split()
            try:
                n += int(p[0]); t += int(p[0]) / float(p[3])
            except (ValueError, ZeroDivisionError):
                pass
    if n and t:
        return {"msgs": int(n), "msgs_s": n / t, "mb_s": n * size / 1048576 / t, "partial": True}
    return None

def parse_consumer(path):
    lines = [l for l in open(path, errors="replace").read().splitlines() if l.strip()]
    head = next((i for i, l in enumerate(lines) if l.startswith("start.time")), None)
    if head is None or head + 1 >= len(lines): return None
    keys = [k.strip() for k in lines[head].split(",")]
    vals = [v.strip() for v in lines[head + 1].split(",")]
    d = dict(zip(keys, vals))
    try:
        return {"msgs": int(d["data.consumed.in.nMsg"]), "mb": float(d["data.consumed.in.MB"]),
                "fetch_mb_s": float(d["fetch.MB.sec"]), "fetch_msgs_s": float(d["fetch.nMsg.sec"]),
                "mb_s": float(d["MB.sec"])}
    except (KeyError, ValueError):
        return None

def parse_bench(path):
    try: d = json.load(open(path))
    except (OSError, ValueError): return None
    if "throughput" not in d and "workload" in d:
        d = d["workload"]["phases"][-1]["results"]
    d["_span_s"] = span
    return d

last = {}
for i, r in enumerate(rows):
    last[(r["class"], r.get("setup"), r["test"], r.get("rep"))] = i
retried = [r for i, r in enumerate(rows) if last[(r["class"], r.get("setup"), r["test"], r.get("rep"))] != i]
failed = [r for r in rows if r.get("rc", 0) != 0]
rows = [r for i, r in enumerate(rows) if last[(r["class"], r.get("setup"), r["test"], r.get("rep"))] == i]
params = dict(kv.split("=", 1) for kv in machine.get("params", "").split())
n_records = int(params.get("N_RECORDS", n_records))
classes = []
for r in rows:
    if r["class"] not in classes: classes.append(r["class"])

out = []
w = out.append
w(f"# Sluice vs Apache Kafka, side by side, {machine.get('started', '')[:10]}")
w("")
w(os.environ.get("NOTE") or "One run of `scripts/perf-vs-kafka.sh`. Absolute figures move between machines and hours "
  "(see the load averages below); the ratios within one class, measured side by side, are the point.")
w("")
w("## Machine, versions, parameters")
w("")
for k in ["cpu", "cores", "ram", "kernel", "fs of the data dir", "java", "kafka", "sluice", "params",
          "started", "finished", "uptime before", "uptime after"]:
    w(f"- {k}: {machine.get(k, '?')}")
w(f"- 1-minute load average during the run (`{os.path.basename(raw)}/load.log`): "
  + ", ".join(l.split()[0] + " " + l.split()[1] for l in open(f"{raw}/load.log")))
w("")
w("## Commands")
w("")
w("```sh")
w("scripts/perf-vs-kafka.sh    # everything below, in this order; exact argv of each step in "
  f"{os.path.basename(raw)}/commands.log")
w(f"# topic: sluice topic create pvk-perf --partitions 3 --replication-factor RF --bootstrap B")
w(f"# producer: scripts/kafka.sh tool kafka-producer-perf-test --topic pvk-perf --num-records {n_records} \\")
w(f"#   --record-size {size} --throughput -1 --bootstrap-server B --command-property acks=all")
w(f"# consumer: scripts/kafka.sh tool kafka-consumer-perf-test --bootstrap-server B --topic pvk-perf \\")
w(f"#   --num-records {n_records} --group pvk-consumer-REP --timeout 10000")
w(f"# max:      sluice bench --bootstrap B --topics 1 --partitions 3 --message-size {size} --acks all \\")
w(f"#   --replication-factor RF --rate 0 --warmup W --duration D --quiet --json F")
w(f"# latency:  the same with --rate R, R = 10 % and 50 % of Kafka's median `max` in that class")
w("```")
w("")
w("Each class runs its two brokers at the same time and alternates every load between them "
  "(Kafka first in odd repeats, Sluice first in even ones). Cells are the median over the repeats "
  "with the range (min–max) in brackets. Broker CPU is utime+stime of the broker process(es) from "
  "`/proc/<pid>/stat` before and after the load (the whole load: client start-up included), "
  "divided by the payload bytes it moved (producer: bytes acknowledged; consumer: bytes read; "
  "`sluice bench` max: bytes produced, each also consumed once). Producer = Kafka's Java "
  "`kafka-producer-perf-test` with its defaults (batch.size 16 KiB, linger.ms 5) and acks=all. "
  "Consumer = `kafka-consumer-perf-test`, fetch MB/s (excluding the group join), from the page "
  "cache: both brokers send segment bytes to the socket without a user-space copy (Kafka: "
  "sendfile on a PLAINTEXT listener; Sluice: io_uring splice).")
w("")

headline = []
partial_producers = []
for cls in classes:
    crow = [r for r in rows if r["class"] == cls and r["test"] != "rates"]
    rates = next((r for r in rows if r["class"] == cls and r["test"] == "rates"), None)
    setups = []
    for r in crow:
        if r["setup"] not in setups: setups.append(r["setup"])
    setups.sort(key=lambda s: not s.startswith("kafka"))
    w(f"## {cls}")
    w("")
    w("| broker | producer msg/s | producer MB/s | broker CPU s/GB (producer) | consumer fetch MB/s | broker CPU s/GB (consumer) | `sluice bench` max msg/s | broker CPU s/GB (max) |")
    w("|---|---|---|---|---|---|---|---|")
    summary = {}
    for s in setups:
        prod, cons, mx = [], [], []
        for r in crow:
            if r["setup"] != s: continue
            f = f"{raw}/{r['out']}"
            if r["test"] == "producer":
                p = parse_producer(f)
                if p and r["rc"] != 0 and not p.get("partial"): p = None
                if p and p.get("partial"): partial_producers.append(r)
                prod.append((p, r["broker_cpu_s"]))
            elif r["test"] == "consumer":
                c = parse_consumer(f) if r["rc"] == 0 else None
                cons.append((c, r["broker_cpu_s"]))
            elif r["test"] == "max":
                b = parse_bench(f.replace(".txt", ".json")) if r["rc"] == 0 else None
                mx.append((b, r["broker_cpu_s"]))
        p_rate = [p["msgs_s"] if p else None for p, _ in prod]
        p_mb = [p["mb_s"] if p else None for p, _ in prod]
        p_cpu = [cpu / (p["msgs"] * size / 1e9) if p else None for p, cpu in prod]
        c_mb = [c["fetch_mb_s"] if c else None for c, _ in cons]
        c_cpu = [cpu / (c["mb"] * 1048576 / 1e9) if c and c["mb"] > 0 else None for c, cpu in cons]
        m_rate = [b["throughput"]["msgs_per_s"] if b else None for b, _ in mx]
        m_cpu = []
        for b, cpu in mx:
            # CPU over the whole bench (warm-up + measured + drain): per byte produced in that time,
            # estimated as rate x (warm-up + measured)
            if b and b.get("_span_s"):
                m_cpu.append(cpu / (b["throughput"]["msgs_per_s"] * b["_span_s"] * size / 1e9))
            else:
                m_cpu.append(None)
        summary[s] = dict(prod=med(p_rate), cons=med(c_mb), max=med(m_rate), pcpu=med(p_cpu), ccpu=med(c_cpu))
        w(f"| {labels.get(s, s)} | {stat(p_rate)} | {stat(p_mb, 1)} | {stat(p_cpu, 1)} | {stat(c_mb, 0)} | {stat(c_cpu, 1)} | {stat(m_rate)} | {stat(m_cpu, 1)} |")
    if len(setups) == 2 and all(summary[x]["prod"] for x in setups):
        k, s = setups
        ratio = lambda key: (f"{summary[s][key] / summary[k][key]:.2f}×" if summary[s][key] and summary[k][key] else "-")
        w(f"| **Sluice / Kafka (medians)** | {ratio('prod')} | | {ratio('pcpu')} | {ratio('cons')} | {ratio('ccpu')} | {ratio('max')} | |")
        headline.append((cls, k, s, summary))
    w("")
    if rates:
        w(f"Latency with `sluice bench` (open loop, from each message's intended send time), at 10 % and 50 % "
          f"of Kafka's median max in this class ({rates['kafka_max']:,} msg/s): ms, median over the repeats; "
          f"p99 range in the last column.")
        w("")
        w("| broker | target msg/s | achieved msg/s | publish p50 / p99 / p99.9 / max | end-to-end p50 / p99 / p99.9 / max | e2e p99 range | broker CPU s/GB |")
        w("|---|---|---|---|---|---|---|")
        for test, rate in (("lat10", rates["r10"]), ("lat50", rates["r50"])):
            for s in setups:
                bs = []
                for r in crow:
                    if r["setup"] == s and r["test"] == test:
                        b = parse_bench(f"{raw}/{r['out']}".replace(".txt", ".json")) if r["rc"] == 0 else None
                        bs.append((b, r["broker_cpu_s"]))
                ok = [(b, c) for b, c in bs if b]
                if not ok:
                    w(f"| {labels.get(s, s)} | {rate:,} | failed | | | | |"); continue
                def q(key, p): return med([b[key][p] / 1000 for b, _ in ok if b[key].get(p) is not None])
                lat = lambda key: " / ".join(fmt(q(key, p), 2) for p in ("p50", "p99", "p999", "max"))
                e99 = [b["e2e_latency_us"]["p99"] / 1000 for b, _ in ok if b["e2e_latency_us"].get("p99") is not None]
                got = med([b["throughput"]["msgs_per_s"] for b, _ in ok])
                cpu = med([c / (b["throughput"]["msgs_per_s"] * b["_span_s"] * size / 1e9) for b, c in ok if b.get("_span_s")])
                short = f" [{len(ok)} of {len(bs)}]" if len(ok) < len(bs) else ""
                e99r = f"{fmt(min(e99), 2)}–{fmt(max(e99), 2)}" if e99 else "-"
                w(f"| {labels.get(s, s)} | {rate:,} | {fmt(got)}{short} | {lat('publish_latency_us')} | {lat('e2e_latency_us')} | "
                  f"{e99r} | {fmt(cpu, 1)} |")
        w("")

if failed:
    w("## Loads that failed or timed out")
    w("")
    w("A failed `sluice bench` load is run once more; the first attempt's output is kept as "
      "`*.failed.txt`; a load whose second attempt failed too is left out of the medians (cells then say "
      "`[k of n]`). A producer that hit the time bound (exit 124) is counted from its periodic lines "
      "(records acknowledged within the bound). Against Kafka, `sluice bench` fails a run when its consumer's "
      "first ListOffsets on the freshly created bench topic answers NOT_LEADER_OR_FOLLOWER (Kafka has not "
      "yet propagated the new leaders): the bench does not retry that error yet.")
    w("")
    for r in failed:
        again, where = "", r["out"]
        if any(r is x for x in retried):
            again, where = " (run again)", where.replace(".txt", ".failed.txt")
        w(f"- {r['class']}: {r['setup']} {r['test']} repeat {r['rep']}: exit {r['rc']}{again} (output: `{os.path.basename(raw)}/{where}`)")
    w("")
w("## Not measured")
w("")
w("- librdkafka's `rdkafka_performance`: not packaged by Debian (only the library is), and building it "
  "from fetched source was out of scope for this script; the neutral client here is Kafka's own Java "
  "`kafka-producer-perf-test` / `kafka-consumer-perf-test`.")
w("")
text = "\n".join(out) + "\n"
open(report, "w").write(text)
PY
}

RAW=${REPORT%.md}
if ((REPORT_ONLY)); then
  [[ -s "$RAW/measurements.jsonl" ]] || { echo "no $RAW/measurements.jsonl" >&2; exit 1; }
else
mkdir -p "$RAW"
: > "$RAW/measurements.jsonl"
: > "$RAW/commands.log"
: > "$RAW/load.log"
STARTED=$(date -u +%FT%TZ)

log() { printf '[%s] %s\n' "$(date -u +%T)" "$*" >&2; }
loadavg() { printf '%s %s\n' "$(date -u +%T)" "$(cut -d' ' -f1-3 /proc/loadavg)" >> "$RAW/load.log"; }

if [[ ${BUILD:-1} != 0 ]]; then
  log "building (cargo build --release --locked)"
  cargo build --release --locked --quiet
fi
SLUICE=$ROOT/${CARGO_TARGET_DIR:-target}/release/sluice
KAFKA_VERSION_LINE=$(scripts/kafka.sh resolve)
KAFKA_CP=$(scripts/kafka.sh classpath)

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/perf-vs-kafka.XXXXXX")
SLUICE_PIDS=()      # every sluice serve this script started
KAFKA_DIRS=()       # every scripts/kafka.sh start DIR
KAFKA3_PIDS=()      # every 3-node Kafka broker this script started
stop_pid() { # pid: SIGTERM, up to 30 s, then SIGKILL
  local p=$1 i
  kill -TERM "$p" 2>/dev/null || return 0
  for ((i = 0; i < 300; i++)); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
}
stop_pids() { # SIGTERM to all at once (a KRaft quorum losing its voters one by one stalls), then wait
  local p i alive
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for ((i = 0; i < 300; i++)); do
    alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || return 0
    sleep 0.1
  done
  for p in "$@"; do kill -KILL "$p" 2>/dev/null || true; done
}
REPORTED=0
cleanup() {
  set +e
  local p d
  if ((!REPORTED)) && [[ -s "$RAW/measurements.jsonl" ]]; then
    echo "finished: STOPPED EARLY at $(date -u +%FT%TZ) (exit $1)" >> "$RAW/machine.txt"
    write_report && echo "wrote $REPORT (partial)" >&2
  fi
  stop_pids "${SLUICE_PIDS[@]}" "${KAFKA3_PIDS[@]}"
  for d in "${KAFKA_DIRS[@]}"; do scripts/kafka.sh stop "$d" >/dev/null 2>&1; done
  wait 2>/dev/null
  if [[ -n "${KEEP:-}" ]]; then echo "kept $SCRATCH" >&2; else rm -rf "$SCRATCH"; fi
}
trap 'cleanup $?' EXIT
trap 'exit 130' INT TERM

free_ports() { # N distinct free 127.0.0.1 ports below the ephemeral range
  python3 - "$1" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
found = []
for port in random.sample(range(max(1024, lo - 20000), lo), 400):
    if len(found) == n:
        break
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
    found.append(port)
print(" ".join(map(str, found)))
PY
}

# Brokers listed by a Metadata request to 127.0.0.1:PORT (0 when it does not answer).
metadata_brokers() {
  python3 - "$1" <<'PY'
import socket, struct, sys
def read(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c: raise OSError("closed")
        b += c
    return b
try:
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2) as s:
        s.settimeout(2)
        body = struct.pack(">hhih", 3, 1, 7, 3) + b"pvk" + struct.pack(">i", 0)
        s.sendall(struct.pack(">i", len(body)) + body)
        r = read(s, struct.unpack(">i", read(s, 4))[0])
        print(struct.unpack(">i", r[4:8])[0])
except Exception:
    print(0)
PY
}

cpu_ticks() { # summed utime+stime (clock ticks) of the given pids
  local t=0 p u s
  for p in "$@"; do
    read -r u s < <(sed 's/^.*) //' "/proc/$p/stat" | cut -d' ' -f12,13)
    t=$((t + u + s))
  done
  echo "$t"
}
CLK_TCK=$(getconf CLK_TCK)

# --- setups: NAME -> bootstrap, pids, replication factor ------------------------------------------
declare -A BOOT PIDS RF LABEL
LABEL[kafka-flush1]="Kafka, log.flush.interval.messages=1"
LABEL[sluice-durable]="Sluice, default (fdatasync before ack)"
LABEL[kafka-default]="Kafka, default (no fsync)"
LABEL[sluice-relaxed]="Sluice, log.flush.interval.messages=$RELAXED_FLUSH"
LABEL[kafka3-flush1]="Kafka ×3, RF 3, log.flush.interval.messages=1"
LABEL[kafka3-default]="Kafka ×3, RF 3, default flush"
LABEL[sluice3]="Sluice ×3, RF 3 (Raft, majority fdatasync)"

start_sluice() { # name [serve args...]
  local name=$1; shift
  local port admin
  read -r port admin <<<"$(free_ports 2)"
  local cmd=("$SLUICE" serve --data-dir "$SCRATCH/$name" --listen "127.0.0.1:$port"
             --admin-listen "127.0.0.1:$admin" --set group.initial.rebalance.delay.ms=0 "$@")
  echo "$name: ${cmd[*]}" >> "$RAW/commands.log"
  RUST_LOG=warn "${cmd[@]}" > "$SCRATCH/$name.log" 2>&1 &
  local pid=$!
  SLUICE_PIDS+=("$pid")
  wait_http "127.0.0.1:$admin" "$SCRATCH/$name.log"
  BOOT[$name]=127.0.0.1:$port PIDS[$name]=$pid RF[$name]=1
}
wait_http() { # admin addr, log
  local i
  for ((i = 0; i < 300; i++)); do
    curl -sf "http://$1/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  tail -n 30 "$2" >&2; echo "sluice at $1 not ready in 30 s" >&2; exit 1
}
start_kafka() { # name [--set k=v ...]
  local name=$1; shift
  local dir=$SCRATCH/$name
  echo "$name: scripts/kafka.sh start DIR $*" >> "$RAW/commands.log"
  KAFKA_DIRS+=("$dir")
  BOOT[$name]=$(scripts/kafka.sh start "$dir" "$@" 2> "$SCRATCH/$name.start.log" | tail -n1)
  PIDS[$name]=$(cat "$dir/kafka.pid") RF[$name]=1
}
start_sluice3() { # name
  local name=$1 id ports=() voters="" i
  read -r -a ports <<<"$(free_ports 9)"
  for id in 1 2 3; do voters+="${voters:+,}$id@127.0.0.1:${ports[$((id * 3 - 1))]}"; done
  local pids=()
  for id in 1 2 3; do
    local cmd=("$SLUICE" serve --node-id "$id" --cluster "$voters" --cores 1
               --listen "127.0.0.1:${ports[$((id * 3 - 3))]}" --admin-listen "127.0.0.1:${ports[$((id * 3 - 2))]}"
               --data-dir "$SCRATCH/$name-n$id" --set group.initial.rebalance.delay.ms=0)
    echo "$name: ${cmd[*]}" >> "$RAW/commands.log"
    RUST_LOG=warn "${cmd[@]}" > "$SCRATCH/$name-n$id.log" 2>&1 &
    pids+=($!) SLUICE_PIDS+=($!)
  done
  for id in 1 2 3; do wait_http "127.0.0.1:${ports[$((id * 3 - 2))]}" "$SCRATCH/$name-n$id.log"; done
  BOOT[$name]=127.0.0.1:${ports[0]},127.0.0.1:${ports[3]},127.0.0.1:${ports[6]}
  PIDS[$name]="${pids[*]}" RF[$name]=3
}
start_kafka3() { # name [extra server.properties lines...]
  local name=$1; shift
  local ports=() id voters="" cid
  read -r -a ports <<<"$(free_ports 6)"
  for id in 1 2 3; do voters+="${voters:+,}$id@127.0.0.1:${ports[$((id * 2 - 1))]}"; done
  cid=$(python3 -c 'import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode())')
  local pids=() boot=""
  for id in 1 2 3; do
    local dir=$SCRATCH/$name-n$id port=${ports[$((id * 2 - 2))]} cport=${ports[$((id * 2 - 1))]}
    mkdir -p "$dir"
    {
      echo "process.roles=broker,controller"
      echo "node.id=$id"
      echo "controller.quorum.voters=$voters"
      echo "listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport"
      echo "advertised.listeners=PLAINTEXT://127.0.0.1:$port"
      echo "controller.listener.names=CONTROLLER"
      echo "inter.broker.listener.name=PLAINTEXT"
      echo "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
      echo "log.dirs=$dir/data"
      echo "offsets.topic.replication.factor=3"
      echo "transaction.state.log.replication.factor=3"
      echo "transaction.state.log.min.isr=2"
      echo "min.insync.replicas=2"
      echo "default.replication.factor=3"
      echo "group.initial.rebalance.delay.ms=0"
      local kv; for kv in "$@"; do echo "$kv"; done
    } > "$dir/server.properties"
    java -Xmx256m -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2-tools.properties" -cp "$KAFKA_CP" \
      kafka.tools.StorageTool format -t "$cid" -c "$dir/server.properties" > "$dir/format.log" 2>&1 \
      || { cat "$dir/format.log" >&2; exit 1; }
    local jvm=(-Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
               -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
               -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2-broker.properties" -Dkafka.logs.dir="$dir")
    echo "$name: java ${jvm[*]} -cp \$(scripts/kafka.sh classpath) kafka.Kafka $dir/server.properties  # $(tr '\n' ' ' < "$dir/server.properties")" >> "$RAW/commands.log"
    java "${jvm[@]}" -cp "$KAFKA_CP" kafka.Kafka "$dir/server.properties" < /dev/null > "$dir/kafka.log" 2>&1 &
    pids+=($!) KAFKA3_PIDS+=($!)
    boot+="${boot:+,}127.0.0.1:$port"
  done
  local i
  for ((i = 0; i < 600; i++)); do  # up to 120 s: every broker lists all three
    local ok=1 id
    for id in 1 2 3; do
      [[ $(metadata_brokers "${ports[$((id * 2 - 2))]}") -ge 3 ]] || { ok=0; break; }
    done
    ((ok)) && break
    for id in 0 1 2; do kill -0 "${pids[$id]}" 2>/dev/null || { tail -n 30 "$SCRATCH/$name-n$((id + 1))/kafka.log" >&2; exit 1; }; done
    sleep 0.2
  done
  ((ok)) || { echo "Kafka cluster $name not ready in 120 s" >&2; exit 1; }
  BOOT[$name]=$boot PIDS[$name]="${pids[*]}" RF[$name]=3
}
stop_setup() { # name
  local name=$1 p
  case "$name" in
    kafka-*) scripts/kafka.sh stop "$SCRATCH/$name" ;;
    *) stop_pids ${PIDS[$name]} ;;
  esac
  # data of a stopped setup is not needed any more (a later setup may reuse the name)
  rm -rf "${SCRATCH:?}/$name" "${SCRATCH:?}/$name"-n?
}

# --- loads ----------------------------------------------------------------------------------------

record() { # json object fields as python kwargs via argv: key=value ...
  python3 - "$@" >> "$RAW/measurements.jsonl" <<'PY'
import json, sys
d = {}
for kv in sys.argv[1:]:
    k, v = kv.split("=", 1)
    try: v = float(v) if any(c in v for c in ".e") else int(v)
    except ValueError: pass
    d[k] = v
print(json.dumps(d))
PY
}

# run_load CLASS SETUP REP TEST OUTFILE cmd...: CPU of the broker(s) before/after, bounded in time
CLASS_NO=0   # file names start with c<CLASS_NO>- (a setup may run in two classes)
run_load() {
  local class=$1 setup=$2 rep=$3 test=$4 out=$5; shift 5
  local c0 c1 t0 t1 rc=0
  echo "$setup $test rep $rep: $*" >> "$RAW/commands.log"
  # shellcheck disable=SC2086
  c0=$(cpu_ticks ${PIDS[$setup]}); t0=$(date +%s.%N)
  timeout -k 10 "$LOAD_TIMEOUT" "$@" > "$out" 2>&1 || rc=$?
  # shellcheck disable=SC2086
  c1=$(cpu_ticks ${PIDS[$setup]}); t1=$(date +%s.%N)
  local cpu_s wall
  cpu_s=$(python3 -c "print(($c1 - $c0) / $CLK_TCK)")
  wall=$(python3 -c "print(round($t1 - $t0, 2))")
  log "  $setup $test rep $rep: rc=$rc cpu=${cpu_s}s wall=${wall}s"
  LAST_RC=$rc
  record class="$class" setup="$setup" rep="$rep" test="$test" out="$(basename "$out")" rc="$rc" \
    broker_cpu_s="$cpu_s" wall_s="$wall" load1="$(cut -d' ' -f1 /proc/loadavg)"
}

TOPIC=pvk-perf
make_topic() { # setup
  "$SLUICE" topic create "$TOPIC" --partitions "$PARTS" --replication-factor "${RF[$1]}" --bootstrap "${BOOT[$1]}" >/dev/null
}
producer() { # class setup rep
  run_load "$1" "$2" "$3" producer "$RAW/c$CLASS_NO-$2-producer-$3.txt" \
    scripts/kafka.sh tool kafka-producer-perf-test --topic "$TOPIC" --num-records "$N_RECORDS" \
    --record-size "$SIZE" --throughput -1 --bootstrap-server "${BOOT[$2]}" --command-property acks=all
}
consumer() { # class setup rep
  run_load "$1" "$2" "$3" consumer "$RAW/c$CLASS_NO-$2-consumer-$3.txt" \
    scripts/kafka.sh tool kafka-consumer-perf-test --bootstrap-server "${BOOT[$2]}" --topic "$TOPIC" \
    --num-records "$N_RECORDS" --group "pvk-consumer-$3" --timeout 10000
}
bench() { # class setup rep test rate: a failed bench is run once more (both attempts are reported)
  local attempt
  for attempt in 1 2; do
    [[ $attempt == 1 ]] || cp "$RAW/c$CLASS_NO-$2-$4-$3.txt" "$RAW/c$CLASS_NO-$2-$4-$3.failed.txt"
    run_load "$1" "$2" "$3" "$4" "$RAW/c$CLASS_NO-$2-$4-$3.txt" \
      "$SLUICE" bench --bootstrap "${BOOT[$2]}" --topics 1 --partitions "$PARTS" --message-size "$SIZE" \
      --acks all --replication-factor "${RF[$2]}" --rate "$5" --warmup "$WARMUP" --duration "$DURATION" \
      --quiet --json "$RAW/c$CLASS_NO-$2-$4-$3.json"
    ((LAST_RC)) || break
  done
}

# order of the two setups in repeat REP: Kafka first in odd repeats
ordered() { # rep kafka sluice
  if (($1 % 2)); then echo "$2 $3"; else echo "$3 $2"; fi
}

median_max_rate() { # setup -> median msgs/s of its `max` loads in this class
  python3 - "$RAW" "c$CLASS_NO-$1" <<'PY'
import glob, json, statistics, sys
raw, setup = sys.argv[1:]
v = []
for f in glob.glob(f"{raw}/{setup}-max-[0-9]*.json"):
    d = json.load(open(f))
    v.append(d["throughput"]["msgs_per_s"])
print(int(statistics.median(v)) if v else 0)
PY
}

run_class() { # class kafka-setup sluice-setup
  local class=$1 k=$2 s=$3 rep a
  CLASS_NO=$((CLASS_NO + 1))
  log "class $class: $k vs $s"
  loadavg
  make_topic "$k"; make_topic "$s"
  for ((rep = 1; rep <= REPEATS; rep++)); do
    for a in $(ordered "$rep" "$k" "$s"); do producer "$class" "$a" "$rep"; done
  done
  for ((rep = 1; rep <= REPEATS; rep++)); do
    for a in $(ordered "$rep" "$k" "$s"); do consumer "$class" "$a" "$rep"; done
  done
  for ((rep = 1; rep <= REPEATS; rep++)); do
    for a in $(ordered "$rep" "$k" "$s"); do bench "$class" "$a" "$rep" max 0; done
  done
  local kmax r10 r50
  kmax=$(median_max_rate "$k")
  r10=$((kmax / 10)) r50=$((kmax / 2))
  ((r10 > 0)) || { echo "no max rate measured for $k" >&2; return 1; }
  log "  Kafka max (sluice bench) $kmax msg/s: latency at $r10 and $r50 msg/s"
  record class="$class" test=rates kafka_max="$kmax" r10="$r10" r50="$r50"
  for ((rep = 1; rep <= REPEATS; rep++)); do
    for a in $(ordered "$rep" "$k" "$s"); do
      bench "$class" "$a" "$rep" lat10 "$r10"
      bench "$class" "$a" "$rep" lat50 "$r50"
    done
  done
  loadavg
}

# --- machine ---------------------------------------------------------------------------------------
loadavg
UPTIME_BEFORE=$(uptime)
{
  echo "started: $STARTED"
  echo "uptime before: $UPTIME_BEFORE"
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -n1)"
  echo "cores: $(nproc) (lscpu: $(lscpu | sed -n 's/^CPU(s): *//p'), threads per core $(lscpu | sed -n 's/^Thread(s) per core: *//p'))"
  echo "ram: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "kernel: $(uname -r)"
  echo "fs of the data dir: $(df -T "$SCRATCH" | awk 'NR == 2 {print $2, $1}')"
  echo "java: $(java -version 2>&1 | head -n1)"
  echo "kafka: $KAFKA_VERSION_LINE"
  echo "sluice: $(git rev-parse --short=12 HEAD)$(git diff --quiet -- src Cargo.toml Cargo.lock || echo ' (src dirty)'), binary ${SLUICE#"$ROOT/"} built $(date -u -r "$SLUICE" +%FT%TZ)"
  echo "params: REPEATS=$REPEATS N_RECORDS=$N_RECORDS DURATION=$DURATION WARMUP=$WARMUP RELAXED_FLUSH=$RELAXED_FLUSH quick=$QUICK cluster=$CLUSTER"
} > "$RAW/machine.txt"

# --- the run ----------------------------------------------------------------------------------------
start_kafka kafka-flush1 --set log.flush.interval.messages=1
start_sluice sluice-durable
run_class "1 node, durable" kafka-flush1 sluice-durable
stop_setup kafka-flush1; stop_setup sluice-durable

start_kafka kafka-default
start_sluice sluice-relaxed --set "log.flush.interval.messages=$RELAXED_FLUSH"
run_class "1 node, relaxed" kafka-default sluice-relaxed
stop_setup kafka-default; stop_setup sluice-relaxed

if ((CLUSTER)); then
  start_kafka3 kafka3-flush1 log.flush.interval.messages=1
  start_sluice3 sluice3
  run_class "3 nodes, durable" kafka3-flush1 sluice3
  stop_setup kafka3-flush1; stop_setup sluice3
  start_kafka3 kafka3-default
  start_sluice3 sluice3
  run_class "3 nodes, Kafka default flush" kafka3-default sluice3
  stop_setup kafka3-default; stop_setup sluice3
fi
loadavg
echo "uptime after: $(uptime)" >> "$RAW/machine.txt"
echo "finished: $(date -u +%FT%TZ)" >> "$RAW/machine.txt"

fi  # REPORT_ONLY

write_report
REPORTED=1
echo "wrote $REPORT" >&2
