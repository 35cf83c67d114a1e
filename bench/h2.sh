#!/usr/bin/env bash
# `make bench-h2`: HTTP/2 to clients, Portico next to nginx and HAProxy configured the same way (the same
# ECDSA P-256 certificate, TLS 1.2/1.3, tickets; HTTP/1.1 with keep-alive to the origin; bench/h2-nginx.conf,
# bench/h2-haproxy.cfg), each on CPU0 with one worker, h2load and the origin on CPU1, rounds interleaved
# (method: ../shared/bench-peers/README.md). Per round, mode and shape, for each server:
#   modes   tls  https:// with ALPN h2 (Portico's TLS listener)
#           h2c  http:// with prior knowledge (h2load's default for http://; Portico's plain listener,
#                nginx `listen ... http2` without ssl, HAProxy `bind ... proto h2`)
#   shapes  c10m10   h2load -c 10 -m 10: 10 connections with 10 concurrent streams each (100 streams)
#           c1m100   h2load -c 1 -m 100: one connection with 100 concurrent streams
# Each run lasts SECONDS_PER_RUN (h2load -D); the server's CPU time (user + system, from /proc, the process and
# its children) divided by the requests h2load completed is the comparable figure, as in bench/lib.sh.
# A server is left out of a mode it does not answer with HTTP/2 (checked with curl before the rounds; Portico
# until its HTTP/2 codec is merged): a note says so, and the other servers still run.
# Env: ROUNDS (default 5), SECONDS_PER_RUN (default 6), SERVERS (default "portico nginx haproxy"; PEERS
# holding server names rather than a folder is read as SERVERS), MODES (default "tls h2c"), OUT, and PEERS
# (peer config folder, bench/lib.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PEERS:-}" ] && [ ! -d "$PEERS" ]; then
  SERVERS=$PEERS  # PEERS="nginx haproxy": a list of servers, not the peer config folder
  unset PEERS
fi
SERVERS=${SERVERS:-portico nginx haproxy}
MODES=${MODES:-tls h2c}
source bench/lib.sh
bench_setup h2 h2-results.tsv
command -v h2load >/dev/null || { echo "bench: h2load not found (Debian nghttp2-client)" >&2; exit 1; }

bench_tls_material
cp bench/h2-nginx.conf bench/h2-haproxy.cfg "$RUN/"

nginx -p "$RUN" -c "$RUN/upstream-nginx.conf" -e "$RUN/upstream.err" & pids+=($!)
declare -A pid_of
for name in $SERVERS; do
  case $name in
    nginx)
      nginx -p "$RUN" -c "$RUN/h2-nginx.conf" -e "$RUN/h2-nginx.err" & pids+=($!)
      pid_of[nginx]=$!
      ;;
    haproxy)
      (cd "$RUN" && exec haproxy -f h2-haproxy.cfg -db) & pids+=($!)
      pid_of[haproxy]=$!
      ;;
    portico)
      taskset -c 0 build/portico --config "$RUN/portico.json" --listen 127.0.0.1:18463 \
        --listen-tls 127.0.0.1:18453 --tls-default-sni bench.test --status-listen 127.0.0.1:18473 --workers 1 \
        --http2-max-requests 1000000 --access-log off --log-level warn & pids+=($!)  # as nginx keepalive_requests
      pid_of[portico]=$!
      ;;
    *) echo "bench: unknown server $name (portico, nginx, haproxy)" >&2; exit 1 ;;
  esac
done
wait_port 18080
declare -A tls_port=([portico]=18453 [nginx]=18454 [haproxy]=18455)
declare -A h2c_port=([portico]=18463 [nginx]=18464 [haproxy]=18465)
url_of() {  # url_of MODE NAME
  if [ "$1" = tls ]; then echo "https://127.0.0.1:${tls_port[$2]}/"; else echo "http://127.0.0.1:${h2c_port[$2]}/"; fi
}
# The HTTP version a server answers with in MODE: "2" when it speaks HTTP/2 there (curl offers ALPN h2 over
# TLS, sends the h2c preface in clear text), else what it said ("1.1", or "000" for nothing).
version_of() {
  local flag=--http2
  [ "$1" = h2c ] && flag=--http2-prior-knowledge
  curl -sk $flag -o /dev/null -w '%{http_version}' --max-time 2 "$(url_of "$1" "$2")" 2>/dev/null || true
}
declare -A runs  # "MODE NAME" -> 1 when it takes part
for name in $SERVERS; do
  # Up (bounded wait), over TLS with any protocol: a server that answers nothing is an error, not a skip.
  for _ in $(seq 1 100); do curl -sfk -o /dev/null "$(url_of tls "$name")" && break; sleep 0.05; done
  code=$(curl -sk -o /dev/null -w '%{http_code}' "$(url_of tls "$name")" || true)
  [ "$code" = 200 ] || { echo "bench: $name answers $code over TLS" >&2; exit 1; }
  for mode in $MODES; do
    v=$(version_of "$mode" "$name")
    if [ "$v" = 2 ]; then
      runs["$mode $name"]=1
    else
      echo "bench: note: $name does not answer HTTP/2 in mode $mode (curl saw HTTP version '$v'): left out" >&2
    fi
  done
done

tk=$(getconf CLK_TCK)
ticks() { local s=0 p; for p in $1 $(pgrep -P "$1" || true); do s=$((s + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $s; }
h2run() {  # h2run NAME URL H2LOAD_FLAGS...: "rps=N cpu_us_per_req=N"
  local name=$1 url=$2 c0 c1 out done ok rps bad
  shift 2
  c0=$(ticks "${pid_of[$name]}")
  out=$(taskset -c 1 h2load -t1 "$@" -D "$SECS" "$url" 2>&1) || true
  c1=$(ticks "${pid_of[$name]}")
  done=$(echo "$out" | awk '/^requests:/{print $8; exit}')
  ok=$(echo "$out" | awk '/^status codes:/{print $3; exit}')
  rps=$(echo "$out" | awk '/^finished in/{print $4; exit}')
  bad=$(echo "$out" | awk '/^requests:/{print $10 + $12; exit}')  # failed + errored
  # A duration-bound run stops with streams in flight: one may have its 2xx head counted and not be done, so
  # the 2xx count is at least the succeeded one, not equal to it.
  if [ -z "$done" ] || [ "${done:-0}" = 0 ] || [ "${bad:-1}" != 0 ] || [ "${ok:-0}" -lt "$done" ]; then
    echo "bench: $name: h2load $* $url did not complete cleanly:" >&2
    echo "$out" | grep -E "^(requests|status codes|finished)|rror" >&2
    return 1
  fi
  awk -v n="$done" -v c=$((c1 - c0)) -v tk="$tk" -v rps="$rps" \
    'BEGIN{ printf "rps=%.0f cpu_us_per_req=%.2f\n", rps, c * 1e6 / tk / n }'
}
declare -A shape_flags=([c10m10]="-c 10 -m 10" [c1m100]="-c 1 -m 100")
for round in $(seq 1 "$ROUNDS"); do
  for mode in $MODES; do
    for shape in c10m10 c1m100; do
      for name in $SERVERS; do
        [ -n "${runs["$mode $name"]:-}" ] || continue
        # shellcheck disable=SC2086
        line=$(h2run "$name" "$(url_of "$mode" "$name")" ${shape_flags[$shape]})
        echo "round=$round peer=$name mode=$mode shape=$shape $line"
        printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "$mode" "$shape" "$line" >>"$RESULTS"
      done
    done
  done
done
/usr/bin/python3 - "$RESULTS" <<'PY' | tee "$OUT/h2-summary.md"
import re, statistics, sys
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    rnd, name, mode, shape, rest = line.rstrip("\n").split("\t", 4)
    rows[(mode, shape, name)].append({k: float(v) for k, v in re.findall(r"(\w+)=([0-9.]+)", rest)})
print("| mode | h2load | peer | rounds | requests/s | CPU µs/req |")
print("|---|---|---|---|---|---|")
for (mode, shape, name), rs in sorted(rows.items(), key=lambda kv: (kv[0][0] != "tls", kv[0][1], kv[0][2])):
    med = lambda key: statistics.median(r[key] for r in rs)
    flags = {"c10m10": "-c 10 -m 10", "c1m100": "-c 1 -m 100"}[shape]
    print(f"| {mode} | {flags} | {name} | {len(rs)} | {med('rps'):.0f} | {med('cpu_us_per_req'):.2f} |")
PY
