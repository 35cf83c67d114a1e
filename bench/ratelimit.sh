#!/usr/bin/env bash
# `make bench-ratelimit`: what a cluster-wide rate limit costs per request. One Portico (one worker, CPU0) serves
# four routes side by side — bare, limit-count `local`, limit-count `redis`, and limit-count `redis` batched
# (sync_interval) — next to nginx and HAProxy as bare proxies, rounds interleaved (method:
# ../shared/bench-peers/README.md, with the latency median added: bench/cpu-latency.sh). The limit is far above
# the offered load, so every request is admitted and the figures are the limiter's cost, not rejections. The
# key is remote_addr (one counter for all of wrk's connections: the contended case). redis-server shares CPU1
# with wrk, so the proxy's CPU per request is Portico's alone.
# Env: ROUNDS (default 5), SECONDS_PER_RUN (default 6), CONNS (default 50), PEERS (peer config folder).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
bench_setup ratelimit ratelimit-results.tsv
CPL=$ROOT/bench/cpu-latency.sh
REDIS_PORT=${REDIS_PORT:-18379}

nginx -p "$RUN" -c "$RUN/upstream-nginx.conf" -e "$RUN/upstream.err" & pids+=($!)
nginx -p "$RUN" -c "$RUN/proxy-nginx.conf" -e "$RUN/proxy-nginx.err" & pids+=($!)
nginx_pid=$!
haproxy -f "$RUN/proxy-haproxy.cfg" -db & pids+=($!)
haproxy_pid=$!
taskset -c 1 redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$RUN" \
  --logfile "$RUN/redis.log" & pids+=($!)
LIMIT='count: 1000000000, time_window: 60, key_type: var, key: remote_addr'
REDIS="policy: redis, redis_host: 127.0.0.1, redis_port: $REDIS_PORT, redis_timeout: 1000"
cat >"$RUN/portico.yaml" <<YAML
upstreams:
  - id: origin
    nodes: {"127.0.0.1:18080": 1}
    keepalive_pool: {size: 128, requests: 1000000}
routes:
  - {id: bare, uri: /bare, upstream_id: origin}
  - {id: local, uri: /local, upstream_id: origin, plugins: {limit-count: {$LIMIT, policy: local}}}
  - {id: redis, uri: /redis, upstream_id: origin, plugins: {limit-count: {$LIMIT, $REDIS}}}
  - {id: batched, uri: /batched, upstream_id: origin, plugins: {limit-count: {$LIMIT, $REDIS, sync_interval: 0.1}}}
#END
YAML
taskset -c 0 build/portico --config "$RUN/portico.yaml" --listen 127.0.0.1:18083 --status-listen 127.0.0.1:18093 \
  --workers 1 --access-log off --log-level warn & pids+=($!)
portico_pid=$!
for port in 18080 18081 18082; do wait_port $port; done
for _ in $(seq 1 100); do redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.05; done
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:18083/bare" && break; sleep 0.05; done

declare -A url_of=(
  [nginx]="http://127.0.0.1:18081/"
  [haproxy]="http://127.0.0.1:18082/"
  [bare]="http://127.0.0.1:18083/bare"
  [local]="http://127.0.0.1:18083/local"
  [redis]="http://127.0.0.1:18083/redis"
  [batched]="http://127.0.0.1:18083/batched"
)
for name in bare local redis batched; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "${url_of[$name]}")
  [ "$code" = 200 ] || { echo "bench: $name answers $code" >&2; exit 1; }
done
# The Redis routes must really have counted in Redis (a limiter that silently degraded would look fast).
keys=$(redis-cli -p "$REDIS_PORT" dbsize)
[ "$keys" -ge 1 ] || { echo "bench: no key in Redis after the redis routes answered" >&2; exit 1; }
for round in $(seq 1 "$ROUNDS"); do
  for name in bare local redis batched nginx haproxy; do
    pid=$portico_pid
    [ "$name" = nginx ] && pid=$nginx_pid
    [ "$name" = haproxy ] && pid=$haproxy_pid
    line=$(bash "$CPL" "$pid" "${url_of[$name]}" "$SECS" "$CONNS")
    echo "round=$round route=$name $line"
    printf '%s\t%s\t%s\n' "$round" "$name" "$line" >>"$RESULTS"
  done
done
# Ratios are medians of per-round ratios (each round measures every route back to back, so a round's ratio is
# not skewed by the machine's state drifting between rounds). "per core" compares CPU per request: requests
# per CPU-second of the proxy.
/usr/bin/python3 - "$RESULTS" <<'PY' | tee "$OUT/ratelimit-summary.md"
import re, statistics, sys
from collections import defaultdict
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    return float(m.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3}[m.group(2)]
rounds = defaultdict(dict)
for line in open(sys.argv[1]):
    rnd, name, rest = line.rstrip("\n").split("\t", 2)
    f = dict(re.findall(r"(\w+)=(\S+)", rest))
    rounds[rnd][name] = (float(f["rps"]), float(f["cpu_us_per_req"]), ms(f["p50"]), ms(f["p99"]),
                         "Non-2xx" in rest or "Socket errors" in rest)
names = list(next(iter(rounds.values())))
med = lambda xs: statistics.median(xs)
def col(n, i): return [r[n][i] for r in rounds.values()]
def rps_ratio(a, b): return med([r[a][0] / r[b][0] for r in rounds.values()])
def core_ratio(a, b): return med([r[b][1] / r[a][1] for r in rounds.values()])
print("| route | rps | CPU µs/req | p50 ms | p99 ms | errors | rps vs bare | per core vs bare | per core vs local | CPU vs nginx |")
print("|---|---|---|---|---|---|---|---|---|---|")
for n in names:
    print(f"| {n} | {med(col(n, 0)):.0f} | {med(col(n, 1)):.2f} | {med(col(n, 2)):.3f} | {med(col(n, 3)):.3f} | "
          f"{'yes' if any(col(n, 4)) else 'no'} | {rps_ratio(n, 'bare'):.2f}x | {core_ratio(n, 'bare'):.2f}x | "
          f"{core_ratio(n, 'local'):.2f}x | {1 / core_ratio(n, 'nginx'):.2f}x |")
d50 = med([r["redis"][2] - r["local"][2] for r in rounds.values()])
d99 = med([r["redis"][3] - r["local"][3] for r in rounds.values()])
print(f"\nRedis policy over local: latency p50 +{d50:.3f} ms, p99 +{d99:.3f} ms; per core {core_ratio('redis', 'local'):.2f}x "
      f"(goal >= 0.85x), rps {rps_ratio('redis', 'local'):.2f}x (wrk's connections wait for the Redis round trip)."
      f"\nLocal policy vs bare: per core {core_ratio('local', 'bare'):.2f}x, rps {rps_ratio('local', 'bare'):.2f}x (goal >= 0.95x)."
      f"\nBatched vs local: per core {core_ratio('batched', 'local'):.2f}x, rps {rps_ratio('batched', 'local'):.2f}x.")
PY
