#!/usr/bin/env bash
# test.sh is `make test`: it starts the real servers (scripts/deps.sh up), then for every module in go.work runs gofmt,
# go vet, go mod tidy -diff, staticcheck and `go test -race`, then govulncheck once over all of them
# (scripts/vulncheck), and prints one summary line per module with timings. Any failure makes the exit status non-zero, but every module still runs so one
# report shows everything that is broken.
#
#   scripts/test.sh [test]  the above (make test)
#   scripts/test.sh lint    gofmt, vet, go mod tidy -diff and staticcheck only; no servers (make lint)
#   scripts/test.sh bench   the servers, then every module's benchmarks, without -race (make bench);
#                           BENCH=regexp and BENCHTIME=2s narrow or lengthen them
#
#   KEEP_DEPS=1             leave the servers this run started running afterwards (by default it stops them; servers
#                           that were already up when it began are always left alone)
#   TEST_FLAGS="-run X"     extra flags for every `go test`
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CACHE=${SHANHAI_CACHE:-$HOME/.cache/shanhai}
STATICCHECK_VERSION=v0.8.2 # staticcheck 2026.2.2, which understands Go 1.26
# The toolchain go.work names (its security fixes are what govulncheck checks the standard library against) is
# fetched from the Go module proxy when the installed go is older; GOTOOLCHAIN=local in the environment opts out.
export GOTOOLCHAIN=${GOTOOLCHAIN:-auto}
# A -race binary sleeps a second at exit by default (atexit_sleep_ms=1000) so late race reports can still print: a
# second per test binary (about 95 of them, and the children some tests start) that a race found while the tests ran
# does not need, since the report is written when the race happens.
export GORACE=${GORACE:-atexit_sleep_ms=0}
SERVERS=(pg redis etcd nats kafka pulsar)
MODE=${1:-test}
case $MODE in
test | lint | bench) ;;
*)
	echo "usage: scripts/test.sh [test|lint|bench]" >&2
	exit 2
	;;
esac

section() { printf '\n==== %s\n' "$*"; }

# ---- servers ----

already=()
deps_time=
start_servers() {
	local s t0=$SECONDS
	section "servers (scripts/deps.sh up)"
	for s in "${SERVERS[@]}"; do
		if scripts/deps.sh status "$s" >/dev/null 2>&1; then already+=("$s"); fi
	done
	trap stop_started EXIT
	scripts/deps.sh up "${SERVERS[@]}"
	scripts/deps.sh tools
	deps_time=$((SECONDS - t0))
	eval "$(scripts/deps.sh env)"
}

stop_started() {
	local s started=()
	for s in "${SERVERS[@]}"; do
		[[ " ${already[*]} " == *" $s "* ]] || started+=("$s")
	done
	if ((${#started[@]})) && [[ -z ${KEEP_DEPS:-} ]]; then
		section "stopping the servers this run started: ${started[*]} (KEEP_DEPS=1 keeps them)"
		scripts/deps.sh down "${started[@]}" || true
	fi
}

# ---- tools ----

STATICCHECK=$CACHE/bin/staticcheck-$STATICCHECK_VERSION
install_staticcheck() {
	[[ -x $STATICCHECK ]] && return 0
	section "installing staticcheck $STATICCHECK_VERSION from the Go module proxy (once; cached in $CACHE/bin)"
	local tmp
	mkdir -p "$CACHE/bin"
	tmp=$(mktemp -d "$CACHE/staticcheck.XXXXXX")
	GOBIN=$tmp GOWORK=off go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
	mv "$tmp/staticcheck" "$STATICCHECK"
	rmdir "$tmp"
}

# ---- per-module steps ----

declare -A result
failed=()
step() { # module, name, command...
	local m=$1 name=$2 t0=$SECONDS rc=0
	shift 2
	"$@" || rc=$?
	local state=ok
	if ((rc != 0)); then
		state=FAIL
		[[ " ${failed[*]} " == *" $m "* ]] || failed+=("$m")
	fi
	result[$m]+="$name $state $((SECONDS - t0))s  "
}

gofmt_clean() {
	local out
	out=$(gofmt -l .)
	[[ -z $out ]] && return 0
	echo "gofmt: these files need formatting (gofmt -w):" >&2
	echo "$out" >&2
	return 1
}

# packages lists the module's packages, leaving out pkg/testenv, which test mode runs first on its own.
packages() {
	local list
	list=$(go list ./...) || return 1
	grep -v '/pkg/testenv$' <<<"$list" || true
}

run_module() { # module
	local m=$1 pkgs
	case $MODE in
	test | lint)
		step "$m" gofmt gofmt_clean
		step "$m" vet go vet ./...
		# Each module stays buildable on its own (a fork that takes one service, `GOWORK=off`): its go.mod and
		# go.sum say exactly what it needs, which the workspace build alone never checks.
		step "$m" tidy env GOWORK=off go mod tidy -diff
		step "$m" staticcheck "$STATICCHECK" ./...
		# The eBPF agent ships for arm64 too (kind on Apple silicon), with committed arm64 objects that nothing
		# here can load: building and vetting it for arm64 is the check that keeps it compiling.
		[[ $m != bpf ]] || step "$m" vet-arm64 env GOARCH=arm64 go vet ./...
		;;
	esac
	case $MODE in
	test)
		if pkgs=$(packages); then
			# shellcheck disable=SC2086 # TEST_FLAGS is a list of flags
			[[ -z $pkgs ]] || step "$m" test go test -race -count=1 -timeout 15m ${TEST_FLAGS:-} $pkgs
		else
			step "$m" go-list false
		fi
		;;
	bench)
		# shellcheck disable=SC2086
		step "$m" bench go test -run '^$' -bench "${BENCH:-.}" -benchtime "${BENCHTIME:-1s}" -benchmem ${TEST_FLAGS:-} ./...
		;;
	esac
}

# ---- main ----

t_all=$SECONDS
echo "$(go version) (GOTOOLCHAIN=$GOTOOLCHAIN)"
[[ $MODE == lint ]] || start_servers
[[ $MODE == bench ]] || install_staticcheck

mapfile -t modules < <(go list -m -f '{{.Dir}}' | sed "s|^$ROOT/||")
if ((${#modules[@]} == 0)); then
	echo "no modules found in go.work" >&2
	exit 1
fi

testenv_line=
if [[ $MODE == test ]]; then
	# The real-server round trips run first and verbosely, so the log shows each server answering.
	section "real servers: pkg/testenv round trips"
	t0=$SECONDS
	# shellcheck disable=SC2086
	if (cd pkg && go test -race -count=1 -v ${TEST_FLAGS:-} ./testenv); then
		testenv_line="ok $((SECONDS - t0))s (round trips to PostgreSQL, Redis, etcd, NATS, Kafka, Pulsar)"
	else
		testenv_line="FAIL $((SECONDS - t0))s"
		failed+=(pkg/testenv)
	fi
fi

for m in "${modules[@]}"; do
	section "$m ($MODE)"
	t_mod=$SECONDS
	(cd "$m" && true) || {
		result[$m]="missing directory"
		failed+=("$m")
		continue
	}
	pushd "$m" >/dev/null
	run_module "$m"
	popd >/dev/null
	result[$m]+="($((SECONDS - t_mod))s)"
done

vulncheck_line=
if [[ $MODE == test ]]; then
	# One govulncheck pass over every module (scripts/vulncheck: the database, and the reviewed findings in its allow.txt).
	section "govulncheck (scripts/vulncheck)"
	t0=$SECONDS
	if go run ./scripts/vulncheck; then
		vulncheck_line="ok $((SECONDS - t0))s"
	else
		vulncheck_line="FAIL $((SECONDS - t0))s"
		failed+=(govulncheck)
	fi
fi

section "summary ($MODE)"
[[ -z $deps_time ]] || printf '%-18s %s\n' servers "up in ${deps_time}s (already running before: ${already[*]:-none})"
[[ -z $testenv_line ]] || printf '%-18s %s\n' pkg/testenv "$testenv_line"
for m in "${modules[@]}"; do
	printf '%-18s %s\n' "$m" "${result[$m]}"
done
[[ -z $vulncheck_line ]] || printf '%-18s %s\n' govulncheck "$vulncheck_line"
echo "total $((SECONDS - t_all))s"
if ((${#failed[@]})); then
	echo "FAILED: ${failed[*]}"
	exit 1
fi
echo "all modules passed"
