package integration

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// Two gateway processes share one per-user limit through Redis.
func TestTwoGatewaysShareOnePerUserLimit(t *testing.T) {
	w := newWorld(t)
	w.startUpstream("a", "v1")
	env := []string{"GATEWAY_USER_LIMIT=10/1m:10", "GATEWAY_REPLICAS=2"}
	g1 := w.startGateway(env...)
	g2 := w.startGateway(env...)
	user := "limit-user-" + randHex(4)
	hdr := map[string]string{"Authorization": "Bearer " + w.token(user)}
	other := map[string]string{"Authorization": "Bearer " + w.token(user+"-other")}

	allowed, denied := 0, 0
	for i := range 30 {
		g := g1
		if i%2 == 1 {
			g = g2
		}
		r := w.do(g, "GET", "/api/v1/orders", hdr, nil)
		switch r.Status {
		case 200:
			allowed++
		case 429:
			denied++
			ra, err := strconv.Atoi(r.Header.Get("Retry-After"))
			if err != nil || ra < 1 {
				t.Fatalf("429 without a usable Retry-After: %q", r.Header.Get("Retry-After"))
			}
			if !strings.Contains(r.Header.Get("RateLimit"), "limit=10") || r.Header.Get("RateLimit-Policy") == "" {
				t.Fatalf("429 without RateLimit headers: %v", r.Header)
			}
			if r.Header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("429 is not problem+json: %v", r.Header)
			}
		default:
			t.Fatalf("unexpected status %d: %s", r.Status, r.Body)
		}
	}
	// One gateway alone would allow 10, two independent ones 20.
	if allowed != 10 || denied != 20 {
		t.Fatalf("allowed %d, denied %d across two gateways; want 10 and 20 (one shared limit)", allowed, denied)
	}
	// The limit is per user: someone else is unaffected.
	if r := w.do(g1, "GET", "/api/v1/orders", other, nil); r.Status != 200 {
		t.Fatalf("another user got %d", r.Status)
	}
}

// Log in is limited per IP more strictly than the rest of the API.
func TestLoginHasStricterLimit(t *testing.T) {
	w := newWorld(t)
	w.startUpstream("a", "v1")
	g := w.startGateway("GATEWAY_LOGIN_LIMIT=3/1m:3", "GATEWAY_IP_LIMIT=1000/1s")
	codes := map[int]int{}
	for range 6 {
		codes[w.do(g, "POST", "/api/v1/sessions", nil, strings.NewReader(`{}`)).Status]++
	}
	if codes[200] != 3 || codes[429] != 3 {
		t.Fatalf("login statuses %v, want 3x200 and 3x429", codes)
	}
	// Other public calls from the same IP still pass.
	if r := w.do(g, "GET", "/api/v1/products", nil, nil); r.Status != 200 {
		t.Fatalf("products after login limit: %d", r.Status)
	}
}

// The login limit applies on top of the per-IP one: with it off, log in is
// still limited per IP (it was not limited at all).
func TestLoginWithoutItsLimitMeetsThePerIPLimit(t *testing.T) {
	w := newWorld(t)
	w.startUpstream("a", "v1")
	g := w.startGateway("GATEWAY_LOGIN_LIMIT=0", "GATEWAY_IP_LIMIT=3/1m:3")
	codes := map[int]int{}
	for range 6 {
		codes[w.do(g, "POST", "/api/v1/sessions", nil, strings.NewReader(`{}`)).Status]++
	}
	if codes[200] != 3 || codes[429] != 3 {
		t.Fatalf("login statuses %v, want 3x200 and 3x429", codes)
	}
}

// Limits change at run time through the dynamic config, without a restart.
func TestLimitsFollowDynamicConfig(t *testing.T) {
	w := newWorld(t)
	w.startUpstream("a", "v1")
	g := w.startGateway()
	hdr := map[string]string{"Authorization": "Bearer " + w.token("dyn-user-"+randHex(4))}
	for range 5 {
		if r := w.do(g, "GET", "/api/v1/orders", hdr, nil); r.Status != 200 {
			t.Fatalf("before the change: %d", r.Status)
		}
	}
	w.setDynamic(`{"limits": {"user": "2/1m:2"}}`)
	// Applied within a moment; from then on a fresh user gets exactly 2.
	eventually(t, 3*time.Second, "new user limit applied", func() bool {
		return w.do(g, "GET", "/api/v1/orders", hdr, nil).Status == 429
	})
	fresh := map[string]string{"Authorization": "Bearer " + w.token("dyn-fresh-"+randHex(4))}
	codes := map[int]int{}
	for range 4 {
		codes[w.do(g, "GET", "/api/v1/orders", fresh, nil).Status]++
	}
	if codes[200] != 2 || codes[429] != 2 {
		t.Fatalf("with 2/1m: %v", codes)
	}
}
