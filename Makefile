# Portico: `make run` sets up a fresh Debian 12 machine, builds and starts a demo; `make test` runs every test.
SHELL := /bin/bash
BUILD ?= build
JOBS ?= $(shell nproc)
PY := /usr/bin/python3
MODE ?= traditional

.PHONY: all deps configure build run test unit fuzz e2e bench format clean

all: build

deps:
	@bash scripts/install-deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release

configure: $(BUILD)/build.ninja

build: deps configure
	ninja -C $(BUILD) -j $(JOBS)

run: build
	@MODE=$(MODE) bash scripts/run-demo.sh

unit: build
	cd $(BUILD) && ctest --output-on-failure

fuzz: deps
	CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPORTICO_FUZZ=ON \
	  -DPORTICO_TESTS=OFF -DPORTICO_BENCH=OFF >/dev/null
	ninja -C build-fuzz -j $(JOBS) fuzz_all
	bash tests/fuzz/run-smoke.sh build-fuzz $${FUZZ_SECONDS:-60}

e2e: build
	$(PY) -m pytest -q tests/e2e

test: build
	cd $(BUILD) && ctest --output-on-failure
	$(MAKE) --no-print-directory fuzz
	$(PY) -m pytest -q tests/e2e

bench: build
	bash bench/run.sh
	bash bench/plugins.sh
	bash bench/ratelimit.sh
	bash bench/tls.sh
	bash bench/h2.sh
	bash bench/propagation.sh
	bash bench/admin-bench.sh
	bash bench/delta-latency.sh

.PHONY: bench-plugins
bench-plugins: build  # bare route vs key-auth vs jwt-auth vs three plugins, next to nginx and HAProxy (docs/benchmarks.md)
	bash bench/plugins.sh
	bash bench/consumer-scale.sh
	build/bench/plugins_consumers_bench --benchmark_counters_tabular=true

.PHONY: bench-tls
bench-tls: build  # TLS full/resumed handshakes and keep-alive CPU per request, next to nginx and HAProxy (docs/tls.md)
	bash bench/tls.sh

.PHONY: bench-tls-paired
bench-tls-paired: build  # CPU per TLS handshake, Portico and one other server driven at once (BASELINE=binary adds an A/B)
	bash bench/tls-paired.sh

.PHONY: bench-h2-paired
bench-h2-paired: build  # CPU per HTTP/2 request, Portico and one other server driven at once (BASELINE=binary adds an A/B)
	bash bench/h2-paired.sh

.PHONY: bench-h2
bench-h2: build  # HTTP/2 with h2load (100 streams) over TLS and h2c, CPU per request next to nginx and HAProxy
	bash bench/h2.sh

.PHONY: bench-ratelimit
bench-ratelimit: build  # bare vs limit-count local / redis / batched, next to nginx and HAProxy (docs/benchmarks.md)
	bash bench/ratelimit.sh

.PHONY: bench-propagation
bench-propagation: build  # Admin API write -> all data planes of scripts/ha-cluster serve it (docs/benchmarks.md)
	bash bench/propagation.sh

.PHONY: bench-delta
bench-delta: build  # one-route deltas at 100k routes: apply time, request latency with and without (docs/benchmarks.md)
	bash bench/delta-latency.sh

.PHONY: bench-admin
bench-admin: build  # control plane: Admin API over a 3-member etcd (docs/benchmarks.md)
	bash bench/admin-bench.sh

format:
	clang-format -i $$(git ls-files 'src/*.cc' 'src/*.h' 'tests/*.cc' 'bench/*.cc')

clean:
	rm -rf $(BUILD) build-fuzz
