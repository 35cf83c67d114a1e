#!/usr/bin/env bash
# `make bench-admin` (also the last part of `make bench`): the control plane's Admin API over a 3-member etcd
# cluster, on loopback (bench/admin_bench.py: write latency and throughput, read and list latency at 10k routes,
# propagation to the proxy in the traditional role at 10 and 10k routes). Never part of `make test`. About
# 1 minute on 2 cores.
#
# Everything (etcd members and their data dirs, origin, portico processes) lives in a temporary directory and
# is killed at the end. Results: build/bench-results/admin/{summary.md,RESULTS.json}.
# Env: PORTICO_BIN (default build/portico), ETCD_BIN (default etcd); extra arguments go to admin_bench.py
# (--seq, --threads, --seconds, --routes, --small, --changes, --poll-ms, --out, --keep; see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "admin-bench: $*" >&2; exit 1; }
command -v "${ETCD_BIN:-etcd}" >/dev/null || die "etcd not found (make deps installs etcd-server)"
[ -x "${PORTICO_BIN:-build/portico}" ] || die "${PORTICO_BIN:-build/portico} not built (make build)"
exec /usr/bin/python3 bench/admin_bench.py "$@"
