#!/usr/bin/env bash
# fuzz-gateway.sh runs every gateway fuzz target for FUZZTIME each (default 10m), one after another, and prints one line
# per target. The seed corpora (f.Add seeds and testdata/fuzz) already run as plain tests in `make test`; this is the long
# run. A crasher is written by go test to the package's testdata/fuzz/<Target>/ directory: commit it as a regression seed.
#
#   scripts/fuzz-gateway.sh                    all targets, 10 minutes each
#   FUZZTIME=30s PARALLEL=2 scripts/fuzz-gateway.sh
#   scripts/fuzz-gateway.sh FuzzSanitize FuzzToken   only the targets named (a name that is none: exit status 2)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FUZZTIME=${FUZZTIME:-10m}
PARALLEL=${PARALLEL:-1}
LOG=${LOG:-$ROOT/var/fuzz-gateway}
mkdir -p "$LOG"
TARGETS=(
	"./internal/route FuzzClean"     # routing / path normalisation
	"./internal/proxy FuzzSanitize"  # header hygiene: hop-by-hop, X-User-ID lookalikes
	"./internal/proxy FuzzSanitizeSameAsReference" # the one-pass hygiene against the plain reference version
	"./internal/proxy FuzzClientIP"  # X-Forwarded-For from trusted proxies only
	"./internal/proxy FuzzProblem"   # problem+json stays JSON for any request target
	"./internal/proxy FuzzAbsoluteForm" # absolute-form targets: only a clean authority becomes the upstream Host
	"./internal/proxy FuzzValidHost" # Host values: the chain is never looser than fasthttp's URI parser
	"./internal/upstream FuzzCheckHead" # upstream answer heads: conflicting lengths, bare LF, spaced names are refused
	"./internal/authn FuzzToken"     # bearer extraction + JWT verification + cache
)
# A name that is no target (a typo, a target since renamed) is refused before anything runs: skipped, it ran nothing
# and the script exited 0, a clean fuzz run of nothing.
known=()
for t in "${TARGETS[@]}"; do known+=("${t##* }"); done
for name in "$@"; do
	[[ " ${known[*]} " == *" $name "* ]] || { echo "fuzz-gateway: no target $name (targets: ${known[*]})" >&2; exit 2; }
done
cd "$ROOT/gateway"
status=0
for t in "${TARGETS[@]}"; do
	read -r pkg name <<<"$t"
	[[ $# -eq 0 || " $* " == *" $name "* ]] || continue
	start=$SECONDS
	if go test "$pkg" -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -parallel "$PARALLEL" >"$LOG/$name.log" 2>&1; then
		result=ok
	else
		result=FAIL
		status=1
	fi
	execs=$(grep -o 'execs: [0-9]*' "$LOG/$name.log" | tail -1 | cut -d' ' -f2)
	printf '%-14s %-4s %6ss  %12s execs  (log: %s)\n' "$name" "$result" "$((SECONDS - start))" "${execs:-?}" "$LOG/$name.log"
done
exit $status
