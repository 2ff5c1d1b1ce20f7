# Outpost build, test and demo targets. `make help` lists them.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$(shell git diff --quiet HEAD 2>/dev/null || echo -dirty)
LDFLAGS   := -s -w -X github.com/outpost-edge/outpost/internal/cli.Version=$(VERSION) -X main.version=$(VERSION) \
	-X github.com/outpost-edge/outpost/internal/buildinfo.stamped=$(COMMIT)
DIST      ?= dist
# The agent's size budget (DESIGN.md targets): linux/arm64, static, stripped.
AGENT_BUDGET ?= 12MiB
# RACE is on for `make test`; `make test RACE=` runs without the race detector.
RACE      ?= -race
TESTFLAGS ?=
DEMOFLAGS ?= --devices 3

.PHONY: help build dist size-check bench test demo proto proto-check lint clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/outpost and the static bin/outpost-agent
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/outpost ./cmd/outpost
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/outpost-agent ./cmd/outpost-agent

dist: ## release: static stripped binaries for every platform, tarballs and SHA256SUMS in dist/
	scripts/dist.sh '$(VERSION)' '$(COMMIT)' '$(DIST)'

size-check: ## fail when dist's linux/arm64 agent is over its budget ($(AGENT_BUDGET)), showing what is in it
	@test -f $(DIST)/bin/linux_arm64/outpost-agent || { echo "no $(DIST)/bin/linux_arm64/outpost-agent: run make dist first" >&2; exit 1; }
	$(GO) run ./tools/sizebudget -budget $(AGENT_BUDGET) -binary $(DIST)/bin/linux_arm64/outpost-agent \
		-pkg ./cmd/outpost-agent -goos linux -goarch arm64

bench: ## every benchmark of BENCHMARKS.md (about 35 minutes); results in bench/results/
	bench/all.sh

test: ## run the whole test suite (race detector on), and the agent's CoAP transport (build tag coap)
	$(GO) test $(RACE) -count=1 -timeout 20m $(TESTFLAGS) ./...
	$(GO) test $(RACE) -count=1 -tags coap $(TESTFLAGS) ./internal/agent/ota/

demo: build ## run a hub with 3 simulated devices on the embedded defaults
	./bin/outpost demo $(DEMOFLAGS)

proto: ## regenerate gen/ from proto/ (outpost/v1: the device wire format; outpost/api/v1: the gRPC API, kept apart so the agent links no gRPC) (needs protoc: apt-get install protobuf-compiler)
	protoc -I proto --plugin=protoc-gen-go="$$($(GO) tool -n protoc-gen-go)" \
		--plugin=protoc-gen-go-grpc="$$($(GO) tool -n protoc-gen-go-grpc)" \
		--go_out=. --go_opt=module=github.com/outpost-edge/outpost \
		--go-grpc_out=. --go-grpc_opt=module=github.com/outpost-edge/outpost proto/outpost/v1/*.proto proto/outpost/api/v1/*.proto

proto-check: proto ## fail if the generated code differs from what proto/ produces
	@if [ -n "$$(git status --porcelain -- gen/)" ]; then git status --short -- gen/; git diff -- gen/ | head -40; \
		echo "gen/ is stale: run 'make proto' and commit (new generated files count too)" >&2; exit 1; fi

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags coap ./internal/agent/...

clean: ## remove build output
	rm -rf bin $(DIST)
