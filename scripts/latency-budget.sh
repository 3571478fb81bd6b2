#!/usr/bin/env bash
# scripts/latency-budget.sh: where the time of one durable produce goes, on the machine it runs on
# (issue #16, "durable latency at the disk's own fsync latency").
#
#   1. the device: fio, sequential write + fdatasync each, 2/16/64 KiB back to back, on the file
#      system of the broker's data dir: fdatasync p50/p99, IOPS, MB/s; after the broker runs, once
#      more paced like the broker (each durable bench's bytes per fsync, at its fsync rate);
#   2. its own `sluice serve` on free 127.0.0.1 ports, durable (default) then relaxed
#      (log.flush.interval.messages=2^63-1: no fsync), and `sluice bench --bootstrap` against it,
#      1 partition, 1 KiB, acks=all, linger 1 ms, at 2 000 and 10 000 msg/s;
#   3. around each bench, from the broker: per-thread context switches and CPU (/proc/PID/task)
#      and /metrics (Produce requests and latency, fsync histogram, records in, and the
#      per-stage histogram sluice_produce_stage_seconds when the build exports it): requests/s,
#      messages per request, fsyncs/s, requests per fsync (group commit), mean fsync, per-stage
#      means and bucket-interpolated p50/p99, switches and CPU per produce request;
#   4. if `perf` may record tracepoints: io_uring submissions per opcode and how many were
#      punted to io-wq workers (async work), per produce request, for a few seconds of the
#      10 000 msg/s bench (an extra bench of its own, so perf's cost stays out of the others);
#   5. the bench's own publish p50/p99 beside all that, and a final table against the issue's
#      goals (durable p50 <= device fdatasync p50 + 0.5 ms, p99 <= 1.5 x device fdatasync p99).
#
# Writes markdown to stdout and to perf/results/<date>-latency-budget-<host>.md (or --out FILE);
# small raw files (fio JSON, bench result.json, the snapshots, perf counts; no perf.data) go to
# the sibling directory <out without .md>/. Installs fio with apt-get when missing (as root).
# About 2 minutes with the defaults (plus a build when needed). Everything on 127.0.0.1; the broker, bench and perf it
# starts are stopped by pid; its temporary directory is removed.
#
#   scripts/latency-budget.sh [--out FILE.md] [--dir PARENT] [--bin SLUICE] [--report-only]
#     --dir   parent of the broker's data dir and of fio's file [${TMPDIR:-/var/tmp}]
#     --bin   sluice binary [default: `cargo build --release`, then ${CARGO_TARGET_DIR:-target}/
#             release/sluice]; it is copied first, so a rebuild during the run does not change it
#     --report-only   rewrite the markdown from the raw files of an earlier run (same --out)
# Needs python3; fio (installed if missing) and perf (optional) as above. Run it on a quiet
# machine: the report shows the CPU other processes used in each window, and on a shared disk
# another writer moves fdatasync latency by an order of magnitude.
# Environment (defaults in brackets; not SLUICE_*: the broker reads those as configs):
#   LB_RATES ["2000 10000"] msg/s, one bench each; LB_PERF_RATE [the last of LB_RATES]: the
#   bench perf records; LB_DURATION [10] and LB_WARMUP [2] seconds per bench; LB_PERF_SECONDS
#   [3]; LB_PERF=0 skips perf; LB_FIO_RUNTIME [5] s per block size; LB_FIO_BS ["2k 16k 64k"];
#   LB_FIO=0 skips fio; LB_MODES ["durable relaxed"]; LB_TAG [hostname -s]: the file name's tag.
#
# Windows: the broker's figures are taken over the bench's measured phase minus 0.5 s at each
# end (the phase start is found by polling /metrics until Produce requests start); whole-bench
# deltas (before -> after) are in a second table and in the raw snapshots.
set -euo pipefail
SELF=$(realpath "$0")
cd "$(dirname "$0")/.."

ARGS=("$@")
OUT=""
REPORT_ONLY=0
PARENT=${TMPDIR:-/var/tmp}
BIN=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --out) OUT=$2; shift 2 ;;
        --dir) PARENT=$2; shift 2 ;;
        --bin) BIN=$2; shift 2 ;;
        --report-only) REPORT_ONLY=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$SELF" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

log() { echo "latency-budget: $*" >&2; }

RATES=${LB_RATES:-"2000 10000"}
read -r -a RATE_LIST <<<"$RATES"
PERF_RATE=${LB_PERF_RATE:-${RATE_LIST[${#RATE_LIST[@]}-1]}}
DURATION=${LB_DURATION:-10}; DURATION=${DURATION%s}
WARMUP=${LB_WARMUP:-2}; WARMUP=${WARMUP%s}
PERF_SECONDS=${LB_PERF_SECONDS:-3}
FIO_RUNTIME=${LB_FIO_RUNTIME:-5}
FIO_BS=${LB_FIO_BS:-"2k 16k 64k"}
MODES=${LB_MODES:-"durable relaxed"}
TAG=${LB_TAG:-$(hostname -s 2>/dev/null || echo machine)}
DATE=$(date -u +%Y-%m-%d)
OUT=${OUT:-perf/results/$DATE-latency-budget-$TAG.md}
RAW=${OUT%.md}
mkdir -p "$(dirname "$OUT")" "$RAW"
if [[ $REPORT_ONLY == 1 ]]; then
    PYTMP=$(mktemp)
    sed -n "/^cat >\"\\\$PY\" <<'PYEOF'/,/^PYEOF/p" "$SELF" | sed '1d;$d' >"$PYTMP"
    python3 "$PYTMP" report "$RAW" >"$OUT"; rm -f "$PYTMP"
    cat "$OUT"; exit 0
fi
rm -f "$RAW"/fio-*.json "$RAW"/bench-*.json "$RAW"/bench-*.txt "$RAW"/snaps-*.jsonl "$RAW"/perf-*.json \
    "$RAW"/broker-*.log "$RAW"/commands.txt "$RAW"/meta.txt

if [[ -z $BIN ]]; then
    BIN=${CARGO_TARGET_DIR:-target}/release/sluice
    log "cargo build --release"
    cargo build --release --quiet
    BIN_FROM="cargo build --release by this script from the working tree, a no-op when up to date"
else
    BIN_FROM="given with --bin"
fi
mkdir -p "$PARENT"
S=$(mktemp -d -p "$PARENT" sluice-latency-budget.XXXXXX)
cp "$BIN" "$S/sluice"
SL=$S/sluice

BROKER_PID=""; BENCH_PID=""; PERF_PID=""
stop_pid() { # pid: TERM, up to 10 s, then KILL
    local p=$1
    [[ -n $p ]] && kill -0 "$p" 2>/dev/null || return 0
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}
cleanup() {
    stop_pid "$PERF_PID"; stop_pid "$BENCH_PID"; stop_pid "$BROKER_PID"
    rm -rf "$S"
}
trap cleanup EXIT

cmdlog() { # record the exact command line, shell-quoted
    local q; printf -v q '%q ' "$@"; echo "${q% }" >>"$RAW/commands.txt"
}
meta() { echo "$1=$2" >>"$RAW/meta.txt"; }

# ---------------------------------------------------------------- the python helper
PY=$S/lb.py
cat >"$PY" <<'PYEOF'
import json, math, os, re, socket, sys, time, random, urllib.request

CLK = os.sysconf("SC_CLK_TCK")

def free_port():
    # Below Linux's ephemeral range (32768-60999): polling a port there nobody listens on can
    # make a client connect to itself (TCP simultaneous open) and hold the port.
    for _ in range(500):
        p = random.randint(20000, 32000)
        s = socket.socket()
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", p))
            return p
        except OSError:
            pass
        finally:
            s.close()
    raise SystemExit("no free port")

LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
KEEP = ("sluice_requests_total", "sluice_request_duration_seconds", "sluice_fsync_duration_seconds",
        "sluice_produce_stage_seconds", "sluice_topic_records_in", "sluice_topic_bytes_in",
        "sluice_shard_stalls", "sluice_shard_busy_seconds", "sluice_cross_shard_inbox_full",
        "sluice_request_memory_waits", "sluice_fsync_batch_appends")

def metrics(port):
    txt = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = []
    for line in txt.splitlines():
        if not line or line[0] == "#" or not line.startswith(KEEP):
            continue
        m = re.match(r'^([A-Za-z_:][\w:]*)(\{(.*)\})?\s+(\S+)', line)
        if not m:
            continue
        name, labels = m.group(1), dict(LABEL.findall(m.group(3) or ""))
        if name.startswith("sluice_request_duration_seconds") and labels.get("api") != "Produce":
            continue
        out.append([name, labels, float(m.group(4))])
    return out

def ticks(path):
    rest = open(path).read().rsplit(")", 1)[1].split()
    return int(rest[11]), int(rest[12])  # utime, stime (fields 14, 15)

def tasks(pid):
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        d = f"/proc/{pid}/task/{tid}"
        try:
            comm = open(f"{d}/comm").read().strip()
            ut, st = ticks(f"{d}/stat")
            st_ = dict(l.split(":", 1) for l in open(f"{d}/status").read().splitlines() if ":" in l)
            out.append({"tid": int(tid), "comm": comm, "utime": ut, "stime": st,
                        "vcs": int(st_["voluntary_ctxt_switches"]),
                        "nvcs": int(st_["nonvoluntary_ctxt_switches"])})
        except (OSError, KeyError, IndexError):
            pass  # the thread exited while we read it
    return out

def machine_ticks():
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = f[3] + (f[4] if len(f) > 4 else 0)
    return sum(f[:8]) - idle, sum(f[:8])

def real_bench(pid):
    # the bench runs under `timeout`: its child is the generator
    try:
        if open(f"/proc/{pid}/comm").read().strip() == "timeout":
            kids = open(f"/proc/{pid}/task/{pid}/children").read().split()
            if kids:
                return int(kids[0])
    except OSError:
        pass
    return pid

def procs():
    # every process's own CPU plus its reaped children's, for "who else used the CPU"
    out = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            raw = open(f"/proc/{p}/stat").read()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1:raw.rindex(")")]
        f = raw.rsplit(")", 1)[1].split()
        t = int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
        if t:
            out[p] = [comm, t]
    return out

def snap(pid, port, out, label, bench_pid=None):
    t = time.time()
    rec = {"label": label, "t": t, "mono": time.monotonic(), "broker_pid": pid, "self_pid": int(os.environ.get("LB_SELF", os.getppid())), "tasks": tasks(pid), "proc": ticks(f"/proc/{pid}/stat"),
           "machine": machine_ticks(), "loadavg": open("/proc/loadavg").read().split()[:3]}
    if bench_pid:
        try:
            rec["bench_proc"] = ticks(f"/proc/{real_bench(int(bench_pid))}/stat")
        except OSError:
            pass
    rec["procs"] = procs()
    rec["bench_pid"] = real_bench(int(bench_pid)) if bench_pid else None
    rec["metrics"] = metrics(port)
    with open(out, "a") as f:
        f.write(json.dumps(rec) + "\n")

def produce_count(port):
    return sum(v for n, l, v in metrics(port) if n == "sluice_requests_total" and l.get("api") == "Produce")

def wait_start(port, timeout):
    # The bench's phase (warm-up first) starts when its first Produce arrives.
    base = produce_count(port)
    end = time.time() + timeout
    while time.time() < end:
        if produce_count(port) > base:
            print(f"{time.time():.3f}"); return
        time.sleep(0.05)
    print(f"{time.time():.3f}")

def wait_ready(port, timeout):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"broker not ready on admin port {port} after {timeout} s")

def sleep_until(t):
    d = float(t) - time.time()
    if d > 0:
        time.sleep(d)

def perfcount(out, snaps):
    # `perf script -F comm,time,event,trace` lines (CLOCK_MONOTONIC) -> {event: {opcode: n}} and
    # by thread name, counting only events between the perf0 and perf1 snapshots, so they can be
    # divided by the produce requests the broker counted between the same two snapshots.
    sn = load_snaps(snaps)
    t0, t1 = sn["perf0"]["mono"], sn["perf1"]["mono"]
    counts, by_comm, first, last, outside = {}, {}, None, None, 0
    pat = re.compile(r'^\s*(\S.*?)\s+(\d+\.\d+):\s+io_uring:(io_uring_\w+):.*?opcode (\w+)')
    for line in sys.stdin:
        m = pat.match(line)
        if not m:
            continue
        comm, ts, ev, op = m.groups()
        ts = float(ts)
        first = ts if first is None else min(first, ts)
        last = ts if last is None else max(last, ts)
        if not t0 <= ts <= t1:
            outside += 1
            continue
        counts.setdefault(ev, {}).setdefault(op, 0)
        counts[ev][op] += 1
        k = f"{ev} {op} {comm}"
        by_comm[k] = by_comm.get(k, 0) + 1
    json.dump({"counts": counts, "by_comm": by_comm, "window": [t0, t1], "first_event": first,
               "last_event": last, "events_outside_window": outside}, open(out, "w"), indent=1)

# ------------------------------------------------------------------ report
def fnum(x, d=2):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, str):
        return x
    return f"{x:,.{d}f}".replace(",", " ")

def ms(x, d=2):
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    return fnum(x * 1000, d)

def series(snap, name, **want):
    return [(l, v) for n, l, v in snap["metrics"] if n == name and all(l.get(k) == w for k, w in want.items())]

def total(snap, name, **want):
    return sum(v for l, v in series(snap, name, **want))

def hist(snap, base, **want):
    # cumulative buckets {le: count}, sum, count
    b = {}
    for l, v in series(snap, base + "_bucket", **want):
        le = math.inf if l["le"] in ("+Inf", "Inf") else float(l["le"])
        b[le] = b.get(le, 0) + v
    return b, total(snap, base + "_sum", **want), total(snap, base + "_count", **want)

def hdelta(a, b, base, **want):
    ba, sa, ca = hist(a, base, **want)
    bb, sb, cb = hist(b, base, **want)
    return {le: bb[le] - ba.get(le, 0) for le in bb}, sb - sa, cb - ca

def quantile(buckets, q):
    les = sorted(buckets)
    n = buckets[les[-1]] if les else 0
    if n <= 0:
        return None
    target, prev_le, prev_c = q * n, 0.0, 0.0
    for le in les:
        c = buckets[le]
        if c >= target:
            if math.isinf(le):
                return f">{prev_le * 1000:g}"
            if prev_le == 0:
                return f"<={le * 1000:g}"  # first bucket: interpolating from 0 would invent a value
            if c == prev_c:
                return le
            return prev_le + (le - prev_le) * (target - prev_c) / (c - prev_c)
        prev_le, prev_c = le, c
    return None

def bound(buckets, q):
    # the upper bound of the bucket holding quantile q (for counts, where interpolating is wrong)
    les = sorted(buckets)
    n = buckets[les[-1]] if les else 0
    for le in les:
        if n and buckets[le] >= q * n:
            return "+Inf" if math.isinf(le) else f"{le:g}"
    return None

def hstats(a, b, base, **want):
    bk, s, c = hdelta(a, b, base, **want)
    if c <= 0:
        return None
    over = lambda t: c - max((v for le, v in bk.items() if le <= t), default=0)
    return {"mean": s / c, "p50": quantile(bk, 0.5), "p99": quantile(bk, 0.99), "count": c, "sum": s,
            "over10ms": over(0.01), "over50ms": over(0.05)}

def group_of(comm, tid, executors):
    if comm.startswith("iou-wrk"):
        return "iou-wrk (io-wq workers)"
    if comm.startswith("sluice-shard-") and executors.get(comm) == tid:
        return comm
    return "other (main, shard helper threads)"

def tdelta(a, b, executors):
    at = {t["tid"]: t for t in a["tasks"]}
    bt = {t["tid"]: t for t in b["tasks"]}
    g = {}
    for tid, t in bt.items():
        o = at.get(tid)
        if o and o["comm"] != t["comm"]:
            o = None
        k = group_of(t["comm"], tid, executors)
        e = g.setdefault(k, {"vcs": 0, "nvcs": 0, "ticks": 0, "threads": 0, "new": 0, "exited": 0})
        e["threads"] += 1
        e["new"] += 0 if o else 1
        for f in ("vcs", "nvcs"):
            e[f] += t[f] - (o[f] if o else 0)
        e["ticks"] += t["utime"] + t["stime"] - ((o["utime"] + o["stime"]) if o else 0)
    for tid, t in at.items():
        if tid not in bt:
            k = group_of(t["comm"], tid, executors)
            g.setdefault(k, {"vcs": 0, "nvcs": 0, "ticks": 0, "threads": 0, "new": 0, "exited": 0})["exited"] += 1
    return g

def window(a, b, executors):
    dt = b["t"] - a["t"]
    req = total(b, "sluice_requests_total", api="Produce") - total(a, "sluice_requests_total", api="Produce")
    other_req = {}
    for l, v in series(b, "sluice_requests_total"):
        if l.get("api") != "Produce":
            dv = v - total(a, "sluice_requests_total", api=l.get("api"))
            if dv >= dt:  # at least 1/s: the bench's own set-up requests are left out
                other_req[l.get("api")] = dv
    recs = total(b, "sluice_topic_records_in_total") - total(a, "sluice_topic_records_in_total")
    byts = total(b, "sluice_topic_bytes_in_total") - total(a, "sluice_topic_bytes_in_total")
    fs = hstats(a, b, "sluice_fsync_duration_seconds")
    pr = hstats(a, b, "sluice_request_duration_seconds", api="Produce")
    stages = {}
    names = []
    for n, l, v in b["metrics"]:
        if n == "sluice_produce_stage_seconds_count" and l.get("stage") not in names:
            names.append(l.get("stage"))
    order = ["queued", "write", "fsync_wait", "fsync", "respond"]
    for st in sorted(names, key=lambda s: (order.index(s) if s in order else 99, s)):
        stages[st] = hstats(a, b, "sluice_produce_stage_seconds", stage=st)
    proc_ticks = sum(b["proc"]) - sum(a["proc"])
    mt = (b["machine"][0] - a["machine"][0])
    bench_ticks = (sum(b["bench_proc"]) - sum(a["bench_proc"])) if "bench_proc" in a and "bench_proc" in b else None
    others = {}
    skip = {str(a.get("bench_pid")), str(b.get("bench_pid")), str(b.get("self_pid"))}
    for p, (comm, t) in b.get("procs", {}).items():
        if p in skip or int(p) == b.get("broker_pid", -1):
            continue
        o = a.get("procs", {}).get(p)
        d = t - o[1] if o else 0  # by pid (a kworker's name changes with its work); new processes: not counted
        if d > 0:
            k = re.sub(r"[/:].*", "", comm) if comm.startswith(("kworker", "ksoftirqd", "rcu", "migration")) else comm
            others[k] = others.get(k, 0) + d
    bsn = {}
    for x in (a, b):
        bb, sm, ct = hist(x, "sluice_fsync_batch_appends")
        bsn[id(x)] = (bb, sm, ct)
    ba, sa, ca = bsn[id(a)]; bb_, sb, cb = bsn[id(b)]
    batch = None
    if cb - ca > 0:
        bk = {le: bb_[le] - ba.get(le, 0) for le in bb_}
        batch = {"mean": (sb - sa) / (cb - ca), "p50": bound(bk, 0.5), "p99": bound(bk, 0.99)}
    return {"dt": dt, "req": req, "others": others, "others_s": sum(others.values()) / CLK, "batch": batch, "other_req": other_req, "recs": recs, "bytes": byts, "fsync": fs,
            "produce": pr, "stages": stages, "threads": tdelta(a, b, executors),
            "proc_s": proc_ticks / CLK, "machine_s": mt / CLK,
            "bench_s": None if bench_ticks is None else bench_ticks / CLK,
            "stalls": total(b, "sluice_shard_stalls_total") - total(a, "sluice_shard_stalls_total"),
            "inbox_full": total(b, "sluice_cross_shard_inbox_full_total") - total(a, "sluice_cross_shard_inbox_full_total"),
            "loadavg": b["loadavg"]}

def load_snaps(path):
    return {r["label"]: r for r in (json.loads(l) for l in open(path))}

def fio_rows(raw, sizes, name="fio-{}.json"):
    rows = []
    for bs in sizes:
        p = f"{raw}/" + name.format(bs)
        if not os.path.exists(p):
            continue
        try:
            j = json.load(open(p))["jobs"][0]
        except (ValueError, KeyError, IndexError):
            continue
        w, sy = j["write"], j.get("sync", {})
        sl = sy.get("lat_ns", {})
        pct = sl.get("percentile", {})
        def pc(q):
            for k, v in pct.items():
                if abs(float(k) - q) < 1e-6:
                    return v / 1e9
            return None
        wl = w.get("clat_ns", {}).get("percentile", {})
        wp50 = next((v / 1e9 for k, v in wl.items() if abs(float(k) - 50) < 1e-6), None)
        jbs = str(j.get("job options", {}).get("bs", bs))
        nbytes = int(jbs[:-1]) * 1024 if jbs[-1].lower() == "k" else int(jbs)
        rows.append({"bs": jbs, "tag": bs, "rate": j.get("job options", {}).get("rate_iops"), "bytes": nbytes, "p50": pc(50.0), "p99": pc(99.0),
                     "mean": sl.get("mean", 0) / 1e9 if sl else None, "iops": w["iops"],
                     "mbs": w["bw_bytes"] / 1e6, "write_p50": wp50, "syncs": sy.get("total_ios")})
    return rows

def nearest_fio(rows, nbytes):
    if not rows or not nbytes:
        return None
    return min(rows, key=lambda r: abs(math.log(r["bytes"]) - math.log(max(nbytes, 1))))

def report(raw):
    meta = dict(l.rstrip("\n").split("=", 1) for l in open(f"{raw}/meta.txt") if "=" in l)
    modes, rates = meta["modes"].split(), meta["rates"].split()
    benches = [(m, r) for m in modes for r in rates if os.path.exists(f"{raw}/snaps-{m}-{r}.jsonl")]
    fio = fio_rows(raw, meta.get("fio_bs", "").split())
    paced = {r["tag"]: r for r in fio_rows(raw, meta["rates"].split(), "fio-paced-{}.json")}
    P = print
    P(f"# Latency budget of a durable produce: {meta['tag']}, {meta['date']}")
    P()
    P("Written by `scripts/latency-budget.sh` (issue #16: durable latency at the disk's own fsync latency).")
    P("Measures; asserts nothing. One run of each bench: on a shared or virtual machine expect")
    P("run-to-run differences, mostly in the p99s.")
    P()
    P("## Machine and build")
    P()
    P(f"- cpu: {meta['cpu']} (`nproc` = {meta['nproc']}), {meta['mem']} RAM; kernel {meta['kernel']}")
    P(f"- data dir file system: {meta['fs']} (`{meta['parent']}`)")
    P(f"- CPU in use (cores) in the 2 s before the run: {meta.get('busy_before', '?')}; load average before / after: "
      f"{meta['load_before']} / {meta.get('load_after', '?')} (on this VM it also counts tasks waiting for the disk)")
    P(f"- commit (git HEAD when the run started): {meta['commit']}")
    P(f"- binary: {meta['bin']}; copied before the run")
    for m in modes:
        if meta.get("config_" + m):
            P(f"- {m} broker, `sluice config print` (log.*): {meta['config_' + m]}")
    P(f"- tools: {meta.get('fio_version', 'fio: n/a')}; {meta.get('perf_version', 'perf: n/a')}")
    P(f"- perf tracing: {meta.get('perf_status', 'n/a')}")
    P()
    P("## Commands")
    P()
    P("```")
    P(f"scripts/latency-budget.sh {meta.get('args', '')}".rstrip() + f"   # {meta.get('env', '')}".rstrip(" #"))
    for l in open(f"{raw}/commands.txt"):
        P(l.rstrip("\n").replace(meta["scratch"], "$S"))
    P("```")
    P()
    P(f"`$S` is the run's temporary directory under `{meta['parent']}` (removed at the end). Raw files: "
      f"[`{os.path.basename(raw)}/`]({os.path.basename(raw)}/).")
    P()

    P("## 1. The device: write + fdatasync each (fio)")
    P()
    if fio:
        P("| block | fdatasync p50 ms | fdatasync p99 ms | fdatasync mean ms | write() p50 ms | write+fdatasync /s | MB/s | other CPU meanwhile, cores (largest) |")
        P("|---|---|---|---|---|---|---|---|")
        for r in fio:
            P(f"| {r['bs']} | {ms(r['p50'], 3)} | {ms(r['p99'], 3)} | {ms(r['mean'], 3)} | {ms(r['write_p50'], 3)} | "
              f"{fnum(r['iops'], 0)} | {fnum(r['mbs'], 2)} | {meta.get('fio_busy_' + r['bs'], '?')} |")
        for tag, r in paced.items():
            P(f"| {r['bs']} paced at {r['rate']}/s (the durable {tag} msg/s bench's fsyncs) | {ms(r['p50'], 3)} | {ms(r['p99'], 3)} | "
              f"{ms(r['mean'], 3)} | {ms(r['write_p50'], 3)} | {fnum(r['iops'], 0)} | {fnum(r['mbs'], 2)} | "
              f"{meta.get('fio_busy_paced-' + tag, '?')} |")
        P()
        P("Back to back (the first rows: the next write+fdatasync starts as soon as the last ends) and "
          "paced (`--rate_iops`, after the broker runs: blocks of the bytes each broker fsync covered, at "
          "the broker's fsync rate). A paced fdatasync has been measured slower than a back-to-back one on "
          "this kind of VM (perf/results/2026-12-03-fsync-pacing.md); the paced row is the like-for-like "
          "floor for the broker's fsync.")
        P()
        P("fdatasync = fio's `sync` latency (the fdatasync call alone); write() = the buffered write's completion latency; "
          "other CPU = every process but fio and this script during the fio run, kernel threads included "
          "(something else running may also have been writing to the same disk).")
    else:
        P(f"fio: {meta.get('fio_status', 'not run')}")
    P()

    W = {}
    WHOLE = {}
    for m, r in benches:
        sn = load_snaps(f"{raw}/snaps-{m}-{r}.jsonl")
        execs = {}
        for s in sn.values():
            for t in s["tasks"]:
                if t["comm"].startswith("sluice-shard-"):
                    execs[t["comm"]] = min(execs.get(t["comm"], t["tid"]), t["tid"])
        W[(m, r)] = window(sn["start"], sn["end"], execs)
        WHOLE[(m, r)] = window(sn["before"], sn["after"], execs)
        W[(m, r)]["iouwrk_end"] = sorted(t["comm"] for t in sn["after"]["tasks"] if t["comm"].startswith("iou-wrk"))
        W[(m, r)]["tid_comm"] = {t["tid"]: t["comm"] for s in sn.values() for t in s["tasks"]}
    B = {}
    for m, r in benches:
        p = f"{raw}/bench-{m}-{r}.json"
        B[(m, r)] = json.load(open(p)) if os.path.exists(p) else None

    hdr = "| | " + " | ".join(f"{m} {int(r):,}/s".replace(",", " ") for m, r in benches) + " |"
    sep = "|---|" + "---|" * len(benches)
    def row(label, f):
        vals = []
        for k in benches:
            try:
                v = f(W[k], k)
            except (KeyError, TypeError, ZeroDivisionError):
                v = None
            vals.append("n/a" if v is None else v)
        P(f"| {label} | " + " | ".join(vals) + " |")

    P("## 2. The broker during each bench")
    P()
    P("Durable = the default (acks=all answered after the fdatasync covering the batch); relaxed = "
      "`--set log.flush.interval.messages=9223372036854775807` (no fsync). Window: the bench's measured "
      "phase minus 0.5 s at each end; means are sum/count deltas of the broker's histograms, p50/p99 are "
      "interpolated inside its buckets (bounds 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 ms ...), so they are coarse.")
    P()
    P(hdr); P(sep)
    row("window s", lambda w, k: fnum(w["dt"], 1) + (" (late: past the phase)" if w["dt"] > float(meta["window_s"]) + 0.5 else ""))
    row("produce requests/s", lambda w, k: fnum(w["req"] / w["dt"], 0))
    row("messages per produce request", lambda w, k: fnum(w["recs"] / w["req"], 2))
    row("bytes appended per request", lambda w, k: fnum(w["bytes"] / w["req"], 0))
    row("other requests/s (the bench's consumer)", lambda w, k: ", ".join(f"{a} {v / w['dt']:.0f}" for a, v in sorted(w["other_req"].items())) or "-")
    row("fsyncs/s", lambda w, k: fnum((w["fsync"]["count"] if w["fsync"] else 0) / w["dt"], 0))
    row("produce requests per fsync (group commit)", lambda w, k: fnum(w["req"] / w["fsync"]["count"], 2) if w["fsync"] else "no fsync")
    row("bytes per fsync", lambda w, k: fnum(w["bytes"] / w["fsync"]["count"], 0) if w["fsync"] else "-")
    row("appends per group commit: mean; p50, p99 bucket (`sluice_fsync_batch_appends`)", lambda w, k: (
        f"{w['batch']['mean']:.2f}; <= {w['batch']['p50']}, <= {w['batch']['p99']}" if w["batch"] else "-"))
    row("broker fsync mean ms", lambda w, k: ms(w["fsync"]["mean"], 3) if w["fsync"] else "-")
    row("broker fsync p50 / p99 ms (buckets)", lambda w, k: f"{ms(w['fsync']['p50'])} / {ms(w['fsync']['p99'])}" if w["fsync"] else "-")
    row("fsyncs over 10 ms / over 50 ms", lambda w, k: f"{w['fsync']['over10ms']:.0f} / {w['fsync']['over50ms']:.0f}" if w["fsync"] else "-")
    row("broker Produce latency mean ms", lambda w, k: ms(w["produce"]["mean"], 3))
    row("broker Produce p50 / p99 ms (buckets)", lambda w, k: f"{ms(w['produce']['p50'])} / {ms(w['produce']['p99'])}")
    row("Produce requests over 10 ms / over 50 ms", lambda w, k: f"{w['produce']['over10ms']:.0f} / {w['produce']['over50ms']:.0f}")
    row("broker CPU ms per produce request (all threads)", lambda w, k: fnum(1000 * w["proc_s"] / w["req"], 3))
    row("broker CPU cores", lambda w, k: fnum(w["proc_s"] / w["dt"], 2))
    row("bench (generator) CPU cores", lambda w, k: fnum(w["bench_s"] / w["dt"], 2) if w["bench_s"] is not None else None)
    row("everything else (kernel threads, other processes), cores: total (largest)", lambda w, k: f"{w['others_s'] / w['dt']:.2f}" + (
        " (" + ", ".join(f"{c} {t / CLK / w['dt']:.2f}" for c, t in sorted(w["others"].items(), key=lambda x: -x[1])[:3]
                         if t / CLK / w["dt"] >= 0.01) + ")" if any(t / CLK / w["dt"] >= 0.01 for t in w["others"].values()) else ""))
    row("executor stalls (> 1 ms)", lambda w, k: fnum(w["stalls"], 0))
    row("cross-shard inbox full", lambda w, k: fnum(w["inbox_full"], 0))
    row("load average (1 min) at the end", lambda w, k: w["loadavg"][0])
    P()
    P("CPU from `/proc/*/stat` per process (own plus reaped children's; a process started inside the window "
      "is not counted): everything else = kernel threads working for the broker (writeback, journal, softirq) "
      "and other processes (noise on a shared machine).")
    P()

    P("### Whole bench (before -> after the bench process, including set-up, warm-up and drain)")
    P()
    W_steady, W = W, WHOLE
    P(hdr); P(sep)
    row("seconds", lambda w, k: fnum(w["dt"], 1))
    row("produce requests", lambda w, k: fnum(w["req"], 0))
    row("messages per request", lambda w, k: fnum(w["recs"] / w["req"], 2))
    row("produce requests per fsync", lambda w, k: fnum(w["req"] / w["fsync"]["count"], 2) if w["fsync"] else "no fsync")
    row("broker fsync mean ms", lambda w, k: ms(w["fsync"]["mean"], 3) if w["fsync"] else "-")
    row("broker Produce mean ms", lambda w, k: ms(w["produce"]["mean"], 3))
    row("broker CPU ms per produce request", lambda w, k: fnum(1000 * w["proc_s"] / w["req"], 3))
    row("switches per request, all threads (vol / nonvol)", lambda w, k: "%.2f / %.2f" % (
        sum(e["vcs"] for e in w["threads"].values()) / w["req"], sum(e["nvcs"] for e in w["threads"].values()) / w["req"]))
    P()
    W = W_steady


    have_stages = any(W[k]["stages"] for k in benches)
    P("### Produce stages (`sluice_produce_stage_seconds`)")
    P()
    if have_stages:
        P("queued: request read -> append starts on the owning shard; write: the segment write; "
          "fsync_wait: written -> the covering fsync starts; fsync: the covering fsync; respond: durable -> response written. "
          "Mean / p50 / p99 in ms (p50/p99 interpolated in buckets; <=0.05: inside the first bucket).")
        P()
        P(hdr); P(sep)
        stnames = []
        for k in benches:
            for s in W[k]["stages"]:
                if s not in stnames:
                    stnames.append(s)
        for s in stnames:
            row(s, lambda w, k, s=s: (f"{ms(w['stages'][s]['mean'], 3)} / {ms(w['stages'][s]['p50'])} / {ms(w['stages'][s]['p99'])}"
                                      if w["stages"].get(s) else "-"))
        row("sum of stage means", lambda w, k: ms(sum(v["mean"] for v in w["stages"].values() if v), 3))
        row("observations per produce request (first stage)", lambda w, k: fnum(next(v for v in w["stages"].values() if v)["count"] / w["req"], 2))
        row("produce connection on the partition's shard? (from queued)", lambda w, k: (
            ("yes" if w["stages"]["queued"]["mean"] < 50e-6 else "no: requests hop to the other shard")
            if w["stages"].get("queued") else "-"))
        P()
        P("The sum of stage means should come close to the broker's Produce latency mean above "
          "(that one runs from header decoded to response ready); relaxed has no fsync stages and no "
          "respond stage (it is timed from durable), so there write -> response is not covered. "
          "Which shard a connection lands on is the kernel's choice (SO_REUSEPORT), per connection: when "
          "the producer's is not the partition's owner, queued includes the hop to the owner (tens to "
          "hundreds of µs where it is a few µs otherwise) and the answer hops back; runs differ by this.")
    else:
        P("Not exported by this binary: no `sluice_produce_stage_seconds` series in /metrics "
          "(added in f9f8435). Rerun the script on a build that has it to fill this table.")
    P()

    P("## 3. Threads: context switches and CPU per produce request")
    P()
    P("From `/proc/PID/task/*/status` (voluntary / nonvoluntary switches) and `/proc/PID/task/*/stat` "
      "(utime + stime, clock ticks of 1/%d s), steady window. `sluice-shard-N` is the shard's executor thread; "
      "its helper threads (compio's blocking pool, same name) count under other. Threads that exit inside the "
      "window lose their counts (column: exited)." % CLK)
    P()
    groups = []
    for k in benches:
        for gname in W[k]["threads"]:
            if gname not in groups:
                groups.append(gname)
    groups.sort(key=lambda g: (0 if g.startswith("sluice-shard") else 1 if g.startswith("iou") else 2, g))
    P(hdr.replace("| |", "| thread group: vol / nonvol switches, CPU ms per produce request [threads, new, exited] |", 1)); P(sep)
    for gname in groups:
        def cell(w, k, gname=gname):
            e = w["threads"].get(gname)
            if not e:
                return "-"
            return (f"{e['vcs'] / w['req']:.2f} / {e['nvcs'] / w['req']:.2f}, {1000 * e['ticks'] / CLK / w['req']:.3f} ms "
                    f"[{e['threads']}, {e['new']}, {e['exited']}]")
        row(gname, cell)
    def allsw(w, k):
        v = sum(e["vcs"] for e in w["threads"].values()); n = sum(e["nvcs"] for e in w["threads"].values())
        return f"{v / w['req']:.2f} / {n / w['req']:.2f}"
    row("all threads: switches per request", allsw)
    def iou_end(w, k):
        owners = {}
        for c in w["iouwrk_end"]:
            o = w["tid_comm"].get(int(c.split("-")[-1]), "?") if c.split("-")[-1].isdigit() else "?"
            owners[o] = owners.get(o, 0) + 1
        return f"{len(w['iouwrk_end'])}" + (" (" + ", ".join(f"{n} of {o}" for o, n in sorted(owners.items())) + ")" if owners else "")
    row("iou-wrk threads at the end of the bench", iou_end)
    P()

    P("## 4. io_uring submissions (perf tracepoints)")
    P()
    perf = {}
    for m in modes:
        for f in sorted(os.listdir(raw)):
            mm = re.fullmatch(rf"perf-{m}-perf(\d+)\.json", f)
            if mm:
                perf[(m, mm.group(1))] = f"{raw}/{f}"
    if not perf:
        P(f"Not measured: {meta.get('perf_status', 'perf not run')}.")
    else:
        P(f"perf: {meta.get('perf_status', '')}. perf's own CPU use and the tracepoints' cost weigh on "
          "that bench, so its latency is shown here only, not in the tables above.")
        P()
    for k, p in perf.items():
        pj = json.load(open(p))
        d = pj["counts"]
        sn = load_snaps(f"{raw}/snaps-{k[0]}-perf{k[1]}.jsonl")
        pw = window(sn["perf0"], sn["perf1"], {}) if "perf0" in sn and "perf1" in sn else None
        if not pw or not pw["req"]:
            continue
        pb = f"{raw}/bench-{k[0]}-perf{k[1]}.json"
        pbl = json.load(open(pb))["workload"]["phases"][0]["results"]["publish_latency_us"] if os.path.exists(pb) else None
        sub, asy = d.get("io_uring_submit_req", {}), d.get("io_uring_queue_async_work", {})
        P(f"**{k[0]}, {int(k[1])} msg/s**: {pw['dt']:.1f} s recorded, {pw['req']:.0f} produce requests "
          f"({pw['req'] / pw['dt']:.0f}/s), {pw['recs'] / pw['req']:.2f} messages per request, "
          + (f"{pw['fsync']['count']:.0f} fsyncs" if pw["fsync"] else "no fsync")
          + "; the bench's consumer fetches meanwhile (READ/SPLICE/SEND are mostly its)"
          + (f"; this bench's publish p50 / p99 with perf attached: {pbl['p50'] / 1000:.2f} / {pbl['p99'] / 1000:.2f} ms." if pbl else "."))
        if pj.get("first_event") is None or pj["first_event"] > pj["window"][0] + 0.05:
            P()
            P("**Caveat:** perf's first event came after the window opened: the counts per request are too low.")
        P()
        P("| opcode | submitted | per produce request | punted to io-wq (async work) | per produce request | punted |")
        P("|---|---|---|---|---|---|")
        for op in sorted(set(sub) | set(asy), key=lambda o: -sub.get(o, 0)):
            s, a = sub.get(op, 0), asy.get(op, 0)
            P(f"| {op} | {s} | {s / pw['req']:.2f} | {a} | {a / pw['req']:.2f} | {100 * a / s if s else 0:.0f} % |")
        s, a = sum(sub.values()), sum(asy.values())
        P(f"| all | {s} | {s / pw['req']:.2f} | {a} | {a / pw['req']:.2f} | {100 * a / s if s else 0:.0f} % |")
        P()
    if perf:
        P("A punted request runs on an `iou-wrk` thread (io-wq) and completes back to the shard's ring: "
          "two thread hand-offs (and their wake-ups) per punted request. A WRITE done with pwrite on the "
          "shard thread (`log.write.inline`) is not an io_uring request and does not appear here.")
        P()

    P("## 5. The client: `sluice bench` publish latency")
    P()
    P("Open loop: publish latency counts from each message's intended send time; it includes the producer's "
      "linger (1 ms), waiting for a free in-flight slot, and the loopback round trip. Request latency (when the "
      "bench reports it: `request_latency_us`) is one produce request from sent to answered, without linger.")
    P()
    P("| bench | msg/s acked | publish p50 ms | p99 ms | p99.9 ms | max ms | median of per-second p99 ms | request p50 / p99 ms | e2e p50 / p99 ms | unsent, errors |")
    P("|---|---|---|---|---|---|---|---|---|---|")
    u = lambda v: "n/a" if v is None else f"{v / 1000:.2f}"
    for k in benches:
        b = B[k]
        if not b:
            P(f"| {k[0]} {k[1]}/s | bench failed | | | | | | | | |"); continue
        ph = b["workload"]["phases"][0]["results"]
        pl, el, rq = ph["publish_latency_us"], ph["e2e_latency_us"], ph.get("request_latency_us")
        sec = sorted(t["publish_p99_us"] for t in b.get("timeline", []) if not t.get("warmup") and t.get("publish_p99_us") and t.get("msgs_per_s", 0) > 0.5 * float(k[1]))
        med = sec[len(sec) // 2] if sec else None
        P(f"| {k[0]} {int(k[1])}/s | {ph['throughput']['msgs_per_s']:.0f} | {u(pl['p50'])} | {u(pl['p99'])} | {u(pl['p999'])} | "
          f"{u(pl['max'])} | {u(med)} | {(u(rq['p50']) + ' / ' + u(rq['p99'])) if rq else 'n/a'} | "
          f"{u(el['p50'])} / {u(el['p99'])} | {ph.get('unsent_msgs', 0)}, {ph.get('errors', 0)} |")
    P()

    P("## 6. Budget against the issue's goals")
    P()
    P("Device: the back-to-back fio block size nearest (log scale) to the bytes each fsync covered in that bench "
      "(relaxed: the bytes per produce request), and for durable the paced fio run at that bench's fsync rate. "
      "Goals (issue #16, durable only), from the back-to-back figures: p50 <= device fdatasync p50 + 0.5 ms, "
      "p99 <= 1.5 x device fdatasync p99; judged on the client's publish latency (linger 1 ms included) and, "
      "when the bench reports it, on its request latency (no linger). The relaxed bench at the same rate has "
      "the same client, linger and loopback and no fsync, so durable - relaxed is what durability costs the "
      "client (meaningful only when both runs had the same shard placement, section 2).")
    P()
    P("| bench | device fdatasync p50 / p99 ms (block); paced | broker fsync mean ms | broker Produce mean ms | "
      "client publish p50 / p99 ms | client request p50 / p99 ms | overhead = publish p50 - device p50 ms (request) | "
      "durable - relaxed p50 ms: publish (request) | goal p50 <= | goal p99 <= | met? publish; request |")
    P("|---|---|---|---|---|---|---|---|---|---|---|")
    def lat(b, key):
        if not b:
            return None, None
        l = b["workload"]["phases"][0]["results"].get(key)
        return (l["p50"] / 1e6, l["p99"] / 1e6) if l and l.get("p50") is not None else (None, None)
    for k in benches:
        w, b = W[k], B[k]
        per = (w["bytes"] / w["fsync"]["count"]) if w["fsync"] else (w["bytes"] / w["req"] if w["req"] else None)
        dv = nearest_fio(fio, per)
        c50, c99 = lat(b, "publish_latency_us")
        r50, r99 = lat(b, "request_latency_us")
        dok = dv and dv["p50"] is not None and dv["p99"] is not None
        dev = f"{ms(dv['p50'], 3)} / {ms(dv['p99'], 3)} ({dv['bs']})" if dok else "n/a"
        pr = paced.get(k[1]) if k[0] == "durable" else None
        if pr and pr["p50"] is not None:
            dev += f"; paced {ms(pr['p50'], 3)} / {ms(pr['p99'], 3)}"
        over = "n/a"
        if dok and c50 is not None:
            over = ms(c50 - dv["p50"]) + (f" ({ms(r50 - dv['p50'])})" if r50 is not None else "")
        g50s = g99s = "-"
        met = "-" if k[0] != "durable" else "n/a"
        if k[0] == "durable" and dok and c50 is not None:
            g50, g99 = dv["p50"] + 0.0005, 1.5 * dv["p99"]
            yn = lambda a, g: "n/a" if a is None else ("yes" if a <= g else "no")
            met = f"p50 {yn(c50, g50)}, p99 {yn(c99, g99)}; p50 {yn(r50, g50)}, p99 {yn(r99, g99)}"
            g50s, g99s = ms(g50, 3), ms(g99, 3)
        dr = "-"
        if k[0] == "durable" and (("relaxed", k[1]) in B):
            rp50, _ = lat(B[("relaxed", k[1])], "publish_latency_us")
            rr50, _ = lat(B[("relaxed", k[1])], "request_latency_us")
            if c50 is not None and rp50 is not None:
                dr = ms(c50 - rp50) + (f" ({ms(r50 - rr50)})" if r50 is not None and rr50 is not None else "")
        P(f"| {k[0]} {int(k[1])}/s | {dev} | {ms(w['fsync']['mean'], 3) if w['fsync'] else '-'} | {ms(w['produce']['mean'], 3)} | "
          f"{ms(c50)} / {ms(c99)} | {ms(r50)} / {ms(r99)} | {over} | {dr} | {g50s} | {g99s} | {met} |")
    P()

if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "freeport": print(free_port())
    elif cmd == "snap": snap(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6] if len(sys.argv) > 6 and sys.argv[6] else None)
    elif cmd == "wait-start": wait_start(int(sys.argv[2]), float(sys.argv[3]))
    elif cmd == "wait-ready": wait_ready(int(sys.argv[2]), float(sys.argv[3]))
    elif cmd == "sleep-until": sleep_until(sys.argv[2])
    elif cmd == "calc":
        if set(sys.argv[2]) - set("0123456789.+-*/() "):
            raise SystemExit(f"calc: not a number expression: {sys.argv[2]}")
        print(f"{eval(sys.argv[2]):.3f}")
    elif cmd == "perfcount": perfcount(sys.argv[2], sys.argv[3])
    elif cmd == "procs": json.dump({"t": time.time(), "procs": procs()}, open(sys.argv[2], "w"))
    elif cmd == "pdiff":
        # CPU (cores) used since `procs FILE` by every process but this script: total (largest)
        j = json.load(open(sys.argv[2]))
        a, now, dt = j["procs"], procs(), time.time() - j["t"]
        me = {str(os.getpid()), str(os.getppid()), os.environ.get("LB_SELF", "")}
        d = {}
        for p, (comm, t) in now.items():
            if p in a and p not in me and t > a[p][1]:
                k = re.sub(r"[/:].*", "", comm) if comm.startswith(("kworker", "ksoftirqd", "rcu", "migration")) else comm
                d[k] = d.get(k, 0) + t - a[p][1]
        top = [f"{c} {t / CLK / dt:.2f}" for c, t in sorted(d.items(), key=lambda x: -x[1])[:3] if t / CLK / dt >= 0.01]
        print(f"{sum(d.values()) / CLK / dt:.2f}" + (f" ({', '.join(top)})" if top else ""))
    elif cmd == "report": report(sys.argv[2])
    elif cmd == "pace":
        # the durable bench's fsync rate and bytes per fsync (steady window) -> "BYTES RATE"
        sn = load_snaps(sys.argv[2])
        w = window(sn["start"], sn["end"], {})
        if w["fsync"] and w["fsync"]["count"] > 0:
            nb = max(512, int(round(w["bytes"] / w["fsync"]["count"] / 512)) * 512)
            print(nb, max(1, int(round(w["fsync"]["count"] / w["dt"]))))
    else: raise SystemExit(f"unknown helper command {cmd}")
PYEOF
lb() { python3 "$PY" "$@"; }
export LB_SELF=$$  # the helper leaves this shell (and the children it reaped) out of "other CPU users"

# ---------------------------------------------------------------- machine
meta tag "$TAG"; meta date "$DATE"; meta scratch "$S"; meta parent "$PARENT"
meta modes "$MODES"; meta rates "$RATES"; meta fio_bs "$FIO_BS"
meta args "${ARGS[*]}"
meta env "LB_RATES=\"$RATES\" LB_DURATION=$DURATION LB_WARMUP=$WARMUP LB_PERF_RATE=$PERF_RATE LB_PERF_SECONDS=$PERF_SECONDS LB_FIO_RUNTIME=$FIO_RUNTIME"
meta cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
meta nproc "$(nproc)"
meta mem "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
meta kernel "$(uname -r)"
meta fs "$(findmnt -n -T "$S" -o FSTYPE,SOURCE,OPTIONS 2>/dev/null | awk '{print $1 " on " $2 " (" $3 ")"}' || df -T "$S" | tail -1)"
meta load_before "$(cut -d' ' -f1-3 /proc/loadavg)"
meta commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock vendor 2>/dev/null || echo ' (the working tree has uncommitted changes under src/, Cargo.*, vendor/)')"
meta bin "$BIN ($BIN_FROM; modified $(date -u -r "$BIN" '+%Y-%m-%d %H:%M UTC'), sha256 $(sha256sum "$BIN" | cut -c1-12))"
log "load average $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores); scratch $S"
# load average counts tasks in D state too (disk waits), so busy-ness is measured: CPU over 2 s
lb procs "$S/procs0.json"; sleep 2
BUSY=$(lb pdiff "$S/procs0.json")
meta busy_before "$BUSY"
if python3 -c "import sys; sys.exit(0 if ${BUSY%% *} > 0.3 else 1)"; then
    log "warning: the machine is busy: other processes used $BUSY cores in the last 2 s; numbers will be noisy"
fi

# ---------------------------------------------------------------- 1. fio
if [[ ${LB_FIO:-1} != 0 ]]; then
    if ! command -v fio >/dev/null; then
        if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
            log "installing fio (apt-get)"
            DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || true
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio >/dev/null 2>&1 || true
        fi
    fi
    if command -v fio >/dev/null; then
        meta fio_version "$(fio --version)"
        mkdir -p "$S/fio"
        for bs in $FIO_BS; do
            log "fio ${bs} write + fdatasync, ${FIO_RUNTIME} s"
            c=(fio --name="fdatasync-$bs" --directory="$S/fio" --rw=write --bs="$bs" --fdatasync=1
               --ioengine=psync --size=64M --runtime="$FIO_RUNTIME" --time_based --output-format=json)
            cmdlog "${c[@]}"
            lb procs "$S/procs0.json"
            "${c[@]}" >"$RAW/fio-$bs.json" 2>"$S/fio-$bs.err" || { log "fio $bs failed: $(head -c 300 "$S/fio-$bs.err")"; rm -f "$RAW/fio-$bs.json"; }
            meta "fio_busy_$bs" "$(lb pdiff "$S/procs0.json")"
            rm -f "$S/fio/"*
        done
    else
        meta fio_status "fio missing and could not be installed (apt-get install fio, as root)"
    fi
else
    meta fio_status "skipped (LB_FIO=0)"
fi

# ---------------------------------------------------------------- perf usable?
PERF_S=$PERF_SECONDS
PERF_BENCH_S=$(python3 -c "import math; print(math.ceil($PERF_S + 4))")  # 1.5 s settle + window + margins
meta window_s "$(lb calc "$DURATION - 1")"
PERF_OK=0
if [[ ${LB_PERF:-1} == 0 ]]; then
    meta perf_status "skipped (LB_PERF=0)"
elif ! command -v perf >/dev/null; then
    meta perf_status "skipped: perf not installed (Debian: apt-get install linux-perf)"
elif ! perf record -q -e io_uring:io_uring_submit_req -e io_uring:io_uring_queue_async_work \
        -o "$S/perf-probe.data" -- true >"$S/perf-probe.err" 2>&1; then
    meta perf_status "skipped: perf cannot record io_uring tracepoints here ($(head -c 200 "$S/perf-probe.err" | tr '\n' ' '))"
else
    PERF_OK=1
    meta perf_version "$(perf --version 2>/dev/null)"
    meta perf_status "io_uring:io_uring_submit_req and io_uring:io_uring_queue_async_work for ${PERF_S} s in the middle of an extra ${PERF_RATE} msg/s bench of ${PERF_BENCH_S} s (+ ${WARMUP} s warm-up), separate from the measured benches"
fi
rm -f "$S/perf-probe.data"

# ---------------------------------------------------------------- 2-4. broker passes
# One bench against the running broker (BROKER_PID, port, admin), with broker snapshots:
# before, start (phase start + warm-up + 0.5 s), end (phase end - 0.5 s), after; with perf, also
# perf0 .. perf1 in the middle of the phase, perf started 1.5 s before perf0 (attaching takes a
# moment) and only the events between perf0 and perf1 counted (perf's clock is CLOCK_MONOTONIC,
# as the snapshots'). The traced bench is a separate one: perf's own CPU use (a few tenths of a
# core here) would otherwise weigh on the latency figures of the measured benches.
run_bench() { # mode rate tag duration_s with_perf
    local mode=$1 R=$2 tag=$3 dur=$4 with_perf=$5 snaps t0 rc
    snaps=$RAW/snaps-$mode-$tag.jsonl
    lb snap "$BROKER_PID" "$admin" "$snaps" before
    c=("$SL" bench --bootstrap "127.0.0.1:$port" --partitions 1 --message-size 1024 --acks all --linger-ms 1
       --rate "$R" --duration "${dur}s" --warmup "${WARMUP}s" --quiet --out "$S/bench-$tag")
    cmdlog "${c[@]}"
    log "$mode: bench at $R msg/s (${WARMUP} s warm-up + ${dur} s)$([[ $with_perf == 1 ]] && echo ', perf record')"
    rm -rf "$S/bench-$tag"
    timeout $((dur + WARMUP + 120)) "${c[@]}" >"$RAW/bench-$mode-$tag.txt" 2>&1 &
    BENCH_PID=$!
    t0=$(lb wait-start "$admin" 30)
    lb sleep-until "$(lb calc "$t0 + $WARMUP + 0.5")"
    lb snap "$BROKER_PID" "$admin" "$snaps" start "$BENCH_PID"
    if [[ $with_perf == 1 ]]; then
        lb sleep-until "$(lb calc "$t0 + $WARMUP + ($dur - $PERF_S) / 2 - 1.5")"
        c=(perf record -q -k CLOCK_MONOTONIC --no-buildid --no-buildid-cache
           -e io_uring:io_uring_queue_async_work -e io_uring:io_uring_submit_req
           -p "$BROKER_PID" -o "$S/perf.data")
        cmdlog "${c[@]}"
        "${c[@]}" >"$S/perf-record.log" 2>&1 &
        PERF_PID=$!
        lb sleep-until "$(lb calc "$t0 + $WARMUP + ($dur - $PERF_S) / 2")"
        lb snap "$BROKER_PID" "$admin" "$snaps" perf0 "$BENCH_PID"
        lb sleep-until "$(lb calc "$t0 + $WARMUP + ($dur + $PERF_S) / 2")"
        lb snap "$BROKER_PID" "$admin" "$snaps" perf1 "$BENCH_PID"
        kill -INT "$PERF_PID" 2>/dev/null || true
        rc=0; wait "$PERF_PID" || rc=$?
        if [[ $rc != 0 && $rc != 130 ]]; then log "perf record: exit $rc ($(head -c 300 "$S/perf-record.log"))"; fi
        PERF_PID=""
    fi
    lb sleep-until "$(lb calc "$t0 + $WARMUP + $dur - 0.5")"
    lb snap "$BROKER_PID" "$admin" "$snaps" end "$BENCH_PID"
    rc=0; wait "$BENCH_PID" || rc=$?
    BENCH_PID=""
    lb snap "$BROKER_PID" "$admin" "$snaps" after
    if [[ $rc != 0 ]]; then log "bench $mode $tag failed (exit $rc): $(tail -3 "$RAW/bench-$mode-$tag.txt")"; fi
    if [[ -f $S/bench-$tag/result.json ]]; then
        cp "$S/bench-$tag/result.json" "$RAW/bench-$mode-$tag.json"
    fi
    if [[ -f $S/perf.data ]]; then
        perf script -i "$S/perf.data" -F comm,time,event,trace 2>/dev/null | lb perfcount "$RAW/perf-$mode-$tag.json" "$snaps" || true
        rm -f "$S/perf.data"
    fi
}

for mode in $MODES; do
    port=$(lb freeport); admin=$(lb freeport)
    while [[ $admin == "$port" ]]; do admin=$(lb freeport); done
    rm -rf "$S/data-$mode"
    c=("$SL" serve --data-dir "$S/data-$mode" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" --log-level warn)
    if [[ $mode == relaxed ]]; then c+=(--set log.flush.interval.messages=9223372036854775807); fi
    cmdlog "${c[@]}"
    cfg=("$SL" config print "${c[@]:2}")
    meta "config_$mode" "$("${cfg[@]}" 2>/dev/null | grep -E '^(# )?"log\.(flush|write)' | sed 's/^# //; s/  *# \(.*\)$/ (\1)/; s/"//g' | tr '\n' ';' | sed 's/;$//; s/;/; /g')"
    log "$mode broker on 127.0.0.1:$port (admin $admin)"
    "${c[@]}" >"$S/broker-$mode.log" 2>&1 &
    BROKER_PID=$!
    lb wait-ready "$admin" 30 || { cat "$S/broker-$mode.log" >&2; exit 1; }
    for R in "${RATE_LIST[@]}"; do
        run_bench "$mode" "$R" "$R" "$DURATION" 0
    done
    if [[ $PERF_OK == 1 ]]; then
        run_bench "$mode" "$PERF_RATE" "perf$PERF_RATE" "$PERF_BENCH_S" 1
    fi
    stop_pid "$BROKER_PID"; BROKER_PID=""
    grep -v '^$' "$S/broker-$mode.log" | tail -20 >"$RAW/broker-$mode.log" || true
done
# ---------------------------------------------------------------- 1b. fio paced like the broker
if [[ ${LB_FIO:-1} != 0 ]] && command -v fio >/dev/null; then
    for R in "${RATE_LIST[@]}"; do
        [[ -f $RAW/snaps-durable-$R.jsonl ]] || continue
        read -r pbs prate < <(lb pace "$RAW/snaps-durable-$R.jsonl") || continue
        [[ -n ${prate:-} ]] || continue
        log "fio paced: $pbs B write + fdatasync at $prate/s, ${FIO_RUNTIME} s (the durable $R msg/s bench's fsyncs)"
        mkdir -p "$S/fio"
        c=(fio --name="paced-$R" --directory="$S/fio" --rw=write --bs="$pbs" --fdatasync=1 --ioengine=psync
           --size=64M --runtime="$FIO_RUNTIME" --time_based --rate_iops="$prate" --output-format=json)
        cmdlog "${c[@]}"
        lb procs "$S/procs0.json"
        "${c[@]}" >"$RAW/fio-paced-$R.json" 2>"$S/fio-paced.err" || { log "fio paced failed: $(head -c 300 "$S/fio-paced.err")"; rm -f "$RAW/fio-paced-$R.json"; }
        meta "fio_busy_paced-$R" "$(lb pdiff "$S/procs0.json")"
        rm -f "$S/fio/"*
    done
fi
meta load_after "$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- 5-6. report
lb report "$RAW" >"$OUT"
cat "$OUT"
log "wrote $OUT and $RAW/"
