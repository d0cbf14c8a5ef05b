#!/usr/bin/env python3
"""The gateway's resident memory idle and after a few seconds of requests, for its memory request (deploy/README.md,
"Memory requests"). Runs a gateway binary built as deploy/Dockerfile builds it, with deploy's GOMEMLIMIT and one event
loop (its 1-CPU limit) and deploy's rate limits (the binary's defaults: the per-IP one answers most requests 429 from
Redis), against the etcd and Redis of `scripts/deps.sh env`; no upstream runs, so the rest end in 401, 404 and 503,
which still go through the parser, the limits and the router. A variable set in the caller's environment that is not
among those below (GATEWAY_IP_LIMIT=0, say) reaches the gateway, for a side-by-side run.

    eval "$(scripts/deps.sh env)"
    CGO_ENABLED=0 go build -trimpath -tags nosqlite,nomsgpack -ldflags="-s -w" -o /tmp/gw ./gateway/cmd/gateway
    python3 deploy/scripts/gateway_rss.py /tmp/gw 3
"""
import http.client
import os
import statistics
import subprocess
import sys
import threading
import time

HTTP, ADMIN = 28080, 29080


def status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) / 1024
    return out


def wait_ready(port, path, proc, seconds):
    """Polls GET path on port until it answers 200; exits if the process ends or the time runs out first."""
    deadline = time.time() + seconds
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        if time.time() > deadline or proc.poll() is not None:
            sys.exit(f"{path} on port {port} did not answer 200 in {seconds} s")
        time.sleep(0.05)


class Peak:
    """The most VmRSS and RssAnon a process holds from now until stop(), read every 20 ms by a thread of its own."""

    def __init__(self, pid):
        self.pid, self.max, self.done = pid, {"VmRSS": 0.0, "RssAnon": 0.0}, threading.Event()
        self.thread = threading.Thread(target=self.sample)
        self.thread.start()

    def sample(self):
        while not self.done.is_set():
            now = status(self.pid)
            for key in self.max:
                self.max[key] = max(self.max[key], now[key])
            time.sleep(0.02)

    def stop(self):
        self.done.set()
        self.thread.join()
        return self.max


def print_burst(results):
    """Prints the medians and ranges of runs that each returned (peak, 2 s after), as user_rss.py's and
    payment_rss.py's do."""
    for key in ("VmRSS", "RssAnon"):
        peaks, afters = [r[0][key] for r in results], [r[1][key] for r in results]
        print(f"{key} MiB: peak median {statistics.median(peaks):.1f} ({min(peaks):.1f}-{max(peaks):.1f}), "
              f"2 s after the burst median {statistics.median(afters):.1f} ({min(afters):.1f}-{max(afters):.1f})")
    afters = [r[1]["RssFile"] for r in results]
    print(f"RssFile MiB: 2 s after the burst median {statistics.median(afters):.1f}")


def get(conn, path):
    conn.request("GET", path, headers={"Host": "gateway", "Authorization": "Bearer abc.def.ghi"})
    resp = conn.getresponse()
    resp.read()
    return resp.status


def run(binary, i):
    name = f"rss{os.getpid()}-{i}"  # limits and dynamic config of its own in the shared Redis and etcd
    env = dict(os.environ, HTTP_ADDR=f":{HTTP}", ADMIN_ADDR=f"127.0.0.1:{ADMIN}", GOMEMLIMIT="102MiB",
               GATEWAY_EVENT_LOOPS="1", GATEWAY_LIMIT_NAMESPACE=name, GATEWAY_DYNAMIC_KEY=name,
               OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:1",
               OTEL_METRICS_EXPORTER="none", LOG_LEVEL="error")
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL)
    try:
        wait_ready(HTTP, "/healthz", proc, 10)
        time.sleep(2)
        idle = status(proc.pid)
        conn, codes, end = http.client.HTTPConnection("127.0.0.1", HTTP, timeout=5), {}, time.time() + 5
        while time.time() < end:
            for path in ("/api/v1/products", "/api/v1/orders/x", "/.well-known/jwks.json", "/nope"):
                code = get(conn, path)
                codes[code] = codes.get(code, 0) + 1
        time.sleep(2)
        after = status(proc.pid)
        print(i, "idle", idle, "after", after, codes, flush=True)
        return idle, after
    finally:
        proc.terminate()
        proc.wait()


def main():
    binary, runs = sys.argv[1], int(sys.argv[2])
    results = [run(binary, i) for i in range(runs)]
    for key in ("VmRSS", "RssAnon", "RssFile"):
        print(f"{key} MiB: idle median {statistics.median(r[0][key] for r in results):.1f}, "
              f"after requests median {statistics.median(r[1][key] for r in results):.1f}")


if __name__ == "__main__":
    main()
