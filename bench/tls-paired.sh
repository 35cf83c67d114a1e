#!/usr/bin/env bash
# `make bench-tls-paired`: CPU per TLS handshake, Portico against one other server at a time, both driven AT
# ONCE: each server on CPU0 with one worker, one `openssl s_time` per server on CPU1, run side by side, CPU
# from /proc/PID/task/*/schedstat (ns, all threads; nginx's master and worker). Whatever else the machine
# runs then weighs on both servers of a pair alike, so the ratio per round holds within about 1% where
# sequential runs (bench/tls.sh) move by 20% on a shared machine. Ratios compare within a pair only: the
# mix on CPU0 changes them (docs/benchmarks.md, TLSCONN).
# Pairs: Portico with nginx, with HAProxy and, when BASELINE names another Portico binary, with that one.
# Env: ROUNDS (default 3), SECONDS_PER_RUN (default 3), BASELINE, PEERS, OUT; PORTICO (the binary under test,
# default build/portico) and OTHERS (the pairs besides the baseline, default "nginx haproxy"): an A/B of two
# Portico builds alone is `OTHERS= BASELINE=old PORTICO=new`.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
SECONDS_PER_RUN=${SECONDS_PER_RUN:-3} ROUNDS=${ROUNDS:-3}
bench_setup tls-paired tls-paired-results.tsv

bench_tls_material
cp bench/tls-nginx.conf bench/tls-haproxy.cfg "$RUN/"
nginx -p "$RUN" -c "$RUN/upstream-nginx.conf" -e "$RUN/upstream.err" & pids+=($!)
nginx -p "$RUN" -c "$RUN/tls-nginx.conf" -e "$RUN/tls-nginx.err" & pids+=($!)
declare -A pid_of=([nginx]=$!) port_of=([nginx]=18444 [haproxy]=18445 [portico]=18443 [baseline]=18446)
(cd "$RUN" && exec haproxy -f tls-haproxy.cfg -db) & pids+=($!)
pid_of[haproxy]=$!
portico() {  # portico BINARY TLS_PORT OFFSET
  taskset -c 0 "$1" --config "$RUN/portico.json" --listen "127.0.0.1:$((18083 + $3))" --listen-tls "127.0.0.1:$2" \
    --tls-default-sni bench.test --status-listen "127.0.0.1:$((18093 + $3))" --workers 1 --access-log off \
    --log-level warn &
  pids+=($!)
}
portico "${PORTICO:-build/portico}" 18443 0
pid_of[portico]=$!
read -ra others <<<"${OTHERS-nginx haproxy}"
if [ -n "${BASELINE:-}" ]; then
  portico "$BASELINE" 18446 3
  pid_of[baseline]=$!
  others+=(baseline)
fi
wait_port 18080
for name in portico "${others[@]}"; do
  for _ in $(seq 1 100); do
    curl -sfk -o /dev/null --resolve "bench.test:${port_of[$name]}:127.0.0.1" "https://bench.test:${port_of[$name]}/" && break
    sleep 0.05
  done
done

s_time_client() {  # s_time_client NAME: this run's mode against server NAME
  # shellcheck disable=SC2086
  taskset -c 1 openssl s_time -connect "127.0.0.1:${port_of[$1]}" $flags -time "$SECS"
}
s_time_count() { awk '/connections in [0-9.]+s/{print $1; exit}' "$1"; }
for round in $(seq 1 "$ROUNDS"); do
  for other in "${others[@]}"; do
    for mode in full resumed; do
      if [ $mode = resumed ]; then flags="-reuse -tls1_2"; else flags="-new"; fi
      paired_run "round=$round pair=$other mode=$mode" "$other" s_time_client s_time_count
    done
  done
done
/usr/bin/python3 bench/paired_summary.py "$RESULTS" conn | tee "$OUT/tls-paired-summary.md"
