#!/usr/bin/env python3
"""cpuorder.py ROOT LABEL RATE [DURATION] [profile]

CPU per order, by part of the platform (issue #8). Builds e2e/cmd/stack and
e2e/cmd/loadgen from the checkout ROOT (a git archive of a revision, for
before/after runs), starts the stack with fixed admin (pprof) ports, drives
it with loadgen at RATE orders/s for DURATION seconds (default 30), and over
the 10 s window from second 10 to 20 reads from /proc the CPU time of every
part: the five binaries, the PostgreSQL backends serving the run's three
databases (pg_stat_activity), the shared NATS, Kafka and Pulsar servers, and
the load generator (CPUORDER_LOGIN_RATIO sets its -login-ratio, log ins per
order; CPUORDER_LOADGEN_ARGS, further loadgen flags, split as a shell would, after the
script's own so they win, e.g. "-mix order -users 80"; CPUORDER_STACK_WAIT, seconds to wait for the stack's addresses, default 900; CPUORDER_STACK_ENV,
space-separated binary:NAME=value, extra environment for the
stack's binaries). Orders are those created in the window (orders.created_at
in the run's order database), so each part's CPU is divided by the orders it
served. Also records pg_stat_database commits and tuples per order, and with
"profile" a pprof CPU profile of each binary over the window (at most 60 s). Every part's CPU is also given
per second of the window (cpu_ms_per_s), the figure to fit as idle + per order × rate.

RATE 0 is the idle platform: no load generator; the window is DURATION seconds
from second 10 after the stack is up, and cpu_ms_per_s is the idle cost (the
per-order figures are then per whole window). Also counts, per client part
and broker, the data segments its sockets sent and received (ss -ti; on loopback
about one per request and one per answer; connections that closed within the
window are missed), and each broker's read and write system calls. Prints one JSON line and
keeps everything in $CPUORDER_DIR (default /tmp/cpuorder)/<label>-<rate>-<time>/.

A Python script rather than a Go command: it only starts processes and reads
/proc and psql, like services/order/scripts/startup_bench.py.
"""
import json, os, re, shlex, subprocess, sys, threading, time, urllib.request

import stackrun
from stackrun import comm, cpu

root, label, rate = sys.argv[1], sys.argv[2], float(sys.argv[3])
duration = int(sys.argv[4]) if len(sys.argv) > 4 else 30
profile = len(sys.argv) > 5 and sys.argv[5] == "profile"
login_ratio = os.environ.get("CPUORDER_LOGIN_RATIO", "")  # log ins per order; empty keeps loadgen's default (0.02)
loadgen_args = shlex.split(os.environ.get("CPUORDER_LOADGEN_ARGS", ""))
idle = rate == 0
window = duration if idle else 10  # seconds of measurement; a load run's is second 10 to 20 of its sending
out = os.environ.get("CPUORDER_DIR", "/tmp/cpuorder") + f"/{label}-{int(rate)}-{time.strftime('%H%M%S')}"
os.makedirs(out, exist_ok=True)
ADM = {"gateway": 29080, "user": 29081, "order": 29082, "payment": 29083, "bridge": 29084}

env = stackrun.deps_env(root)
extra = []
for b, p in ADM.items():
    extra += ["-env", f"{b}:ADMIN_ADDR=127.0.0.1:{p}"]
for e in os.environ.get("CPUORDER_STACK_ENV", "").split():  # e.g. "bridge:LOG_LEVEL=debug", passed to the stack's -env
    extra += ["-env", e]
bindir, st, gw, subj = stackrun.start(root, out, env, extra, float(os.environ.get("CPUORDER_STACK_WAIT", "900")))
svc = stackrun.children(st.pid)
dbs = None


def pgstat():
    q = "select datname, xact_commit, tup_inserted, tup_updated, tup_fetched from pg_stat_database where datname like 'stack_%'"
    r = stackrun.psql(env["DATABASE_URL"], q)
    return {l.split("|")[0].rsplit("_", 1)[1]: [int(x) for x in l.split("|")[1:]] for l in r.splitlines()}


BROKERS = {19092: "kafka", 14222: "nats", 16650: "pulsar"}


def sockets():
    """Client sockets to the brokers, by (local port, broker): owning pid and data segments out/in.

    On loopback a request or a response fits one segment (MSS ~64 KiB), so data segments count the
    client's requests and the broker's answers without touching the brokers' configuration."""
    r = subprocess.run(["ss", "-tinpH", "state", "established"], capture_output=True, text=True).stdout
    res, cur = {}, None
    for line in r.splitlines():
        if not line.startswith((" ", "\t")):
            f = line.split()
            cur = None
            if len(f) >= 4:
                peer = f[3].rsplit(":", 1)
                m = re.search(r"pid=(\d+)", line)
                if len(peer) == 2 and peer[1].isdigit() and int(peer[1]) in BROKERS and m:
                    cur = (f[2].rsplit(":", 1)[1], BROKERS[int(peer[1])])
                    res[cur] = [int(m.group(1)), 0, 0]
            continue
        if cur:
            o = re.search(r"data_segs_out:(\d+)", line)
            i = re.search(r"data_segs_in:(\d+)", line)
            res[cur][1] = int(o.group(1)) if o else 0
            res[cur][2] = int(i.group(1)) if i else 0
    return res


def brokerio(pid):
    """read and write system calls of a broker (/proc/PID/io): per order, what its storage and sockets cost it."""
    try:
        f = dict(l.split(": ") for l in open(f"/proc/{pid}/io").read().splitlines())
        return [int(f["syscr"]), int(f["syscw"])]
    except OSError:
        return [0, 0]


def snapshot(lg):
    parts = {"_pg": pgstat(), "_socks": sockets()}
    for n, p in svc.items():
        parts[n] = cpu(p) or 0
    for pid, s in stackrun.backends(env).items():
        parts.setdefault("pg:" + s, {})
        parts["pg:" + s][pid] = cpu(pid) or 0
    for n, p in stackrun.brokers().items():
        parts[n] = cpu(p) or 0
    parts["loadgen"] = cpu(lg) or 0
    parts["_io"] = {n: brokerio(p) for n, p in stackrun.brokers().items()}
    parts["_machine_busy"] = stackrun.machine_busy()
    parts["_t"] = time.time()
    return parts


def count_orders(t1, t2):
    q = f"select count(*), count(*) filter (where status='PAID') from orders where created_at >= to_timestamp({t1}) and created_at < to_timestamp({t2})"
    a, b = stackrun.psql(stackrun.order_db_url(env), q).strip().split("|")
    return int(a), int(b)


time.sleep(3)
if idle:
    lg = None
else:
    lg = subprocess.Popen([bindir + "/loadgen", "-target", gw, "-rate", str(rate), "-duration", f"{duration}s", "-users", "40",
                           "-nats", env.get("NATS_URL", "nats://127.0.0.1:14222"), "-subject", subj, "-drain", "20s", "-json"]
                          + (["-login-ratio", login_ratio] if login_ratio else []) + loadgen_args,
                          env=env, stdout=open(out + "/loadgen.json", "w"), stderr=open(out + "/loadgen.err", "w"))
time.sleep(10)  # the window starts at second 10: users registered, connections warm (idle: start-up's work done)
lgpid = lg.pid if lg else -1
up0 = open("/proc/loadavg").read().split()[:3]
s1 = snapshot(lgpid)
threads = []
if profile:
    def prof(name, port):
        try:
            data = urllib.request.urlopen(f"http://127.0.0.1:{port}/debug/pprof/profile?seconds={min(window, 60)}", timeout=min(window, 60) + 30).read()
            open(f"{out}/{name}.prof", "wb").write(data)
        except Exception as e:
            print("profile", name, e, file=sys.stderr)
    for n, p in ADM.items():
        t = threading.Thread(target=prof, args=(n, p))
        t.start()
        threads.append(t)
time.sleep(window)
s2 = snapshot(lgpid)
up1 = open("/proc/loadavg").read().split()[:3]
for t in threads:
    t.join()
if lg:
    lg.wait()
n, paid = count_orders(s1["_t"], s2["_t"])
res = {"label": label, "rate": rate, "window_s": window, "loadgen_args": loadgen_args, "login_ratio": login_ratio or "default", "orders_window": n, "paid_window": paid, "loadavg_start": up0, "loadavg_end": up1, "dir": out}
us, per_s = {}, {}
dt = s2["_t"] - s1["_t"]
res["pg_per_order"] = {d: [round((b - a) / max(n, 1), 2) for a, b in zip(s1["_pg"][d], v)] for d, v in s2["_pg"].items() if d in s1["_pg"]}
for k, v in s2.items():
    if k.startswith("_"):
        continue
    if isinstance(v, dict):
        d = sum(c - s1.get(k, {}).get(pid, 0) for pid, c in v.items())
    else:
        d = v - s1.get(k, 0)
    us[k] = round(d * 1e6 / max(n, 1))
    per_s[k] = round(d * 1e3 / dt, 1)
us["_machine_busy_pct"] = round((s2["_machine_busy"] - s1["_machine_busy"]) / dt * 100)
us["_ours_pct"] = round(sum(v for k, v in us.items() if not k.startswith("_")) * n / 1e6 / dt * 100)
res["cpu_us_per_order"] = us
res["cpu_ms_per_s"] = per_s
# Requests (client data segments out) and answers (in) per order, by client part and broker.
names = {p: n for n, p in svc.items()}
names[lgpid] = "loadgen"
segs = {}
for k, (pid, o2, i2) in s2["_socks"].items():
    _, o1, i1 = s1["_socks"].get(k, (pid, 0, 0))
    key = names.get(pid, comm(pid)) + ">" + k[1]
    a = segs.setdefault(key, [0, 0])
    a[0] += o2 - o1
    a[1] += i2 - i1
json.dump({"s1": {"/".join(k): v for k, v in s1["_socks"].items()}, "s2": {"/".join(k): v for k, v in s2["_socks"].items()}},
          open(out + "/sockets.json", "w"))
res["broker_syscalls_per_order"] = {b: [round((v[0] - s1["_io"].get(b, [0, 0])[0]) / max(n, 1), 1),
                                         round((v[1] - s1["_io"].get(b, [0, 0])[1]) / max(n, 1), 1)] for b, v in s2["_io"].items()}
res["segs_per_order"] = {k: [round(o / max(n, 1), 2), round(i / max(n, 1), 2)] for k, (o, i) in sorted(segs.items())}
# Connections opened during the window (a client that redials pays a handshake the segments above do not show).
opened = {}
for k, (pid, _, _) in s2["_socks"].items():
    if k not in s1["_socks"]:
        key = names.get(pid, comm(pid)) + ">" + k[1]
        opened[key] = opened.get(key, 0) + 1
res["connections_opened"] = opened
if lg:
    try:
        res["loadgen"] = json.load(open(out + "/loadgen.json"))
    except Exception as e:
        res["loadgen_err"] = str(e)
stackrun.stop(st)
json.dump(res, open(out + "/result.json", "w"), indent=1)
print(json.dumps(res))
