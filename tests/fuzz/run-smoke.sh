#!/usr/bin/env bash
# Runs every fuzz target from its seed corpus, with its dictionary (TARGET.dict, else http.dict), for an
# equal share of SECONDS (the whole run's budget, default 60), and fails if any target crashes, leaks, times
# out or trips an invariant. New corpus entries go to a scratch directory, so the checked-in seeds stay small;
# crash inputs and logs go to BUILD_DIR/fuzz-artifacts/.
#
#   tests/fuzz/run-smoke.sh BUILD_DIR [SECONDS]
#
# BUILD_DIR is a build tree configured with CXX=clang++ -DPORTICO_FUZZ=ON (targets built with
# `ninja -C BUILD_DIR fuzz_all`).
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 BUILD_DIR [SECONDS]" >&2
  exit 2
fi
build=$1
budget=${2:-60}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
targets=(fuzz_request_parser fuzz_response_parser fuzz_chunked fuzz_json_input fuzz_jwt fuzz_basic_auth fuzz_resp
         fuzz_h2_server fuzz_h2_client fuzz_grpc_web)
seconds=$(( budget / ${#targets[@]} ))
if [ "$seconds" -lt 1 ]; then seconds=1; fi
artifacts="$build/fuzz-artifacts"
mkdir -p "$artifacts"

find_target() {
  local t=$1
  if [ -x "$build/tests/fuzz/$t" ]; then
    echo "$build/tests/fuzz/$t"
  else
    find "$build" -type f -name "$t" -perm -u+x 2>/dev/null | head -n 1
  fi
}

failed=0
for t in "${targets[@]}"; do
  bin=$(find_target "$t")
  if [ -z "$bin" ]; then
    echo "run-smoke: $t not found under $build (configure with CXX=clang++ -DPORTICO_FUZZ=ON and build fuzz_all)" >&2
    exit 2
  fi
  scratch=$(mktemp -d "${TMPDIR:-/tmp}/portico-$t.XXXXXX")
  log="$artifacts/$t.log"
  dict="$here/$t.dict"
  [ -f "$dict" ] || dict="$here/http.dict"
  start=$(date +%s)
  if "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 \
      -dict="$dict" -artifact_prefix="$artifacts/$t-" "$scratch" "$here/corpus/$t" >"$log" 2>&1; then
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    echo "run-smoke: $t ok: ${execs:-?} execs in $(( $(date +%s) - start ))s"
  else
    echo "run-smoke: $t FAILED; log: $log" >&2
    tail -n 40 "$log" >&2
    failed=1
  fi
  rm -rf "$scratch"
done
exit $failed
