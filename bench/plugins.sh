#!/usr/bin/env bash
# `make bench-plugins`: what plugins cost per request. One Portico (one worker, CPU0) serves five routes side
# by side — bare, key-auth, jwt-auth (HS256), key-auth + proxy-rewrite + prometheus, limit-count (local) — next to nginx and
# HAProxy as bare proxies, rounds interleaved (method: ../shared/bench-peers/README.md). Credentials go in the
# query string (?apikey=, ?jwt=) because the peers' wrk driver sends no custom headers.
# Env: ROUNDS (default 5), SECONDS_PER_RUN (default 6), CONNS (default 50), PEERS (peer config folder).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
bench_setup plugins plugins-results.tsv

SECRET=bench-hs256-secret-0123456789abcdef
JWT=$(/usr/bin/python3 -c "import jwt,time; print(jwt.encode({'key':'bench-jwt','exp':int(time.time())+86400}, '$SECRET', algorithm='HS256'))")
KEY=bench-api-key-0123456789abcdef

nginx -p "$RUN" -c "$RUN/upstream-nginx.conf" -e "$RUN/upstream.err" & pids+=($!)
nginx -p "$RUN" -c "$RUN/proxy-nginx.conf" -e "$RUN/proxy-nginx.err" & pids+=($!)
nginx_pid=$!
haproxy -f "$RUN/proxy-haproxy.cfg" -db & pids+=($!)
haproxy_pid=$!
cat >"$RUN/portico.yaml" <<YAML
upstreams:
  - id: origin
    nodes: {"127.0.0.1:18080": 1}
    keepalive_pool: {size: 128, requests: 1000000}
routes:
  - {id: bare, uri: /bare, upstream_id: origin}
  - {id: key, uri: /key, upstream_id: origin, plugins: {key-auth: {}}}
  - {id: jwt, uri: /jwt, upstream_id: origin, plugins: {jwt-auth: {}}}
  - {id: lcl, uri: /lcl, upstream_id: origin, plugins: {limit-count: {count: 1000000000, time_window: 60}}}
  - id: three
    uri: /three
    upstream_id: origin
    plugins:
      key-auth: {}
      proxy-rewrite: {uri: /, headers: {set: {X-Bench: "1"}}}
      prometheus: {}
consumers:
  - username: bench
    plugins:
      key-auth: {key: $KEY}
      jwt-auth: {key: bench-jwt, secret: $SECRET}
#END
YAML
taskset -c 0 build/portico --config "$RUN/portico.yaml" --listen 127.0.0.1:18083 --status-listen 127.0.0.1:18093 \
  --workers 1 --access-log off --log-level warn & pids+=($!)
portico_pid=$!
for port in 18080 18081 18082; do wait_port $port; done
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:18083/key?apikey=$KEY" && break; sleep 0.05; done

# The origin serves / (nginx peer config); Portico's routes all reach it (proxy-rewrite sets / on /three,
# the others pass their path, which the origin answers the same way).
declare -A url_of=(
  [nginx]="http://127.0.0.1:18081/"
  [haproxy]="http://127.0.0.1:18082/"
  [bare]="http://127.0.0.1:18083/bare"
  [key-auth]="http://127.0.0.1:18083/key?apikey=$KEY"
  [jwt-auth]="http://127.0.0.1:18083/jwt?jwt=$JWT"
  [three]="http://127.0.0.1:18083/three?apikey=$KEY"
  [limit-count-local]="http://127.0.0.1:18083/lcl"
)
for name in bare key-auth jwt-auth three limit-count-local; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "${url_of[$name]}")
  [ "$code" = 200 ] || { echo "bench: $name answers $code" >&2; exit 1; }
done
for round in $(seq 1 "$ROUNDS"); do
  for name in bare key-auth jwt-auth three limit-count-local nginx haproxy; do
    pid=$portico_pid
    [ "$name" = nginx ] && pid=$nginx_pid
    [ "$name" = haproxy ] && pid=$haproxy_pid
    line=$(bash "$CPR" "$pid" "${url_of[$name]}" "$SECS" "$CONNS")
    echo "round=$round route=$name $line"
    printf '%s\t%s\t%s\n' "$round" "$name" "$line" >>"$RESULTS"
  done
done
/usr/bin/python3 - "$RESULTS" <<'PY' | tee "$OUT/plugins-summary.md"
import re, statistics, sys
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    rnd, name, rest = line.rstrip("\n").split("\t", 2)
    f = dict(re.findall(r"(\w+)=(\S+)", rest))
    rows[name].append((float(f["rps"]), float(f["cpu_us_per_req"]), "Non-2xx" in rest or "Socket errors" in rest))
med = {n: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v), any(r[2] for r in v))
       for n, v in rows.items()}
print("| route | rps (median) | CPU µs/req (median) | errors | CPU vs bare route | CPU vs nginx | rps vs bare route |")
print("|---|---|---|---|---|---|---|")
for n, (rps, cpu, err) in med.items():
    print(f"| {n} | {rps:.0f} | {cpu:.2f} | {'yes' if err else 'no'} | {cpu / med['bare'][1]:.2f}x | "
          f"{cpu / med['nginx'][1]:.2f}x | {rps / med['bare'][0]:.2f}x |")
PY
