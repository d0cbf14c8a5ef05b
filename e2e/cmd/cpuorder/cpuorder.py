#!/usr/bin/env python3
"""cpuorder.py ROOT LABEL RATE [DURATION] [profile]

CPU per order, by part of the platform (issue #8). Builds e2e/cmd/stack and
e2e/cmd/loadgen from the checkout ROOT (a git archive of a revision, for
before/after runs), starts the stack with fixed admin (pprof) ports, drives
it with loadgen at RATE orders/s for DURATION seconds (default 30), and over
the 10 s window from second 10 to 20 reads from /proc the CPU time of every
part: the five binaries, the PostgreSQL backends serving the run's three
databases (pg_stat_activity), the shared NATS, Kafka and Pulsar servers, and
the load generator. Orders are those created in the window (orders.created_at
in the run's order database), so each part's CPU is divided by the orders it
served. Also records pg_stat_database commits and tuples per order, and with
"profile" a 10 s pprof CPU profile of each binary. Prints one JSON line and
keeps everything in $CPUORDER_DIR (default /tmp/cpuorder)/<label>-<rate>-<time>/.

A Python script rather than a Go command: it only starts processes and reads
/proc and psql, like services/order/scripts/startup_bench.py.
"""
import json, os, re, signal, subprocess, sys, time, urllib.request, threading, glob

root, label, rate = sys.argv[1], sys.argv[2], float(sys.argv[3])
duration = int(sys.argv[4]) if len(sys.argv) > 4 else 30
profile = len(sys.argv) > 5 and sys.argv[5] == "profile"
out = os.environ.get("CPUORDER_DIR", "/tmp/cpuorder") + f"/{label}-{int(rate)}-{time.strftime('%H%M%S')}"
os.makedirs(out, exist_ok=True)
CLK = os.sysconf("SC_CLK_TCK")
ADM = {"gateway": 29080, "user": 29081, "order": 29082, "payment": 29083, "bridge": 29084}

env = dict(os.environ)
for line in subprocess.run([os.path.join(root, "scripts/deps.sh"), "env"], capture_output=True, text=True).stdout.splitlines():
    m = re.match(r"(?:export )?(\w+)=['\"]?([^'\"]*)['\"]?", line)
    if m:
        env[m.group(1)] = m.group(2)

bindir = f"{out}/bin"
subprocess.run(["go", "build", "-o", bindir + "/", "./e2e/cmd/stack", "./e2e/cmd/loadgen"], cwd=root, check=True, env=env)

args = [bindir + "/stack", "-load", "-logs", out + "/logs"]
for b, p in ADM.items():
    args += ["-env", f"{b}:ADMIN_ADDR=127.0.0.1:{p}"]
os.makedirs(out + "/logs", exist_ok=True)
st = subprocess.Popen(args, cwd=root, env=env, stdout=subprocess.PIPE, stderr=open(out + "/stack.err", "w"), text=True,
                      start_new_session=True)
gw = subj = None
deadline = time.time() + 300
while time.time() < deadline:
    line = st.stdout.readline()
    if not line:
        break
    if line.startswith("gateway"):
        gw = line.split()[1]
    if line.startswith("payments subjects"):
        subj = line.split()[2]
    if gw and subj:
        break
if not gw:
    print("stack failed", open(out + "/stack.err").read()[-2000:], file=sys.stderr)
    sys.exit(1)


def children(pid):
    res = []
    for p in glob.glob("/proc/[0-9]*/stat"):
        try:
            f = open(p).read()
        except OSError:
            continue
        rp = f.rindex(")")
        fields = f[rp + 2:].split()
        if int(fields[1]) == pid:
            res.append(int(p.split("/")[2]))
    return res


def comm(pid):
    try:
        return open(f"/proc/{pid}/comm").read().strip()
    except OSError:
        return "?"


def cpu(pid):
    try:
        f = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    rp = f.rindex(")")
    fields = f[rp + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK


svc = {comm(p): p for p in children(st.pid)}
dbs = None


def pg_backends():
    q = "select pid, datname from pg_stat_activity where datname like 'stack_%'"
    r = subprocess.run(["psql", env["DATABASE_URL"], "-Atc", q], capture_output=True, text=True).stdout
    res = {}
    for line in r.splitlines():
        pid, dat = line.split("|")
        res[int(pid)] = dat.rsplit("_", 1)[1]
    return res


def shared():
    res = {}
    for name, pat in [("nats", "nats-server"), ("kafka", "kafka.Kafka"), ("pulsar", "PulsarStandaloneStarter")]:
        r = subprocess.run(["pgrep", "-f", pat], capture_output=True, text=True).stdout.split()
        if r:
            res[name] = int(r[0])
    return res


def pgstat():
    q = "select datname, xact_commit, tup_inserted, tup_updated, tup_fetched from pg_stat_database where datname like 'stack_%'"
    r = subprocess.run(["psql", env["DATABASE_URL"], "-Atc", q], capture_output=True, text=True).stdout
    return {l.split("|")[0].rsplit("_", 1)[1]: [int(x) for x in l.split("|")[1:]] for l in r.splitlines()}


def snapshot(lg):
    parts = {"_pg": pgstat()}
    for n, p in svc.items():
        parts[n] = cpu(p) or 0
    for pid, s in pg_backends().items():
        parts.setdefault("pg:" + s, {})
        parts["pg:" + s][pid] = cpu(pid) or 0
    for n, p in shared().items():
        parts[n] = cpu(p) or 0
    parts["loadgen"] = cpu(lg) or 0
    with open("/proc/stat") as f:
        t = [int(x) for x in f.readline().split()[1:]]
    parts["_machine_busy"] = (sum(t) - t[3] - t[4]) / CLK
    parts["_t"] = time.time()
    return parts


def order_db():
    r = subprocess.run(["psql", env["DATABASE_URL"], "-Atc", "select datname from pg_database where datname like 'stack_%_order'"],
                       capture_output=True, text=True).stdout.split()
    return r[0]


def count_orders(t1, t2):
    u = env["DATABASE_URL"].replace("/shanhai?", "/" + order_db() + "?")
    q = f"select count(*), count(*) filter (where status='PAID') from orders where created_at >= to_timestamp({t1}) and created_at < to_timestamp({t2})"
    r = subprocess.run(["psql", u, "-Atc", q], capture_output=True, text=True).stdout.strip()
    a, b = r.split("|")
    return int(a), int(b)


time.sleep(3)
lg = subprocess.Popen([bindir + "/loadgen", "-target", gw, "-rate", str(rate), "-duration", f"{duration}s", "-users", "40",
                       "-nats", env.get("NATS_URL", "nats://127.0.0.1:14222"), "-subject", subj, "-drain", "20s", "-json"],
                      env=env, stdout=open(out + "/loadgen.json", "w"), stderr=open(out + "/loadgen.err", "w"))
time.sleep(10)  # the window starts at second 10: users registered, connections warm
up0 = open("/proc/loadavg").read().split()[:3]
s1 = snapshot(lg.pid)
threads = []
if profile:
    def prof(name, port):
        try:
            data = urllib.request.urlopen(f"http://127.0.0.1:{port}/debug/pprof/profile?seconds=10", timeout=30).read()
            open(f"{out}/{name}.prof", "wb").write(data)
        except Exception as e:
            print("profile", name, e, file=sys.stderr)
    for n, p in ADM.items():
        t = threading.Thread(target=prof, args=(n, p))
        t.start()
        threads.append(t)
time.sleep(10)
s2 = snapshot(lg.pid)
up1 = open("/proc/loadavg").read().split()[:3]
for t in threads:
    t.join()
lg.wait()
n, paid = count_orders(s1["_t"], s2["_t"])
res = {"label": label, "rate": rate, "orders_window": n, "paid_window": paid, "loadavg_start": up0, "loadavg_end": up1, "dir": out}
us = {}
res["pg_per_order"] = {d: [round((b - a) / max(n, 1), 2) for a, b in zip(s1["_pg"][d], v)] for d, v in s2["_pg"].items() if d in s1["_pg"]}
for k, v in s2.items():
    if k.startswith("_"):
        continue
    if isinstance(v, dict):
        d = sum(c - s1.get(k, {}).get(pid, 0) for pid, c in v.items())
    else:
        d = v - s1.get(k, 0)
    us[k] = round(d * 1e6 / max(n, 1))
dt = s2["_t"] - s1["_t"]
us["_machine_busy_pct"] = round((s2["_machine_busy"] - s1["_machine_busy"]) / dt * 100)
us["_ours_pct"] = round(sum(v for k, v in us.items() if not k.startswith("_")) * n / 1e6 / dt * 100)
res["cpu_us_per_order"] = us
try:
    res["loadgen"] = json.load(open(out + "/loadgen.json"))
except Exception as e:
    res["loadgen_err"] = str(e)
os.killpg(st.pid, signal.SIGINT)
try:
    st.wait(60)
except subprocess.TimeoutExpired:
    os.killpg(st.pid, signal.SIGKILL)
json.dump(res, open(out + "/result.json", "w"), indent=1)
print(json.dumps(res))
