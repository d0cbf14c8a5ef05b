"""A stub JWKS server for the scripts that start one service binary alone (services/order/scripts/startup_bench.py,
deploy/scripts/payment_rss.py): a service fetches its key set before it is ready, and with no user service to publish
one the scripts serve this. The key is RFC 8032's first Ed25519 test vector, so a script can also sign a token the
service accepts (KEY_D); it signs nothing real.

    sys.path.insert(0, "<repository>/scripts")
    import jwks_stub
    srv = jwks_stub.serve("bench")   # JWKS_URL=f"http://127.0.0.1:{srv.server_port}/"; srv.shutdown() at the end
"""
import http.server
import json
import threading

KEY_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"  # the public key
KEY_D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"  # its private half


def serve(kid):
    """Serves a key set holding the one key, named kid, at every path of a free loopback port, from a daemon thread.
    Returns the server: its server_port, and shutdown()."""
    body = json.dumps({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA", "use": "sig",
                                 "x": KEY_X}]}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv
