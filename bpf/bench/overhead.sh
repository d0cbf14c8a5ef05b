#!/usr/bin/env bash
# overhead.sh measures what the probes cost a Go HTTP server: two copies of the same binary (testdata/target), one
# probed by the agent and one not, driven by interleaved wrk runs with the same threads, connections and duration,
# alternating which copy goes first. It prints the requests/s ratio, the p99 ratio (probed / unprobed) and the
# in-kernel cost per probe hit from BPF program statistics (kernel.bpf_stats_enabled: run_time_ns / run_cnt).
# Must run as root.
#
#   ROUNDS=3 DURATION=5s CONNS=16 bpf/bench/overhead.sh
#   AGENT=/tmp/agent-before bpf/bench/overhead.sh   # probe with another build of the agent (same target binary)
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-16}
THREADS=${THREADS:-1}
PATH_Q=${PATH_Q:-/work}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

[[ $(id -u) == 0 ]] || { echo "overhead.sh loads eBPF programs: run it as root" >&2; exit 1; }
for tool in wrk bpftool jq; do
	command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install wrk bpftool jq)" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
old_stats=$(sysctl -n kernel.bpf_stats_enabled)
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	sysctl -qw kernel.bpf_stats_enabled="$old_stats"
	rm -rf "$work"
}
trap cleanup EXIT

echo "building target and agent in $work"
(cd "$HERE" && CGO_ENABLED=0 go build -o "$work/probed" ./testdata/target && CGO_ENABLED=0 go build -o "$work/agent" ./cmd/agent)
if [[ -n ${AGENT:-} ]]; then cp "$AGENT" "$work/agent"; fi # another build of the agent, for before/after runs
cp "$work/probed" "$work/plain" # same bytes, another file: uprobes live on the probed file only

start_target() { # name: runs in this shell (not a $(...) subshell) so cleanup knows its pid
	"$work/$1" >"$work/$1.addr" 2>"$work/$1.err" &
	pids+=($!)
	for _ in $(seq 100); do [[ -s $work/$1.addr ]] && break; sleep 0.05; done
}

HTTP_ADDR=127.0.0.1:18085 BPF_TARGETS="$work/probed" "$work/agent" 2>"$work/agent.log" &
pids+=($!)
for _ in $(seq 200); do curl -fs http://127.0.0.1:18085/readyz >/dev/null 2>&1 && break; sleep 0.05; done
curl -fs http://127.0.0.1:18085/readyz >/dev/null || { cat "$work/agent.log"; echo "agent not ready" >&2; exit 1; }

start_target probed
start_target plain
probed=$(head -1 "$work/probed.addr")
plain=$(head -1 "$work/plain.addr")
sleep 1
curl -fs "http://$probed$PATH_Q" >/dev/null && curl -fs "http://$plain$PATH_Q" >/dev/null
sysctl -qw kernel.bpf_stats_enabled=1

# prog_stats prints "run_time_ns run_cnt" summed over the agent's uprobe programs of the HTTP server probe.
prog_stats() {
	bpftool prog show --json | jq -r '[.[] | select(.name == "serve_http_ente" or .name == "serve_http_ret" or .name == "serve_http_enter")] |
		"\(map(.run_time_ns // 0) | add // 0) \(map(.run_cnt // 0) | add // 0)"'
}

# run addr -> "rps p99_us"
run() {
	wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "http://$1$PATH_Q" >"$work/wrk.out"
	local rps p99
	rps=$(awk '/^Requests\/sec:/ {print $2}' "$work/wrk.out")
	p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); print v} else if (v ~ /ms$/) {sub(/ms/,"",v); print v*1000} else if (v ~ /s$/) {sub(/s/,"",v); print v*1000000}}' "$work/wrk.out")
	echo "$rps $p99"
}

# prog_split prints "name run_time_ns run_cnt" per program of the HTTP server probe.
prog_split() {
	bpftool prog show --json | jq -r '.[] | select(.name == "serve_http_ente" or .name == "serve_http_ret" or .name == "serve_http_enter") |
		"\(.name) \(.run_time_ns // 0) \(.run_cnt // 0)"' | sort
}

prog_split >"$work/split0"
read -r t0 c0 < <(prog_stats)
req0=$(curl -fs http://127.0.0.1:18085/metrics | awk '/^shanhai_bpf_http_server_request_duration_seconds_count/ {s += $2} END {print s+0}')
sum_p_rps=0; sum_u_rps=0; sum_p_p99=0; sum_u_p99=0
for r in $(seq "$ROUNDS"); do
	if ((r % 2)); then order="probed plain"; else order="plain probed"; fi
	for which in $order; do
		if [[ $which == probed ]]; then addr=$probed; else addr=$plain; fi
		read -r rps p99 < <(run "$addr")
		printf 'round %d %-6s %10.0f req/s  p99 %8.0f us\n' "$r" "$which" "$rps" "$p99"
		if [[ $which == probed ]]; then
			sum_p_rps=$(echo "$sum_p_rps + $rps" | bc -l); sum_p_p99=$(echo "$sum_p_p99 + $p99" | bc -l)
		else
			sum_u_rps=$(echo "$sum_u_rps + $rps" | bc -l); sum_u_p99=$(echo "$sum_u_p99 + $p99" | bc -l)
		fi
	done
done
read -r t1 c1 < <(prog_stats)
prog_split >"$work/split1"
req1=$(curl -fs http://127.0.0.1:18085/metrics | awk '/^shanhai_bpf_http_server_request_duration_seconds_count/ {s += $2} END {print s+0}')

hits=$((c1 - c0)); ns=$((t1 - t0)); reqs=$(echo "$req1 - $req0" | bc)
echo "----"
printf 'requests/s ratio (probed/unprobed): %.3f\n' "$(echo "$sum_p_rps / $sum_u_rps" | bc -l)"
printf 'p99 ratio (probed/unprobed):        %.3f\n' "$(echo "$sum_p_p99 / $sum_u_p99" | bc -l)"
printf 'probe hits: %d, in-kernel ns per hit: %.0f, per request: %.0f (requests counted by the agent: %s)\n' \
	"$hits" "$(echo "$ns / ($hits + ($hits == 0))" | bc -l)" "$(echo "$ns / ($reqs + ($reqs == 0))" | bc -l)" "$reqs"
join "$work/split0" "$work/split1" | while read -r name a0 b0 a1 b1; do
	printf '  %-16s %d hits, %.0f ns per hit\n' "$name" $((b1 - b0)) "$(echo "($a1 - $a0) / ($b1 - $b0 + ($b1 == $b0))" | bc -l)"
done
