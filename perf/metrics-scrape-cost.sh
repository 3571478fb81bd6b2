#!/bin/bash
# Scrape cost with 1000 partitions, and bench p99 with/without a 10 Hz scraper.
set -u
B=/work/target-metrics/release/sluice
D=$(mktemp -d /tmp/metrics-measure.XXXX)
PORT=$((20000 + RANDOM % 10000)); APORT=$((PORT + 1))
$B serve --data-dir $D/data --listen 127.0.0.1:$PORT --admin-listen 127.0.0.1:$APORT --cores 2 > $D/log 2>&1 &
BP=$!
for i in $(seq 100); do curl -sf 127.0.0.1:$APORT/readyz >/dev/null && break; sleep 0.1; done
$B topic create wide --partitions 1000 --bootstrap 127.0.0.1:$PORT
curl -s 127.0.0.1:$APORT/metrics > $D/m.txt; echo "exposition bytes: $(wc -c < $D/m.txt), series: $(grep -vc '^#' $D/m.txt)"
for i in $(seq 20); do curl -s -o /dev/null -w '%{time_total}\n' 127.0.0.1:$APORT/metrics; done | sort -n | awk '{a[NR]=$1} END {print "scrape time s: min", a[1], "median", a[int(NR/2)], "max", a[NR]}'
run() {
  $B bench --bootstrap 127.0.0.1:$PORT --topics 1 --partitions 6 --rate 20000 --message-size 1024 --warmup 2s --duration 10s --json $D/$1.json > $D/$1.out 2>&1
  grep -iE "p99|publish" $D/$1.out | head -6
}
echo "--- bench without scraper"; run noscrape
( while true; do curl -s -o /dev/null 127.0.0.1:$APORT/metrics; sleep 0.1; done ) & SP=$!
echo "--- bench with a 10 Hz scraper"; run scrape
kill $SP
curl -s 127.0.0.1:$APORT/metrics | grep -E "^sluice_shard_stalls_total|^sluice_cross_shard_inbox_full_total|^sluice_fsync_duration_seconds_count|^sluice_requests_total\{api=\"Produce\"|request_duration_seconds_count\{api=\"Produce"
kill $BP; wait $BP
echo "dir $D"
