#!/usr/bin/env bash
# Installs what Portico needs to build, test and benchmark on Debian 12.
# Idempotent: packages already present are skipped, so `make run` stays fast on a warm machine.
set -euo pipefail

build_pkgs=(
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev clang-format
  libboost1.81-dev libssl-dev libyaml-dev nlohmann-json3-dev libpcre2-dev
  libgtest-dev libgmock-dev libbenchmark-dev libcurl4-openssl-dev libhiredis-dev libnghttp2-dev
)
test_pkgs=(python3-pytest python3-jwt python3-cryptography etcd-server etcd-client curl wrk nginx-light haproxy nghttp2-client python3-h2 python3-hpack python3-hyperframe python3-grpcio python3-protobuf redis-server redis-tools openssl ca-certificates python3 procps iproute2 util-linux)

missing=()
for p in "${build_pkgs[@]}" "${test_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# node + npm run the tests' local S3-compatible server (s3rver, below). Checked by command rather than by
# package: a machine may have Node.js from elsewhere, and Debian's npm package would conflict with it.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# npm packages the tests use (package.json, pinned by package-lock.json), in the repo's own node_modules.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ ! -x "$ROOT/node_modules/.bin/s3rver" ]; then
  echo "install-deps: installing npm test tools (s3rver) into $ROOT/node_modules"
  (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
# Debian starts packaged servers as services; Portico's tests start their own on loopback ports.
for svc in nginx haproxy etcd redis-server; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
  fi
done
exit 0
