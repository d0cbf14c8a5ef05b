#!/usr/bin/env bash
# memlimit.sh measures the bridge's memory under the backpressure test (bridge/cmd/faulttest -mode backpressure: Pulsar
# frozen 30 s while N records are produced, then everything checked archived once and in order), with the GOMEMLIMIT
# deploy gives the bridge, so its container limit rests on numbers (bridge/README.md, "Memory limit").
#
# The Pulsar it freezes (SIGSTOP) is a private standalone this script starts from scripts/deps.sh's cache on ports of
# its own and stops at the end: the shared one of scripts/deps.sh serves other tests and is never touched. Kafka is
# the shared one (KAFKA_BROKERS, default 127.0.0.1:19092); the harness makes its own topics, group, stream and
# nats-server.
#
#   bridge/faulttest/memlimit.sh                      # the runs below
#   bridge/faulttest/memlimit.sh 'heavy 102MiB 2048 16384 20000'   # name GOMEMLIMIT BRIDGE_INFLIGHT size N
#
# Each run prints the harness's timeline and a line "MEMLIMIT name=... gomemlimit=... inflight=... size=... n=...
# rss_before=... rss_peak_outage=... hwm=... verdict=..." (MiB; hwm is the bridge's VmHWM at the end, which also covers
# the catch-up after Pulsar returns). A run whose verdict is not clean exits the script 1 after the other runs.
# MEMLIMIT_RACE=1 then also runs TestBackpressureKeepsMemoryFlat under the race detector against the same Pulsar.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
CACHE=${SHANHAI_CACHE:-$HOME/.cache/shanhai}
PULSAR_HOME=$CACHE/pulsar-4.0.8 # the version scripts/deps.sh pins
PORT=${MEMLIMIT_PULSAR_PORT:-26650}
HTTP_PORT=${MEMLIMIT_PULSAR_HTTP_PORT:-28080}
BOOKIE_PORT=${MEMLIMIT_PULSAR_BOOKIE_PORT:-23181}
export KAFKA_BROKERS=${KAFKA_BROKERS:-127.0.0.1:19092}
export GOTOOLCHAIN=${GOTOOLCHAIN:-auto}

# The deployed configuration first (deploy/k8s/base/apps/bridge/deployment.yaml, deploy/compose/compose.yaml: GOMEMLIMIT
# 102MiB, BRIDGE_INFLIGHT's default 512, the README's 1 KiB records), then heavier ones: records 4 times larger, and
# those with 1536 in flight per partition, which on the harness's one topic of 3 partitions is what the deployed
# bridge may hold on its 9 (3 topics x 3 partitions x 512). Not larger records: the harness writes 500 at a time, and
# a partition's share of 8 KiB ones passes Kafka's default 1 MB batch limit (Message Size Too Large).
RUNS=("$@")
if ((${#RUNS[@]} == 0)); then
	RUNS=("deployed 102MiB 512 1024 20000" "large 102MiB 512 4096 20000" "large-inflight 102MiB 1536 4096 20000")
fi

[[ -d $PULSAR_HOME/lib ]] || { echo "memlimit: no Pulsar in $PULSAR_HOME: scripts/deps.sh up pulsar fetches it" >&2; exit 2; }
for p in "$PORT" "$HTTP_PORT" "$BOOKIE_PORT"; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		echo "memlimit: port $p is taken; set MEMLIMIT_PULSAR_PORT, _HTTP_PORT, _BOOKIE_PORT" >&2
		exit 2
	fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/shanhai-memlimit.XXXXXX")
pulsar_pid=
cleanup() {
	if [[ -n $pulsar_pid ]]; then
		kill -CONT "$pulsar_pid" 2>/dev/null || true
		kill "$pulsar_pid" 2>/dev/null || true
		wait "$pulsar_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

# The same standalone as scripts/deps.sh's (its settings and JVM flags), on this script's ports and directory.
{
	cat "$PULSAR_HOME/conf/standalone.conf"
	echo
	sed -e "s|@HOST@|127.0.0.1|g" -e "s|@PORT@|$PORT|g" -e "s|@HTTP_PORT@|$HTTP_PORT|g" scripts/deps/pulsar/standalone.conf
} >"$work/standalone.conf"
mapfile -t flags < <(grep -v '^[[:space:]]*\(#\|$\)' scripts/deps/pulsar/jvm.options)
echo "memlimit: starting a private Pulsar on 127.0.0.1:$PORT (log $work/pulsar.log)"
(cd "$work" && exec java "${flags[@]}" -Dlog4j.configurationFile="$ROOT/scripts/deps/pulsar/log4j2.yaml" \
	-Dpulsar.log.dir="$work" -Dpulsar.config.file="$work/standalone.conf" -cp "$PULSAR_HOME/lib/*" \
	org.apache.pulsar.PulsarStandaloneStarter -c "$work/standalone.conf" -nfw -nss -a 127.0.0.1 \
	--metadata-dir "$work/metadata" --bookkeeper-dir "$work/bookkeeper" --bookkeeper-port "$BOOKIE_PORT") \
	>"$work/pulsar.log" 2>&1 </dev/null &
pulsar_pid=$!
admin=http://127.0.0.1:$HTTP_PORT/admin/v2
for ((i = 0; ; i++)); do
	curl -fsS -m 3 "$admin/namespaces/public" 2>/dev/null | grep -q '"public/default"' && break
	kill -0 "$pulsar_pid" 2>/dev/null || { tail -20 "$work/pulsar.log" >&2; echo "memlimit: Pulsar exited" >&2; exit 2; }
	((i < 300)) || { echo "memlimit: Pulsar not ready after 300 s" >&2; exit 2; }
	sleep 1
done
# The namespace the bridge archives to, with deduplication on (scripts/deps.sh's pulsar_setup).
curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/json' -d '{"adminRoles":[],"allowedClusters":["standalone"]}' "$admin/tenants/shanhai"
curl -fsS -o /dev/null -X PUT "$admin/namespaces/shanhai/events"
curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' -d true "$admin/namespaces/shanhai/events/deduplication"
# Both: the bridge reads its topics' size policy from the admin API (with the shared, then stopped, Pulsar's admin URL
# inherited from scripts/deps.sh env, the warm-up archived nothing).
export PULSAR_URL=pulsar://127.0.0.1:$PORT PULSAR_ADMIN_URL=http://127.0.0.1:$HTTP_PORT

# A production build (no -race), as the image's; the bridge instances are this binary re-run (bridge/README.md).
go build -o "$work/faulttest" ./bridge/cmd/faulttest

status=0
for run in "${RUNS[@]}"; do
	read -r name limit inflight size n <<<"$run"
	echo "# $(date -u +%FT%TZ) run $name: GOMEMLIMIT=$limit BRIDGE_INFLIGHT=$inflight size=$size n=$n; load $(cut -d' ' -f1-3 /proc/loadavg)"
	# The bound is set out of the way: this measures, the verdict (lost, duplicated, out of order) is what must hold.
	out=$(GOMEMLIMIT=$limit BRIDGE_INFLIGHT=$inflight "$work/faulttest" -mode backpressure -n "$n" -size "$size" \
		-rss-bound-mib 100000 -pulsar-outage "kill -STOP $pulsar_pid; sleep 30; kill -CONT $pulsar_pid" 2>&1) || status=1
	kill -CONT "$pulsar_pid" 2>/dev/null || true
	echo "$out"
	before=$(sed -n 's/.*RESULT.* rss_before=\([0-9]*\)MiB.*/\1/p' <<<"$out")
	peak=$(sed -n 's/.*RESULT.* rss_peak=\([0-9]*\)MiB.*/\1/p' <<<"$out")
	hwm=$(sed -n 's/.*bridge VmHWM \([0-9]*\) MiB.*/\1/p' <<<"$out")
	verdict=$(sed -n 's/^RESULT \(.*\) rss_before=.*/\1/p' <<<"$out")
	echo "MEMLIMIT name=$name gomemlimit=$limit inflight=$inflight size=$size n=$n rss_before=${before:-?} rss_peak_outage=${peak:-?} hwm=${hwm:-?} verdict=${verdict:-none}"
done
if [[ -n ${MEMLIMIT_RACE:-} ]]; then
	echo "# $(date -u +%FT%TZ) go test -race -run TestBackpressureKeepsMemoryFlat ./bridge/faulttest"
	(cd bridge && FAULTTEST_PULSAR_OUTAGE="kill -STOP $pulsar_pid; sleep 30; kill -CONT $pulsar_pid" \
		go test -race -count=1 -v -timeout 15m -run 'TestBackpressureKeepsMemoryFlat$' ./faulttest) || status=1
	kill -CONT "$pulsar_pid" 2>/dev/null || true
fi
exit $status
