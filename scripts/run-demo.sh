#!/usr/bin/env bash
# `make run`: starts two sample origins and Portico on examples/portico.yaml, prints what to try, and stops
# everything on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p run
cp -n examples/portico.yaml run/portico.yaml 2>/dev/null || true

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

/usr/bin/python3 examples/demo_origin.py 9101 origin-a & pids+=($!)
/usr/bin/python3 examples/demo_origin.py 9102 origin-b & pids+=($!)
wait_http() {  # wait_http URL: until it answers (bounded: 10 s)
  for _ in $(seq 1 100); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "run-demo: $1 did not answer" >&2; return 1
}
wait_http http://127.0.0.1:9101/
wait_http http://127.0.0.1:9102/
build/portico --config run/portico.yaml --listen 127.0.0.1:9080 --status-listen 127.0.0.1:9091 \
  --access-log run/access.log --drain-delay 0.5 & pids+=($!)

wait_http http://127.0.0.1:9091/readyz

cat <<'MSG'

Portico is serving on http://127.0.0.1:9080 (status on :9091). Try:

  curl -i http://127.0.0.1:9080/hello                      # round robin over origin-a and origin-b
  curl -i http://127.0.0.1:9080/api/orders -d 'x=1'        # prefix route, POST
  curl -i -H 'X-Canary: 1' http://127.0.0.1:9080/api/x     # vars + priority: always origin-b
  curl -i -H 'Host: shop.example.com' http://127.0.0.1:9080/users/42   # wildcard host + parameter
  curl -i http://127.0.0.1:9080/nope                       # 404 {"error_msg":"404 Route Not Found"}
  curl -s http://127.0.0.1:9091/metrics | grep portico_http_requests_total
  curl -s http://127.0.0.1:9091/status/config

Edit run/portico.yaml (it reloads within a second), or break it and watch the log name the bad field.
Access log: run/access.log. Ctrl-C stops everything.

MSG
wait "${pids[2]}"
