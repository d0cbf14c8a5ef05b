#!/usr/bin/env bash
# Benchmark of the bridge on this machine: drain 200k x 1 KB Kafka -> JetStream -> Pulsar, latency at fixed rates,
# each hop's own ceiling with the same client libraries and guarantees, and leg A against a Watermill forwarder.
# Uses the servers of scripts/deps.sh (started if needed). Extra flags go to the Go command, e.g.
#   bridge/bench/run.sh -n 50000 -phases drain,ceilings
# Results: lines starting with RESULT; the whole output is also written to bridge/bench/last-run.txt.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
scripts/deps.sh up nats kafka pulsar
eval "$(scripts/deps.sh env)"
go build -o "${TMPDIR:-/tmp}/shanhai-bridge-bench" ./bridge/cmd/bench
{
	echo "# $(date -u +%FT%TZ) $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"
	"${TMPDIR:-/tmp}/shanhai-bridge-bench" "$@"
} 2>&1 | tee bridge/bench/last-run.txt
