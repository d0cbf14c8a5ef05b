# Shanhai: the two commands people need are `make run` and `make test`.
SHELL := /bin/bash
# Build with the toolchain go.work names (fetched from the Go module proxy when the installed go is older);
# GOTOOLCHAIN=local in the environment keeps the installed one.
export GOTOOLCHAIN ?= auto

.PHONY: test lint bench deps-up deps-down deps-status run fork up down kind-up kind-down

test: ## start the real servers, then every module's gofmt, vet, staticcheck and tests with -race (scripts/test.sh)
	./scripts/test.sh

lint: ## gofmt, go vet and staticcheck for every module; no servers, no tests
	./scripts/test.sh lint

bench: ## every module's benchmarks against the real servers; BENCH=regexp BENCHTIME=2s narrow or lengthen them
	./scripts/test.sh bench

deps-up: ## start PostgreSQL, Redis, etcd, NATS, Kafka and Pulsar (reuses running ones); SERVERS="pg redis" for a subset
	./scripts/deps.sh up $(SERVERS)

deps-down: ## stop the servers this checkout started
	./scripts/deps.sh down $(SERVERS)

deps-status:
	./scripts/deps.sh status

BINARIES := ./services/user/cmd/user ./services/order/cmd/order ./services/payment/cmd/payment ./bridge/cmd/bridge ./gateway/cmd/gateway ./cmd/shanhai

run: ## build the binaries into var/bin and run the whole platform on embedded servers (ARGS="-native", "-measure", "-port 8080")
	go build -o var/bin/ $(BINARIES)
	var/bin/shanhai -bin var/bin $(ARGS)

fork: ## copy the repo to DEST with the module path renamed to MODULE: make fork MODULE=github.com/you/shop DEST=../shop
	@test -n "$(MODULE)" -a -n "$(DEST)" || { echo 'usage: make fork MODULE=github.com/you/shop DEST=../shop'; exit 2; }
	./scripts/fork.sh "$(MODULE)" "$(DEST)"

up: ## the whole stack in docker compose (needs a container engine; see deploy/README.md)
	cd deploy/compose && docker compose up --build

down:
	cd deploy/compose && docker compose down

kind-up: ## kind cluster with the platform (needs docker, kind, kubectl)
	./scripts/kind-up.sh

kind-down:
	./scripts/kind-down.sh
