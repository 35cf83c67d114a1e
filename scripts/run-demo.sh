#!/usr/bin/env bash
# `make run`: starts a local single-member etcd (data in run/state/etcd), two sample origins and Portico in
# the traditional role (Admin API + proxy in one process), seeds a sample upstream and route through the
# Admin API on first start, prints what to try, and stops everything on Ctrl-C.
# `make run MODE=standalone` runs the file-configured proxy on examples/portico.yaml instead.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${MODE:-traditional}
mkdir -p run/state
chmod 700 run/state

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

wait_http() {  # wait_http URL: until it answers (bounded: 15 s)
  for _ in $(seq 1 150); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "run-demo: $1 did not answer" >&2; return 1
}

/usr/bin/python3 examples/demo_origin.py 9101 origin-a & pids+=($!)
/usr/bin/python3 examples/demo_origin.py 9102 origin-b & pids+=($!)
wait_http http://127.0.0.1:9101/
wait_http http://127.0.0.1:9102/

if [ "$MODE" = standalone ]; then
  cp -n examples/portico.yaml run/portico.yaml 2>/dev/null || true
  build/portico --config run/portico.yaml --listen 127.0.0.1:9080 --status-listen 127.0.0.1:9091 \
    --access-log run/access.log --drain-delay 0.5 & pids+=($!)
  portico_pid=$!
  wait_http http://127.0.0.1:9091/readyz
  cat <<'MSG'

Portico (standalone) is serving on http://127.0.0.1:9080 (status on :9091). Try:

  curl -i http://127.0.0.1:9080/hello                      # round robin over origin-a and origin-b
  curl -i -H 'X-Canary: 1' http://127.0.0.1:9080/api/x     # vars + priority: always origin-b
  curl -s http://127.0.0.1:9091/status/config

Edit run/portico.yaml (it reloads within a second). Ctrl-C stops everything.
MSG
  wait "$portico_pid"
  exit 0
fi

# etcd on non-default ports so an etcd already running on this machine is left alone. Auto-compaction keeps
# the newest 10000 revisions (checked every 5 minutes), as every etcd the project starts does: etcd never
# compacts by itself otherwise (Portico also compacts behind what it has read, src/store/README.md).
etcd --name portico-demo --data-dir run/state/etcd \
  --auto-compaction-mode revision --auto-compaction-retention 10000 \
  --listen-client-urls http://127.0.0.1:12379 --advertise-client-urls http://127.0.0.1:12379 \
  --listen-peer-urls http://127.0.0.1:12380 --initial-advertise-peer-urls http://127.0.0.1:12380 \
  --initial-cluster portico-demo=http://127.0.0.1:12380 >run/etcd.log 2>&1 & pids+=($!)
wait_http http://127.0.0.1:12379/health

build/portico --role traditional --etcd-endpoints http://127.0.0.1:12379 --state-dir run/state \
  --admin-listen 127.0.0.1:9180 --listen 127.0.0.1:9080 --status-listen 127.0.0.1:9091 \
  --access-log run/access.log --drain-delay 0.5 & pids+=($!)
portico_pid=$!
wait_http http://127.0.0.1:9091/readyz

KEY=$(cat run/state/admin.key)
admin() { curl -fsS -o /dev/null -H "X-API-KEY: $KEY" "$@"; }
if ! admin http://127.0.0.1:9180/apisix/admin/upstreams/demo 2>/dev/null; then
  admin -X PUT http://127.0.0.1:9180/apisix/admin/upstreams/demo \
    -d '{"type":"roundrobin","nodes":{"127.0.0.1:9101":1,"127.0.0.1:9102":1}}'
  admin -X PUT http://127.0.0.1:9180/apisix/admin/routes/hello -d '{"uri":"/hello","upstream_id":"demo"}'
fi

cat <<'MSG'

Portico (traditional: Admin API + proxy) is serving on http://127.0.0.1:9080; Admin API on
http://127.0.0.1:9180/apisix/admin; status on :9091; etcd on 127.0.0.1:12379 (data in run/state/etcd).
The admin key was generated into run/state/admin.key (mode 0600). Try:

  export ADMIN_KEY=$(cat run/state/admin.key)
  curl -i http://127.0.0.1:9080/hello                                  # the seeded route
  curl -s -H "X-API-KEY: $ADMIN_KEY" http://127.0.0.1:9180/apisix/admin/routes
  curl -i -H "X-API-KEY: $ADMIN_KEY" -X PUT http://127.0.0.1:9180/apisix/admin/routes/api \
       -d '{"uri":"/api/*","upstream":{"type":"roundrobin","nodes":{"127.0.0.1:9102":1}}}'
  curl -i http://127.0.0.1:9080/api/orders                             # served by origin-b
  curl -i -H "X-API-KEY: $ADMIN_KEY" -X PUT http://127.0.0.1:9180/apisix/admin/routes/bad \
       -d '{"uri":"/x","upstream":{"nodes":{"127.0.0.1:0":1}}}'        # 400 naming the bad field
  curl -s http://127.0.0.1:9091/status/config

Ctrl-C stops everything (etcd included; its data stays in run/state/etcd).
MSG
wait "$portico_pid"
