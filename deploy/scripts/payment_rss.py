#!/usr/bin/env python3
"""The payment service's resident memory through a burst of orders to charge, for its memory request (deploy/README.md,
"Memory requests"): its work is consuming order.created from JetStream (64 workers), charging the simulated provider,
storing each result with its outbox row and relaying those to Kafka. Runs a payment binary built as deploy/Dockerfile
builds it, with deploy's GOMEMLIMIT (51MiB; a GOMEMLIMIT in the caller's environment replaces it, for a side-by-side
run), against the PostgreSQL (a database of its own, dropped after), NATS (a stream and subject prefix of its own,
deleted after), etcd (a settings key of its own; it registers as payment, version rss-...) and Kafka (the platform's
shanhai.payments topic, as the payment binary's own tests write it) of `scripts/deps.sh env`. ORDERS order.created are
published at once, as the bridge hands over a backlog, and the run waits until each is charged and its result
relayed. Needs python3 and psql.

    eval "$(scripts/deps.sh env)"
    CGO_ENABLED=0 go build -trimpath -tags nosqlite,nomsgpack -ldflags="-s -w" -o /tmp/payment ./services/payment/cmd/payment
    python3 deploy/scripts/payment_rss.py /tmp/payment 5
"""
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from urllib.parse import urlparse

from gateway_rss import Peak, print_burst, status, wait_ready  # this directory is the script's, so first on sys.path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import jetstream  # noqa: E402
import jwks_stub  # noqa: E402  the key set the service fetches before it is ready: no request here carries a token

HTTP, ADMIN = 28083, 29083
ORDERS = 2000

def nats_conn():
    u = urlparse(os.environ.get("NATS_URL", "nats://127.0.0.1:14222"))
    s = socket.create_connection((u.hostname, u.port or 4222), timeout=10)
    s.recv(4096)  # INFO
    s.sendall(b'CONNECT {"verbose":false,"headers":true}\r\n')
    return s


def flush(s):
    """Sends PING and reads up to its PONG: the server has taken everything sent before."""
    s.sendall(b"PING\r\n")
    buf = b""
    while b"PONG" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("NATS closed the connection")
        buf += chunk
    if b"-ERR" in buf:
        sys.exit(f"NATS refused a message: {buf!r}")


def publish_orders(subject, n):
    """Publishes n order.created of 50 EUR on subject, with the headers the bridge gives them."""
    s = nats_conn()
    try:
        for _ in range(n):
            order = str(uuid.uuid4())
            data = json.dumps({"order_id": order, "user_id": "rss", "total_cents": 5000, "currency": "EUR"}).encode()
            hdrs = {"ce_specversion": "1.0", "ce_id": str(uuid.uuid4()), "ce_type": "order.created",
                    "ce_source": "/shanhai/order", "ce_subject": order,
                    "ce_time": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
                    "content-type": "application/json", "kafka_topic": "shanhai.orders", "kafka_key": order,
                    "Nats-Msg-Id": "shanhai.orders/0/" + str(uuid.uuid4())}
            head = ("NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n").encode()
            s.sendall(f"HPUB {subject} {len(head)} {len(head) + len(data)}\r\n".encode() + head + data + b"\r\n")
        flush(s)
    finally:
        s.close()


def sql(db_url, query):
    out = subprocess.run(["psql", db_url, "-tAc", query], capture_output=True, text=True, check=True).stdout
    return int(out.strip())


def run(binary, i, jwks_port):
    name = f"rss{os.getpid()}x{i}"
    db = f"rss_payment_{os.getpid()}_{i}"
    subprocess.run(["psql", os.environ["DATABASE_URL"], "-qc", f"CREATE DATABASE {db}"], check=True)
    db_url = urlparse(os.environ["DATABASE_URL"])._replace(path="/" + db).geturl()
    env = dict(os.environ, HTTP_ADDR=f"127.0.0.1:{HTTP}", ADMIN_ADDR=f"127.0.0.1:{ADMIN}",
               GOMEMLIMIT=os.environ.get("GOMEMLIMIT", "51MiB"), LOG_LEVEL="error", DATABASE_URL=db_url,
               NATS_STREAM=name.upper(), NATS_SUBJECT_PREFIX=name + ".", SERVICE_VERSION="rss-" + name,
               PAYMENT_SETTINGS_KEY=f"/shanhai/rss/{name}", JWKS_URL=f"http://127.0.0.1:{jwks_port}/",
               OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:1", OTEL_METRICS_EXPORTER="none")
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL)
    try:
        wait_ready(HTTP, "/readyz", proc, 30)
        time.sleep(2)
        idle, sampler = status(proc.pid), Peak(proc.pid)
        start = time.time()
        publish_orders(name + ".shanhai.orders", ORDERS)
        final = unsent = -1
        while time.time() < start + 300:
            final = sql(db_url, "SELECT count(*) FROM payments WHERE status <> 'PENDING'")
            unsent = sql(db_url, "SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            if final == ORDERS and unsent == 0 or proc.poll() is not None:
                break
            time.sleep(0.2)
        took = time.time() - start
        if final != ORDERS or unsent != 0:
            sys.exit(f"run {i}: {final} of {ORDERS} payments final, {unsent} results unrelayed after {took:.0f} s")
        # The peak includes the 2 s after: in earlier runs, sampled until the last result was relayed, the RSS 2 s
        # after was above that peak.
        time.sleep(2)
        after = status(proc.pid)
        peak = sampler.stop()
        print(i, f"{took:.1f} s", "idle", idle, "peak", peak, "2 s after", after, flush=True)
        return peak, after
    finally:
        proc.terminate()
        proc.wait()
        jetstream.delete_stream(os.environ.get("NATS_URL", "nats://127.0.0.1:14222"), name.upper())
        subprocess.run(["psql", os.environ["DATABASE_URL"], "-qc", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"])


def main():
    binary, runs = sys.argv[1], int(sys.argv[2])
    jwks = jwks_stub.serve("rss")
    results = [run(binary, i, jwks.server_port) for i in range(runs)]
    print_burst(results)


if __name__ == "__main__":
    main()
