#!/usr/bin/env bash
# `make bench-tls`: TLS termination cost, Portico next to nginx and HAProxy configured the same way (the same
# ECDSA P-256 certificate, TLS 1.2/1.3, tickets; bench/tls-nginx.conf, bench/tls-haproxy.cfg), each on CPU0 with
# one worker, clients on CPU1, rounds interleaved (method: ../shared/bench-peers/README.md). Per round and peer:
#   full     `openssl s_time -new`: a new connection and a full handshake each time (TLS 1.3, ECDHE P-256/X25519)
#   resumed  `openssl s_time -reuse -tls1_2`: resumed handshakes (session ticket). TLS 1.2 because OpenSSL 3.0's
#            s_time does not read TLS 1.3 tickets (they arrive after the handshake), so -reuse alone resumes
#            nothing and measures full handshakes again
#   ka       wrk over https with keep-alive connections: requests/s and CPU per request
# s_time is one connection at a time, so its rate is bounded by round trips; the server's CPU time per
# handshake (from /proc, user + system) is the comparable figure.
# Env: ROUNDS (default 5), SECONDS_PER_RUN (default 6), CONNS (default 50), PEERS, OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
bench_setup tls tls-results.tsv

bench_tls_material
cp bench/tls-nginx.conf bench/tls-haproxy.cfg "$RUN/"

nginx -p "$RUN" -c "$RUN/upstream-nginx.conf" -e "$RUN/upstream.err" & pids+=($!)
nginx -p "$RUN" -c "$RUN/tls-nginx.conf" -e "$RUN/tls-nginx.err" & pids+=($!)
nginx_pid=$!
(cd "$RUN" && exec haproxy -f tls-haproxy.cfg -db) & pids+=($!)
haproxy_pid=$!
taskset -c 0 build/portico --config "$RUN/portico.json" --listen 127.0.0.1:18083 --listen-tls 127.0.0.1:18443 \
  --tls-default-sni bench.test --status-listen 127.0.0.1:18093 --workers 1 --access-log off --log-level warn &
pids+=($!)
portico_pid=$!
wait_port 18080
declare -A port_of=([portico]=18443 [nginx]=18444 [haproxy]=18445)
declare -A pid_of=([portico]=$portico_pid [nginx]=$nginx_pid [haproxy]=$haproxy_pid)
for name in portico nginx haproxy; do
  for _ in $(seq 1 100); do
    curl -sfk -o /dev/null --resolve "bench.test:${port_of[$name]}:127.0.0.1" "https://bench.test:${port_of[$name]}/" && break
    sleep 0.05
  done
  code=$(curl -sk -o /dev/null -w '%{http_code}' --resolve "bench.test:${port_of[$name]}:127.0.0.1" \
    "https://bench.test:${port_of[$name]}/")
  [ "$code" = 200 ] || { echo "bench: $name answers $code over TLS" >&2; exit 1; }
done

tk=$(getconf CLK_TCK)
ticks() { local s=0 p; for p in $1 $(pgrep -P "$1" || true); do s=$((s + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $s; }
s_time() {  # s_time NAME S_TIME_FLAGS...: "conns_per_s=N cpu_us_per_handshake=N"
  local c0 c1 out n
  c0=$(ticks "${pid_of[$1]}")
  local name=$1; shift
  out=$(taskset -c 1 openssl s_time -connect "127.0.0.1:${port_of[$name]}" "$@" -time "$SECS" 2>&1)
  c1=$(ticks "${pid_of[$name]}")
  n=$(echo "$out" | awk '/connections in [0-9.]+s/{print $1; exit}')
  awk -v n="$n" -v c=$((c1 - c0)) -v tk="$tk" -v s="$SECS" \
    'BEGIN{ if (n == 0) { print "conns_per_s=0 cpu_us_per_handshake=nan"; exit }
            printf "conns_per_s=%.0f cpu_us_per_handshake=%.1f\n", n / s, c * 1e6 / tk / n }'
}
for round in $(seq 1 "$ROUNDS"); do
  for name in portico nginx haproxy; do
    for mode in full resumed; do
      if [ $mode = resumed ]; then line=$(s_time "$name" -reuse -tls1_2); else line=$(s_time "$name" -new); fi
      echo "round=$round peer=$name $mode $line"
      printf '%s\t%s\t%s\t%s\n' "$round" "$name" "$mode" "$line" >>"$RESULTS"
    done
    line=$(bash "$CPR" "${pid_of[$name]}" "https://127.0.0.1:${port_of[$name]}/" "$SECS" "$CONNS")
    case "$line" in *"Socket errors"* | *rps=0\ *) echo "bench: $name failed over TLS keep-alive: $line" >&2; exit 1 ;; esac
    echo "round=$round peer=$name ka $line"
    printf '%s\t%s\t%s\t%s\n' "$round" "$name" "ka" "$line" >>"$RESULTS"
  done
done
/usr/bin/python3 - "$RESULTS" <<'PY' | tee "$OUT/tls-summary.md"
import re, statistics, sys
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    rnd, name, mode, rest = line.rstrip("\n").split("\t", 3)
    rows[(name, mode)].append({k: float(v) for k, v in re.findall(r"(\w+)=([0-9.]+|nan)", rest)})
med = lambda name, mode, key: statistics.median(r[key] for r in rows[(name, mode)])
print("| peer | full hs/s | CPU µs/full hs | resumed hs/s | CPU µs/resumed hs | keep-alive rps | CPU µs/req (ka) |")
print("|---|---|---|---|---|---|---|")
for name in ("portico", "nginx", "haproxy"):
    print(f"| {name} | {med(name, 'full', 'conns_per_s'):.0f} | {med(name, 'full', 'cpu_us_per_handshake'):.1f} | "
          f"{med(name, 'resumed', 'conns_per_s'):.0f} | {med(name, 'resumed', 'cpu_us_per_handshake'):.1f} | "
          f"{med(name, 'ka', 'rps'):.0f} | {med(name, 'ka', 'cpu_us_per_req'):.2f} |")
PY
