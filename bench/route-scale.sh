#!/usr/bin/env bash
# Route table at scale: time to validate and apply a 100k-route file (at start and on a one-route change) and
# the resident memory it takes. Part of `make bench`. Node addresses in the generated file are loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/build/bench-results}
ROUTES=${ROUTES:-100000}
mkdir -p "$OUT"
pid=""
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; true' EXIT

applied_ms() {  # applied_ms LOG N: the apply time of the N-th "config applied" line, waiting for it (bounded)
  for _ in $(seq 1 600); do
    line=$(grep "config applied" "$1" | sed -n "${2}p")
    [ -n "$line" ] && { echo "$line" | sed -E "s/.* in ([0-9.]+) ms.*\((.*)\)/\1 (\2)/"; return 0; }
    sleep 0.05
  done
  echo "timeout"; return 1
}

echo "| format | routes | file MB | start: apply ms | ready after s | RSS MB | one-route change: apply ms | RSS after MB |"
echo "|---|---|---|---|---|---|---|---|"
for fmt in json yaml; do
  file=$OUT/routes-$ROUTES.$fmt
  /usr/bin/python3 bench/gen-routes.py --routes "$ROUTES" --format "$fmt" -o "$file"
  log=$OUT/route-scale-$fmt.log
  : >"$log"
  start=$(date +%s.%N)
  build/portico --config "$file" --listen 127.0.0.1:18183 --status-listen 127.0.0.1:18193 --workers 2 \
    --access-log off --watch-interval 0.2 2>"$log" &
  pid=$!
  first=$(applied_ms "$log" 1)
  for _ in $(seq 1 600); do curl -fs -o /dev/null http://127.0.0.1:18193/readyz && break; sleep 0.05; done
  ready=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{print b - a}')
  rss=$(awk '/VmRSS/{printf "%.0f", $2/1024}' /proc/$pid/status)
  # One route changes: its path gets a suffix; the file is replaced atomically.
  sed '0,/"\/r0/s//"\/r0changed/' "$file" >"$file.tmp" 2>/dev/null || true
  if cmp -s "$file" "$file.tmp"; then sed -i '0,/r0/s//r0changed/' "$file.tmp"; fi
  mv "$file.tmp" "$file"
  second=$(applied_ms "$log" 2)
  sleep 1.5  # the applier frees the replaced snapshot on its next tick (0.2 s); RSS then follows
  rss2=$(awk '/VmRSS/{printf "%.0f", $2/1024}' /proc/$pid/status)
  size=$(du -m "$file" | cut -f1)
  printf '| %s | %s | %s | %s | %.2f | %s | %s | %s |\n' "$fmt" "$ROUTES" "$size" "$first" "$ready" "$rss" "$second" "$rss2"
  kill -9 $pid; wait $pid 2>/dev/null || true; pid=""
done
