# Warren — make help lists the targets. Sized for a 2-core machine.
GO        ?= go
FUZZTIME  ?= 30s
# fuzz-short runs a fixed number of inputs: a time budget makes `go test -fuzz` flaky on a
# loaded 2-core machine ("context deadline exceeded" when a worker is mid-input at the deadline).
FUZZSHORT ?= 30000x
BENCHTIME ?= 1s
RABBITMQ_URL ?= amqp://guest:guest@127.0.0.1:5672/
# PKGS is every package but conformance (`make conformance`); `make unit` checks that it stays so.
PKGS      := ./amqp/... ./broker/... ./crypt/... ./wal/... ./mgmt/... ./cmd/... ./cluster/...
NODES     ?= 3
ROUNDS    ?= 10

.PHONY: help run cluster build gen verify test unit conformance conformance-race conformance-rabbitmq conformance-cluster fuzz fuzz-short bench imports chaos chaos-ci

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-22s %s\n", $$1, $$2}'

run: ## start a single node: AMQP 127.0.0.1:5672, HTTP 127.0.0.1:15672, data in ./data
	$(GO) run ./cmd/warren

cluster: ## start a 3-node cluster on loopback in the foreground: AMQP 5672-5674, HTTP 15672-15674, data in ./data/node1..3
	scripts/cluster.sh

build: ## build bin/warren, bin/warren-perf, bin/warren-chaos, bin/warrenctl
	$(GO) build -o bin/warren ./cmd/warren
	$(GO) build -o bin/warren-perf ./cmd/warren-perf
	$(GO) build -o bin/warren-chaos ./cmd/warren-chaos
	$(GO) build -o bin/warrenctl ./cmd/warrenctl

gen: ## regenerate the AMQP codec from the spec XML
	$(GO) generate ./amqp

verify: imports ## gofmt, vet, generated code and go.mod up to date, import directions
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	$(GO) generate ./amqp && git diff --exit-code -- amqp/spec_gen.go
	$(GO) mod tidy && git diff --exit-code -- go.mod go.sum

imports: ## check the dependency direction between our packages
	@scripts/check-imports.sh

test: unit conformance fuzz-short ## everything CI runs against Warren: unit tests (-race), conformance, short fuzz

unit: ## unit tests with the race detector (of every package with tests but conformance)
	@scripts/check-unit-pkgs.sh $(PKGS)
	$(GO) test -race -count=1 $(PKGS)

conformance: ## conformance suite (Go + pika) against a freshly started warren, or RABBITMQ_URL=... against that broker
ifeq ($(origin RABBITMQ_URL),command line)
	CONFORMANCE_URL=$(RABBITMQ_URL) $(GO) test -count=1 ./conformance/
else
	$(GO) test -count=1 ./conformance/
endif

conformance-race: ## the conformance suite (-short) against a broker built with the race detector
	CONFORMANCE_RACE=1 $(GO) test -count=1 -short ./conformance/

conformance-cluster: ## the conformance suite against a 3-node cluster: connections on node 2, queues spread over all three
	CONFORMANCE_CLUSTER=1 $(GO) test -count=1 ./conformance/

conformance-rabbitmq: ## the same suite against RabbitMQ at RABBITMQ_URL
	CONFORMANCE_URL=$(RABBITMQ_URL) $(GO) test -count=1 ./conformance/

fuzz-short: ## each fuzz target for a fixed number of inputs (the WAL's touch the disk: fewer)
	$(GO) test ./amqp -run '^$$' -fuzz '^FuzzReadFrame$$' -fuzztime $(FUZZSHORT)
	$(GO) test ./amqp -run '^$$' -fuzz '^FuzzTable$$' -fuzztime $(FUZZSHORT)
	$(GO) test ./amqp -run '^$$' -fuzz '^FuzzMethodRoundTrip$$' -fuzztime $(FUZZSHORT)
	$(GO) test ./wal -run '^$$' -fuzz '^FuzzWALOpen$$' -fuzztime 2000x

fuzz: ## run every fuzz target for FUZZTIME (default 30s each)
	$(GO) test ./amqp -run '^$$' -fuzz '^FuzzReadFrame$$' -fuzztime $(FUZZTIME)
	$(GO) test ./amqp -run '^$$' -fuzz '^FuzzTable$$' -fuzztime $(FUZZTIME)
	$(GO) test ./amqp -run '^$$' -fuzz '^FuzzMethodRoundTrip$$' -fuzztime $(FUZZTIME)
	$(GO) test ./wal -run '^$$' -fuzz '^FuzzWALOpen$$' -fuzztime $(FUZZTIME)

chaos-ci: ## the short fault-injection run of CI (.ci/run; about 2.5 min): 10 rounds of every fault kind over a 3-node cluster in network namespaces (root); a failed round fails it
	$(MAKE) chaos SEED=1000 ROUNDS=10 NODES=3 CHAOS_FLAGS="-cluster -netns on"

chaos: ## rounds of random faults under load, checked (root: network namespaces): SEED=… ROUNDS=10 NODES=3|5 [FAULTS=kill,pause,…] [CHAOS_FLAGS=…]
	$(GO) build -o bin/warren ./cmd/warren
	$(GO) build -o bin/warren-chaos ./cmd/warren-chaos
	bin/warren-chaos -bin bin/warren -nodes $(NODES) -rounds $(ROUNDS) $(if $(SEED),-seed $(SEED)) $(if $(FAULTS),-faults $(FAULTS)) $(CHAOS_FLAGS)

bench: ## codec, routing and WAL benchmarks
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./amqp ./broker/... ./wal

verify-ci: imports ## the verify checks that need no network or clean tree: gofmt, vet, imports, no merge conflict markers
	@! git grep -n -e '^<<<<<<< ' -e '^>>>>>>> ' -- . ':!*.xml' || { echo "merge conflict markers left"; exit 1; }
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
