#!/usr/bin/env bash
# fork.sh makes your own copy of Shanhai under a new Go module path:
#
#   scripts/fork.sh github.com/you/shop ../shop [source]
#
# It clones the repository (source, default: this checkout; committed work only) into the destination, rewrites
# github.com/shanhai-dev/shanhai to the new path in every tracked text file: go.mod and go.work of every module, imports,
# Dockerfiles, manifests and docs, and commits the rewrite in the copy, so the copy can itself be forked (a fork clones
# committed work only). Go files whose import order changed are re-sorted with gofmt. With CHECK=1 it then runs
# `go build ./... && go vet ./...` in every module of the copy's go.work.
set -euo pipefail

OLD=github.com/shanhai-dev/shanhai
usage() { echo "usage: $0 <new module path> <destination> [source repo]" >&2; exit 2; }
(($# >= 2 && $# <= 3)) || usage
NEW=$1 DEST=$2 SRC=${3:-$(cd "$(dirname "$0")/.." && pwd)}

# A module path is host/path made of letters, digits and . _ ~ - /; refusing anything else also keeps sed safe.
[[ $NEW =~ ^[A-Za-z0-9][A-Za-z0-9._~-]*(/[A-Za-z0-9._~-]+)+$ ]] || { echo "fork: '$NEW' is not a module path like github.com/you/shop" >&2; exit 2; }
[[ $NEW != "$OLD" ]] || { echo "fork: the new path equals the old one" >&2; exit 2; }
[[ ! -e $DEST ]] || { echo "fork: $DEST already exists" >&2; exit 2; }

git clone -q "$SRC" "$DEST"
cd "$DEST"
# The copy starts its own history: the origin remote would point back at this checkout.
git remote remove origin

mapfile -d '' files < <(git ls-files -z | xargs -0 grep -lIZ -F "$OLD" -- || true)
if ((${#files[@]} == 0)); then
	echo "fork: no file mentions $OLD: is $SRC a Shanhai checkout?" >&2
	exit 1
fi
# Module paths in the tree always start with the old path followed by / or a word boundary, so a plain replacement is
# exact; OLD has no regex specials except '.', escaped here.
sed -i "s#${OLD//./\\.}#${NEW}#g" "${files[@]}"
gofiles=()
for f in "${files[@]}"; do [[ $f == *.go ]] && gofiles+=("$f"); done
((${#gofiles[@]} == 0)) || gofmt -w "${gofiles[@]}"
# Every module must now be under NEW: a go.mod left on another path means the source was not what this script expects
# (a fork whose fork.sh still names a path its modules no longer use, say), and the copy would build against the old one.
mapfile -t stale < <(git ls-files -z -- go.mod '*/go.mod' |
	xargs -0 awk -v new="$NEW" '$1 == "module" { if ($2 != new && index($2, new "/") != 1) print FILENAME ": " $2; nextfile }')
if ((${#stale[@]} > 0)); then
	printf 'fork: module not under %s after the rewrite: %s\n' "$NEW" "${stale[@]}" >&2
	exit 1
fi
# Commit the rewrite: the copy's own fork.sh clones committed work only. A fixed identity when none is configured, so
# the commit never stops at git asking who you are.
ident=()
if ! git config user.name >/dev/null || ! git config user.email >/dev/null; then
	ident=(-c user.name=fork.sh -c user.email=fork.sh@localhost)
fi
git add -A
git "${ident[@]}" commit -q -m "fork: module path $OLD is now $NEW (scripts/fork.sh)"
echo "fork: $DEST is $NEW (${#files[@]} files rewritten and committed)"

if [[ ${CHECK:-0} == 1 ]]; then
	mapfile -t modules < <(go list -m -f '{{.Dir}}')
	for m in "${modules[@]}"; do
		echo "fork: build and vet ${m#"$PWD"/}"
		(cd "$m" && go build -o /dev/null ./... && go vet ./...)
	done
	echo "fork: every module builds and vets"
fi
