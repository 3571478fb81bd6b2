#!/usr/bin/env bash
# scripts/ab-bench.sh: two sluice binaries (A = before, B = after a change) under the default
# `sluice bench` workload, interleaved A B A B ..., each N times, in two durability modes:
#   durable  `sluice bench` with its embedded broker (fsync before ack, the default);
#   relaxed  `sluice serve --set log.flush.interval.messages=1000000` + `sluice bench --bootstrap`.
# Prints, per binary and mode, the median and range (min..max) of: publish p50/p99 at the fixed
# 10 000 msg/s phase, and msgs/s of the max-rate phase; and the B/A ratio of the medians.
# Interleaving spreads the machine's drift over both binaries; the numbers are for ratios in one
# run, never absolute claims (perf/results says how they were taken).
#
#   scripts/ab-bench.sh A_BIN B_BIN [N=3] [OUT_DIR]
# Bounded: each bench runs the default workload (about 30 s); a serve that does not answer in
# 20 s fails the run. Everything on 127.0.0.1; brokers stopped by pid; temp dirs removed.
set -euo pipefail

A_BIN=${1:?usage: scripts/ab-bench.sh A_BIN B_BIN [N] [OUT_DIR]}
B_BIN=${2:?usage: scripts/ab-bench.sh A_BIN B_BIN [N] [OUT_DIR]}
N=${3:-3}
OUT=${4:-$(mktemp -d -t sluice-ab-XXXXXX)}
mkdir -p "$OUT"
WORK=$(mktemp -d -t sluice-ab-work-XXXXXX)
SERVE_PID=""
cleanup() {
    if [[ -n "$SERVE_PID" ]] && kill -0 "$SERVE_PID" 2>/dev/null; then
        kill -TERM "$SERVE_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$SERVE_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVE_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

run_durable() { # BIN JSON
    (cd "$WORK" && SLUICE_BENCH_DIR="$WORK" "$1" bench --quiet --json "$2" >/dev/null)
}

run_relaxed() { # BIN JSON
    local port admin data
    port=$(free_port); admin=$(free_port); data="$WORK/relaxed-data"
    rm -rf "$data"
    "$1" serve --data-dir "$data" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
        --set log.flush.interval.messages=1000000 >"$WORK/serve.log" 2>&1 &
    SERVE_PID=$!
    for _ in $(seq 1 200); do
        if curl -fsS "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1; then break; fi
        sleep 0.1
    done
    curl -fsS "http://127.0.0.1:$admin/readyz" >/dev/null || { cat "$WORK/serve.log" >&2; exit 1; }
    (cd "$WORK" && "$1" bench --bootstrap "127.0.0.1:$port" --quiet --json "$2" >/dev/null)
    kill -TERM "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null || true; SERVE_PID=""
}

for i in $(seq 1 "$N"); do
    for side in A B; do
        bin=$A_BIN; [[ $side == B ]] && bin=$B_BIN
        for mode in durable relaxed; do
            echo "run $i/$N $side $mode" >&2
            "run_$mode" "$bin" "$OUT/$side-$mode-$i.json"
        done
    done
done

python3 - "$OUT" "$N" <<'PY'
import json, statistics, sys
out, n = sys.argv[1], int(sys.argv[2])
def phases(path):
    d = json.load(open(path))
    ph = d["workload"]["phases"]
    fixed = next(p for p in ph if p.get("rate"))["results"]
    maxr = next(p for p in ph if not p.get("rate"))["results"]
    return {
        "fixed publish p50 ms": fixed["publish_latency_us"]["p50"] / 1000,
        "fixed publish p99 ms": fixed["publish_latency_us"]["p99"] / 1000,
        "max rate msg/s": maxr["throughput"]["msgs_per_s"],
    }
print(f"{n} runs each, interleaved; median (min..max)\n")
print("| mode | metric | A | B | B/A |")
print("|---|---|---|---|---|")
for mode in ("durable", "relaxed"):
    runs = {s: [phases(f"{out}/{s}-{mode}-{i}.json") for i in range(1, n + 1)] for s in "AB"}
    for metric in runs["A"][0]:
        cell, med = {}, {}
        for s in "AB":
            v = [r[metric] for r in runs[s]]
            med[s] = statistics.median(v)
            fmt = "{:.0f}" if "msg/s" in metric else "{:.2f}"
            cell[s] = f"{fmt.format(med[s])} ({fmt.format(min(v))}..{fmt.format(max(v))})"
        ratio = med["B"] / med["A"] if med["A"] else float("nan")
        print(f"| {mode} | {metric} | {cell['A']} | {cell['B']} | {ratio:.2f} |")
print(f"\nraw JSON: {out}")
PY
