package integration

import (
	"fmt"
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

// Changing the password is a guess at the account's password when the
// current one is wrong, so POST /api/v1/users/me/password meets the login
// limit, which comes before authentication: a call without a token spends
// one too. It is no public call (401 without a token), and a GET to the
// same path is no log in: it meets the per-IP and per-user limits only.
func TestPasswordChangeMeetsTheLoginLimit(t *testing.T) {
	w := newWorld(t)
	up := w.startUpstream("a", "v1")
	g := w.startGateway("GATEWAY_LOGIN_LIMIT=3/1m:3", "GATEWAY_IP_LIMIT=1000/1s", "GATEWAY_USER_LIMIT=2000/1s")
	const path = "/api/v1/users/me/password"
	body := func() *strings.Reader { return strings.NewReader(`{"current":"x","new":"y"}`) }

	r := w.do(g, "POST", path, nil, body())
	if r.Status != 401 || r.Header.Get("WWW-Authenticate") == "" || r.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("password change without a token: %d %v; want a 401 problem with WWW-Authenticate", r.Status, r.Header)
	}

	hdr := map[string]string{"Authorization": "Bearer " + w.token("pw-user-"+randHex(4))}
	var codes []int
	for range 4 {
		r := w.do(g, "POST", path, hdr, body())
		codes = append(codes, r.Status)
		if r.Status != 429 {
			continue
		}
		if got := r.Header.Get("RateLimit"); !strings.HasPrefix(got, "limit=3, remaining=0,") {
			t.Fatalf("429 RateLimit %q, want the login limit's", got)
		}
		if got := r.Header.Get("RateLimit-Policy"); got != "3;w=60" {
			t.Fatalf("429 RateLimit-Policy %q, want the login limit's", got)
		}
		if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 {
			t.Fatalf("429 without a usable Retry-After: %q", r.Header.Get("Retry-After"))
		}
		if r.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("429 is not problem+json: %v", r.Header)
		}
	}
	// The tokenless call spent the first of the three.
	if want := []int{200, 200, 429, 429}; fmt.Sprint(codes) != fmt.Sprint(want) {
		t.Fatalf("authenticated password changes: statuses %v, want %v", codes, want)
	}
	if n := up.hits(); n != 2 {
		t.Fatalf("upstream hits %d, want the 2 the login limit allowed", n)
	}

	r = w.do(g, "GET", path, hdr, nil)
	if r.Status != 200 {
		t.Fatalf("GET %s past the login limit: %d, want 200 (not a log in)", path, r.Status)
	}
	// The fields are the last limit's the call met: the per-user one.
	if got := r.Header.Get("RateLimit"); !strings.HasPrefix(got, "limit=2000,") {
		t.Fatalf("GET %s: RateLimit %q, want the per-user limit's", path, got)
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
