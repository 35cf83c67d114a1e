#!/usr/bin/env bash
# `make bench-h2-paired`: CPU per HTTP/2 request, Portico against one other server at a time, both driven AT
# ONCE (as bench/tls-paired.sh does for handshakes): each server on CPU0 with one worker, one h2load per server
# on CPU1, run side by side for SECONDS_PER_RUN (-D), CPU from /proc/PID/task/*/schedstat (ns, all threads;
# nginx's master and worker) divided by the requests h2load completed. Whatever else the machine runs weighs on
# both servers of a pair alike, so the ratio per round holds where sequential runs (bench/h2.sh) drift by 10-20%
# on a shared machine. Ratios compare within a pair only: the mix on CPU0 changes them.
# Servers are configured as in bench/h2.sh (bench/h2-nginx.conf, bench/h2-haproxy.cfg: the same ECDSA
# certificate, HTTP/1.1 with keep-alive to the origin, which runs on CPU1 with the clients).
#   modes   tls  https:// with ALPN h2        h2c  http:// with prior knowledge
#   shapes  c1m100  h2load -c 1 -m 100        c10m10  h2load -c 10 -m 10
# Pairs: Portico with nginx, with HAProxy and, when BASELINE names another Portico binary, with that one.
# Env: ROUNDS (default 3), SECONDS_PER_RUN (default 5), BASELINE, PAIRS (default "haproxy nginx" + baseline),
# MODES (default "h2c tls"), SHAPES (default "c1m100 c10m10"), PEERS, OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5} ROUNDS=${ROUNDS:-3}
MODES=${MODES:-h2c tls}
bench_setup h2-paired h2-paired-results.tsv
command -v h2load >/dev/null || { echo "bench: h2load not found (Debian nghttp2-client)" >&2; exit 1; }

bench_tls_material
cp bench/h2-nginx.conf bench/h2-haproxy.cfg "$RUN/"
nginx -p "$RUN" -c "$RUN/upstream-nginx.conf" -e "$RUN/upstream.err" & pids+=($!)
declare -A pid_of tls_port=([portico]=18453 [nginx]=18454 [haproxy]=18455 [baseline]=18456)
declare -A h2c_port=([portico]=18463 [nginx]=18464 [haproxy]=18465 [baseline]=18466)
others=(${PAIRS:-haproxy nginx})
[ -n "${BASELINE:-}" ] && [ -z "${PAIRS:-}" ] && others+=(baseline)
portico() {  # portico BINARY NAME
  taskset -c 0 "$1" --config "$RUN/portico.json" --listen "127.0.0.1:${h2c_port[$2]}" \
    --listen-tls "127.0.0.1:${tls_port[$2]}" --tls-default-sni bench.test \
    --status-listen "127.0.0.1:$((${h2c_port[$2]} + 10))" --workers 1 --http2-max-requests 1000000 \
    --access-log off --log-level warn &  # max requests as nginx keepalive_requests
  pids+=($!)
  pid_of[$2]=$!
}
portico build/portico portico
for name in "${others[@]}"; do
  case $name in
    nginx) nginx -p "$RUN" -c "$RUN/h2-nginx.conf" -e "$RUN/h2-nginx.err" & pids+=($!) pid_of[nginx]=$! ;;
    haproxy) (cd "$RUN" && exec taskset -c 0 haproxy -f h2-haproxy.cfg -db) & pids+=($!) pid_of[haproxy]=$! ;;
    baseline) portico "${BASELINE:?BASELINE names a portico binary}" baseline ;;
    *) echo "bench: unknown pair $name (haproxy, nginx, baseline)" >&2; exit 1 ;;
  esac
done
url_of() {  # url_of MODE NAME
  if [ "$1" = tls ]; then echo "https://127.0.0.1:${tls_port[$2]}/"; else echo "http://127.0.0.1:${h2c_port[$2]}/"; fi
}
wait_port 18080
for name in portico "${others[@]}"; do
  for mode in $MODES; do
    flag=--http2
    [ "$mode" = h2c ] && flag=--http2-prior-knowledge
    v=
    for _ in $(seq 1 100); do
      v=$(curl -sk $flag -o /dev/null -w '%{http_version}' --max-time 2 "$(url_of "$mode" "$name")" || true)
      [ "$v" = 2 ] && break
      sleep 0.05
    done
    [ "$v" = 2 ] || { echo "bench: $name does not answer HTTP/2 in mode $mode (saw '$v')" >&2; exit 1; }
  done
done

done_of() {  # done_of FILE: requests h2load completed, after checking the run was clean
  local done bad
  done=$(awk '/^requests:/{print $8; exit}' "$1")
  bad=$(awk '/^requests:/{print $10 + $12; exit}' "$1")  # failed + errored
  if [ -z "$done" ] || [ "$done" = 0 ] || [ "${bad:-1}" != 0 ]; then
    echo "bench: h2load did not complete cleanly ($1):" >&2
    grep -E "^(requests|status codes|finished)|rror" "$1" >&2
    return 1
  fi
  echo "$done"
}
declare -A shape_flags=([c1m100]="-c 1 -m 100" [c10m10]="-c 10 -m 10")
h2load_client() {  # h2load_client NAME: this run's mode and shape against server NAME
  # shellcheck disable=SC2086
  taskset -c 1 h2load -t1 ${shape_flags[$shape]} -D "$SECS" "$(url_of "$mode" "$1")"
}
for round in $(seq 1 "$ROUNDS"); do
  for other in "${others[@]}"; do
    for mode in $MODES; do
      for shape in ${SHAPES:-c1m100 c10m10}; do
        paired_run "round=$round pair=$other mode=$mode shape=$shape" "$other" h2load_client done_of
      done
    done
  done
done
/usr/bin/python3 bench/paired_summary.py "$RESULTS" req | tee "$OUT/h2-paired-summary.md"
