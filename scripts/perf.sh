#!/usr/bin/env bash
# Physical limits (fio, iperf3 loopback) then the bench workloads, in one run.
# Writes perf/results/<date>-<machine>.md plus JSON, HdrHistogram logs and SVG plots
# under perf/results/<date>-<machine>/.
#
#   scripts/perf.sh                 # embedded broker, default + OMB-style workloads
#   BOOTSTRAP=host:9092 scripts/perf.sh   # against a running Kafka-compatible broker
#   DURATION=8s scripts/perf.sh     # measured time per phase of the OMB workloads
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-8s}
DATE=$(date -u +%Y-%m-%d)
MACHINE=${MACHINE:-$(hostname -s 2>/dev/null || echo machine)}
OUT=perf/results/$DATE-$MACHINE
REPORT=perf/results/$DATE-$MACHINE.md
mkdir -p "$OUT"

cargo build --release --quiet
SLUICE=${CARGO_TARGET_DIR:-target}/release/sluice
BENCH_TARGET=()
if [[ -n "${BOOTSTRAP:-}" ]]; then BENCH_TARGET=(--bootstrap "$BOOTSTRAP"); fi

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/sluice-perf.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT

{
  echo "# Sluice performance, $DATE, $MACHINE"
  echo
  echo "- kernel: $(uname -r)"
  echo "- cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') ($(nproc) cores)"
  echo "- commit: $(git rev-parse --short=12 HEAD)$(git diff --quiet || echo ' (dirty)')"
  echo "- command: scripts/perf.sh (DURATION=$DURATION${BOOTSTRAP:+, BOOTSTRAP=$BOOTSTRAP})"
  echo
  echo "## Physical limits"
  echo
} > "$REPORT"

FIO_SEQ_MBS=""
if command -v fio >/dev/null; then
  fio --name=seq --directory="$SCRATCH" --rw=write --bs=1M --size=1G --ioengine=io_uring \
      --end_fsync=1 --output-format=json > "$OUT/fio-seq.json" 2>/dev/null || true
  fio --name=fsync --directory="$SCRATCH" --rw=write --bs=64k --size=256M --ioengine=sync \
      --fdatasync=1 --runtime=10 --time_based=0 --output-format=json > "$OUT/fio-fsync.json" 2>/dev/null || true
  FIO_SEQ_MBS=$(python3 -c "import json;d=json.load(open('$OUT/fio-seq.json'));print(round(d['jobs'][0]['write']['bw_bytes']/1e6,1))" 2>/dev/null || echo "")
  FIO_FSYNC=$(python3 -c "
import json;d=json.load(open('$OUT/fio-fsync.json'));w=d['jobs'][0]['write']
print(f\"{w['bw_bytes']/1e6:.1f} MB/s, {w['iops']:.0f} writes+fdatasync/s\")" 2>/dev/null || echo "n/a")
  echo "- fio sequential 1 MiB buffered writes (io_uring, fsync at end): ${FIO_SEQ_MBS:-n/a} MB/s" >> "$REPORT"
  echo "- fio 64 KiB write + fdatasync each: $FIO_FSYNC" >> "$REPORT"
else
  echo "- fio: not installed (apt-get install fio)" >> "$REPORT"
fi

IPERF_GBS=""
if command -v iperf3 >/dev/null; then
  iperf3 -s -1 -B 127.0.0.1 -p 15201 >/dev/null 2>&1 &
  sleep 0.5
  if iperf3 -c 127.0.0.1 -p 15201 -t 5 -J > "$OUT/iperf3.json" 2>/dev/null; then
    IPERF_GBS=$(python3 -c "import json;d=json.load(open('$OUT/iperf3.json'));print(round(d['end']['sum_received']['bits_per_second']/8e9,2))")
    echo "- iperf3 loopback TCP, 1 stream: $IPERF_GBS GB/s" >> "$REPORT"
  fi
  wait || true
else
  echo "- iperf3: not installed (apt-get install iperf3)" >> "$REPORT"
fi

run() { # name, extra args...
  local name=$1; shift
  "$SLUICE" bench "${BENCH_TARGET[@]}" --quiet --out "$OUT/$name" "$@" > "$OUT/$name.txt"
  python3 - "$OUT/$name/result.json" "$name" "$FIO_SEQ_MBS" "$IPERF_GBS" >> "$REPORT" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); name = sys.argv[2]
fio = float(sys.argv[3]) if sys.argv[3] else None
net = float(sys.argv[4]) if sys.argv[4] else None
env = d["environment"]
print(f"\n### {name}\n")
print(f"broker: {env['broker']}; generator CPU {env['generator_cpu_cores']:.2f} cores "
      f"({env['generator_cpu_s']:.1f} s, getrusage of the generator threads)\n")
print("| phase | msgs/s | MB/s | % of disk | % of loopback | publish p50 / p99 / p99.9 / max (ms) | e2e p50 / p99 / p99.9 / max (ms) |")
print("|---|---|---|---|---|---|---|")
for p in d["workload"]["phases"]:
    r = p["results"]; t = r["throughput"]
    def lat(k):
        l = r[k]
        return " / ".join("-" if l[q] is None else f"{l[q]/1000:.2f}" for q in ["p50", "p99", "p999", "max"])
    disk = f"{100*t['mb_per_s']/fio:.0f}%" if fio else "-"
    lo = f"{100*t['mb_per_s']/(net*1000):.1f}%" if net else "-"
    print(f"| {p['name']} | {t['msgs_per_s']:.0f} | {t['mb_per_s']:.1f} | {disk} | {lo} | {lat('publish_latency_us')} | {lat('e2e_latency_us')} |")
PY
}

{ echo; echo "## Workloads"; } >> "$REPORT"
run default
run omb-1-topic-16-partitions-1kb --workload perf/workloads/omb-1-topic-16-partitions-1kb.yaml --duration "$DURATION" --warmup 2s
run omb-max-rate-4-topics-100b --workload perf/workloads/omb-max-rate-4-topics-100b.yaml --duration "$DURATION" --warmup 2s

{
  echo
  echo "Plots, JSON and HdrHistogram logs: \`$OUT/<workload>/\`. Latency counts from each"
  echo "message's intended send time (open loop), so broker stalls show up as latency."
} >> "$REPORT"
echo "wrote $REPORT"
