#!/usr/bin/env bash
# Compares telemetry.Middleware with otelgin on the same engine, providers and
# request, so the choice documented in ../../middleware.go can be re-checked
# against a newer otelgin. It builds a throw-away module outside the
# workspace (otelgin is not a dependency of pkg) and prints the benchmarks.
#
#   pkg/telemetry/testdata/otelgincompare/run.sh [-count 6]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
pkg="$(cd "$here/../../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$here/bench_test.go.txt" "$work/bench_test.go"
cat >"$work/go.mod" <<MOD
module otelgincompare

go 1.26

require github.com/shanhai-dev/shanhai/pkg v0.0.0-00010101000000-000000000000

replace github.com/shanhai-dev/shanhai/pkg => $pkg
MOD
cd "$work"
export GOWORK=off
go get go.opentelemetry.io/contrib/instrumentation/github.com/gin-gonic/gin/otelgin@latest >/dev/null
go mod tidy >/dev/null
go test -run '^$' -bench Compare -benchtime 200000x "$@" .
