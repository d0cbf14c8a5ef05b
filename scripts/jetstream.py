"""Removes a JetStream stream with one raw request over a NATS socket, for the scripts that give each run of a service
binary a private stream (services/order/scripts/startup_bench.py, deploy/scripts/payment_rss.py) and must not leave it
on the shared server. No nats CLI or client library is needed.

    sys.path.insert(0, "<repository>/scripts")
    import jetstream
    jetstream.delete_stream(os.environ.get("NATS_URL", "nats://127.0.0.1:14222"), "BENCH1")
"""
import socket
import sys
from urllib.parse import urlparse


def delete_stream(nats_url, name, timeout=5):
    """Deletes stream name and waits for JetStream's answer. A cleanup step: it never raises, it says on stderr when
    the stream may be left behind (no answer, an error answer, no server, or an address it cannot read). Of a
    comma-separated list of servers, as the Go services accept in NATS_URL, it asks the first."""
    u = urlparse(nats_url.split(",")[0].strip())
    buf = b""
    try:
        with socket.create_connection((u.hostname, u.port or 4222), timeout=timeout) as s:
            s.recv(4096)  # INFO
            s.sendall(b'CONNECT {"verbose":false}\r\nSUB _INBOX.delete 1\r\n'
                      + f"PUB $JS.API.STREAM.DELETE.{name} _INBOX.delete 0\r\n\r\n".encode())
            while b'"success":true' not in buf and b'"error"' not in buf and b"-ERR" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
    except (OSError, ValueError) as e:  # ValueError: a port that is not a number
        print(f"stream {name} not deleted: {e}", file=sys.stderr)
        return
    if b'"success":true' not in buf:
        print(f"stream {name} not deleted: {buf!r}", file=sys.stderr)
