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

for round in $(seq 1 "$ROUNDS"); do
  for other in "${others[@]}"; do
    for mode in full resumed; do
      if [ $mode = resumed ]; then flags="-reuse -tls1_2"; else flags="-new"; fi
      declare -A c0=()
      clients=()
      for name in portico "$other"; do c0[$name]=$(cpu_ns "${pid_of[$name]}"); done
      for name in portico "$other"; do
        # shellcheck disable=SC2086
        taskset -c 1 openssl s_time -connect "127.0.0.1:${port_of[$name]}" $flags -time "$SECS" >"$RUN/$name.out" 2>&1 &
        clients+=($!)
      done
      wait "${clients[@]}"
      line="round=$round pair=$other mode=$mode"
      for name in portico "$other"; do
        n=$(awk '/connections in [0-9.]+s/{print $1; exit}' "$RUN/$name.out")
        line+=" $name=$(( ($(cpu_ns "${pid_of[$name]}") - ${c0[$name]}) / n ))"
      done
      echo "$line"
      echo "$line" >>"$RESULTS"
    done
  done
done
/usr/bin/python3 - "$RESULTS" <<'PY' | tee "$OUT/tls-paired-summary.md"
import collections, re, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = dict(re.findall(r"(\w+)=(\S+)", line))
    rows[(f["pair"], f["mode"])].append((int(f["portico"]), int(f[f["pair"]])))
print("| pair | mode | Portico µs/conn | other µs/conn | other / Portico (median, per-round range) |")
print("|---|---|---|---|---|")
for (pair, mode), v in sorted(rows.items()):
    ratios = sorted(o / p for p, o in v)
    print(f"| {pair} | {mode} | {statistics.median(p for p, _ in v) / 1000:.1f} | "
          f"{statistics.median(o for _, o in v) / 1000:.1f} | {statistics.median(ratios):.3f} "
          f"({ratios[0]:.3f}-{ratios[-1]:.3f}) |")
PY
