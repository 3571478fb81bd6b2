#!/bin/bash
# A/B of log.write.inline on an external broker; usage: ab-inline.sh OUTDIR ROUNDS
out=$1; rounds=${2:-2}; mkdir -p $out
for r in $(seq 1 $rounds); do
 for mode in true false; do
  d=/work/tmp-lat/ab-$mode; rm -rf $d; mkdir -p $d
  port=$((20000 + RANDOM % 20000))
  /tmp/sluice-ab serve --data-dir $d/data --listen 127.0.0.1:$port --admin-listen 127.0.0.1:$((port+1)) --log-level warn --set log.write.inline=$mode > $d/broker.log 2>&1 &
  bp=$!; sleep 1.5
  /tmp/sluice-ab bench --bootstrap 127.0.0.1:$port --broker-pid $bp --broker-metrics 127.0.0.1:$((port+1)) --probe-dir $d --quiet --json $out/r$r-$mode.json > $out/r$r-$mode.txt 2>&1
  curl -s 127.0.0.1:$((port+1))/metrics > $out/r$r-$mode.metrics
  kill $bp; wait $bp
 done
done
