# gpujobs — two commands on a fresh Debian machine:
#   make demo   install what is missing, start the dev stack, run the seed's jobs, print the report
#   make test   the same setup, then unit and end-to-end tests; stops what it started
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO      ?= go
TAGS    ?= openblas
BIN     := $(CURDIR)/bin
# No -trimpath in the local builds: it is part of every package's build-cache key, so bin/ built with
# it and go test/vet built without it compiled the whole dependency graph twice (on a fresh 2-core
# machine about 9.5 min more for the dev server's Temporal server, 3 min more for the rest). The
# images (deployments/docker) still build with -trimpath.
GOBUILD := $(GO) build -tags '$(TAGS)'
# The dev server is its own module (Temporal server v1.32 cannot share go.mod with SDK v1.51).
DEVSERVER_SRC := $(wildcard devserver/*.go) devserver/go.mod devserver/go.sum

.PHONY: help setup deps build dev stop demo test test-unit test-e2e test-deploy test-cluster vet bench clean kernels build-gpu cuda-check images images-gpu seaweedfs

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: deps build ## install missing packages (apt), start RabbitMQ, build bin/
	@scripts/rabbitmq.sh start

deps: ## install the Debian packages the build and the stack need (only the missing ones)
	@. scripts/lib.sh && apt_install rabbitmq-server libopenblas-dev chromium python3

# The starter and the monitor run no kernel: built without cgo, as in their images.
build: $(BIN)/devserver ## build bin/devserver, bin/worker, bin/starter, bin/monitor, bin/monitor-report, bin/example-worker
	$(GOBUILD) -o $(BIN)/worker ./workers/worker
	$(GOBUILD) -o $(BIN)/example-worker ./examples/worker
	CGO_ENABLED=0 $(GO) build -o $(BIN)/starter ./starter
	CGO_ENABLED=0 $(GO) build -o $(BIN)/monitor ./monitor
	CGO_ENABLED=0 $(GO) build -o $(BIN)/monitor-report ./monitor/report

$(BIN)/devserver: $(DEVSERVER_SRC)
	@echo "building the embedded Temporal dev server (first build takes a few minutes)"
	cd devserver && $(GO) build -ldflags '-s -w' -o $(BIN)/devserver .

dev: setup ## start the dev stack in the background (logs and pids in run/)
	@scripts/dev.sh start

stop: ## stop the dev stack and a RabbitMQ that make started
	@scripts/dev.sh stop
	@scripts/rabbitmq.sh stop

demo: dev ## run the seed's four jobs on CPU and GPU-preferred, print the result table
	@scripts/demo.sh

vet: ## go vet and gofmt, with and without the openblas tag
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags openblas ./...
	cd devserver && $(GO) vet ./...
	cd deployments/validate && $(GO) vet ./...

# The broker make test (or bench) starts is stopped at its end; one that was running already (make
# dev's) is left running: scripts/rabbitmq.sh keeps a marker per owner.
# (Spelled out: a target-specific $@ would expand to each prerequisite's own name, so the
# broker that setup starts would be marked "setup" and the trap's stop would leave it running.)
test: export GPUJOBS_RABBIT_OWNER = test
bench: export GPUJOBS_RABBIT_OWNER = bench
# The S3 store's tests run against a real S3 server, SeaweedFS, that make test starts under its own
# name (run/seaweedfs-test/) with a fresh key pair, and stops at its end; GPUJOBS_S3_REQUIRED makes
# a missing server a failure rather than a skip.
test: export SEAWEEDFS_NAME = seaweedfs-test
test: setup ## vet, unit tests, end-to-end tests against a real dev server, RabbitMQ and S3 (SeaweedFS)
	@trap 'scripts/seaweedfs.sh stop; scripts/rabbitmq.sh stop' EXIT; \
	scripts/seaweedfs.sh start; eval "$$(scripts/seaweedfs.sh env)"; export GPUJOBS_S3_REQUIRED=1; \
	$(MAKE) --no-print-directory vet test-unit test-e2e test-deploy test-cluster

seaweedfs: ## build the S3 server the tests use (SeaweedFS from the Go module proxy, cached in ~/.cache/gpujobs)
	@scripts/seaweedfs.sh build

test-unit: cuda-check
	$(GO) test -count=1 ./...
	@# a few seconds of fuzzing the monitor's result parsing (hostile results must not poison it)
	$(GO) test -run '^$$' -fuzz '^FuzzParseRecord$$' -fuzztime 10s ./internal/monitor/
	@# and of the job-log messages from workers: the monitor stores only valid, bounded lines
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeMessage$$' -fuzztime 10s ./internal/joblogs/
	$(GO) test -count=1 -tags openblas ./kernels/... ./activities/... ./workflows/...
	@# what clients send, fuzzed briefly: params, and JobWorkflow inputs from other clients
	$(GO) test -run '^$$' -fuzz FuzzDecodeParams -fuzztime 10s ./jobs/builtin/
	$(GO) test -run '^$$' -fuzz FuzzDecodeRequest -fuzztime 10s ./workflows/
	scripts/tests/rabbitmq-owner.sh
	scripts/tests/seaweedfs-lifecycle.sh
	cd devserver && $(GO) test -count=1 ./...

test-e2e: # the tests with a dev server of their own run side by side (-parallel: they mostly wait); the whole log goes to run/e2e.log; the console gets test names and failures
	@mkdir -p run
	GPUJOBS_E2E=1 GPUJOBS_BIN=$(BIN) $(GO) test -count=1 -tags openblas -timeout 20m -parallel 8 -v ./internal/e2e/ 2>&1 \
		| tee run/e2e.log | grep --line-buffered -E '^(\s*--- |PASS|FAIL|ok|e2e:|\s+\S+_test\.go:)'
	@# the monitor against the real broker (kill/restart, duplicates, dead letters) and in chromium
	GPUJOBS_E2E=1 GPUJOBS_BIN=$(BIN) $(GO) test -count=1 -timeout 10m -v ./internal/monitor/ 2>&1 \
		| tee run/e2e-monitor.log | grep --line-buffered -E '^(\s*--- |PASS|FAIL|ok|\s+\S+_test\.go:)'
	@# the job-log Writer and the result publisher against the real broker, and a private node
	@# stopped while a job writes
	GPUJOBS_E2E=1 $(GO) test -count=1 -timeout 5m -v ./internal/joblogs/ ./internal/rabbit/ 2>&1 \
		| tee run/e2e-joblogs.log | grep --line-buffered -E '^(\s*--- |PASS|FAIL|ok|\s+\S+_test\.go:)'

# Its own module (compose-go, kustomize, k8s.io), so none of that reaches the binaries.
test-deploy: ## check docker-compose.yml, the Kubernetes overlays and the Dockerfiles (no Docker or cluster needed)
	cd deployments/validate && $(GO) test -count=1 ./...

# The cluster test (internal/cluster): docker-compose.yml's services on hosts of their own (network
# namespaces on a bridge, 198.18.0.0/24; root), Debian's PostgreSQL and RabbitMQ, the Temporal
# server on PostgreSQL (bin/devserver server start) and faults between the hosts. It never
# touches the shared RabbitMQ or anything it did not start; the whole log goes to run/cluster.log.
CLUSTER_DEPS := iproute2 postgresql rabbitmq-server netcat-openbsd curl
CLUSTER_LOG  := grep --line-buffered -E '^(\s*--- |PASS|FAIL|ok|cluster|\||Benchmark|\s+\S+_test\.go:)'

test-cluster: build seaweedfs $(BIN)/temporal-sql-tool ## the cluster test: hosts in network namespaces, Temporal on PostgreSQL, faults between them (root)
	@. scripts/lib.sh && apt_install $(CLUSTER_DEPS)
	@mkdir -p run
	@scripts/cluster-run.sh -run 'TestCluster' -timeout 15m 2>&1 | tee run/cluster.log | $(CLUSTER_LOG)

# temporal-sql-tool, the schema tool of the admin-tools image, from the dev server's module.
$(BIN)/temporal-sql-tool: devserver/go.mod devserver/go.sum
	cd devserver && $(GO) build -ldflags '-s -w' -o $(BIN)/temporal-sql-tool go.temporal.io/server/cmd/tools/sql

IMAGE_TAG ?= local
images: ## build the container images with Docker: gpujobs/worker, gpujobs/monitor, gpujobs/starter
	docker build -f deployments/docker/worker.Dockerfile -t gpujobs/worker:$(IMAGE_TAG) .
	docker build -f deployments/docker/monitor.Dockerfile -t gpujobs/monitor:$(IMAGE_TAG) .
	docker build -f deployments/docker/starter.Dockerfile -t gpujobs/starter:$(IMAGE_TAG) .

images-gpu: ## build gpujobs/worker-gpu (CUDA 12 devel image; runs on a GPU node)
	docker build -f deployments/docker/worker-gpu.Dockerfile -t gpujobs/worker-gpu:$(IMAGE_TAG) .

bench: setup $(BIN)/temporal-sql-tool ## benchmarks, each against a baseline in the same run (figures in docs/BENCHMARKS.md)
	@trap 'scripts/rabbitmq.sh stop' EXIT; \
	echo "== CPU kernels: pure gonum against OpenBLAS"; \
	scripts/bench-kernels.sh; \
	echo "== pipeline latency against a bare workflow, and the scheduler's estimate error"; \
	GPUJOBS_E2E=1 GPUJOBS_BIN=$(BIN) $(GO) test -count=1 -tags openblas -run XXX -bench . -benchtime 1x -timeout 30m ./internal/e2e/ | grep -E '^(Benchmark|e2e:)'; \
	echo "== monitor ingest of 50,000 queued results against a bare consumer with the same prefetch"; \
	GPUJOBS_E2E=1 $(GO) test -count=1 -run XXX -bench Ingest -benchtime 1x -timeout 20m ./internal/monitor/ | grep -E '^Benchmark'; \
	echo "== result publishing: confirmed publishes from 64 goroutines against one at a time"; \
	GPUJOBS_E2E=1 $(GO) test -count=1 -run XXX -bench Publish -benchtime 2000x ./internal/rabbit/ | grep -E '^Benchmark'; \
	echo "== cluster scale: tiny jobs with 1, 2, 4 worker hosts; Temporal on PostgreSQL against the dev server's SQLite"; \
	. scripts/lib.sh && apt_install $(CLUSTER_DEPS); \
	scripts/cluster-run.sh -run XXX -bench ClusterScale -benchtime 1x -timeout 30m 2>&1 | tee run/cluster-bench.log | grep -E '^(Benchmark|cluster: scale|\|)'

clean: stop ## remove build outputs, run state and local data
	rm -rf bin run data

# The GPU side (kernels/cuda, behind the cuda tag): cgo against Debian's CUDA 11.8 headers, linked
# with the driver stub; the binaries then need only libc, and load libcuda.so.1 themselves.
CUDA_GO   := CGO_LDFLAGS=-L/usr/lib/x86_64-linux-gnu/stubs $(GO)
CUDA_PKGS := ./kernels/cuda/... ./workers/gpu ./workers/gpucheck
GPU_BINS  := $(BIN)/worker-gpu $(BIN)/gpucheck $(BIN)/cuda.test

kernels: ## regenerate the committed PTX/fatbin in kernels/cuda/ptx from the .cu sources (nvcc 11.8)
	@scripts/cuda-deps.sh --toolkit
	scripts/gen-ptx.sh

build-gpu: ## build bin/worker-gpu, bin/gpucheck, bin/cuda.test (-tags cuda) for GPU nodes
	@scripts/cuda-deps.sh
	$(CUDA_GO) build -tags cuda -ldflags '-s -w' -o $(BIN)/worker-gpu ./workers/gpu
	$(CUDA_GO) build -tags cuda -ldflags '-s -w' -o $(BIN)/gpucheck ./workers/gpucheck
	$(CUDA_GO) test -tags cuda -c -ldflags '-s -w' -o $(BIN)/cuda.test ./kernels/cuda
	patchelf --remove-needed libcuda.so.1 $(GPU_BINS)

cuda-check: build-gpu ## without a GPU: vet and compile the cuda build, and check the GPU binaries' no-GPU exit
	$(CUDA_GO) vet -tags cuda ./...
	for p in $$($(GO) list -tags cuda $(CUDA_PKGS)); do $(CUDA_GO) test -tags cuda -c -o /dev/null $$p; done
	scripts/gpu-nodevice-check.sh $(BIN)
