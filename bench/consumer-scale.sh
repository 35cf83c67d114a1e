#!/usr/bin/env bash
# Consumers at scale: a standalone file with N consumers (key-auth each) and one key-auth route, against the
# same file with 10 consumers: apply time at start, resident memory, and the request cost of a key lookup
# (wrk on one worker, CPU per request from /proc) — the lookup should not grow with N. Part of
# `make bench-plugins`. Env: CONSUMERS (default 100000), SECONDS_PER_RUN (default 5), ROUNDS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/build/bench-results}
N=${CONSUMERS:-100000}
SECS=${SECONDS_PER_RUN:-5}
ROUNDS=${ROUNDS:-3}
PEERS=${PEERS:-$PWD/../shared/bench-peers}
mkdir -p "$OUT/consumers"
RUN=$OUT/consumers
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
cp "$PEERS"/upstream-nginx.conf "$RUN/"
nginx -p "$RUN" -c "$RUN/upstream-nginx.conf" -e "$RUN/upstream.err" & pids+=($!)

gen() {  # gen N FILE
  /usr/bin/python3 - "$1" "$2" <<'PY'
import json, sys
n, path = int(sys.argv[1]), sys.argv[2]
doc = {"routes": [{"id": "r", "uri": "/*", "plugins": {"key-auth": {}},
                   "upstream": {"nodes": {"127.0.0.1:18080": 1}, "keepalive_pool": {"size": 128, "requests": 1000000}}}],
       "consumers": [{"username": "u%d" % i, "plugins": {"key-auth": {"key": "key-%d-0123456789abcdef" % i}}}
                     for i in range(n)]}
json.dump(doc, open(path, "w"))
PY
}

echo "| consumers | file MB | apply ms (load+validate, build) | RSS MB | rps (median) | CPU µs/req (median) |"
echo "|---|---|---|---|---|---|"
for n in 10 "$N"; do
  file=$RUN/consumers-$n.json
  gen "$n" "$file"
  log=$RUN/portico-$n.log
  taskset -c 0 build/portico --config "$file" --listen 127.0.0.1:18283 --status-listen 127.0.0.1:18293 \
    --workers 1 --access-log off 2>"$log" & pid=$!; pids+=($pid)
  for _ in $(seq 1 600); do curl -fs -o /dev/null http://127.0.0.1:18293/readyz && break; sleep 0.05; done
  applied=$(grep "config applied" "$log" | head -1 | sed -E "s/.* in ([0-9.]+) ms.*\((.*)\)/\1 (\2)/")
  rss=$(awk '/VmRSS/{printf "%.0f", $2/1024}' /proc/$pid/status)
  key="key-$((n / 2))-0123456789abcdef"
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:18283/x?apikey=$key")" = 200 ] || { echo "bench: key refused" >&2; exit 1; }
  rps=() cpu=()
  for _ in $(seq 1 "$ROUNDS"); do
    line=$(bash "$PEERS/cpu-per-request.sh" "$pid" "http://127.0.0.1:18283/x?apikey=$key" "$SECS" 50)
    rps+=("$(echo "$line" | sed -E 's/.*rps=([0-9.]+).*/\1/')")
    cpu+=("$(echo "$line" | sed -E 's/.*cpu_us_per_req=([0-9.]+).*/\1/')")
  done
  med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
  mb=$(awk -v b="$(stat -c %s "$file")" 'BEGIN{printf "%.1f", b/1048576}')
  echo "| $n | $mb | $applied | $rss | $(med "${rps[@]}") | $(med "${cpu[@]}") |"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
