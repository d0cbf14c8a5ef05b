package service_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// TestBadInputIsProblemNamingTheField probes every route with hostile ids,
// query parameters and credentials: each is a 4xx problem with a type, never
// a 5xx, and another user's payment is indistinguishable from none.
func TestBadInputIsProblemNamingTheField(t *testing.T) {
	h := newHarness(t, nil)
	// alice's token with its payload swapped for bob's: the signature no longer matches.
	tampered := h.token("alice")
	if parts, bobs := strings.Split(tampered, "."), strings.Split(h.token("bob"), "."); len(parts) == 3 && len(bobs) == 3 {
		tampered = parts[0] + "." + bobs[1] + "." + parts[2]
	}
	tests := []struct {
		name, method, path, user string
		hdr                      []string
		status                   int
		field                    string
	}{
		{"bad id", "GET", "/api/v1/payments/nope", "alice", nil, 400, "id"},
		{"overlong id", "GET", "/api/v1/payments/" + strings.Repeat("a", 4096), "alice", nil, 400, "id"},
		{"braced id", "GET", "/api/v1/payments/{" + uuid.NewString() + "}", "alice", nil, 400, "id"},
		{"urn id", "GET", "/api/v1/payments/urn:uuid:" + uuid.NewString(), "alice", nil, 400, "id"},
		{"nul in id", "GET", "/api/v1/payments/%00" + uuid.NewString()[1:], "alice", nil, 400, "id"},
		{"unknown id", "GET", "/api/v1/payments/" + uuid.NewString(), "alice", nil, 404, ""},
		{"bad order_id", "GET", "/api/v1/payments?order_id=42", "alice", nil, 400, "order_id"},
		{"empty order_id", "GET", "/api/v1/payments?order_id=", "alice", nil, 400, "order_id"},
		{"quoted order_id", "GET", "/api/v1/payments?order_id=%27%20OR%201=1%20--", "alice", nil, 400, "order_id"},
		{"no token", "GET", "/api/v1/payments", "", nil, 401, ""},
		{"no token on id", "GET", "/api/v1/payments/" + uuid.NewString(), "", nil, 401, ""},
		{"garbage token", "GET", "/api/v1/payments", "alice", []string{"Authorization", "Bearer not.a.token"}, 401, ""},
		{"basic auth", "GET", "/api/v1/payments", "alice", []string{"Authorization", "Basic YWxpY2U6cHc="}, 401, ""},
		{"tampered token", "GET", "/api/v1/payments", "alice", []string{"Authorization", "Bearer " + tampered}, 401, ""},
		{"other X-User-ID", "GET", "/api/v1/payments", "alice", []string{"X-User-ID", "bob"}, 401, ""},
		{"POST to a read-only API", "POST", "/api/v1/payments", "alice", nil, 405, ""},
		{"DELETE a payment", "DELETE", "/api/v1/payments/" + uuid.NewString(), "alice", nil, 405, ""},
		{"no such route", "GET", "/api/v1/refunds", "alice", nil, 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.do(tt.method, tt.path, tt.user, tt.hdr...)
			if r.Status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tt.status, r.Body)
			}
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
				t.Fatalf("content type %q: %s", ct, r.Body)
			}
			var p struct {
				Type   string
				Errors []struct{ Field string }
			}
			if err := json.Unmarshal(r.Body, &p); err != nil || p.Type == "" {
				t.Fatalf("not a problem with a type (%v): %s", err, r.Body)
			}
			if tt.field != "" && (len(p.Errors) == 0 || p.Errors[0].Field != tt.field) {
				t.Fatalf("errors %+v do not name %q", p.Errors, tt.field)
			}
		})
	}
	if r := h.get("/api/v1/payments", "alice"); r.Status != http.StatusOK || string(r.Body) != `{"payments":[]}` {
		t.Fatalf("alice's empty list: %d %s", r.Status, r.Body)
	}
}
