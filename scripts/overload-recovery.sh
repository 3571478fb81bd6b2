#!/usr/bin/env bash
# Publish latency before, during and after an overload (docs/reliability.md, Overload).
#
# Starts a release `sluice serve` on its own ports and temporary data directory with a small
# request memory budget (queued.max.request.bytes), then two `sluice bench` runs against it,
# each on its own topic: a probe at a low rate for the whole run and, starting after
# OVERLOAD_PHASE_S seconds, a flood far above what the broker can make durable (open loop: its
# backlog grows; it ends once the backlog is sent and acknowledged). Prints the probe's publish
# latency (from the intended send time, so queueing is counted) second by second and per
# window (before the flood, during it, after it) and how long the probe took to get back to
# its earlier p99. Measures; asserts nothing (timings on a shared machine are noisy). Window
# boundaries come from wall-clock times of starting and ending the flood: good to about 1 s.
#
# Ports are below Linux's ephemeral range (32768-60999): polling a port there that nobody
# listens on can make curl connect to itself (TCP simultaneous open), and that connection then
# holds the port the broker wants.
# Environment (not SLUICE_*: the broker reads those as configs and refuses unknown ones),
# defaults in brackets: OVERLOAD_PORT [31092], OVERLOAD_ADMIN_PORT [31644], OVERLOAD_BUDGET
# bytes per shard [1048576], OVERLOAD_LOW_RATE msg/s [200], OVERLOAD_HIGH_RATE msg/s [20000],
# OVERLOAD_MESSAGE_BYTES [16384] (the flood offers ~330 MB/s, well above what the broker makes
# durable here, for little generator CPU), OVERLOAD_PHASE_S [10] (the flood starts after it
# and offers load for as long; the probe runs 4.5 times as long), OVERLOAD_OUT (probe JSON;
# the flood's is beside it) [perf/results/overload-recovery-<unix time>.json], OVERLOAD_BIN
# [release binary under CARGO_TARGET_DIR or target/], OVERLOAD_FLOOD_KEEP_TOPIC=1 (the flood
# leaves its topic instead of deleting it at its end). Bounded: each bench is killed after 300 s.
set -euo pipefail
cd "$(dirname "$0")/.."

port=${OVERLOAD_PORT:-31092}
admin=${OVERLOAD_ADMIN_PORT:-31644}
budget=${OVERLOAD_BUDGET:-1048576}
low=${OVERLOAD_LOW_RATE:-200}
high=${OVERLOAD_HIGH_RATE:-20000}
msg_bytes=${OVERLOAD_MESSAGE_BYTES:-16384}
phase_s=${OVERLOAD_PHASE_S:-10}
out=${OVERLOAD_OUT:-perf/results/overload-recovery-$(date +%s).json}
bin=${OVERLOAD_BIN:-${CARGO_TARGET_DIR:-target}/release/sluice}

if [[ ! -x $bin ]]; then
    cargo build --release
fi

dir=$(mktemp -d -p "${TMPDIR:-/var/tmp}")
broker_pid=
cleanup() {
    if [[ -n $broker_pid ]]; then
        kill "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT

"$bin" serve --data-dir "$dir/data" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
    --set "queued.max.request.bytes=$budget" --log-level warn >"$dir/broker.log" 2>&1 &
broker_pid=$!
for _ in $(seq 1 300); do
    if curl -fsS "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1; then break; fi
    sleep 0.1
done
curl -fsS "http://127.0.0.1:$admin/readyz" >/dev/null || { cat "$dir/broker.log"; exit 1; }

probe_s=$((phase_s * 9 / 2))
workload() { # name rate duration_s
    cat <<EOF
name: $1
topics: 1
partitionsPerTopic: 3
messageSize: $msg_bytes
producersPerTopic: 4
subscriptionsPerTopic: 1
consumerPerSubscription: 1
acks: all
batchBytes: 262144
lingerMs: 5
inFlight: 8
warmup: 0s
phases:
  - {name: $1, rate: $2, duration: ${3}s}
EOF
}
workload probe "$low" "$probe_s" >"$dir/probe.yaml"
workload flood "$high" "$phase_s" >"$dir/flood.yaml"

mkdir -p "$(dirname "$out")"
t0=$(date +%s.%N)
timeout 300 "$bin" bench --bootstrap "127.0.0.1:$port" --workload "$dir/probe.yaml" \
    --json "$out" --quiet >"$dir/probe.out" 2>&1 &
probe_pid=$!
sleep "$phase_s"
t1=$(date +%s.%N)
keep=()
if [[ ${OVERLOAD_FLOOD_KEEP_TOPIC:-0} == 1 ]]; then keep=(--keep-topics); fi
timeout 300 "$bin" bench --bootstrap "127.0.0.1:$port" --workload "$dir/flood.yaml" "${keep[@]}" \
    --json "${out%.json}.flood.json" --quiet >"$dir/flood.out" 2>&1 || { cat "$dir/flood.out"; exit 1; }
t2=$(date +%s.%N)
wait "$probe_pid" || { cat "$dir/probe.out"; exit 1; }
echo "== flood"
grep -v '^$' "$dir/flood.out"
echo "== probe"
grep -v '^$' "$dir/probe.out"
waits=$(curl -fsS "http://127.0.0.1:$admin/metrics" | awk '/^sluice_request_memory_waits_total/ {s += $2} END {print s + 0}')
rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$broker_pid/status")
echo "broker: request-budget waits $waits, peak RSS $((rss_kb / 1024)) MiB (budget $budget bytes per shard)"
python3 - "$out" "$t0" "$t1" "$t2" <<'PY'
import json, statistics, sys
r = json.load(open(sys.argv[1]))
t0, t1, t2 = (float(x) for x in sys.argv[2:5])
# The probe's t_s counts from its measurement start, a moment after launch: align on launch.
start, end = t1 - t0, t2 - t0
ms = lambda v: float("nan") if v is None else v / 1000
rows = [t for t in r["timeline"] if t["msgs_per_s"]]
def window(t):
    return "before" if t["t_s"] <= start else ("during" if t["t_s"] <= end + 1 else "after")
print(f"probe second by second (flood from ~{start:.1f} s to ~{end:.1f} s after the probe started):")
print("   t  window   sent/s acked/s   p50 ms    p99 ms    max ms  budget-waits")
for t in rows:
    print(f"{t['t_s']:4d}  {window(t):7s} {t['sent_msgs_per_s']:6d} {t['msgs_per_s']:7d} {ms(t['publish_p50_us']):8.1f} "
          f"{ms(t['publish_p99_us']):9.1f} {ms(t['publish_max_us']):9.1f}  {t['backpressure_waits']}")
print("probe per window (median of the per-second p50s; median and max of the per-second p99s):")
base = None
for w in ("before", "during", "after"):
    ts = [t for t in rows if window(t) == w]
    if not ts:
        continue
    p50 = statistics.median(ms(t["publish_p50_us"]) for t in ts)
    p99s = [ms(t["publish_p99_us"]) for t in ts]
    print(f"  {w:7s} {len(ts):3d} s  p50 {p50:8.1f} ms  p99 median {statistics.median(p99s):8.1f} ms  max {max(p99s):8.1f} ms")
    if w == "before":
        base = statistics.median(p99s)
after = [t for t in rows if window(t) == "after"]
if base and after:
    back = next((t["t_s"] for t in after if ms(t["publish_p99_us"]) <= 2 * base), None)
    print(f"recovery: first second after the flood with p99 <= 2x the before median ({2 * base:.1f} ms): "
          + ("none" if back is None else f"t={back} s, about {back - end:.0f} s after the flood ended"))
s = r["publish_latency_us"]
print(f"probe overall: p50 {s['p50'] / 1000:.1f} ms, p99 {s['p99'] / 1000:.1f} ms, max {s['max'] / 1000:.1f} ms")
PY
echo "json: $out (probe), ${out%.json}.flood.json (flood)"
