#!/usr/bin/env bash
# Memory a client sending a chunked body in 1-byte chunks costs the gateway
# (README, "Chunked messages on the event loop"). CONNS clients each send a
# body of LIMIT-16 bytes, in 1-byte chunks ("1\r\nx\r\n") or with a
# Content-Length (MODE=length), and not its end, or (MODE=head) a request
# head of 16000 bytes without its blank line: the slow client the first
# 16 KiB of a connection, free of GATEWAY_LOOP_HELD_BYTES, is for; the
# clients the gateway refused are counted. The gateway's VmRSS growth
# is printed 1 s after. A fresh gateway per run, in routing mode (nothing is
# proxied: the body never completes). Extra arguments are environment
# variables for the gateway, e.g. GOMEMLIMIT=102MiB (deploy's setting);
# GWLOG=file keeps the gateway's stderr (with GODEBUG=gctrace=1: the live
# heap after each collection, which VmRSS, garbage included, does not show).
# HEAP=1 also prints, at the same moment, the live heap after a collection
# it forces (pprof's heap?gc=1 on the admin port) and the memory the Go
# runtime holds (what GOMEMLIMIT counts): a ring gnet grew holds its whole
# capacity there, where VmRSS counts only the pages written.
#   usage: [TRANSPORT=loop|fasthttp] [MODE=chunks|length|head] [LIMIT=bytes] [CONNS=n] [GWLOG=file] [HEAP=1] bench/chunkmem.sh [VAR=value...]
# Needs Redis at REDIS_URL (scripts/deps.sh env), python3, and ports 18377 (and 18379 with HEAP=1) free.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
(cd "$ROOT/gateway" && go build -o "$WORK/gateway" ./cmd/gateway)
LIMIT=${LIMIT:-8388608}
ADMIN=""
if [[ ${HEAP:-0} == 1 ]]; then ADMIN=127.0.0.1:18379; fi
env -i PATH="$PATH" HTTP_ADDR=127.0.0.1:18377 ADMIN_ADDR="$ADMIN" GATEWAY_MODE=routing GATEWAY_TRANSPORT="${TRANSPORT:-loop}" \
	ETCD_ENDPOINTS= DISCOVERY_STATIC=order=127.0.0.1:18378 REDIS_URL="${REDIS_URL:-redis://127.0.0.1:16379/0}" \
	GATEWAY_MAX_BODY_BYTES="$LIMIT" GATEWAY_READ_TIMEOUT=30s LOG_LEVEL=error "$@" "$WORK/gateway" >/dev/null 2>"${GWLOG:-/dev/null}" &
gw=$!
trap 'kill $gw 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/18377) 2>/dev/null && break; sleep 0.1; done
python3 - "$gw" "$LIMIT" "${MODE:-chunks}" "${CONNS:-1}" "$ADMIN" <<'PY'
import socket, sys, time, urllib.request
pid, limit, mode, conns, admin = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
before, n, socks = rss(), limit - 16, []
head = b"GET /api/v1/orders HTTP/1.1\r\nHost: gw\r\nX-Pad: " + b"x" * 15950
for _ in range(conns):
    s = socket.create_connection(("127.0.0.1", 18377))
    socks.append(s)
    if mode == "head":
        s.sendall(head)
    elif mode == "chunks":
        s.sendall(b"POST /api/v1/orders HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1\r\nx\r\n" * n)
    else:
        s.sendall(b"POST /api/v1/orders HTTP/1.1\r\nHost: gw\r\nContent-Length: %d\r\n\r\n" % limit + b"x" * n)
time.sleep(1)
grew = rss() - before
if admin:
    # runtime.MemStats, printed after the profile; gc=1 collects first.
    stats = {}
    for line in urllib.request.urlopen("http://%s/debug/pprof/heap?gc=1&debug=1" % admin, timeout=30).read().decode().splitlines():
        if line.startswith("# ") and " = " in line:
            k, _, v = line[2:].partition(" = ")
            stats[k] = v
    print("live heap after a forced collection %.1f MB; the runtime holds %.1f MB (Sys - HeapReleased)" % (
        int(stats["HeapAlloc"]) / 1e6, (int(stats["Sys"]) - int(stats["HeapReleased"])) / 1e6))
if mode == "head":
    refused = 0
    for s in socks:
        s.setblocking(False)
        try:
            refused += s.recv(12).startswith(b"HTTP/1.1 503")
        except (BlockingIOError, ConnectionError):
            pass
    print("head x%d: VmRSS grew %.1f MB, %.1f KB per connection; %d refused 503" % (conns, grew / 1e6, grew / 1e3 / conns, refused))
    sys.exit()
print("%s x%d: VmRSS grew %.1f MB, %.1fx the limit per connection" % (mode, conns, grew / 1e6, grew / limit / conns))
PY
