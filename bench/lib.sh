# Sourced by the bench scripts (bench/run.sh, plugins.sh, the paired ones) from the repo root: the setup they share.
# `bench_setup NAME RESULTS` sets ROOT, PEERS, ROUNDS, SECS, CONNS, OUT, RUN ($OUT/NAME, holding copies of the
# peers' nginx/HAProxy configs), RESULTS ($OUT/RESULTS, emptied) and CPR; every pid pushed onto `pids` is
# killed on exit. Env: ROUNDS (default 5), SECONDS_PER_RUN (default 6), CONNS (default 50), PEERS (peer
# config folder), OUT (results folder).

bench_setup() {
  ROOT=$PWD
  PEERS=${PEERS:-$ROOT/../shared/bench-peers}
  ROUNDS=${ROUNDS:-5}
  SECS=${SECONDS_PER_RUN:-6}
  CONNS=${CONNS:-50}
  OUT=${OUT:-$ROOT/build/bench-results}
  RUN=$OUT/$1
  mkdir -p "$RUN"
  RESULTS=$OUT/$2
  : >"$RESULTS"
  [ -f "$PEERS/upstream-nginx.conf" ] || { echo "bench: peer configs not found in $PEERS" >&2; exit 1; }
  cp "$PEERS"/upstream-nginx.conf "$PEERS"/proxy-nginx.conf "$PEERS"/proxy-haproxy.cfg "$RUN/"
  CPR="$PEERS/cpu-per-request.sh"
  pids=()
  trap bench_cleanup EXIT
}

bench_cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }

# cpu_ns PID: CPU time in ns of PID and its children, all threads (/proc/*/task/*/schedstat): the paired
# benches read it around each run.
cpu_ns() { local s=0 p t; for p in $1 $(pgrep -P "$1" || true); do for t in /proc/$p/task/*; do
  s=$((s + $(cut -d' ' -f1 "$t/schedstat"))); done; done; echo $s; }
# paired_run FIELDS OTHER CLIENT COUNT: one run of Portico and OTHER driven at once (the paired benches).
# `CLIENT NAME` is one client for server NAME (started twice, in the background, output in $RUN/NAME.out);
# `COUNT FILE` prints the units a client's output says it completed. Appends "FIELDS portico=NS OTHER=NS",
# each server's CPU ns per unit (schedstat, from pid_of), to RESULTS and echoes it.
paired_run() {
  local fields=$1 other=$2 client=$3 count=$4 name n
  local -A c0=()
  local clients=()
  for name in portico "$other"; do c0[$name]=$(cpu_ns "${pid_of[$name]}"); done
  for name in portico "$other"; do
    "$client" "$name" >"$RUN/$name.out" 2>&1 &
    clients+=($!)
  done
  wait "${clients[@]}" || true
  for name in portico "$other"; do
    n=$("$count" "$RUN/$name.out")
    fields+=" $name=$((($(cpu_ns "${pid_of[$name]}") - ${c0[$name]}) / n))"
  done
  echo "$fields"
  echo "$fields" >>"$RESULTS"
}
wait_port() {  # wait_port PORT: until something answers HTTP there (bounded)
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.05; done
  echo "bench: nothing answers on port $1" >&2; return 1
}

# bench_tls_material: in $RUN, an ECDSA P-256 certificate for bench.test (cert.pem, key.pem, combined.pem for
# HAProxy) and Portico's config (portico.json): one route to the origin, and the certificate as an ssl with the
# names bench.test and "*" (wrk and h2load send the URL's host, 127.0.0.1, as SNI, which only a catch-all name
# answers: an unknown SNI fails the handshake, as APISIX; nginx and HAProxy answer with their only cert).
bench_tls_material() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$RUN/key.pem" \
    -out "$RUN/cert.pem" -days 2 -subj /CN=bench.test -addext subjectAltName=DNS:bench.test 2>/dev/null
  cat "$RUN/cert.pem" "$RUN/key.pem" >"$RUN/combined.pem"
  /usr/bin/python3 - "$RUN" >"$RUN/portico.json" <<'PY'
import json, sys
run = sys.argv[1]
print(json.dumps({
    "upstreams": [{"id": "origin", "nodes": {"127.0.0.1:18080": 1},
                   "keepalive_pool": {"size": 128, "requests": 1000000}}],
    "routes": [{"id": "1", "uri": "/*", "upstream_id": "origin"}],
    "ssls": [{"id": "bench", "cert": open(run + "/cert.pem").read(), "key": open(run + "/key.pem").read(),
              "snis": ["bench.test", "*"]}],
}))
PY
}
