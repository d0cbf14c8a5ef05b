// Package testenv connects integration tests to the real servers that scripts/deps.sh runs: PostgreSQL, Redis, etcd,
// NATS, Kafka and Pulsar. Each function reads the variable `scripts/deps.sh env` prints (falling back to the test ports of
// docs/conventions.md), checks within a couple of seconds that the server answers, and returns what a client needs.
//
// A missing server fails the test with the command that starts it. It never skips: a green run must mean the real
// server was exercised, and a skipped integration test looks green.
//
// The package is imported by most test binaries, so it checks reachability with plain TCP and needs a client library
// only for PostgreSQL, where it creates a database per test. What the services' tests build on these servers lives in
// subpackages that bring their own clients: storetest (a migrated database per dialect) and svctest (a private
// JetStream stream, bridge-style publishing, a Kafka tail, a JWKS issuer, the in-process start and the run check).
package testenv

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/redact"
)

// Hint is what a failing test tells the developer to do.
const Hint = "run ./scripts/deps.sh up (or make test)"

// dialTimeout bounds the reachability check; a local server answers in microseconds, so 2 s only ever waits on a
// machine too loaded to run the tests anyway.
const dialTimeout = 2 * time.Second

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// reachable fails t unless a TCP connection to hostport succeeds.
func reachable(t testing.TB, server, hostport string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", hostport, dialTimeout)
	if err != nil {
		t.Fatalf("%s not reachable at %s: %s (%v)", server, hostport, Hint, err)
	}
	_ = c.Close()
}

// reachableAny fails t unless a TCP connection to one of hostports succeeds, naming them as shown. Each failure is
// told by its place in the list and its reason alone (dialReason): a host:port read from a list split at a comma in a
// password holds part of it, and a dial error quotes what it dialled.
func reachableAny(t testing.TB, server, shown string, hostports []string) {
	t.Helper()
	var errs []string
	for i, hp := range hostports {
		c, err := net.DialTimeout("tcp", hp, dialTimeout)
		if err == nil {
			_ = c.Close()
			return
		}
		errs = append(errs, fmt.Sprintf("server %d: %s", i+1, dialReason(err)))
	}
	t.Fatalf("%s not reachable at %s: %s (%s)", server, shown, Hint, strings.Join(errs, "; "))
}

// dialReason is why a dial failed, without the address it was given: "no such host", "unknown port",
// "connect: connection refused", "i/o timeout".
func dialReason(err error) string {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.Err
	}
	var addrErr *net.AddrError
	if errors.As(err, &addrErr) {
		return addrErr.Err
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Err != nil {
		return opErr.Err.Error()
	}
	return "not reachable"
}

// hostOf returns host:port of a URL such as nats://127.0.0.1:14222, or the input when it has no scheme. One without
// a scheme but with user info (nats.go reads bob:pw@host:4222, or a token as TOKEN@host:4222, as nats://) is parsed
// for its host as well: dialled whole it could not connect, and its failure quoted the password or token.
func hostOf(t testing.TB, variable, raw string) string {
	t.Helper()
	if !strings.Contains(raw, "://") {
		if !strings.Contains(raw, "@") {
			return raw
		}
		return parseServerURL(t, variable, "//"+raw).Host
	}
	return parseServerURL(t, variable, raw).Host
}

// parseServerURL parses raw, the value of variable, as a URL with a host, or fails t naming it through
// redact.URL: a failure lands in CI logs, and url.Parse's error quotes the whole URL, password included. A URL
// with an '@' after its user info is refused too: an unencoded #, / or ? in a password ended the authority
// early, and the "host" url.Parse read there is part of the password.
func parseServerURL(t testing.TB, variable, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || strings.Count(raw, "@") > 1 || u.User == nil && strings.Contains(raw, "@") {
		t.Fatalf("testenv: %s=%s is not a URL with host:port (percent-encode any %%, #, /, ?, @ or : in its "+
			"user name or password)", variable, redact.URL(raw))
	}
	return u
}

// list splits a comma list, dropping blanks.
func list(raw string) []string {
	var out []string
	for _, s := range strings.Split(raw, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
