package route

import (
	"testing"
	"time"
)

func TestMatchLongestPrefixOnSegmentBoundary(t *testing.T) {
	tb, err := Parse(DefaultSpec+",/api/v1/orders/admin=admin", time.Second, DefaultPublic)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"/api/v1/orders":           "order",
		"/api/v1/orders/7":         "order",
		"/api/v1/orders/admin/x":   "admin",
		"/api/v1/ordersx":          "",
		"/api/v1/products":         "order",
		"/api/v1/sessions/refresh": "user",
		"/.well-known/jwks.json":   "user",
		"/api/v2/orders":           "",
		"/":                        "",
	}
	for path, want := range cases {
		r, ok := tb.Match([]byte(path))
		got := ""
		if ok {
			got = r.Service
		}
		if got != want {
			t.Errorf("Match(%q) = %q, want %q", path, got, want)
		}
	}
}

func TestIsPublic(t *testing.T) {
	tb, err := Parse(DefaultSpec, time.Second, DefaultPublic)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		method, path string
		want         bool
	}{
		{"POST", "/api/v1/users", true},
		{"GET", "/api/v1/users/me", false},
		{"GET", "/api/v1/users", false},
		{"POST", "/api/v1/sessions", true},
		{"DELETE", "/api/v1/sessions", false},
		{"POST", "/api/v1/sessions/refresh", true},
		{"POST", "/api/v1/sessions/refresh/x", false},
		{"GET", "/api/v1/products", true},
		{"HEAD", "/api/v1/products/sku-1", true},
		{"POST", "/api/v1/products", false},
		{"GET", "/api/v1/productsx", false},
		{"GET", "/.well-known/jwks.json", true},
		{"GET", "/api/v1/orders", false},
	}
	for _, c := range cases {
		if got := tb.IsPublic([]byte(c.method), []byte(c.path)); got != c.want {
			t.Errorf("IsPublic(%s %s) = %v, want %v", c.method, c.path, got, c.want)
		}
	}
}

func TestParseRejectsBadSpecs(t *testing.T) {
	for _, spec := range []string{"", "/a", "/a=", "a=svc", "/a/=svc", "/a/../b=svc", "/a//b=svc"} {
		if _, err := Parse(spec, time.Second, nil); err == nil {
			t.Errorf("Parse(%q) accepted", spec)
		}
	}
}

// A route's name (its prefix's last segment) keys its dynamic timeout and
// keyed_retry and its metrics, so two routes of one name shared them: a
// keyed_retry for /api/v1/orders retried POSTs to /admin/orders, whose
// upstream may not honour Idempotency-Key. A prefix twice left the second
// unreachable. Both are refused, naming the two prefixes.
func TestParseRefusesRoutesOfOneName(t *testing.T) {
	for _, spec := range []string{"/api/v1/orders=order,/admin/orders=admin", "/api/v1/orders=order,/api/v1/orders=other"} {
		if _, err := Parse(spec, time.Second, nil); err == nil {
			t.Errorf("Parse(%q) accepted", spec)
		}
	}
	if _, err := Parse("/api/v1/orders=order,/api/v1/orders/admin=admin", time.Second, nil); err != nil {
		t.Errorf("distinct names refused: %v", err)
	}
	if _, err := Parse(DefaultSpec, time.Second, DefaultPublic); err != nil {
		t.Errorf("the default table: %v", err)
	}
}

// The per-request route work (Clean into a reused buffer, Match, IsPublic)
// allocates nothing: it runs on the event loop for every request.
func TestLookupDoesNotAllocate(t *testing.T) {
	tb, err := Parse(DefaultSpec, time.Second, DefaultPublic)
	if err != nil {
		t.Fatal(err)
	}
	raw, method := []byte("/api/v1//orders/./7"), []byte("GET")
	buf := make([]byte, 0, 128)
	allocs := testing.AllocsPerRun(100, func() {
		buf, _ = Clean(buf[:0], raw)
		if rt, ok := tb.Match(buf); !ok || rt.Service != "order" {
			t.Fatalf("Match(%s) = %v, %v", buf, rt, ok)
		}
		_ = tb.IsPublic(method, buf)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per lookup", allocs)
	}
}

func TestWithKeyedRetryMarksOnlyTheNamedPrefixes(t *testing.T) {
	tb, err := Parse(DefaultSpec, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	keyed, err := tb.WithKeyedRetry(DefaultKeyedRetry)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range keyed.Routes() {
		if want := r.Prefix == "/api/v1/orders"; r.KeyedRetry != want {
			t.Errorf("route %s: KeyedRetry %v, want %v", r.Prefix, r.KeyedRetry, want)
		}
	}
	for _, r := range tb.Routes() {
		if r.KeyedRetry {
			t.Errorf("WithKeyedRetry changed the table it copied: %s", r.Prefix)
		}
	}
	if r, _ := keyed.Match([]byte("/api/v1/orders/7/cancel")); !r.KeyedRetry {
		t.Error("a path below a keyed prefix does not match a keyed route")
	}
	// Prefixes name routes exactly: a path below one, or one not routed, is
	// refused rather than doing nothing.
	for _, bad := range []string{"/api/v1/orders/7", "/api/v1/ordersx", "/api/v1/order"} {
		if _, err := tb.WithKeyedRetry([]string{bad}); err == nil {
			t.Errorf("WithKeyedRetry(%q) accepted a prefix the table does not route", bad)
		}
	}
}
