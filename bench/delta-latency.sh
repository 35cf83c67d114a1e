#!/usr/bin/env bash
# One-route deltas at scale (default 100k routes): data-plane apply time and request latency with and without
# 10 changes/s, rounds interleaved, on a scripts/ha-cluster of its own (HA_DIR=build/bench-ha). Method and
# output: bench/delta_latency.py. Results: build/bench-results/delta-latency-<routes>.json.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/bench-results
mkdir -p "$out"
export HA_DIR="$PWD/build/bench-ha" HA_PORT_BASE="${HA_PORT_BASE:-23000}" HA_S3=off HA_TIMEOUT=120
scripts/ha-cluster clean >/dev/null 2>&1 || true
trap 'scripts/ha-cluster stop >/dev/null 2>&1 || true' EXIT
scripts/ha-cluster start
routes="${DELTA_ROUTES:-100000}"
DELTA_ROUTES=$routes /usr/bin/python3 bench/delta_latency.py | tee "$out/delta-latency-$routes.log"
grep '^DELTA_LATENCY' "$out/delta-latency-$routes.log" | sed 's/^DELTA_LATENCY //' >"$out/delta-latency-$routes.json"
