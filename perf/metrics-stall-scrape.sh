#!/bin/bash
# Stalls on an idle broker with 1000 partitions while /metrics is scraped 50 times at 10 Hz.
B=/work/target-metrics/release/sluice
D=$(mktemp -d /tmp/metrics-stall.XXXX)
PORT=$((30000 + RANDOM % 10000)); APORT=$((PORT + 1))
$B serve --data-dir $D/data --listen 127.0.0.1:$PORT --admin-listen 127.0.0.1:$APORT --cores 2 > $D/log 2>&1 &
BP=$!
for i in $(seq 100); do curl -sf 127.0.0.1:$APORT/readyz >/dev/null && break; sleep 0.1; done
$B topic create wide --partitions 1000 --bootstrap 127.0.0.1:$PORT >/dev/null
sleep 2
s() { curl -s 127.0.0.1:$APORT/metrics | grep -E '^sluice_shard_stalls_total' | tr '\n' ' '; echo; }
echo "before: $(s)"
for i in $(seq 50); do curl -s -o /dev/null 127.0.0.1:$APORT/metrics; sleep 0.1; done
echo "after 50 scrapes: $(s)"
sleep 5
echo "after 5 s idle: $(s)"
kill $BP; wait $BP; rm -rf $D
