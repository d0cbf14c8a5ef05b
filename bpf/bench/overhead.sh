#!/usr/bin/env bash
# overhead.sh measures what the probes cost a Go HTTP server: two copies of the same binary, one probed by the agent
# and one not, driven by interleaved wrk runs with the same threads, connections and duration, alternating which copy
# goes first. It prints the requests/s ratio, the p99 ratio (probed / unprobed), each copy's CPU per request, and the
# in-kernel cost per probe hit from BPF program statistics (kernel.bpf_stats_enabled: run_time_ns / run_cnt), for the
# HTTP server probe and for every program of the agent apart (hits per request, ns per hit). Must run as root.
#
# TARGET picks the server:
#   target (default)  testdata/target, a no-op net/http handler (~13 us of CPU per request): the worst case, where two
#                     uprobe traps per request are the largest share
#   order             the order service (services/order) against the shared PostgreSQL, Redis, etcd and NATS
#                     (scripts/deps.sh env), driven with an authenticated GET /api/v1/orders/{id}: JWT check, one SQL
#                     query, JSON. A user service (SQLite, throwaway dev keys) mints the token and serves the JWKS.
#                     The order lives in the PostgreSQL database shanhai_bpf_bench and the user in
#                     $STATE_DIR/user.db, both kept and reused, so repeated runs create one order in total (and
#                     publish one order.created to the shared Kafka) and no more. Both copies register in etcd as
#                     version "bpf-bench" and consume the JetStream stream BPFBENCH (subjects "bpfbench.*").
#
#   ROUNDS=3 DURATION=5s CONNS=16 bpf/bench/overhead.sh
#   TARGET=order ROUNDS=5 DURATION=5s bpf/bench/overhead.sh
#   AGENT=/tmp/agent-before bpf/bench/overhead.sh   # probe with another build of the agent (same target binary)
#   STATS=on bpf/bench/overhead.sh                  # BPF statistics on during the A/B rounds (the method before 12-04)
#   PROBE=socket bpf/bench/overhead.sh              # the agent's HTTP server probe at the socket layer (BPF_HTTP_PROBE)
#   BASELINE=agent-off bpf/bench/overhead.sh        # also rounds with no agent at all (the default with PROBE=socket)
#
# PROBE=socket: the socket probe's tracepoints run for every process's socket reads and writes (wrk's, the unprobed
# copy's), each stopping at the target filter. One more round with BPF statistics on drives the unprobed copy alone,
# so every hit of the socket programs there is a filtered one: what an unrelated process pays per call.
#
# BASELINE picks what the probed copy is compared with:
#   plain      (default with PROBE=uprobe) the unprobed copy while the agent runs. Uprobes live on the probed file, so
#              that copy pays only for the agent's tracepoints (TCP, and with PROBE=socket every socket call's filter)
#              and for sharing the machine with the agent itself.
#   agent-off  (default with PROBE=socket) every round also drives both copies with the agent stopped (its programs
#              unloaded), the two halves of a round in alternating order, so the headline ratio is the probed copy
#              with the agent on against the unprobed copy with it off; what the unprobed copy loses to the running
#              agent (its filter) and how alike the two copies are with no agent are printed beside it.
#
# kernel.bpf_stats_enabled makes the kernel read the clock twice around every program run, a cost production does
# not pay, so by default (STATS=apart) the A/B rounds run with it off and one more round on the probed copy alone,
# with it on, gives the per-program hits and ns.
set -euo pipefail

TARGET=${TARGET:-target}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-16}
THREADS=${THREADS:-1}
STATS=${STATS:-apart}
PROBE=${PROBE:-uprobe}
if [[ $PROBE == socket ]]; then BASELINE=${BASELINE:-agent-off}; else BASELINE=${BASELINE:-plain}; fi
STATE_DIR=${STATE_DIR:-/var/tmp/shanhai-bpf-bench}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$(cd "$HERE/.." && pwd)

case $TARGET in
target) PATH_Q=${PATH_Q:-/work} ;;
order) ;;
*) echo "TARGET must be target or order, not $TARGET" >&2; exit 2 ;;
esac
[[ $STATS == apart || $STATS == on ]] || { echo "STATS must be apart or on, not $STATS" >&2; exit 2; }
[[ $PROBE == uprobe || $PROBE == socket ]] || { echo "PROBE must be uprobe or socket, not $PROBE" >&2; exit 2; }
[[ $BASELINE == plain || $BASELINE == agent-off ]] || { echo "BASELINE must be plain or agent-off, not $BASELINE" >&2; exit 2; }
[[ $STATS == apart || $BASELINE == plain ]] || { echo "STATS=on needs BASELINE=plain (the agent restarts between rounds)" >&2; exit 2; }

[[ $(id -u) == 0 ]] || { echo "overhead.sh loads eBPF programs: run it as root" >&2; exit 1; }
# The tools come from Debian; a fresh machine gets them here, as gateway/bench/run.sh does.
missing=()
for tool in wrk bpftool jq curl bc; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
	echo "overhead.sh: installing ${missing[*]} from Debian" >&2
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; } ||
		{ echo "needs ${missing[*]} (apt-get install ${missing[*]}) and could not install them" >&2; exit 1; }
fi

work=$(mktemp -d)
pids=()
agent_pid=
old_stats=$(sysctl -n kernel.bpf_stats_enabled)
cleanup() {
	for p in "${pids[@]}" $agent_pid; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	sysctl -qw kernel.bpf_stats_enabled="$old_stats"
	rm -rf "$work"
}
trap cleanup EXIT

echo "target: $TARGET; building in $work"
(cd "$HERE" && CGO_ENABLED=0 go build -o "$work/agent" ./cmd/agent)
if [[ -n ${AGENT:-} ]]; then cp "$AGENT" "$work/agent"; fi # another build of the agent, for before/after runs
if [[ $TARGET == target ]]; then
	(cd "$HERE" && CGO_ENABLED=0 go build -o "$work/probed" ./testdata/target)
else
	(cd "$ROOT" && CGO_ENABLED=0 go build -o "$work/probed" ./services/order/cmd/order &&
		CGO_ENABLED=0 go build -o "$work/user" ./services/user/cmd/user)
fi
cp "$work/probed" "$work/plain" # same bytes, another file: uprobes live on the probed file only

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_ready() { # url log
	for _ in $(seq 300); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
	tail -20 "$2" >&2
	echo "not ready: $1" >&2
	exit 1
}

start_agent() { # ready means the first scan is done: the probed copy is in the socket probe's filter
	HTTP_ADDR=127.0.0.1:18085 BPF_TARGETS="$work/probed" BPF_HTTP_PROBE=$PROBE "$work/agent" 2>>"$work/agent.log" &
	agent_pid=$!
	wait_ready http://127.0.0.1:18085/readyz "$work/agent.log"
}
stop_agent() {
	kill "$agent_pid"
	wait "$agent_pid" 2>/dev/null || true
	agent_pid=
}
start_agent

curl_args=()
if [[ $TARGET == target ]]; then
	start_target() { # name: runs in this shell (not a $(...) subshell) so cleanup knows its pid
		"$work/$1" >"$work/$1.addr" 2>"$work/$1.err" &
		pids+=($!)
		eval "${1}_pid=$!"
		for _ in $(seq 100); do [[ -s $work/$1.addr ]] && break; sleep 0.05; done
	}
	start_target probed
	start_target plain
	probed=$(head -1 "$work/probed.addr")
	plain=$(head -1 "$work/plain.addr")
else
	eval "$("$ROOT/scripts/deps.sh" env)"
	mkdir -p "$STATE_DIR"
	db=shanhai_bpf_bench
	if [[ -z $(psql "$DATABASE_URL" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'") ]]; then
		psql -q "$DATABASE_URL" -c "CREATE DATABASE $db"
	fi
	order_db=${DATABASE_URL/\/shanhai\?/\/$db?}
	common=(ADMIN_ADDR= LOG_LEVEL=info SERVICE_VERSION=bpf-bench "REDIS_URL=$REDIS_URL" "ETCD_ENDPOINTS=$ETCD_ENDPOINTS"
		"KAFKA_BROKERS=$KAFKA_BROKERS" "NATS_URL=$NATS_URL")
	user=127.0.0.1:$(free_port)
	env "${common[@]}" HTTP_ADDR="$user" DATABASE_URL="sqlite://$STATE_DIR/user.db" AUTH_DEV_KEYS=true \
		ACCESS_TOKEN_TTL=1h "$work/user" >"$work/user.log" 2>&1 &
	pids+=($!)
	wait_ready "http://$user/readyz" "$work/user.log"
	start_order() { # name: runs in this shell so cleanup knows its pid
		local addr=127.0.0.1:$(free_port)
		env "${common[@]}" HTTP_ADDR="$addr" DATABASE_URL="$order_db" NATS_STREAM=BPFBENCH NATS_SUBJECT_PREFIX=bpfbench. \
			JWKS_URL="http://$user/.well-known/jwks.json" "$work/$1" >"$work/$1.log" 2>&1 &
		pids+=($!)
		eval "${1}_pid=$! $1=$addr"
		wait_ready "http://$addr/readyz" "$work/$1.log"
	}
	start_order probed # first alone: it migrates the database
	start_order plain
	creds='{"email":"bpf-bench@shanhai.test","password":"tidal-lantern-quiet-2026"'
	code=$(curl -s -o "$work/reg.json" -w '%{http_code}' -H 'Content-Type: application/json' -d "$creds,\"name\":\"bpf bench\"}" \
		"http://$user/api/v1/users")
	[[ $code == 201 || $code == 409 ]] || { cat "$work/reg.json" >&2; echo "register: HTTP $code" >&2; exit 1; }
	token=$(curl -fs -H 'Content-Type: application/json' -d "$creds}" "http://$user/api/v1/sessions" | jq -r .access_token)
	curl_args=(-H "Authorization: Bearer $token")
	sku=$(curl -fs "${curl_args[@]}" "http://$probed/api/v1/products" | jq -r '(.items // .products // .)[0].sku')
	# The same idempotency key every run: after the first, the order is replayed, not created again.
	order=$(curl -fs "${curl_args[@]}" -H 'Content-Type: application/json' -H 'Idempotency-Key: bpf-bench-order-1' \
		-d "{\"items\":[{\"sku\":\"$sku\",\"quantity\":1}]}" "http://$probed/api/v1/orders" | jq -r .id)
	PATH_Q=${PATH_Q:-/api/v1/orders/$order}
fi
sleep 1
curl -fs "${curl_args[@]}" "http://$probed$PATH_Q" >/dev/null && curl -fs "${curl_args[@]}" "http://$plain$PATH_Q" >/dev/null
echo "GET $PATH_Q: probed $probed (pid $probed_pid), plain $plain (pid $plain_pid)"

# progs prints "id name run_time_ns run_cnt" for every program the running agent loaded: the ids in the fdinfo of its
# open file descriptors (it keeps each program's fd; this bpftool lists no owner pids). Every program loaded after
# the agent started was taken for its own before, so the programs of other agents and probe tests running on the
# machine at the same time were counted with it, under the same names (serve_http_enter hits in a PROBE=socket run).
progs() {
	local ids
	ids=$(awk '$1 == "prog_id:" {print $2}' /proc/"$agent_pid"/fdinfo/* 2>/dev/null | sort -un | jq -sc .)
	bpftool prog show --json | jq -r --argjson ids "$ids" '.[] | select(.id as $id | any($ids[]; . == $id)) |
		"\(.id) \(.name) \(.run_time_ns // 0) \(.run_cnt // 0)"' | sort
}

# cpu_ticks pid: user + system clock ticks of the whole process (uprobe traps are charged to it as system time).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run addr -> "rps p99_us requests"
run() {
	wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "${curl_args[@]}" "http://$1$PATH_Q" >"$work/wrk.out"
	local rps p99 n
	rps=$(awk '/^Requests\/sec:/ {print $2}' "$work/wrk.out")
	p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); print v} else if (v ~ /ms$/) {sub(/ms/,"",v); print v*1000} else if (v ~ /s$/) {sub(/s/,"",v); print v*1000000}}' "$work/wrk.out")
	n=$(awk '/requests in/ {print $1}' "$work/wrk.out")
	if grep -q 'Non-2xx' "$work/wrk.out"; then grep 'Non-2xx' "$work/wrk.out" >&2; fi
	echo "$rps $p99 $n"
}

served() { # requests the agent counted, and the Go client calls, from /metrics
	curl -fs http://127.0.0.1:18085/metrics >"$work/metrics.$1"
	awk '/^shanhai_bpf_http_server_request_duration_seconds_count/ {s += $2} END {print s+0}' "$work/metrics.$1"
}

if [[ $STATS == on ]]; then
	sysctl -qw kernel.bpf_stats_enabled=1
	progs >"$work/progs0"
	req0=$(served 0)
fi
# Each run appends "round agent copy rps p99_us requests cpu_ticks" to $work/runs.
: >"$work/runs"
for r in $(seq "$ROUNDS"); do
	if ((r % 2)); then order_="probed plain"; else order_="plain probed"; fi
	halves=on
	if [[ $BASELINE == agent-off ]]; then
		if ((r % 2)); then halves="on off"; else halves="off on"; fi
	fi
	for agent in $halves; do
		if [[ $agent == off && -n $agent_pid ]]; then stop_agent; elif [[ $agent == on && -z $agent_pid ]]; then start_agent; fi
		for which in $order_; do
			if [[ $which == probed ]]; then addr=$probed pid=$probed_pid; else addr=$plain pid=$plain_pid; fi
			c0=$(cpu_ticks "$pid")
			read -r rps p99 n < <(run "$addr")
			c1=$(cpu_ticks "$pid")
			printf 'round %d %-6s agent %-3s %10.0f req/s  p99 %8.0f us  CPU %5.1f us/request\n' "$r" "$which" "$agent" "$rps" "$p99" \
				"$(echo "($c1 - $c0) * 1000000 / $(getconf CLK_TCK) / $n" | bc -l)"
			echo "$r $agent $which $rps $p99 $n $((c1 - c0))" >>"$work/runs"
		done
	done
done
[[ -n $agent_pid ]] || start_agent
load=$(uptime | sed 's/.*load/load/')
if [[ $STATS == apart ]]; then
	sysctl -qw kernel.bpf_stats_enabled=1
	progs >"$work/progs0"
	req0=$(served 0)
	read -r rps p99 n < <(run "$probed")
	printf 'stats  probed %10.0f req/s  p99 %8.0f us  %d requests (BPF statistics on, for the per-program figures below)\n' "$rps" "$p99" "$n"
fi
progs >"$work/progs1"
req1=$(served 1)
if [[ $PROBE == socket ]]; then # the unprobed copy alone: the socket programs only filter there
	progs >"$work/progs2"
	read -r rps p99 n_plain < <(run "$plain")
	printf 'stats  plain  %10.0f req/s  p99 %8.0f us  (BPF statistics on: the socket programs filtering others out)\n' "$rps" "$p99"
	progs >"$work/progs3"
fi
sysctl -qw kernel.bpf_stats_enabled=0
reqs=$(echo "$req1 - $req0" | bc)

echo "---- TARGET=$TARGET, PROBE=$PROBE, BASELINE=$BASELINE, GET $PATH_Q, $ROUNDS x $DURATION, $CONNS connections, BPF statistics $STATS; $load"
# Ratios of sums over the rounds (each copy ran the same DURATION per round), and the median of the per-round ratios.
awk -v clk="$(getconf CLK_TCK)" -v baseline="$BASELINE" '
	{ k = $3 " " $2; rps[k] += $4; p99[k] += $5; n[k] += $6; cpu[k] += $7; r_rps[$1, k] = $4 }
	function med(a, m,   i, j, t) { for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2 }
	function ratio(what, a, b,   i, m, x) { m = 0; for (i = 1; (i, a) in r_rps; i++) x[++m] = r_rps[i, a] / r_rps[i, b]
		printf "%-62s %.3f (median of rounds %.3f)\n", what, rps[a] / rps[b], med(x, m) }
	function us(k) { return cpu[k] * 1000000 / clk / n[k] }
	END {
		base = baseline == "agent-off" ? "plain off" : "plain on"
		ratio("requests/s ratio (probed, agent on / " (baseline == "agent-off" ? "unprobed, agent off):" : "unprobed, agent on):"), "probed on", base)
		printf "%-62s %.3f\n", "p99 ratio (same):", p99["probed on"] / p99[base]
		printf "CPU per request: probed %.1f us, unprobed %.1f us (ratio %.3f)\n", us("probed on"), us(base), us("probed on") / us(base)
		if (baseline == "agent-off") {
			ratio("  unprobed copy, agent on / agent off (what its filter costs):", "plain on", "plain off")
			ratio("  probed copy / unprobed copy, agent on (the plain baseline):", "probed on", "plain on")
			ratio("  probed copy / unprobed copy, agent off (copies alike):", "probed off", "plain off")
			ratio("  probed copy, agent on / agent off (one process, on and off):", "probed on", "probed off")
			printf "  CPU per request, us: probed on %.1f, unprobed on %.1f, probed off %.1f, unprobed off %.1f\n",
				us("probed on"), us("plain on"), us("probed off"), us("plain off")
		}
	}' "$work/runs"
# Per program: the delta of each program id between the two snapshots ("id name ns hits" joined on the id, which is
# stable while the agent runs). The tracepoints fire for every process on the machine, so their hits include others' TCP.
join "$work/progs0" "$work/progs1" | awk -v reqs="$reqs" '
	{ hits = $7 - $4; ns = $6 - $3; if (hits == 0) next
	  name[$2] = 1; h[$2] += hits; t[$2] += ns
	  if ($2 ~ /^(serve_http|served|recv_length|send_length)/) { sh += hits; st += ns }
	  th += hits; tt += ns }
	END {
	  printf "HTTP server probe: %d hits, in-kernel ns per hit: %.0f, per request: %.0f (requests counted by the agent: %d)\n", sh, st / (sh + (sh == 0)), st / (reqs + (reqs == 0)), reqs
	  printf "every program of the agent: %.2f hits and %.0f ns per request, %.0f ns per hit\n", th / (reqs + (reqs == 0)), tt / (reqs + (reqs == 0)), tt / (th + (th == 0))
	  for (n in name) printf "  %-16s %9d hits  %5.2f per request  %4.0f ns per hit\n", n, h[n], h[n] / (reqs + (reqs == 0)), t[n] / h[n]
	}'
if [[ $PROBE == socket ]]; then
	join "$work/progs2" "$work/progs3" | awk -v reqs="$n_plain" '
		$2 ~ /^(recv_length|send_length)/ { hits = $7 - $4; ns = $6 - $3; if (hits == 0) next
		  printf "  unprobed copy alone, %-12s %9d hits  %5.2f per request  %4.0f ns per hit (filtered out)\n", $2, hits, hits / reqs, ns / hits }'
fi
# Which Go calls fired per request (a call is one call_enter and one call_ret hit).
awk -v reqs="$reqs" '
	/^shanhai_bpf_client_call_duration_seconds_count/ {
		k = $1; sub(/.*\{/, "", k); sub(/\}.*/, "", k); gsub(/(pid|exe)="[^"]*",?/, "", k)
		if (FILENAME ~ /metrics\.0$/) c0[k] += $2; else c1[k] += $2
	}
	END { for (k in c1) if (c1[k] > c0[k]) printf "  calls {%s}: %.2f per request\n", k, (c1[k] - c0[k]) / (reqs + (reqs == 0)) }' \
	"$work/metrics.0" "$work/metrics.1"
