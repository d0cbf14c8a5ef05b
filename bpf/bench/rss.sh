#!/usr/bin/env bash
# rss.sh compares the resident memory of two builds of the agent, each probing testdata/target under the DaemonSet's
# GOMEMLIMIT (56MiB), in rounds alternated A B B A. Per run: VmRSS sampled 5 times a second apart once /readyz answers
# (idle: the target probed, no requests), then 8 times under wrk -t1 -c8 (one /metrics scrape before each sample),
# then VmHWM, RssFile (the executable's mapped pages) and RssAnon. It prints one line per run and the medians per build.
# Must run as root. The port 18931 must be free.
#
#   go build -o /tmp/agent-new ./cmd/agent; (git worktree ... at the base) go build -o /tmp/agent-old ./cmd/agent
#   ROUNDS=2 bpf/bench/rss.sh /tmp/agent-old /tmp/agent-new
set -euo pipefail
a=$1 b=$2 rounds=${ROUNDS:-2} port=18931
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
(cd "$(dirname "$0")/../testdata/target" && go build -o "$dir/target" .)

kib() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$2/status"; }
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

run() { # run AGENT: one line "idle load hwm file anon" in KiB
	exec 3< <("$dir/target" 2>/dev/null)
	local taddr tpid apid lpid idle load line
	read -r taddr <&3
	tpid=$(pgrep -n -f "^$dir/target\$")
	BPF_TARGETS=$dir/target HTTP_ADDR=127.0.0.1:$port GOMEMLIMIT=56MiB "$1" 2>"$dir/agent.log" &
	apid=$!
	for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.2; done
	sleep 3
	idle=$(for _ in 1 2 3 4 5; do curl -s "http://127.0.0.1:$port/metrics" >/dev/null; kib VmRSS $apid; sleep 1; done | median)
	wrk -t1 -c8 -d20s "http://$taddr/x" >/dev/null 2>&1 &
	lpid=$!
	sleep 3
	load=$(for _ in 1 2 3 4 5 6 7 8; do curl -s "http://127.0.0.1:$port/metrics" >/dev/null; kib VmRSS $apid; sleep 1; done | median)
	line="$idle $load $(kib VmHWM $apid) $(kib RssFile $apid) $(kib RssAnon $apid)"
	kill $lpid; wait $lpid 2>/dev/null || true
	kill -TERM $apid; wait $apid || true
	kill $tpid; exec 3<&-
	echo "$line"
}

for _ in $(seq "$rounds"); do
	for agent in "$a" "$b" "$b" "$a"; do
		echo "$agent $(run "$agent") load=$(cut -d' ' -f1 /proc/loadavg)" | tee -a "$dir/runs"
	done
done
echo "medians, KiB: idle VmRSS, VmRSS under wrk, VmHWM, RssFile, RssAnon"
for agent in "$a" "$b"; do
	line=$agent
	for col in 2 3 4 5 6; do line+=" $(awk -v a="$agent" -v c=$col '$1 == a {print $c}' "$dir/runs" | median)"; done
	echo "$line"
done
