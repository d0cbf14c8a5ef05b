#!/usr/bin/env python3
"""rates.py ROOT OUTDIR DURATION WARMUP RATE...

Saga latency against the offered rate, on one warm stack (issue #8: up to
which rate does the saga's p99 stay within 100 ms?). cpuorder.py starts a
stack per run and times its window from the load generator's start, set-up
included; here one stack serves every rate and each figure covers only the
sending.

Builds e2e/cmd/stack and e2e/cmd/loadgen from ROOT (a git archive of a
revision), starts the stack (-load) on the real servers of scripts/deps.sh,
sends the order-only mix (-mix order, -users 10, -drain 20s) at the first
RATE for WARMUP seconds (reported as "warmup", not a result), then at each
RATE in the order given for DURATION seconds, one run after the other. Per
run it prints one JSON line: the load average before it, orders answered 201
per second, the 201's p50/p99, the saga (nats) p50/p90/p99/max and errors,
each hop's p50/p99, and CPU per order from /proc over the sending (from the
load generator's first live line to one second before its end; orders are
those the order database created in that window): the five binaries, the
PostgreSQL backends of the stack's databases ("pg"), and the brokers NATS,
Kafka and Pulsar, which other sessions share. RATES_FULLMIX="new /path/to/
loadgen ..." then runs each named load generator ("new": ROOT's) once with
the default mix at 20/s for 10 s and prints its saga rows (the poll row's
unfinished orders). Everything is kept in OUTDIR.

    eval "$(./scripts/deps.sh env)"
    git archive HEAD | (mkdir -p /tmp/tree && tar -x -C /tmp/tree)
    python3 e2e/cmd/cpuorder/rates.py /tmp/tree /tmp/rates 20 15 20 40 80 160 320
"""
import json, os, subprocess, sys, time

import stackrun

root, outdir, duration, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rates = [float(r) for r in sys.argv[5:]]
os.makedirs(outdir, exist_ok=True)
env = stackrun.deps_env(root)
bindir, st, gw, subj = stackrun.start(root, outdir, env)


def snapshot():
    s = {n: stackrun.cpu(p) or 0 for n, p in stackrun.children(st.pid).items()}
    s["_pg"] = {pid: stackrun.cpu(pid) or 0 for pid in stackrun.backends(env)}
    running = stackrun.brokers()
    for name, _ in stackrun.BROKERS:
        s[name] = (stackrun.cpu(running[name]) or 0) if name in running else 0
    s["_busy"] = stackrun.machine_busy()
    s["_t"] = time.time()
    return s


def orders_between(t1, t2):
    q = f"select count(*) from orders where created_at >= to_timestamp({t1}) and created_at < to_timestamp({t2})"
    return int(stackrun.psql(stackrun.order_db_url(env), q).strip())


def load(rate, secs, tag):
    la = open("/proc/loadavg").read().split()[:3]
    errf = f"{outdir}/loadgen-{tag}.err"
    lg = subprocess.Popen([bindir + "/loadgen", "-target", gw, "-mix", "order", "-rate", str(rate), "-duration", f"{secs}s",
                           "-users", "10", "-nats", env["NATS_URL"], "-subject", subj, "-drain", "20s", "-json"],
                          env=env, stdout=open(f"{outdir}/loadgen-{tag}.json", "w"), stderr=open(errf, "w"))
    while "sent" not in open(errf).read() and lg.poll() is None:
        time.sleep(0.05)
    s1 = snapshot()
    time.sleep(max(secs - 2, 1))
    s2 = snapshot()
    lg.wait()
    sm = json.load(open(f"{outdir}/loadgen-{tag}.json"))
    n = orders_between(s1["_t"], s2["_t"])
    dt = s2["_t"] - s1["_t"]
    us = {}
    for k, v in s2.items():
        if k.startswith("_"):
            continue
        us[k] = round((v - s1.get(k, 0)) * 1e6 / max(n, 1))
    us["pg"] = round(sum(c - s1["_pg"].get(p, c) for p, c in s2["_pg"].items()) * 1e6 / max(n, 1))
    ours = sum(us.get(k, 0) for k in ("gateway", "user", "order", "payment", "bridge", "pg"))
    brokers = sum(us.get(k, 0) for k in ("nats", "kafka", "pulsar"))
    o, sg = sm["ops"]["order"], sm["saga"].get("nats", {})
    row = {"rate": rate, "tag": tag, "loadavg_before": la, "orders_201": o["count"] - o["error_count"],
           "achieved_per_s": round((o["count"] - o["error_count"]) / sm["duration_sec"], 1),
           "order_p50_ms": o["p50_ms"], "order_p99_ms": o["p99_ms"], "order_errors": o.get("errors"),
           "saga_p50_ms": sg.get("p50_ms"), "saga_p90_ms": sg.get("p90_ms"), "saga_p99_ms": sg.get("p99_ms"),
           "saga_max_ms": sg.get("max_ms"), "saga_errors": sg.get("errors"), "stages": {k: [v["p50_ms"], v["p99_ms"]] for k, v in sm.get("saga_stages", {}).items()},
           "window_orders": n, "cpu_us_per_order": us, "ours_us": ours, "brokers_us": brokers,
           "machine_busy_pct": round((s2["_busy"] - s1["_busy"]) / dt * 100)}
    print(json.dumps(row), flush=True)
    return row


def full_mix(binary, tag):
    """The default mix (browse, order, poll, log ins) at 20/s for 10 s: both saga rows, to see the poll row end."""
    lg = subprocess.run([binary, "-target", gw, "-rate", "20", "-duration", "10s", "-users", "10",
                         "-nats", env["NATS_URL"], "-subject", subj, "-drain", "20s", "-json"],
                        env=env, capture_output=True, text=True)
    open(f"{outdir}/loadgen-{tag}.json", "w").write(lg.stdout)
    sm = json.loads(lg.stdout)
    print(json.dumps({"tag": tag, "saga": sm["saga"], "pending": sm["orders_not_seen_final_by_poll"],
                      "ops": {k: [v["count"], v["error_count"]] for k, v in sm["ops"].items()}}), flush=True)


rows = []
try:
    load(rates[0], warmup, "warmup")
    for i, r in enumerate(rates):
        rows.append(load(r, duration, f"{int(r)}-{i}"))
    if os.environ.get("RATES_FULLMIX"):
        for b in os.environ["RATES_FULLMIX"].split():  # loadgen binaries, "new" for this tree's
            full_mix(bindir + "/loadgen" if b == "new" else b, "fullmix-" + os.path.basename(b))
finally:
    stackrun.stop(st)
json.dump(rows, open(outdir + "/rows.json", "w"), indent=1)
