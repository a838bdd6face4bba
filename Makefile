# Mosaic — see README.md. `make test` is what CI runs (.ci/run).
GO      ?= go
BIN     := bin/mosaic
# Packages whose tests also run under the race detector.
RACE_PKGS := ./chunker/... ./engine/... ./raftmeta/... ./replication/... ./fusefs/... ./api/...

.PHONY: build run test test-unit test-system bench bench-glance fixtures soak lint verify clean

build:
	$(GO) build -o $(BIN) ./cmd/mosaic

# A single node with the embedded defaults: data in ./mosaic-data, Glance
# API on 127.0.0.1:9292, Raft on 127.0.0.1:9393.
run: build
	./$(BIN) serve

test: build test-unit test-system

test-unit:
	$(GO) test -count=1 -race -timeout 15m $(RACE_PKGS)

test-system: build
	MOSAIC_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 25m ./cmd/... ./testing/...

# Datasets for the benchmarks, built once from the apt mirror (needs root),
# cached outside git (MOSAIC_FIXTURES, default /var/cache/mosaic-fixtures).
MOSAIC_FIXTURES ?= /var/cache/mosaic-fixtures
fixtures:
	testing/fixtures/make-dedup-dataset.sh $(MOSAIC_FIXTURES)/dedup

# Long-running figures (storage: docs/storage.md, docs/chunking.md; API:
# docs/api.md; mounts and hypervisor hosts: docs/hypervisor.md; image signing:
# docs/signing.md). The machine is shared: the figures are ratios measured
# in the same run; -count repeats.
BENCH_COUNT ?= 2
# The Pebble ingest benchmark runs once per process: on this kind of VM
# (Firecracker, free page reporting) a second 1 GiB ingest in the same
# process pays 3-4x the kernel CPU per write for page-cache pages the host
# took back after the first one's files were deleted (docs/storage.md).
bench: build fixtures bench-glance
	{ MOSAIC_FIXTURES=$(MOSAIC_FIXTURES) $(GO) test -run '^$$' -bench . -benchtime 1x -count $(BENCH_COUNT) -timeout 120m \
		./chunker/... ./testing/fixtures/ ./testing/storagebench/ && \
	  for i in $$(seq $(BENCH_COUNT)); do $(GO) test -run '^$$' -bench . -benchtime 1x -count 1 -timeout 30m ./engine/... || exit 1; done; } \
		2>&1 | tee bench.out | $(GO) run ./testing/storagebench/benchtable
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 90m ./testing/bench/...
	MOSAIC_BIN=$(CURDIR)/$(BIN) $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./testing/cluster/
	$(GO) test -run '^$$' -bench . -benchtime 2000x -timeout 30m ./api/
	MOSAIC_BIN=$(CURDIR)/$(BIN) $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./testing/signing/
	# Auth (docs/auth.md): Keystone mode with a warm cache vs token mode, and each lookup alone.
	MOSAIC_BIN=$(CURDIR)/$(BIN) $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./testing/tenancy/
	$(GO) test -run '^$$' -bench . -timeout 30m ./api/auth/

# Glance-vs-Mosaic API figures (create, show, list 25 of 10,000), with the
# real Glance started in the same run (testing/bench/glance-vs-mosaic.sh).
bench-glance: build
	MOSAIC_BIN=$(CURDIR)/$(BIN) bash testing/bench/glance-vs-mosaic.sh

soak: build
	MOSAIC_SOAK=1 MOSAIC_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 120m ./testing/...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) test -count=1 ./testing/archtest/

# go mod tidy must leave go.mod and go.sum unchanged.
verify:
	$(GO) mod tidy
	git diff --exit-code go.mod go.sum

clean:
	rm -rf bin
