#!/usr/bin/env bash
# A/B throughput of two writ binaries ($WRIT_BASE_DIR/writ-base and writ-edge): each binary against its own fresh server, interleaved; 64 connections,
# authorize, 10 s after 1 s warm-up. Usage: ab.sh ROUNDS
set -u
rounds=${1:-3}
for r in $(seq 1 $rounds); do
  for b in base edge; do
    bin=${WRIT_BASE_DIR:-/tmp/edgebench}/writ-$b
    d=$(mktemp -d /tmp/wb-ab-XXXX)
    $bin --data-dir $d serve --listen 127.0.0.1:7171 > $d/out 2> $d/err &
    pid=$!
    for i in $(seq 1 100); do grep -q http:// $d/out 2>/dev/null && break; sleep 0.1; done
    $bin --data-dir $d bench --url http://127.0.0.1:7171 --connections 64 --duration 10s --warmup 1s --mode authorize --json > $d/bench.json 2>/dev/null
    python3 - $b $d/bench.json <<'PY'
import json,sys
b=json.load(open(sys.argv[2]))
def find(o, k):
    if isinstance(o, dict):
        if k in o: return o[k]
        for v in o.values():
            r = find(v, k)
            if r is not None: return r
    return None
print(sys.argv[1], json.dumps(b)[:600])
PY
    kill -TERM $pid; wait $pid
    rm -rf $d
  done
done
