#!/usr/bin/env bash
# `sluice bench` against a three-node Sluice cluster on this one machine (loopback), with
# replication factor 3 and 1, and against one node alone, in one run; writes
# perf/results/<date>-cluster-<machine>.md and the JSON results beside it.
#
#   scripts/cluster-bench.sh                 # 8 s per run
#   DURATION=20s RATE=20000 scripts/cluster-bench.sh
#
# Every node runs with --cores 1 so the three nodes plus the generator share the machine's
# cores; on a 2-core machine the absolute numbers measure contention more than Sluice, but the
# ratios between the runs (the cost of replication) are what this is for.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-8s}
RATE=${RATE:-5000}
SIZE=${SIZE:-1024}
DATE=$(date -u +%Y-%m-%d)
MACHINE=${MACHINE:-$(hostname -s 2>/dev/null || echo machine)}
OUT=perf/results/$DATE-cluster-$MACHINE
REPORT=perf/results/$DATE-cluster-$MACHINE.md
mkdir -p "$OUT"

cargo build --release --quiet
SLUICE=${CARGO_TARGET_DIR:-target}/release/sluice
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/sluice-cluster-bench.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ -z "${KEEP:-}" ]]; then rm -rf "$SCRATCH"; else echo "kept $SCRATCH"; fi
}
trap cleanup EXIT

BASE=${BASE_PORT:-39100}
VOTERS="1@127.0.0.1:$((BASE + 11)),2@127.0.0.1:$((BASE + 12)),3@127.0.0.1:$((BASE + 13))"
start_node() { # id [cluster]
  local id=$1 cluster=${2:-}
  local args=(serve --data-dir "$SCRATCH/n$id-$cluster" --listen "127.0.0.1:$((BASE + id))"
              --admin-listen "127.0.0.1:$((BASE + 20 + id))" --cores 1)
  if [[ -n "$cluster" ]]; then args+=(--node-id "$id" --cluster "$VOTERS"); fi
  RUST_LOG=${NODE_LOG:-warn} "$SLUICE" "${args[@]}" > "$SCRATCH/n$id-$cluster.log" 2>&1 &
  PIDS+=($!)
}
wait_ready() { # id
  for _ in $(seq 1 200); do
    if curl -sf "http://127.0.0.1:$((BASE + 20 + $1))/readyz" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "node $1 not ready" >&2; cat "$SCRATCH"/n$1-*.log >&2; exit 1
}
stop_all() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  PIDS=()
}
bench() { # name bootstrap rf rate
  "$SLUICE" bench --bootstrap "$2" --replication-factor "$3" --rate "$4" --duration "$DURATION" \
    --message-size "$SIZE" --partitions 3 --quiet --json "$OUT/$1.json" > "$OUT/$1.txt" 2>&1 || {
      echo "bench $1 failed:"; cat "$OUT/$1.txt"; exit 1; }
}
row() { # name label
  python3 - "$OUT/$1.json" "$2" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
pub, e2e, tp = d["publish_latency_us"], d["e2e_latency_us"], d["throughput"]
ms = lambda v: f"{v / 1000:.2f}"
print(f"| {sys.argv[2]} | {tp['msgs_per_s']:,.0f} | {ms(pub['p50'])} | {ms(pub['p99'])} | {ms(e2e['p50'])} | {ms(e2e['p99'])} |")
EOF
}

{
  echo "# Sluice cluster (Raft replication) on one machine, $DATE, $MACHINE"
  echo
  echo "- kernel: $(uname -r)"
  echo "- cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') ($(nproc) cores)"
  echo "- commit: $(git rev-parse --short=12 HEAD)$(git diff --quiet || echo ' (dirty)')"
  echo "- command: scripts/cluster-bench.sh (DURATION=$DURATION, RATE=$RATE, SIZE=$SIZE); 3 partitions, acks=all, every node --cores 1, all processes on the same $(nproc) cores"
  echo
} > "$REPORT"

for rate in "$RATE" 0; do
  label=$([[ $rate == 0 ]] && echo "max rate" || echo "$rate msg/s")
  start_node 1
  wait_ready 1
  bench "single-$rate" "127.0.0.1:$((BASE + 1))" 1 "$rate"
  stop_all
  for id in 1 2 3; do start_node "$id" c$rate; done
  for id in 1 2 3; do wait_ready "$id"; done
  bench "cluster-rf3-$rate" "127.0.0.1:$((BASE + 1))" 3 "$rate"
  bench "cluster-rf1-$rate" "127.0.0.1:$((BASE + 1))" 1 "$rate"
  stop_all
  {
    echo "## $label, ${SIZE} B messages"
    echo
    echo "| setup | publish msg/s | publish p50 ms | publish p99 ms | end-to-end p50 ms | end-to-end p99 ms |"
    echo "|---|---|---|---|---|---|"
    row "single-$rate" "one node (no cluster)"
    row "cluster-rf3-$rate" "3 nodes, replication factor 3"
    row "cluster-rf1-$rate" "3 nodes, replication factor 1"
    echo
  } >> "$REPORT"
done
echo "wrote $REPORT"
