#!/usr/bin/env python3
"""The user service's resident memory through a burst of sign-ups and log ins, for its memory request (deploy/README.md,
"Memory requests"): its work is argon2id hashing, each hash a 19 MiB block. Runs a user binary built as
deploy/Dockerfile builds it, with deploy's GOMEMLIMIT (76MiB; a GOMEMLIMIT in the caller's environment replaces it,
for a side-by-side run) and ARGON2_CONCURRENCY, on a database of its own in the PostgreSQL of `scripts/deps.sh env`
(dropped after), its sign-up and log-in guards lifted; 32 clients each sign up and log in 7 times (256 hashes), as
deploy/argon2_test.go's figures were taken. Needs python3 and psql.

    eval "$(scripts/deps.sh env)"
    CGO_ENABLED=0 go build -trimpath -tags nosqlite,nomsgpack -ldflags="-s -w" -o /tmp/user ./services/user/cmd/user
    python3 deploy/scripts/user_rss.py /tmp/user 5
"""
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from urllib.parse import urlparse

from gateway_rss import Peak, print_burst, status, wait_ready  # this directory is the script's, so first on sys.path

HTTP, ADMIN = 28081, 29081
CLIENTS, LOGINS = 32, 7


def post(conn, path, body):
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    resp.read()
    return resp.status


def client(codes):
    conn, email = http.client.HTTPConnection("127.0.0.1", HTTP, timeout=60), f"{uuid.uuid4().hex}@example.com"
    calls = [("/api/v1/users", {"email": email, "password": "correct horse battery", "name": "rss"})]
    calls += [("/api/v1/sessions", {"email": email, "password": "correct horse battery"})] * LOGINS
    for path, body in calls:
        code = post(conn, path, body)
        codes[code] = codes.get(code, 0) + 1


def run(binary, i):
    db = f"rss_user_{os.getpid()}_{i}"
    subprocess.run(["psql", os.environ["DATABASE_URL"], "-qc", f"CREATE DATABASE {db}"], check=True)
    env = dict(os.environ, HTTP_ADDR=f"127.0.0.1:{HTTP}", ADMIN_ADDR=f"127.0.0.1:{ADMIN}",
               GOMEMLIMIT=os.environ.get("GOMEMLIMIT", "76MiB"), ARGON2_CONCURRENCY="1", AUTH_DEV_KEYS="true", LOG_LEVEL="error",
               DATABASE_URL=urlparse(os.environ["DATABASE_URL"])._replace(path="/" + db).geturl(),
               SIGNUP_IP_ATTEMPTS="1000000", LOGIN_IP_ATTEMPTS="1000000", LOGIN_ACCOUNT_ATTEMPTS="1000000",
               OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:1", OTEL_METRICS_EXPORTER="none")
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL)
    try:
        wait_ready(HTTP, "/readyz", proc, 20)
        time.sleep(2)
        idle, codes, sampler = status(proc.pid), {}, Peak(proc.pid)  # the burst's peak
        clients = [threading.Thread(target=client, args=(codes,)) for _ in range(CLIENTS)]
        for t in clients:
            t.start()
        for t in clients:
            t.join()
        peak = sampler.stop()
        time.sleep(2)
        after = status(proc.pid)
        print(i, "idle", idle, "peak", peak, "2 s after", after, codes, flush=True)
        return peak, after
    finally:
        proc.terminate()
        proc.wait()
        subprocess.run(["psql", os.environ["DATABASE_URL"], "-qc", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"])


def main():
    binary, runs = sys.argv[1], int(sys.argv[2])
    results = [run(binary, i) for i in range(runs)]
    print_burst(results)


if __name__ == "__main__":
    main()
