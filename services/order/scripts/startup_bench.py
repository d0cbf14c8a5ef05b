#!/usr/bin/env python3
"""Time from exec to /readyz 200, CPU used by then, and idle RSS, for the user, order and payment binaries.

Usage (from the repository root, with scripts/deps.sh up):
    python3 services/order/scripts/startup_bench.py order [runs]
    python3 services/order/scripts/startup_bench.py all [runs]            # user, order and payment
    python3 services/order/scripts/startup_bench.py all 7 --against HEAD~3   # A/B: that revision vs the working tree
    python3 services/order/scripts/startup_bench.py order 7 --binary plain=/tmp/a --binary static=/tmp/b  # prebuilt
    python3 services/order/scripts/startup_bench.py order 5 --binary a=/tmp/x --binary b=/tmp/x --env b:VAR=1 --cold
    python3 services/order/scripts/startup_bench.py order 9 --binary off=/tmp/x --binary on=/tmp/x \
        --env off:PAGEOUT_AFTER_READY=false --idle 2 --requests 20 --load 3    # first requests after idle, RSS after load
    python3 services/order/scripts/startup_bench.py order 5 --binary root=/tmp/x --binary img=/tmp/x --as img:65532  # as uid 65532

Why Python: the probe loop has to be cheaper than the thing it measures;
spawning curl per poll costs milliseconds, an in-process HTTP poll does not.

Each binary is built as its own source tree's deploy/Dockerfile builds
production images: CGO_ENABLED=0 and that file's -tags and -ldflags (none
before 2026-12-04's nosqlite,nomsgpack; --tags and --ldflags override both
sides, '' builds plain), so an A/B against an older revision compares what
production ran then with what it runs now. (Until 2026-12-05 the bench built
with cgo and without -s -w: a dynamically linked binary that maps libc and
ld.so, which the static images do not, about 1.7 MiB more idle RSS.)

Each binary (the working tree's, and with --against also the one built from
that revision, exported with git archive so the shared checkout is not
touched) gets its own fresh PostgreSQL database: its first run migrates from
empty, the others are the usual restart. With --against the two binaries'
runs alternate, so both see the same neighbours on a loaded machine; compare
the medians and above all CPU ms per start, which load disturbs least.

Each run starts the binary against the local test servers with a private
NATS stream and subject prefix and a stub JWKS server, so it never joins a
running environment's consumers; it does register in etcd (as a real start
does), under version "bench-...", for the few seconds it runs. After /readyz
answers 200 it reads the CPU the process used (schedstat of its threads),
waits 3 s idle, reads VmRSS (anonymous, file-backed, shared) and PSS from /proc, the process's
minor and major page faults, and how much of the binary is in the page cache (fincore), and sends SIGTERM.
--idle sets that wait (the page-out after ready, pkg/server's PAGEOUT_AFTER_READY, is measured at 2 s).

--requests N (order only) then times the first N rounds of an authenticated GET /api/v1/orders and a POST
/api/v1/orders (a fresh Idempotency-Key each, one keep-alive connection, a token signed with the stub JWKS's key):
what the first requests after idle pay for code that is no longer resident. --load S then runs the same pair for S
seconds, waits --idle again and reads RSS once more: the working set that comes back. --as LABEL:UID runs that
label's binary as another user (the images run as 65532, with a root-owned executable).

RSS is not the memory a start costs: the file-backed part counts the executable's pages this process maps (the
kernel maps a 64 KiB fault-around window of cached pages per fault), while what a node pays is the binary's page
cache, which every replica shares and the first to read it is charged for. With --cold the binary is evicted before
every run, so the page-cache figure is what one start from disk reads in (read-ahead included: the device's
read_ahead_kb decides most of it; 8 MiB on this machine's disk reads the whole binary in ~20 major faults). Without
--cold it is whatever earlier runs left there. --env gives one label of a prebuilt binary its own environment, so
two variants of one build (one layout) alternate. The "timeline" line gives, for the median run, when each
start-up log line was written, in ms after exec (the service logs its wiring
phases at debug level). "listening to ready" is the ms from the "server
started" line to the first 200: the start-up steps and the readiness checks
alone, without the package init and wiring whose run-queue noise dominates
the ready time on a loaded machine.
"""
import argparse
import glob
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from urllib.parse import urlparse

SERVICES = ("user", "order", "payment")

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("service", choices=SERVICES + ("all",))
ap.add_argument("runs", type=int, nargs="?", default=5)
ap.add_argument("--against", metavar="REV", help="also build REV (git archive; or a directory holding a source tree) "
                "and alternate runs with it")
ap.add_argument("--src", metavar="DIR", help="build the new binaries from DIR instead of this checkout (a copy that "
                "holds only your change, when others' unfinished edits in a shared checkout do not build)")
ap.add_argument("--ldflags", default=None, help="go build -ldflags for both binaries (default: what each tree's "
                "deploy/Dockerfile uses; '' for none)")
ap.add_argument("--tags", default=None, help="go build -tags for both binaries (default: what each tree's "
                "deploy/Dockerfile uses; '' for none)")
ap.add_argument("--binary", metavar="LABEL=PATH", action="append", default=[],
                help="measure these prebuilt binaries of one service instead of building (repeat to alternate "
                     "several, e.g. builds with different flags; one PATH may appear under several labels)")
ap.add_argument("--env", metavar="LABEL:NAME=VALUE", action="append", default=[],
                help="set NAME=VALUE in the environment of the runs of that --binary label only (A/B of one binary)")
ap.add_argument("--idle", type=float, default=3, help="seconds idle after ready before RSS is read (default 3)")
ap.add_argument("--requests", type=int, default=0, metavar="N",
                help="order only: after the idle reading, time the first N authenticated GET + POST pairs")
ap.add_argument("--load", type=float, default=0, metavar="S",
                help="with --requests: then S seconds of those pairs, --idle seconds idle, and RSS again")
ap.add_argument("--as", dest="run_as", metavar="LABEL:UID", action="append", default=[],
                help="run that label's binary as this uid (it must be able to read the binary)")
ap.add_argument("--cold", action="store_true",
                help="evict the binary from the page cache before every run, not only once after building: each "
                     "start reads it from disk (a node that has just pulled the image still has it cached: the pull wrote it)")
args = ap.parse_args()
services = SERVICES if args.service == "all" else (args.service,)
if args.requests and services != ("order",):
    sys.exit("--requests measures order's API only")
root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))

env = dict(os.environ)
for line in subprocess.run([os.path.join(root, "scripts", "deps.sh"), "env"], capture_output=True, text=True, check=True).stdout.splitlines():
    if line.startswith("export "):
        k, v = line[len("export "):].split("=", 1)
        env[k] = v.strip("'\"")

tmp = tempfile.mkdtemp(prefix="startup-bench-")


def image_flag(src, pattern):
    """A go build flag's value on the line of deploy/Dockerfile in src that builds the service images ('' if none)."""
    try:
        with open(os.path.join(src, "deploy", "Dockerfile")) as f:
            m = re.search(r"go build [^\n]*?" + pattern + r"[^\n]*/out/app", f.read())
    except OSError:
        return ""
    return m.group(1) if m else ""


def build(src, svc, out):
    tags = args.tags if args.tags is not None else image_flag(src, r"-tags[ =](\S+)")
    ldflags = args.ldflags if args.ldflags is not None else image_flag(src, r"-ldflags=\"([^\"]*)\"")
    print(f"building {svc} from {src} with CGO_ENABLED=0 -tags '{tags}' -ldflags '{ldflags}'")
    cmd = ["go", "build", "-trimpath", "-tags", tags, "-ldflags", ldflags, "-o", out]
    subprocess.run(cmd + [f"./services/{svc}/cmd/{svc}"], cwd=src, check=True, env=dict(env, CGO_ENABLED="0"))


def drop_page_cache(path):
    """Evict path's pages from the page cache (this file's only), so its first exec reads it in as a deployed binary is.

    A binary go build has just written sits in the page cache in whatever folios the write made: on this kernel
    (6.18, ext4) partly 256 KiB and 1 MiB ones, and a fault maps a whole folio, so two builds of the same code
    differed by 3 MiB of file RSS (order, 2026-12-04). Read back by exec's readahead it is 4 KiB pages and 64 KiB
    fault-around windows on both sides, as in a container starting from its image.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # dirty pages are not evicted
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


# variants: label -> source tree
variants = {"new": os.path.abspath(args.src) if args.src else root}
if args.against and os.path.isdir(args.against):
    variants = {"old": os.path.abspath(args.against), "new": variants["new"]}
elif args.against:
    old_src = os.path.join(tmp, "src-old")
    os.makedirs(old_src)
    archive = subprocess.run(["git", "archive", args.against], cwd=root, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", old_src], input=archive, check=True)
    variants = {"old": old_src, "new": variants["new"]}

# A stub JWKS (scripts/jwks_stub.py): the verifier only needs a parseable key set to be ready; its key's private
# half signs --requests' token.
sys.path.insert(0, os.path.join(root, "scripts"))
import jetstream  # noqa: E402
import jwks_stub  # noqa: E402


def bench_token():
    """An access token the services accept from the stub JWKS: EdDSA, kid bench, iss shanhai-user, an hour."""
    import base64
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # only --requests needs it
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
    key = Ed25519PrivateKey.from_private_bytes(base64.urlsafe_b64decode(jwks_stub.KEY_D + "="))
    head = b64(json.dumps({"alg": "EdDSA", "kid": "bench", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": str(uuid.uuid4()), "iss": "shanhai-user", "exp": int(time.time()) + 3600}).encode())
    return (head + b"." + body + b"." + b64(key.sign(head + b"." + body))).decode()


def api_pair(conn, token):
    """One authenticated GET /api/v1/orders and one POST /api/v1/orders: ms each."""
    out = []
    for method, body in (("GET", None), ("POST", b'{"items":[{"sku":"TEA-GREEN-100G","quantity":1}]}')):
        h = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
        if body:
            h["Idempotency-Key"] = str(uuid.uuid4())
        t = time.perf_counter()
        conn.request(method, "/api/v1/orders", body=body, headers=h)
        r = conn.getresponse()
        r.read()
        out.append((time.perf_counter() - t) * 1000)
        if r.status >= 300:
            sys.exit(f"{method} /api/v1/orders answered {r.status}")
    return out


def status_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return {l.split(":")[0]: int(l.split()[1]) for l in f if l.startswith(("VmRSS:", "RssAnon:", "RssFile:"))}


jwks_srv = jwks_stub.serve("bench")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def schedstat(pid):
    """CPU ms the process's threads have run, and ms they waited for a CPU."""
    on = wait = 0
    for p in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(p) as f:
                a, b, _ = f.read().split()
            on, wait = on + int(a), wait + int(b)
        except (OSError, ValueError):
            pass
    return on / 1e6, wait / 1e6


def timeline(log_path, t_exec):
    """Start-up log lines as (ms after exec, message and phases)."""
    out = []
    with open(log_path) as f:
        for line in f:
            try:
                d = json.loads(line)
                t = datetime.fromisoformat(d["time"]).timestamp()
            except (ValueError, KeyError):
                continue
            rest = " ".join(f"{k}={v}" for k, v in d.items() if k not in ("time", "level", "msg", "addr", "name", "version"))
            out.append(((t - t_exec) * 1000, d["msg"] + (f" ({rest})" if rest else "")))
    return out


def cached(path):
    """Bytes of path in the page cache (fincore: mincore over the whole file)."""
    try:
        out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", path], capture_output=True,
                             text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):  # no util-linux fincore: the other figures still stand
        return float("nan")
    return int(out.split()[0])


def start(svc, binary, db_url, prefix, log_path, extra_env=None, uid=None):
    if args.cold:
        drop_page_cache(binary)
    port = free_port()
    e = dict(env)
    e.update(HTTP_ADDR=f"127.0.0.1:{port}", ADMIN_ADDR=f"127.0.0.1:{free_port()}", DATABASE_URL=db_url,
             JWKS_URL=f"http://127.0.0.1:{jwks_srv.server_port}/", SERVICE_VERSION="bench-" + prefix,
             NATS_STREAM=prefix.upper(), NATS_SUBJECT_PREFIX=prefix + ".", LOG_LEVEL="debug",
             PAYMENT_SETTINGS_KEY=f"/shanhai/bench/{prefix}", AUTH_DEV_KEYS="true")
    if extra_env:
        e.update(extra_env)
    t_exec = time.time()
    t0 = time.perf_counter()
    p = subprocess.Popen([binary], env=e, stdout=subprocess.DEVNULL, stderr=open(log_path, "w"), user=uid)
    status = None
    while time.perf_counter() - t0 < 10:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/readyz")
            status = c.getresponse().status
            c.close()
            if status == 200:
                break
        except OSError:
            pass
        if p.poll() is not None:
            sys.exit(f"{svc} exited with {p.returncode}; see {log_path}")
        time.sleep(0.0005)
    took = (time.perf_counter() - t0) * 1000
    if status != 200:
        p.kill()
        sys.exit(f"{svc} not ready after 10 s (last status {status}); see {log_path}")
    cpu, wait = schedstat(p.pid)
    time.sleep(args.idle)
    st = status_kib(p.pid)
    with open(f"/proc/{p.pid}/stat") as f:
        stat = f.read().rsplit(")", 1)[1].split()
    minflt, majflt = int(stat[7]), int(stat[9])  # fields 10 and 12 of proc(5), after pid and comm
    page_cache = cached(binary) / (1 << 20)
    # PSS charges each shared page to its mappers in shares: the executable's pages are shared only by replicas
    # of the same binary on one machine, so here PSS is close to RSS; "shared" is what other processes also map.
    with open(f"/proc/{p.pid}/smaps_rollup") as f:
        st.update({l.split(":")[0]: int(l.split()[1]) for l in f if l.startswith(("Pss:", "Shared_Clean:", "Shared_Dirty:"))})
    first, after_load, load_pairs = [], None, 0
    if args.requests:
        token, maj0 = bench_token(), majflt_of(p.pid)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        first = [api_pair(conn, token) for _ in range(args.requests)]
        first_majflt = majflt_of(p.pid) - maj0
        if args.load:
            t_end = time.perf_counter() + args.load
            while time.perf_counter() < t_end:
                api_pair(conn, token)
                load_pairs += 1
            conn.close()
            time.sleep(args.idle)
            after_load = status_kib(p.pid)
        conn.close()
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=15)
    tl = timeline(log_path, t_exec)
    # ms from "server started" (wiring done, listening) to the first 200: the steps and the readiness checks, without
    # the package init and wiring before it, whose run-queue noise dominates the ready time on a loaded machine.
    listening = next((t for t, m in tl if m.startswith("server started")), float("nan"))
    return {"ready": took, "cpu": cpu, "wait": wait, "rss": st["VmRSS"] / 1024, "anon": st["RssAnon"] / 1024,
            "file": st["RssFile"] / 1024, "pss": st["Pss"] / 1024, "shared": (st["Shared_Clean"] + st["Shared_Dirty"]) / 1024,
            "listen_to_ready": took - listening, "timeline": tl,
            "minflt": minflt, "majflt": majflt, "cache": page_cache, "first": first,
            "first_majflt": first_majflt if args.requests else 0, "after_load": after_load, "load_pairs": load_pairs}


def majflt_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[9])


def median_run(rs):
    return sorted(rs, key=lambda r: r["ready"])[len(rs) // 2]


dbs = []
streams = []
try:
    print(f"load average at start: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    prebuilt = dict(b.split("=", 1) for b in args.binary)
    extra_env = {}
    for spec in args.env:
        label, kv = spec.split(":", 1)
        extra_env.setdefault(label, {})[kv.split("=", 1)[0]] = kv.split("=", 1)[1]
    run_as = {label: int(uid) for label, uid in (spec.split(":", 1) for spec in args.run_as)}
    if prebuilt:
        if len(services) != 1:
            sys.exit("--binary measures one service")
        variants = {label: None for label in prebuilt}
    if set(run_as) - set(variants):
        sys.exit(f"--as names {sorted(set(run_as) - set(variants))}, not one of {sorted(variants)}")
    if set(extra_env) - set(variants):
        sys.exit(f"--env names {sorted(set(extra_env) - set(variants))}, not one of {sorted(variants)}")
    for svc in services:
        binaries, dburls = {}, {}
        for label, src in variants.items():
            if prebuilt:
                binaries[label] = os.path.abspath(prebuilt[label])
            else:
                binaries[label] = os.path.join(tmp, f"{svc}-{label}")
                build(src, svc, binaries[label])
            drop_page_cache(binaries[label])
            db_name = "bench_" + uuid.uuid4().hex[:10]
            subprocess.run(["psql", env["DATABASE_URL"], "-qc", f"CREATE DATABASE {db_name}"], check=True)
            dbs.append(db_name)
            dburls[label] = urlparse(env["DATABASE_URL"])._replace(path="/" + db_name).geturl()
        prefix = "bench" + uuid.uuid4().hex[:6]
        streams.append(prefix.upper())
        results = {label: [] for label in variants}
        for i in range(args.runs):
            for label in variants:
                r = start(svc, binaries[label], dburls[label], prefix, os.path.join(tmp, f"{svc}-{label}-{i}.log"),
                          extra_env.get(label), run_as.get(label))
                results[label].append(r)
                print(f"{svc} {label} run {i + 1}: ready {r['ready']:.1f} ms, cpu {r['cpu']:.1f} ms, runq wait "
                      f"{r['wait']:.1f} ms{' (migrations from empty)' if i == 0 else ''}, idle RSS {r['rss']:.1f} MiB "
                      f"(anonymous {r['anon']:.1f}, file {r['file']:.1f}, shared {r['shared']:.1f}; PSS {r['pss']:.1f}); "
                      f"faults {r['minflt']} minor, {r['majflt']} major; binary in page cache {r['cache']:.1f} MiB")
                if r["first"]:
                    print(f"   first requests (GET, POST ms): " + ", ".join(f"{g:.1f}/{q:.1f}" for g, q in r["first"][:5])
                          + f"; {r['first_majflt']} major faults during the first {len(r['first'])} pairs")
                if r["after_load"]:
                    a = r["after_load"]
                    print(f"   after {r['load_pairs']} pairs of load and {args.idle:g} s idle: RSS {a['VmRSS'] / 1024:.1f} MiB "
                          f"(anonymous {a['RssAnon'] / 1024:.1f}, file {a['RssFile'] / 1024:.1f})")
        for label, rs in results.items():
            warm = rs[1:] or rs
            med = lambda k: statistics.median(r[k] for r in warm)
            print(f"== {svc} {label}: first start {rs[0]['ready']:.1f} ms; restarts median ready {med('ready'):.1f} ms "
                  f"(min {min(r['ready'] for r in warm):.1f}, max {max(r['ready'] for r in warm):.1f}), cpu {med('cpu'):.1f} ms, "
                  f"runq wait {med('wait'):.1f} ms, listening to ready {med('listen_to_ready'):.1f} ms; idle RSS median {statistics.median(r['rss'] for r in rs):.1f} MiB "
                  f"(anonymous {statistics.median(r['anon'] for r in rs):.1f}, file {statistics.median(r['file'] for r in rs):.1f}, "
                  f"shared {statistics.median(r['shared'] for r in rs):.1f}; PSS {statistics.median(r['pss'] for r in rs):.1f}); "
                  f"faults {statistics.median(r['minflt'] for r in rs):.0f} minor, {statistics.median(r['majflt'] for r in rs):.0f} major; "
                  f"binary in page cache {statistics.median(r['cache'] for r in rs):.1f} MiB")
            if rs[0]["first"]:
                for k, name in ((0, "GET"), (1, "POST")):
                    per = [statistics.median(r["first"][j][k] for r in warm) for j in range(args.requests)]
                    print(f"   {name} /api/v1/orders, median over restarts of request 1..{args.requests} (ms): "
                          + " ".join(f"{v:.1f}" for v in per) + f"; requests 2..{args.requests} median "
                          f"{statistics.median(per[1:] or per):.2f}")
                print(f"   major faults during the first {args.requests} pairs, median {statistics.median(r['first_majflt'] for r in warm):.0f}")
            if rs[0]["after_load"]:
                al = lambda k: statistics.median(r["after_load"][k] / 1024 for r in rs)
                print(f"   after {args.load:g} s of load ({statistics.median(r['load_pairs'] for r in rs):.0f} pairs) and "
                      f"{args.idle:g} s idle: RSS median {al('VmRSS'):.1f} MiB (anonymous {al('RssAnon'):.1f}, file {al('RssFile'):.1f})")
            print(f"   timeline of the median restart (ms after exec): "
                  + "; ".join(f"{t:.1f} {m}" for t, m in median_run(warm)["timeline"]))
        if set(variants) == {"old", "new"}:
            o, n = (results[k][1:] or results[k] for k in ("old", "new"))
            ratio = lambda k: statistics.median(r[k] for r in n) / statistics.median(r[k] for r in o)
            print(f"== {svc} new/old: ready {ratio('ready'):.2f}x, cpu {ratio('cpu'):.2f}x, listening to ready "
                  f"{ratio('listen_to_ready'):.2f}x, idle RSS {ratio('rss'):.2f}x")
    print(f"load average at end: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
finally:
    for db_name in dbs:
        subprocess.run(["psql", env["DATABASE_URL"], "-qc", f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"])
    for s in streams:
        jetstream.delete_stream(env.get("NATS_URL", "nats://127.0.0.1:14222"), s)
    jwks_srv.shutdown()

shutil.rmtree(tmp, ignore_errors=True)  # kept only when a run failed (sys.exit above)
