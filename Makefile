# Shanhai: the two commands people need are `make run` and `make test`.
SHELL := /bin/bash
# Build with the toolchain go.work names (fetched from the Go module proxy when the installed go is older);
# GOTOOLCHAIN=local in the environment keeps the installed one.
export GOTOOLCHAIN ?= auto

# A bare `make` lists the targets: the first one used to be test, which starts six servers (installing packages and
# downloading Pulsar on a fresh machine) before half an hour of tests.
.DEFAULT_GOAL := help
.PHONY: help test lint bench deps-up deps-down deps-status run fork up down kind-up kind-down

help: ## list these targets (make run: the platform on this machine; make test: everything CI runs)
	@awk -F':.*## ' '/^[a-z][a-z-]*:.*## / { printf "  %-12s %s\n", $$1, $$2 }' $(firstword $(MAKEFILE_LIST))

test: ## start the real servers, then every module's gofmt, vet, tidy, staticcheck and tests with -race (scripts/test.sh)
	./scripts/test.sh

lint: ## gofmt, go vet, go mod tidy -diff and staticcheck for every module; no servers, no tests
	./scripts/test.sh lint

bench: ## every module's benchmarks against the real servers; BENCH=regexp BENCHTIME=2s narrow or lengthen them
	./scripts/test.sh bench

deps-up: ## start PostgreSQL, Redis, etcd, NATS, Kafka and Pulsar (reuses running ones); SERVERS="pg redis" for a subset
	./scripts/deps.sh up $(SERVERS)

deps-down: ## stop the servers this checkout started
	./scripts/deps.sh down $(SERVERS)

deps-status: ## show each server as up or down
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

down: ## stop the docker compose stack
	cd deploy/compose && docker compose down

kind-up: ## kind cluster with the platform (needs docker, kind, kubectl)
	./scripts/kind-up.sh

kind-down: ## delete the kind cluster (and the secrets made for it)
	./scripts/kind-down.sh
