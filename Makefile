# flowps build, test and demo targets. `make help` lists them.

GO       ?= go
BIN      ?= bin
# Build tags: openblas (cgo OpenBLAS kernels) and rdma (libfabric transport)
# are switched on when their libraries are installed; override with TAGS=.
TAGS     ?= $(shell ./scripts/detect-tags.sh)
GOFLAGS_TAGS = $(if $(strip $(TAGS)),-tags '$(strip $(TAGS))')

.PHONY: help build test test-short demo bench-transport bench-training fuzz generate clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## build psd and trainer into ./bin
	@mkdir -p $(BIN)
	$(GO) build $(GOFLAGS_TAGS) -o $(BIN)/ ./cmd/...

test: ## vet and run every test with the race detector (what CI runs)
	$(GO) vet $(GOFLAGS_TAGS) ./...
	$(GO) test $(GOFLAGS_TAGS) -race -timeout 20m ./...

test-short: ## fast unit tests only
	$(GO) test $(GOFLAGS_TAGS) -short ./...

demo: build ## 2 psd + 2 trainers train the MNIST MLP in sync mode on 127.0.0.1
	./scripts/demo.sh

bench-transport: ## transport throughput table (tcp, grpc-echo, grpc, inproc, rdma)
	$(GO) run $(GOFLAGS_TAGS) ./benchmarks/transport

bench-training: ## examples/s: --local vs 1 psd + 1 trainer vs 2 psd + 2 trainers
	$(GO) run $(GOFLAGS_TAGS) ./benchmarks/training

generate: ## regenerate protobuf code
	$(GO) generate ./...

clean:
	rm -rf $(BIN)
