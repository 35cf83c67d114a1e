#!/usr/bin/env bash
# Propagation: Admin API write -> all 3 data planes of scripts/ha-cluster serve it, p50/p99 over 200 changes,
# with 10 and with 10k routes loaded. The measurement lives in tests/e2e/test_ha_chaos.py::test_propagation
# (it asserts only that every change arrives; the figures are printed as a HA_CHAOS JSON line), so the bench
# and the chaos suite measure the same way. Results: build/bench-results/propagation-<routes>.json.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/bench-results
mkdir -p "$out"
for routes in ${PROPAGATION_ROUTES:-10 10000}; do
  echo "propagation: $routes routes loaded, 200 changes"
  HA_PROP_ROUTES=$routes /usr/bin/python3 -m pytest -q -s tests/e2e/test_ha_chaos.py -k test_propagation \
    | tee "$out/propagation-$routes.log" | grep '^HA_CHAOS' | sed 's/^HA_CHAOS //' | tee "$out/propagation-$routes.json"
done
