# Shanhai: the two commands people need are `make run` and `make test`.
SHELL := /bin/bash

.PHONY: test run deps-up deps-down lint

test: ## start the real servers, then every module's tests with -race, gofmt, vet, staticcheck
	./scripts/test.sh

deps-up:
	./scripts/deps.sh up

deps-down:
	./scripts/deps.sh down

run:
	@echo "make run is built by the embedded-run issue (#8)"; exit 1
