#!/usr/bin/env python3
"""Time from exec to /readyz 200, and idle RSS, for the order or payment binary.

Usage (from the repository root, with scripts/deps.sh up):
    python3 services/order/scripts/startup_bench.py order [runs]
    python3 services/order/scripts/startup_bench.py payment [runs]

Why Python: the probe loop has to be cheaper than the thing it measures;
spawning curl per poll costs milliseconds, an in-process HTTP poll does not.

Each run starts the built binary against the local test servers with its own
fresh PostgreSQL database for the first run (migrations from empty) and the
same database afterwards (the usual restart). It uses a private NATS stream
and subject prefix and a stub JWKS server, so it never joins a running
environment's consumers; it does register in etcd (as a real start does),
under version "bench-...", for the few seconds it runs. After /readyz answers
200 it waits 3 s idle, reads VmRSS from /proc, and sends SIGTERM.
"""
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from urllib.parse import urlparse

svc = sys.argv[1] if len(sys.argv) > 1 else "order"
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))

env = dict(os.environ)
for line in subprocess.run([os.path.join(root, "scripts", "deps.sh"), "env"], capture_output=True, text=True, check=True).stdout.splitlines():
    if line.startswith("export "):
        k, v = line[len("export "):].split("=", 1)
        env[k] = v.strip("'\"")

tmp = tempfile.mkdtemp(prefix="startup-bench-")
binary = os.path.join(tmp, svc)
subprocess.run(["go", "build", "-o", binary, f"./services/{svc}/cmd/{svc}"], cwd=root, check=True)

# A stub JWKS: the verifier only needs a parseable key set to be ready.
jwks = json.dumps({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "bench", "alg": "EdDSA", "use": "sig",
                             "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}).encode()


class JWKS(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(jwks)

    def log_message(self, *a):
        pass


jwks_srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), JWKS)
threading.Thread(target=jwks_srv.serve_forever, daemon=True).start()

# A fresh database on the test server.
db_url = urlparse(env["DATABASE_URL"])
db_name = "bench_" + uuid.uuid4().hex[:10]
subprocess.run(["psql", env["DATABASE_URL"], "-qc", f"CREATE DATABASE {db_name}"], check=True)
fresh_url = db_url._replace(path="/" + db_name).geturl()


def delete_stream(name):
    """Remove the private stream with a raw JetStream API request (no nats CLI needed)."""
    u = urlparse(env.get("NATS_URL", "nats://127.0.0.1:14222"))
    try:
        with socket.create_connection((u.hostname, u.port or 4222), timeout=2) as s:
            s.recv(4096)  # INFO
            s.sendall(b'CONNECT {"verbose":false}\r\nSUB _bench.reply 1\r\n')
            s.sendall(f"PUB $JS.API.STREAM.DELETE.{name} _bench.reply 0\r\n\r\nPING\r\n".encode())
            s.recv(4096)
    except OSError as e:
        print(f"could not delete stream {name}: {e}", file=sys.stderr)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


prefix = "bench" + uuid.uuid4().hex[:6]
ready_ms, rss_kb, anon_kb = [], [], []
try:
    for i in range(runs):
        port = free_port()
        e = dict(env, HTTP_ADDR=f"127.0.0.1:{port}", ADMIN_ADDR=f"127.0.0.1:{free_port()}", DATABASE_URL=fresh_url,
                 JWKS_URL=f"http://127.0.0.1:{jwks_srv.server_port}/", SERVICE_VERSION="bench-" + prefix,
                 NATS_STREAM=prefix.upper(), NATS_SUBJECT_PREFIX=prefix + ".", LOG_LEVEL="debug",
                 PAYMENT_SETTINGS_KEY=f"/shanhai/bench/{prefix}")
        t0 = time.perf_counter()
        p = subprocess.Popen([binary], env=e, stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, f"{svc}-{i}.log"), "w"))
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
                sys.exit(f"{svc} exited with {p.returncode}; see {tmp}/{svc}-{i}.log")
            time.sleep(0.0005)
        took = (time.perf_counter() - t0) * 1000
        if status != 200:
            p.kill()
            sys.exit(f"{svc} not ready after 10 s (last status {status}); see {tmp}/{svc}-{i}.log")
        time.sleep(3)
        with open(f"/proc/{p.pid}/status") as f:
            st = {l.split(":")[0]: int(l.split()[1]) for l in f if l.startswith(("VmRSS:", "RssAnon:", "RssFile:"))}
        rss = st["VmRSS"]
        anon_kb.append(st["RssAnon"])
        phases = ""
        with open(os.path.join(tmp, f"{svc}-{i}.log")) as f:
            for line in f:
                if "service wired" in line:
                    d = json.loads(line)
                    phases = ", wiring " + " ".join(f"{k}={v}" for k, v in d.items() if k not in ("time", "level", "msg"))
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=15)
        ready_ms.append(took)
        rss_kb.append(rss)
        print(f"run {i + 1}: ready in {took:.1f} ms{' (migrations from empty)' if i == 0 else ''}, "
              f"idle RSS {rss / 1024:.1f} MiB (anonymous {st['RssAnon'] / 1024:.1f}, file {st['RssFile'] / 1024:.1f}){phases}")
finally:
    subprocess.run(["psql", env["DATABASE_URL"], "-qc", f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"])
    delete_stream(prefix.upper())
    jwks_srv.shutdown()

shutil.rmtree(tmp, ignore_errors=True)  # kept only when a run failed (sys.exit above)

warm = ready_ms[1:] or ready_ms
print(f"{svc}: first start {ready_ms[0]:.1f} ms; restarts median {statistics.median(warm):.1f} ms "
      f"(min {min(warm):.1f}, max {max(warm):.1f}); idle RSS median {statistics.median(rss_kb) / 1024:.1f} MiB "
      f"(anonymous {statistics.median(anon_kb) / 1024:.1f} MiB)")
