# Outpost build, test and demo targets. `make help` lists them.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/outpost-edge/outpost/internal/cli.Version=$(VERSION) -X main.version=$(VERSION)
# RACE is on for `make test`; `make test RACE=` runs without the race detector.
RACE      ?= -race
TESTFLAGS ?=
DEMOFLAGS ?= --devices 3

.PHONY: help build test demo proto proto-check lint clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/outpost and the static bin/outpost-agent
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/outpost ./cmd/outpost
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/outpost-agent ./cmd/outpost-agent

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
	rm -rf bin
