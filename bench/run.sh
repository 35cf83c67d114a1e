#!/usr/bin/env bash
# `make bench`: Portico side by side with nginx and HAProxy in one run, rounds interleaved, then the route
# table figures. Never part of `make test`.
#
# Method (../shared/bench-peers/README.md): the proxy under test gets CPU0 (Portico with one worker), the
# origin (nginx, 1 worker) and wrk get CPU1; proxy CPU time per request comes from /proc/PID/stat.
# Env: ROUNDS (default 5), SECONDS_PER_RUN (default 6), CONNS (default 50), PEERS (peer config folder).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
bench_setup run proxy-results.tsv

nginx -p "$RUN" -c "$RUN/upstream-nginx.conf" -e "$RUN/upstream.err" & pids+=($!)
origin_pid=$!
nginx -p "$RUN" -c "$RUN/proxy-nginx.conf" -e "$RUN/proxy-nginx.err" & pids+=($!)
nginx_pid=$!
haproxy -f "$RUN/proxy-haproxy.cfg" -db & pids+=($!)
haproxy_pid=$!
cat >"$RUN/portico.yaml" <<'YAML'
routes:
  - id: bench
    uri: /*
    upstream:
      nodes: {"127.0.0.1:18080": 1}
      keepalive_pool: {size: 128, requests: 1000000}
#END
YAML
taskset -c 0 build/portico --config "$RUN/portico.yaml" --listen 127.0.0.1:18083 --status-listen 127.0.0.1:18093 \
  --workers 1 --access-log off --log-level warn & pids+=($!)
portico_pid=$!
for port in 18080 18081 18082 18083; do wait_port $port; done

declare -A pid_of=([portico]=$portico_pid [nginx]=$nginx_pid [haproxy]=$haproxy_pid)
declare -A port_of=([portico]=18083 [nginx]=18081 [haproxy]=18082)
for round in $(seq 1 "$ROUNDS"); do
  for path in / /4k; do
    for proxy in portico nginx haproxy; do
      line=$(bash "$CPR" "${pid_of[$proxy]}" "http://127.0.0.1:${port_of[$proxy]}$path" "$SECS" "$CONNS")
      echo "round=$round proxy=$proxy path=$path $line"
      printf '%s\t%s\t%s\t%s\n' "$round" "$proxy" "$path" "$line" >>"$RESULTS"
    done
  done
done
/usr/bin/python3 bench/summarize.py "$RESULTS" | tee "$OUT/proxy-summary.md"

# Route table at scale: match cost (Google Benchmark), then apply time and RSS of a 100k-route file.
if [ -x build/bench/router_match_bench ]; then
  build/bench/router_match_bench --benchmark_min_time=0.2 2>/dev/null | tee "$OUT/router-match.txt"
fi
bash bench/route-scale.sh | tee "$OUT/route-scale.txt"
