#!/usr/bin/env bash
# Gateway benchmark: wrk against, in interleaved rounds on this one machine,
#   direct   the upstream itself (nginx `return 200`, the same upstream for all)
#   nginx    nginx proxy_pass with upstream keep-alive
#   stdlib   httputil.ReverseProxy with a tuned keep-alive transport
#   full     the gateway, full chain: JWT verification, per-IP and per-user limits
#            (Redis, set high), breaker, adaptive limit, retry budget, tracing at
#            10% sampling exported over OTLP to a sink, metrics
#   routing  the gateway with routing only (GATEWAY_MODE=routing); full and routing use
#            GATEWAY_TRANSPORT=fasthttp (a goroutine per connection)
#   full1    (optional, add to TARGETS) the full chain with GOMAXPROCS=1
#   loop     (optional, add to TARGETS) loopproxy: a bare event-loop proxy (gnet, fasthttp parser),
#            the lower bound of an event-loop transport for the gateway
#   fullloop, routingloop  (optional, add to TARGETS) full and routing on the event-loop transport
#            (GATEWAY_TRANSPORT=loop)
#   full0, routing0  with BASE=<git revision>: the same two variants built from that
#            revision (added to TARGETS), for a before/after measured in one run
#   fullloop0, routingloop0  (optional, add to TARGETS, need BASE) fullloop and routingloop
#            built from BASE (which must have the loop transport, 0512301 or later)
#   fullloopns (optional) fullloop with the trace sampling ratio at 0: prices the sampled 10 %
#   fullloopopt (optional) fullloop built with -tags poll_opt: gnet's other poller (non-blocking
#            epoll_wait without the runtime's syscall bookkeeping, connections found from the event's
#            data instead of a map)
#   fullloop1, routingloop1  (optional) fullloop and routingloop on one CPU (taskset -c 0, so
#            one event loop): with fullloop/routingloop, prices the two loops' contention
#   fullloopl1 (optional) fullloop with GATEWAY_EVENT_LOOPS=1: one loop, not pinned (the runtime's
#            other threads, GC and the span exporter, may still use the other core)
#   nginx1   (optional) nginx with worker_processes 1, to set beside fullloopl1: both tuned alike
# then a second pass at about half of the full chain's saturation (wrk's delay()
# throttles each connection) to compare added latency.
#
# Usage: gateway/bench/run.sh            (ROUNDS=3 DURATION=10s CONNS=64 THREADS=2 PIN=0)
# Needs Redis: scripts/deps.sh up redis (REDIS_URL from scripts/deps.sh env).
# wrk and nginx come from Debian (installed here when missing).
# PIN=1 puts the proxy under test on CPU 0 and wrk + upstream on CPU 1.
# The last column is the CPU time the serving process(es) spent per request (for direct: the upstream itself),
# which a busy neighbour disturbs far less than req/s.
# PROFILE=1 also saves CPU and allocation profiles of the full chain's first run in $WORK
# (full, and fullloop / routingloop when in TARGETS: $WORK/<target>.cpu.pprof).
# SYSCALLS=1 counts each target's system calls per request in an extra saturation round kept out
# of the medians (perf stat on the syscall tracepoints of the serving processes; needs perf).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
PIN=${PIN:-0}
BASE=${BASE:-}
TARGETS=${TARGETS:-"direct nginx stdlib full routing${BASE:+ full0 routing0}"}
WORK=${WORK:-$(mktemp -d /tmp/gwbench.XXXXXX)}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:16379/0}
PATHQ=/api/v1/orders

need() { command -v "$1" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }; }
need wrk wrk
need nginx nginx-light
need redis-cli redis-tools
[[ ${SYSCALLS:-0} == 1 ]] && need perf linux-perf
rhost=${REDIS_URL#redis://}; rhost=${rhost%%/*}
[[ $(redis-cli -h "${rhost%:*}" -p "${rhost#*:}" ping 2>/dev/null) == PONG ]] ||
	{ echo "bench: Redis at $REDIS_URL does not answer; run scripts/deps.sh up redis" >&2; exit 1; }

PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	[[ -f $WORK/up.pid ]] && kill "$(cat "$WORK/up.pid")" 2>/dev/null || true
	[[ -f $WORK/px.pid ]] && kill "$(cat "$WORK/px.pid")" 2>/dev/null || true
	[[ -f $WORK/px1.pid ]] && kill "$(cat "$WORK/px1.pid")" 2>/dev/null || true
}
trap cleanup EXIT

if [[ $PIN == 1 ]]; then PX="taskset -c 0"; LOAD="taskset -c 1"; else PX=""; LOAD=""; fi

echo "bench: building into $WORK" >&2
(cd "$ROOT/gateway" && go build -o "$WORK/gateway" ./cmd/gateway && go build -o "$WORK/benchaux" ./bench/benchaux &&
	go build -o "$WORK/stdproxy" ./bench/stdproxy && go build -o "$WORK/loopproxy" ./bench/loopproxy)
if [[ " $TARGETS " == *" fullloopopt "* ]]; then
	(cd "$ROOT/gateway" && go build -tags poll_opt -o "$WORK/gateway.opt" ./cmd/gateway)
fi
if [[ -n $BASE ]]; then
	# The whole tree at BASE (the gateway builds against the workspace's pkg).
	mkdir -p "$WORK/base"
	git -C "$ROOT" archive "$BASE" | tar -x -C "$WORK/base"
	(cd "$WORK/base/gateway" && go build -o "$WORK/gateway.base" ./cmd/gateway)
fi

mkdir -p "$WORK/up" "$WORK/px"
cat >"$WORK/up.conf" <<NGX
worker_processes 1; daemon on; pid $WORK/up.pid; error_log $WORK/up/error.log warn;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $WORK/up; proxy_temp_path $WORK/up; fastcgi_temp_path $WORK/up;
  uwsgi_temp_path $WORK/up; scgi_temp_path $WORK/up; keepalive_requests 1000000;
  server { listen 127.0.0.1:18090 reuseport; location / { default_type application/json; return 200 '{"ok":true}'; } } }
NGX
cat >"$WORK/px.conf" <<NGX
worker_processes auto; daemon on; pid $WORK/px.pid; error_log $WORK/px/error.log warn;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $WORK/px; proxy_temp_path $WORK/px; fastcgi_temp_path $WORK/px;
  uwsgi_temp_path $WORK/px; scgi_temp_path $WORK/px; keepalive_requests 1000000;
  upstream up { server 127.0.0.1:18090; keepalive 128; keepalive_requests 1000000; }
  server { listen 127.0.0.1:18091 reuseport;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
NGX
$LOAD nginx -c "$WORK/up.conf"
$PX nginx -c "$WORK/px.conf"
if [[ " $TARGETS " == *" nginx1 "* ]]; then
	mkdir -p "$WORK/px1"
	sed -e 's/worker_processes auto/worker_processes 1/' -e "s|$WORK/px|$WORK/px1|g" -e 's/18091/18107/' "$WORK/px.conf" >"$WORK/px1.conf"
	$PX nginx -c "$WORK/px1.conf"
fi

$LOAD "$WORK/benchaux" -addr 127.0.0.1:18099 -token "$WORK/token" >"$WORK/aux.log" 2>&1 & PIDS+=($!)
$PX "$WORK/stdproxy" -addr 127.0.0.1:18092 -upstream http://127.0.0.1:18090 >"$WORK/std.log" 2>&1 & PIDS+=($!)
declare -A PROC=([stdlib]=$!)
if [[ " $TARGETS " == *" loop "* ]]; then
	$PX "$WORK/loopproxy" -addr 127.0.0.1:18098 -upstream 127.0.0.1:18090 >"$WORK/loop.log" 2>&1 & PIDS+=($!)
	PROC[loop]=$!
fi
common=(ETCD_ENDPOINTS= DISCOVERY_STATIC=order=127.0.0.1:18090 REDIS_URL="$REDIS_URL" LOG_LEVEL=warn)
fullenv=(GATEWAY_MODE=full JWKS_URL=http://127.0.0.1:18099/.well-known/jwks.json
	GATEWAY_IP_LIMIT=10000000/1s GATEWAY_USER_LIMIT=10000000/1s
	OTEL_SERVICE_NAME=gateway OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:18099 OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf
	OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.1)
gw() { # target binary port admin-addr env... : start one gateway variant
	local t=$1 bin=$2 port=$3 admin=$4
	shift 4
	env "${common[@]}" HTTP_ADDR=127.0.0.1:$port ADMIN_ADDR="$admin" "$@" $PX "$bin" >"$WORK/$t.log" 2>&1 &
	PIDS+=($!)
	PROC[$t]=$!
}
# full, full1 and routing keep the goroutine-per-connection transport; the
# event loop (the default since the fourth pass) is fullloop and routingloop.
gw full "$WORK/gateway" 18093 127.0.0.1:29093 "${fullenv[@]}" GATEWAY_TRANSPORT=fasthttp
gw full1 "$WORK/gateway" 18095 "" "${fullenv[@]}" GOMAXPROCS=1 GATEWAY_LIMIT_NAMESPACE=bench1 GATEWAY_TRANSPORT=fasthttp
gw routing "$WORK/gateway" 18094 127.0.0.1:29094 GATEWAY_MODE=routing GATEWAY_TRANSPORT=fasthttp
for v in full routing; do
	[[ " $TARGETS " == *" ${v}loop "* ]] || continue
	if [[ $v == full ]]; then
		gw fullloop "$WORK/gateway" 18100 127.0.0.1:29100 "${fullenv[@]}" GATEWAY_TRANSPORT=loop GATEWAY_LIMIT_NAMESPACE=benchloop
	else
		gw routingloop "$WORK/gateway" 18101 127.0.0.1:29101 GATEWAY_MODE=routing GATEWAY_TRANSPORT=loop
	fi
done
if [[ " $TARGETS " == *" fullloopopt "* ]]; then
	gw fullloopopt "$WORK/gateway.opt" 18109 "" "${fullenv[@]}" GATEWAY_TRANSPORT=loop GATEWAY_LIMIT_NAMESPACE=benchloopopt
fi
if [[ " $TARGETS " == *" fullloopns "* ]]; then
	gw fullloopns "$WORK/gateway" 18104 "" "${fullenv[@]}" OTEL_TRACES_SAMPLER_ARG=0 GATEWAY_TRANSPORT=loop GATEWAY_LIMIT_NAMESPACE=benchloopns
fi
# One CPU: Go's NumCPU follows the affinity mask, so gnet starts one loop.
if [[ " $TARGETS " == *" fullloop1 "* ]]; then
	PX="taskset -c 0" gw fullloop1 "$WORK/gateway" 18105 "" "${fullenv[@]}" GATEWAY_TRANSPORT=loop GATEWAY_LIMIT_NAMESPACE=benchloop1
fi
if [[ " $TARGETS " == *" fullloopl1 "* ]]; then
	gw fullloopl1 "$WORK/gateway" 18108 "" "${fullenv[@]}" GATEWAY_TRANSPORT=loop GATEWAY_EVENT_LOOPS=1 GATEWAY_LIMIT_NAMESPACE=benchloopl1
fi
if [[ " $TARGETS " == *" routingloop1 "* ]]; then
	PX="taskset -c 0" gw routingloop1 "$WORK/gateway" 18106 "" GATEWAY_MODE=routing GATEWAY_TRANSPORT=loop
fi
if [[ -n $BASE ]]; then
	gw full0 "$WORK/gateway.base" 18096 "" "${fullenv[@]}" GATEWAY_LIMIT_NAMESPACE=bench0 GATEWAY_TRANSPORT=fasthttp
	gw routing0 "$WORK/gateway.base" 18097 "" GATEWAY_MODE=routing GATEWAY_TRANSPORT=fasthttp
	if [[ " $TARGETS " == *" fullloop0 "* ]]; then
		gw fullloop0 "$WORK/gateway.base" 18102 "" "${fullenv[@]}" GATEWAY_TRANSPORT=loop GATEWAY_LIMIT_NAMESPACE=benchloop0
	fi
	if [[ " $TARGETS " == *" routingloop0 "* ]]; then
		gw routingloop0 "$WORK/gateway.base" 18103 "" GATEWAY_MODE=routing GATEWAY_TRANSPORT=loop
	fi
fi

for _ in $(seq 50); do [[ -s $WORK/token ]] && curl -fs -o /dev/null 127.0.0.1:18093/healthz &&
	curl -fs -o /dev/null 127.0.0.1:18094/healthz && break; sleep 0.2; done
TOKEN=$(cat "$WORK/token")
# The profile comes from the full chain's ADMIN_ADDR; if another process held
# that port, the gateway could not bind it and the profile would be someone
# else's (an idle one, silently).
if [[ ${PROFILE:-0} == 1 ]] && ! curl -fs http://127.0.0.1:29093/debug/pprof/cmdline | grep -q "$WORK/gateway"; then
	echo "bench: 127.0.0.1:29093 is not this run's gateway (port taken?); PROFILE=1 would profile the wrong process" >&2
	exit 1
fi
declare -A PORT=([direct]=18090 [nginx]=18091 [stdlib]=18092 [full]=18093 [routing]=18094 [full1]=18095 [full0]=18096 [routing0]=18097 [loop]=18098
	[fullloop]=18100 [routingloop]=18101 [fullloop0]=18102 [routingloop0]=18103 [fullloopns]=18104 [fullloop1]=18105 [routingloop1]=18106
	[nginx1]=18107 [fullloopl1]=18108 [fullloopopt]=18109)
for t in fullloop routingloop fullloop0 routingloop0 fullloopns fullloop1 routingloop1 fullloopl1 fullloopopt; do
	[[ " $TARGETS " == *" $t "* ]] || continue
	for _ in $(seq 50); do curl -fs -o /dev/null "127.0.0.1:${PORT[$t]}/healthz" && break; sleep 0.2; done
done
# Every target gets the same request, Authorization included.
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:18093$PATHQ")
[[ $code == 200 ]] || { echo "bench: full chain answers $code, see $WORK/full.log" >&2; cat "$WORK/full.log" >&2; exit 1; }
for t in fullloop fullloop0 fullloopns fullloop1 fullloopl1 fullloopopt; do
	[[ " $TARGETS " == *" $t "* ]] || continue
	code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:${PORT[$t]}$PATHQ")
	[[ $code == 200 ]] || { echo "bench: $t answers $code, see $WORK/$t.log" >&2; cat "$WORK/$t.log" >&2; exit 1; }
done

# CPU time (user+system, clock ticks) of the process(es) serving a target: for
# nginx the master and its workers. This is the load-independent number: on a
# shared machine req/s moves with the neighbours, CPU per request barely does.
pids_of() {
	case $1 in
	direct) echo "$(cat "$WORK/up.pid") $(pgrep -P "$(cat "$WORK/up.pid")" | tr '\n' ' ')" ;;
	nginx) echo "$(cat "$WORK/px.pid") $(pgrep -P "$(cat "$WORK/px.pid")" | tr '\n' ' ')" ;;
	nginx1) echo "$(cat "$WORK/px1.pid") $(pgrep -P "$(cat "$WORK/px1.pid")" | tr '\n' ' ')" ;;
	*) echo "${PROC[$1]}" ;;
	esac
}
ticks() { local t=0 p; for p in $(pids_of "$1"); do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo $t; }
HZ=$(getconf CLK_TCK)

# ms converts wrk's latency strings (us, ms, s) to milliseconds.
ms() { awk -v v="$1" 'BEGIN{ if (v ~ /us$/) {sub(/us/,"",v); print v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v); print v+0} else {sub(/s/,"",v); print v*1000} }'; }
# System calls counted with SYSCALLS=1 (the rest of raw_syscalls:sys_enter is "other").
SCALLS="read write readv writev recvfrom sendto epoll_wait epoll_pwait epoll_ctl futex nanosleep getsockopt"
EVENTS=raw_syscalls:sys_enter,context-switches
for s in $SCALLS; do EVENTS+=",syscalls:sys_enter_$s"; done
run() { # target conns script [count syscalls] -> "rps p50 p99 cpu_us_per_req"
	local out t0 t1 n pre=()
	[[ -n ${4:-} ]] && pre=(perf stat -x, -e "$EVENTS" -p "$(pids_of "$1" | xargs | tr ' ' ',')" -o "$WORK/perf.$1" --)
	t0=$(ticks "$1")
	out=$("${pre[@]}" $LOAD wrk -t"$THREADS" -c"$2" -d"$DURATION" --latency ${3:+-s "$3"} -H "Authorization: Bearer $TOKEN" \
		"http://127.0.0.1:${PORT[$1]}$PATHQ" 2>&1)
	echo "$out" >>"$WORK/wrk.log"
	t1=$(ticks "$1")
	grep -q "Non-2xx" <<<"$out" && { echo "bench: $1 answered non-2xx:" >&2; echo "$out" >&2; exit 1; }
	n=$(awk '/requests in/{print $1}' <<<"$out")
	[[ -n ${4:-} ]] && awk -F, -v n="$n" '$1 ~ /^[0-9]+$/ {v[$3]=$1/n} END{printf "%.2f %.2f", v["raw_syscalls:sys_enter"], v["context-switches"];
		split("'"$SCALLS"'", s, " "); for (i in s) o+=v["syscalls:sys_enter_" s[i]]; for (i=1; i in s; i++) printf " %.2f", v["syscalls:sys_enter_" s[i]];
		printf " %.2f\n", v["raw_syscalls:sys_enter"]-o}' "$WORK/perf.$1" >"$WORK/sc.$1"
	echo "$(awk '/Requests\/sec/{print $2}' <<<"$out") $(ms "$(awk '$1=="50%"{print $2}' <<<"$out")") $(ms "$(awk '$1=="99%"{print $2}' <<<"$out")") $(awk -v d=$((t1 - t0)) -v n="$n" -v hz="$HZ" 'BEGIN{printf "%.1f", d/hz*1e6/n}')"
}
median() { sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

echo "bench: $ROUNDS interleaved rounds of $DURATION, $CONNS connections, $THREADS wrk threads, PIN=$PIN, $(nproc) CPUs" >&2
declare -A R
if [[ ${SYSCALLS:-0} == 1 ]]; then
	# A round of its own: counting slows the traced processes a little, so it
	# stays out of the medians.
	for t in $TARGETS; do echo "syscalls $t: $(run "$t" "$CONNS" "" 1)" >&2; done
fi
for round in $(seq "$ROUNDS"); do
	for t in $TARGETS; do
		declare -A ADMIN=([full]=29093 [fullloop]=29100 [routingloop]=29101)
		if [[ ${PROFILE:-0} == 1 && -n ${ADMIN[$t]:-} && $round == 1 ]]; then
			secs=$(( ${DURATION%s} - 2 ))
			(sleep 1; curl -s -o "$WORK/$t.cpu.pprof" "http://127.0.0.1:${ADMIN[$t]}/debug/pprof/profile?seconds=$secs";
				curl -s -o "$WORK/$t.allocs.pprof" "http://127.0.0.1:${ADMIN[$t]}/debug/pprof/allocs") &
		fi
		R[$t,$round]=$(run "$t" "$CONNS" "")
		echo "round $round $t: ${R[$t,$round]}" >&2
	done
done
report() { # title, array prefix
	printf '\n%s\n%-12s %12s %9s %9s %9s %12s\n' "$1" target "req/s" "p50 ms" "p99 ms" "x nginx" "CPU us/req"
	local n; n=$(for r in $(seq "$ROUNDS"); do echo "${R[nginx,$r]}" | cut -d' ' -f1; done | median)
	for t in $TARGETS; do
		local rps p50 p99
		rps=$(for r in $(seq "$ROUNDS"); do echo "${R[$t,$r]}" | cut -d' ' -f1; done | median)
		p50=$(for r in $(seq "$ROUNDS"); do echo "${R[$t,$r]}" | cut -d' ' -f2; done | median)
		p99=$(for r in $(seq "$ROUNDS"); do echo "${R[$t,$r]}" | cut -d' ' -f3; done | median)
		cpu=$(for r in $(seq "$ROUNDS"); do echo "${R[$t,$r]}" | cut -d' ' -f4; done | median)
		printf '%-12s %12.0f %9.3f %9.3f %9.2f %12.1f\n' "$t" "$rps" "$p50" "$p99" "$(awk -v a="$rps" -v b="$n" 'BEGIN{print a/b}')" "$cpu"
		echo "$t $rps" >"$WORK/sat.$t"
	done
}
report "Saturation (median of $ROUNDS rounds, $CONNS connections)"
if [[ ${SYSCALLS:-0} == 1 ]]; then
	printf '\nSystem calls per request (extra saturation round under perf stat)\n%-12s %6s %6s' target all cswitch
	for s in $SCALLS other; do s=${s/epoll_/e}; s=${s/nanosleep/nsleep}; s=${s/getsockopt/getopt}; printf ' %6.6s' "$s"; done
	echo
	for t in $TARGETS; do printf '%-12s ' "$t"; awk '{for (i=1; i<=NF; i++) printf " %6s", $i; print ""}' "$WORK/sc.$t"; done
fi

# Half saturation: each connection sends one request, waits DELAY ms, repeats.
full_rps=$(cut -d' ' -f2 "$WORK/sat.full" 2>/dev/null || cut -d' ' -f2 "$WORK/sat.fullloop" 2>/dev/null || echo 20000)
DELAY=2
HCONNS=$(awk -v r="$full_rps" -v d=$DELAY 'BEGIN{c=int(r/2*d/1000+0.5); if(c<1)c=1; print c}')
printf 'function delay() return %d end\n' "$DELAY" >"$WORK/delay.lua"
echo "bench: half saturation: $HCONNS connections x 1 request per ${DELAY}ms" >&2
for round in $(seq "$ROUNDS"); do
	for t in $TARGETS; do
		R[$t,$round]=$(run "$t" "$HCONNS" "$WORK/delay.lua")
		echo "half round $round $t: ${R[$t,$round]}" >&2
	done
done
report "About half of the full chain's saturation ($HCONNS connections, ${DELAY}ms think time)"
[[ " $TARGETS " == *" direct "* ]] || exit 0
d50=$(for r in $(seq "$ROUNDS"); do echo "${R[direct,$r]}" | cut -d' ' -f2; done | median)
for t in $TARGETS; do
	[[ $t == direct ]] && continue
	p=$(for r in $(seq "$ROUNDS"); do echo "${R[$t,$r]}" | cut -d' ' -f2; done | median)
	printf 'added p50 %-12s %.3f ms\n' "$t" "$(awk -v a="$p" -v b="$d50" 'BEGIN{print a-b}')"
done
echo "bench: raw wrk output in $WORK/wrk.log" >&2
