#!/usr/bin/env python3
"""What the registry's writes cost etcd's database file, and whether compaction alone, without a defrag, stops the file
growing: the arithmetic behind etcd's 256 MiB quota (deploy/README.md, "What the tests check"). etcd's quota is on the
file's size, which only a defrag shrinks; bbolt reuses the pages a compaction frees, so the file should stop at its peak
of live keys and history. Starts an etcd of its own (it compacts: never point this at the shared one), writes ROUNDS
rounds of 20,000 versions of 100 registration-sized keys (a 220-byte Instance under /shanhai/services/), compacting
before each round after the first, and prints the file's size and the part in use after each step.

    python3 deploy/scripts/etcd_churn.py /usr/bin/etcd 5
"""
import base64
import json
import socket
import subprocess
import sys
import tempfile
import urllib.request

from gateway_rss import wait_ready  # this directory is the script's, so first on sys.path

VERSIONS, PER_TXN = 20_000, 100
VALUE = json.dumps({"id": "payment-7f9c6d5b8-x2k4q-0123456789abcdef", "service": "payment", "addr": "10.244.0.17:9090",
                    "version": "v0.25.0-3e3cfdb9", "zone": "kind", "weight": 1,
                    "meta": {"grpc": "9091", "pod": "payment-7f9c6d5b8-x2k4q"}})


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64(s):
    return base64.b64encode(s.encode()).decode()


class Etcd:
    """An etcd of its own in a temporary directory, asked through its JSON gateway."""

    def __init__(self, binary, workdir):
        port = free_port()
        client, peer = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{free_port()}"
        self.endpoint = client
        self.log = open(f"{workdir}/etcd.log", "wb")
        self.proc = subprocess.Popen(
            [binary, "--name=churn", f"--data-dir={workdir}/data", f"--listen-client-urls={client}",
             f"--advertise-client-urls={client}", f"--listen-peer-urls={peer}",
             f"--initial-advertise-peer-urls={peer}", f"--initial-cluster=churn={peer}",
             "--quota-backend-bytes=268435456"], stdout=self.log, stderr=self.log)
        try:
            wait_ready(port, "/health", self.proc, 30)
        except SystemExit:
            self.stop()
            raise

    def call(self, path, body):
        req = urllib.request.Request(self.endpoint + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)

    def status(self):
        st = self.call("/v3/maintenance/status", {})
        return int(st["dbSize"]), int(st.get("dbSizeInUse", 0)), int(st["header"]["revision"])

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


def write_round(etcd):
    for _ in range(VERSIONS // PER_TXN):
        ops = [{"requestPut": {"key": b64(f"/shanhai/services/payment/{i:04d}"), "value": b64(VALUE)}}
               for i in range(PER_TXN)]
        etcd.call("/v3/kv/txn", {"success": ops})


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    binary, rounds = sys.argv[1], int(sys.argv[2])
    with tempfile.TemporaryDirectory() as workdir:
        etcd = Etcd(binary, workdir)
        try:
            print(f"value {len(VALUE)} bytes; start: file {etcd.status()[0]} bytes")
            before = etcd.status()[0]
            write_round(etcd)
            size, in_use, _ = etcd.status()
            print(f"{VERSIONS} versions: file {size}, in use {in_use}; {(size - before) / VERSIONS:.0f} bytes a version")
            for _ in range(rounds - 1):
                etcd.call("/v3/kv/compaction", {"revision": etcd.status()[2], "physical": True})
                size, in_use, _ = etcd.status()
                print(f"compacted: file {size}, in use {in_use}", end="; ")
                write_round(etcd)
                size, in_use, _ = etcd.status()
                print(f"{VERSIONS} more: file {size}, in use {in_use}")
        finally:
            etcd.stop()


if __name__ == "__main__":
    main()
