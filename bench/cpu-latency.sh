#!/bin/bash
# Usage: cpu-latency.sh PID URL [SECONDS] [CONNECTIONS]
# The peers' method (../shared/bench-peers/cpu-per-request.sh: wrk pinned to CPU1, CPU time of PID and its
# direct children from /proc per request), printing the latency median as well as the p99, for benches that
# compare added latency (bench/ratelimit.sh).
set -eu
pid=$1 url=$2 secs=${3:-6} conns=${4:-50}
tk=$(getconf CLK_TCK)
ticks() { local s=0 p; for p in $pid $(pgrep -P "$pid" || true); do s=$((s + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $s; }
c0=$(ticks)
out=$(taskset -c 1 wrk -t1 -c"$conns" -d"${secs}s" --latency "$url")
c1=$(ticks)
req=$(echo "$out" | awk '/requests in/{print $1}')
rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
p50=$(echo "$out" | awk '$1=="50%"{print $2}')
p99=$(echo "$out" | awk '$1=="99%"{print $2}')
errs=$(echo "$out" | grep -E "Non-2xx|Socket errors" | tr '\n' ' ' || true)
awk -v r="$req" -v c=$((c1 - c0)) -v tk="$tk" -v rps="$rps" -v p50="$p50" -v p99="$p99" -v e="$errs" \
  'BEGIN{printf "rps=%.0f cpu_us_per_req=%.2f p50=%s p99=%s %s\n", rps, c*1e6/tk/r, p50, p99, e}'
