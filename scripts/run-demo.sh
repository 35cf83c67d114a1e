#!/usr/bin/env bash
# `make run`: starts a local single-member etcd (data in run/state/etcd), two sample origins and Portico in
# the traditional role (Admin API + proxy in one process), seeds a sample upstream and route through the
# Admin API on first start, prints what to try, and stops everything on Ctrl-C, SIGINT or SIGTERM.
# `make run MODE=standalone` runs the file-configured proxy on examples/portico.yaml instead.
# RUN_DIR (default run/) holds the state, logs and the standalone config.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${MODE:-traditional}
RUN_DIR=${RUN_DIR:-run}
mkdir -p "$RUN_DIR/state"
chmod 700 "$RUN_DIR/state"

# Every child runs in its own session, so a Ctrl-C reaches only make and this script, and the stop happens
# in order: Portico drains first, while etcd is still there (no "etcd unreachable" on the way out), then etcd
# and the origins.
portico_pid=""
etcd_pid=""
origin_pids=()
stop_pid() {  # stop_pid PID: SIGTERM, then wait for it (bounded: 10 s, then SIGKILL)
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 0
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
stopped=0
stop_all() {
  ((stopped)) && return 0
  stopped=1
  stop_pid "$portico_pid"
  stop_pid "$etcd_pid"
  for p in "${origin_pids[@]}"; do stop_pid "$p"; done
}
on_signal() {
  echo
  echo "run-demo: stopping"
  stop_all
  exit 0
}
trap stop_all EXIT
trap on_signal INT TERM

# GNU make keeps a SIGINT sent to it alone (kill -INT <make>) to itself and waits for this script; while
# it handles one, it blocks SIGINT. That is how this script learns that make was asked to stop.
make_pid=""
for candidate in "$PPID" "$(awk '/^PPid:/ {print $2}' "/proc/$PPID/status" 2>/dev/null)"; do
  if [ "$(cat "/proc/$candidate/comm" 2>/dev/null)" = make ]; then make_pid=$candidate; break; fi
done
make_interrupted() {
  [ -n "$make_pid" ] || return 1
  local blocked
  blocked=$(awk '/^SigBlk:/ {print $2}' "/proc/$make_pid/status" 2>/dev/null) || return 1
  [ -n "$blocked" ] && (((0x$blocked & 0x2) != 0))
}
serve_until_stopped() {  # until Portico exits or a signal arrives (handled by on_signal)
  while kill -0 "$portico_pid" 2>/dev/null; do
    if make_interrupted; then on_signal; fi
    sleep 0.2
  done
  wait "$portico_pid" || echo "run-demo: portico exited with status $?" >&2
}

wait_http() {  # wait_http URL: until it answers (bounded: 15 s)
  for _ in $(seq 1 150); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "run-demo: $1 did not answer" >&2; return 1
}

setsid /usr/bin/python3 examples/demo_origin.py 9101 origin-a & origin_pids+=($!)
setsid /usr/bin/python3 examples/demo_origin.py 9102 origin-b & origin_pids+=($!)
wait_http http://127.0.0.1:9101/
wait_http http://127.0.0.1:9102/

if [ "$MODE" = standalone ]; then
  cp -n examples/portico.yaml "$RUN_DIR/portico.yaml" 2>/dev/null || true
  setsid build/portico --config "$RUN_DIR/portico.yaml" --listen 127.0.0.1:9080 --status-listen 127.0.0.1:9091 \
    --access-log "$RUN_DIR/access.log" --drain-delay 0.5 &
  portico_pid=$!
  wait_http http://127.0.0.1:9091/readyz
  cat <<'MSG'

Portico (standalone) is serving on http://127.0.0.1:9080 (status on :9091). Try:

  curl -i http://127.0.0.1:9080/hello                      # round robin over origin-a and origin-b
  curl -i -H 'X-Canary: 1' http://127.0.0.1:9080/api/x     # vars + priority: always origin-b
  curl -s http://127.0.0.1:9091/status/config

Edit the config file in the run directory (it reloads within a second). Ctrl-C stops everything.
MSG
  serve_until_stopped
  exit 0
fi

# etcd on non-default ports so an etcd already running on this machine is left alone. Auto-compaction keeps
# the newest 10000 revisions (checked every 5 minutes), as every etcd the project starts does: etcd never
# compacts by itself otherwise (Portico also compacts behind what it has read, src/store/README.md).
setsid etcd --name portico-demo --data-dir "$RUN_DIR/state/etcd" \
  --auto-compaction-mode revision --auto-compaction-retention 10000 \
  --listen-client-urls http://127.0.0.1:12379 --advertise-client-urls http://127.0.0.1:12379 \
  --listen-peer-urls http://127.0.0.1:12380 --initial-advertise-peer-urls http://127.0.0.1:12380 \
  --initial-cluster portico-demo=http://127.0.0.1:12380 >"$RUN_DIR/etcd.log" 2>&1 &
etcd_pid=$!
wait_http http://127.0.0.1:12379/health

setsid build/portico --role traditional --etcd-endpoints http://127.0.0.1:12379 --state-dir "$RUN_DIR/state" \
  --admin-listen 127.0.0.1:9180 --listen 127.0.0.1:9080 --status-listen 127.0.0.1:9091 \
  --access-log "$RUN_DIR/access.log" --drain-delay 0.5 &
portico_pid=$!
wait_http http://127.0.0.1:9091/readyz

KEY=$(cat "$RUN_DIR/state/admin.key")
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
serve_until_stopped
