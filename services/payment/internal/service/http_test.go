package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
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
		// gin's GetQuery reads the first of several: asking for either of two orders listed the first one's alone.
		{"order_id given twice", "GET", "/api/v1/payments?order_id=" + uuid.NewString() + "&order_id=" + uuid.NewString(), "alice", nil, 400, "order_id"},
		// A pair url.ParseQuery cannot decode is dropped from the query gin reads: the filter or page asked for
		// vanished, and the whole list came back 200.
		{"bad escape in order_id", "GET", "/api/v1/payments?order_id=%zz", "alice", nil, 400, "order_id"},
		{"bad escape after order_id", "GET", "/api/v1/payments?order_id=" + uuid.NewString() + "%2", "alice", nil, 400, "order_id"},
		{"semicolon after order_id", "GET", "/api/v1/payments?order_id=" + uuid.NewString() + ";limit=1", "alice", nil, 400, "order_id"},
		{"bad escape in limit", "GET", "/api/v1/payments?limit=1%", "alice", nil, 400, "limit"},
		{"bad escape in cursor", "GET", "/api/v1/payments?cursor=%G0", "alice", nil, 400, "cursor"},
		{"bad escape in a name", "GET", "/api/v1/payments?order%zz=1", "alice", nil, 400, "order%zz"},
		// A parameter the listing does not read was ignored: a misspelt filter listed every payment as if they were
		// the order's, and another API's paging the first page again, on which a client paging by it looped.
		{"misspelt order_id", "GET", "/api/v1/payments?orderId=" + uuid.NewString(), "alice", nil, 400, "orderId"},
		{"order_id in another case", "GET", "/api/v1/payments?ORDER_ID=" + uuid.NewString(), "alice", nil, 400, "ORDER_ID"},
		{"another API's paging", "GET", "/api/v1/payments?page=2", "alice", nil, 400, "page"},
		{"a status filter", "GET", "/api/v1/payments?limit=5&status=FAILED", "alice", nil, 400, "status"},
		{"a nameless parameter", "GET", "/api/v1/payments?=x", "alice", nil, 400, "query"},
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

// TestListingNamesEveryProblemAtOnce: the listing answered its first
// problem alone (an unknown parameter, then order_id, then the page), where
// order's names them all; a client fixed one per request.
func TestListingNamesEveryProblemAtOnce(t *testing.T) {
	h := newHarness(t, nil)
	r := h.get("/api/v1/payments?orderId=x&page=2&order_id=42&limit=0&cursor=%21", "alice")
	var p struct {
		Errors []struct{ Field string }
	}
	if err := json.Unmarshal(r.Body, &p); err != nil || r.Status != http.StatusBadRequest {
		t.Fatalf("%d %s (%v): want a 400 problem", r.Status, r.Body, err)
	}
	var got []string
	for _, e := range p.Errors {
		got = append(got, e.Field)
	}
	if want := []string{"orderId", "page", "order_id", "limit", "cursor"}; !slices.Equal(got, want) {
		t.Fatalf("fields %v, want %v: %s", got, want, r.Body)
	}
}

// TestSubjectNoPaymentCanHaveOwnsNothing: a valid token whose subject holds a NUL (PostgreSQL's text cannot) names no
// user: pkg/auth answers 401 on every route, where the database refusing the query once made it a 500 (SQLSTATE
// 22021). The use cases keep their own guard (defence in depth, whoever calls them): such a user owns nothing, an empty
// list and ErrNotFound from the real PostgreSQL repository, as on SQLite. Payments get their user from order events,
// which dead-letter such a user_id.
func TestSubjectNoPaymentCanHaveOwnsNothing(t *testing.T) {
	h := newHarness(t, nil)
	p := h.claimed("alice")
	for _, user := range []string{"alice\x00", "\x00"} {
		for _, path := range []string{"/api/v1/payments", "/api/v1/payments?order_id=" + p.OrderID(), "/api/v1/payments/" + p.ID()} {
			if r := h.get(path, user); r.Status != http.StatusUnauthorized || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/problem+json") {
				t.Errorf("GET %s as %q: %d %s; want 401 problem+json", path, user, r.Status, r.Body)
			}
		}
		for _, q := range []payment.ListQuery{{}, {OrderID: p.OrderID()}} {
			if pg, err := h.svc.App.ListPayments.Handle(context.Background(), user, q); err != nil || len(pg.Payments) != 0 {
				t.Errorf("ListPayments(%q, %+v) = %+v, %v; want no payment", user, q, pg, err)
			}
		}
		if _, err := h.svc.App.GetPayment.Handle(context.Background(), user, p.ID()); !errors.Is(err, payment.ErrNotFound) {
			t.Errorf("GetPayment(%q, alice's payment) = %v; want ErrNotFound", user, err)
		}
	}
}

// TestPaymentAnswersAreNotStored: a payment is personal data, as the profile
// the user service answers with no-store is. Without a Cache-Control a
// browser kept each answer in its disk cache, readable there after logout.
func TestPaymentAnswersAreNotStored(t *testing.T) {
	h := newHarness(t, nil)
	p := h.claimed("alice")
	for _, path := range []string{"/api/v1/payments", "/api/v1/payments?order_id=" + p.OrderID(), "/api/v1/payments/" + p.ID()} {
		if r := h.get(path, "alice"); r.Status != http.StatusOK || r.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("GET %s: %d, Cache-Control %q; want 200 with no-store", path, r.Status, r.Header.Get("Cache-Control"))
		}
	}
}

// claimed stores a PENDING payment of 100 EUR for user, as the consumer
// claims one for an order.
func (h *harness) claimed(user string) *payment.Payment {
	h.t.Helper()
	p, err := payment.New(uuid.Must(uuid.NewV7()).String(), uuid.NewString(), user, 100, "EUR", time.Now())
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.svc.Payments.Claim(context.Background(), p); err != nil {
		h.t.Fatal(err)
	}
	return p
}
