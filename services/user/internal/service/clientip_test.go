package service_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// serverFree adds to env what runs the service on this machine alone: SQLite
// in a temporary directory, and a Redis nobody listens on, so the login and
// sign-up limits count locally (limit.Redis's fallback, ÷ REPLICAS = 1).
func serverFree(t *testing.T, env map[string]string) map[string]string {
	t.Helper()
	vars := map[string]string{
		"DATABASE_URL": "sqlite://" + t.TempDir() + "/user.db",
		"REDIS_URL":    "redis://" + testenv.ClosedPort(t) + "/0",
	}
	for k, v := range env {
		vars[k] = v
	}
	return vars
}

// TestForwardedClientWithAPortIsCountedByItsAddress: the login limit per IP
// counts a client behind trusted proxies by the address the forwarded chain
// gives, also when a proxy wrote it with its port (Azure's Application
// Gateway does; the gateway reads "203.0.113.9:4711" as 203.0.113.9), and
// never by X-Real-IP, which the gateway does not write and passes on from a
// trusted peer as the client sent it. gin's ClientIP stopped at such an entry
// and took X-Real-IP instead: an attacker choosing a fresh one per attempt
// was never limited; and without it, the proxy's own address, so every
// client behind it shared one quota.
func TestForwardedClientWithAPortIsCountedByItsAddress(t *testing.T) {
	h := newHarness(t, serverFree(t, map[string]string{"LOGIN_IP_ATTEMPTS": "3"}))
	h.ip = "127.0.0.1" // the gateway, trusted (TRUSTED_PROXIES' default)
	login := func(headers ...string) response {
		t.Helper()
		return h.do("POST", "/api/v1/sessions", fmt.Sprintf(`{"email":%q,"password":%q}`, uniqEmail(), password), headers...)
	}

	// One client, a new X-Real-IP on each attempt: its quota still ends.
	for range 3 {
		isProblem(t, login("X-Forwarded-For", "203.0.113.9:4711, 127.0.0.1", "X-Real-IP", randomIP()), http.StatusUnauthorized, "")
	}
	r := login("X-Forwarded-For", "203.0.113.9:4711, 127.0.0.1", "X-Real-IP", randomIP())
	isProblem(t, r, http.StatusTooManyRequests, "")
	checkRateLimitHeaders(t, r, `"login-ip";q=3;w=300`, `"login-ip";r=0;t=`)
	// The same client by its address alone, and in IPv6 form with a port.
	isProblem(t, login("X-Forwarded-For", "203.0.113.9"), http.StatusTooManyRequests, "")
	for range 3 {
		isProblem(t, login("X-Forwarded-For", "[2001:db8::1]:443"), http.StatusUnauthorized, "")
	}
	isProblem(t, login("X-Forwarded-For", "2001:db8::2"), http.StatusTooManyRequests, "") // the same /64

	// Other clients behind the same proxies each have a quota of their own.
	for _, client := range []string{"198.51.100.7:4711", "198.51.100.8:4711"} {
		for range 3 {
			isProblem(t, login("X-Forwarded-For", client), http.StatusUnauthorized, "")
		}
	}
	// Left of the first address no trusted proxy has, the chain is the
	// client's to write, and not read.
	isProblem(t, login("X-Forwarded-For", "garbage, 198.51.100.9"), http.StatusUnauthorized, "")
}
