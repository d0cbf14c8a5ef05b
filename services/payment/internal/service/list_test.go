package service_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

// TestListingWalksEveryPayment: a user with more payments than a page holds
// reaches all of them, newest first, by following next_cursor (the
// parameters and shape of order's listing). Before, the list stopped at 100
// with no way to the rest.
func TestListingWalksEveryPayment(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	const n = 130
	var want []string
	for _, user := range []string{"bob", "alice"} {
		for range n {
			p, err := payment.New(uuid.Must(uuid.NewV7()).String(), uuid.NewString(), user, 100, "EUR", time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := h.svc.Payments.Claim(ctx, p); err != nil {
				t.Fatal(err)
			}
			if user == "alice" {
				want = append(want, p.ID())
			}
		}
	}
	slices.Reverse(want) // newest first
	for _, limit := range []string{"", "1", "50", "100"} {
		t.Run("limit="+limit, func(t *testing.T) {
			var got []string
			cursor, pages := "", 0
			for {
				q := url.Values{}
				if limit != "" {
					q.Set("limit", limit)
				}
				if cursor != "" {
					q.Set("cursor", cursor)
				}
				r := h.get("/api/v1/payments?"+q.Encode(), "alice")
				var page struct {
					Payments   []struct{ ID string }
					NextCursor *string `json:"next_cursor"`
				}
				if r.Status != http.StatusOK || json.Unmarshal(r.Body, &page) != nil {
					t.Fatalf("page %d: %d %.200s", pages, r.Status, r.Body)
				}
				for _, p := range page.Payments {
					got = append(got, p.ID)
				}
				pages++
				if page.NextCursor == nil || pages > n+1 {
					break
				}
				cursor = *page.NextCursor
			}
			if !slices.Equal(got, want) {
				t.Fatalf("walked %d payments in %d pages; want alice's %d, newest first", len(got), pages, len(want))
			}
		})
	}
	for _, bad := range []string{"limit=0", "limit=101", "limit=x", "cursor=%25", "cursor=" + base64.RawURLEncoding.EncodeToString([]byte(strings.ToUpper(want[0])))} {
		r := h.get("/api/v1/payments?"+bad, "alice")
		var p struct{ Errors []struct{ Field string } }
		field := bad[:strings.IndexByte(bad, '=')]
		if r.Status != http.StatusBadRequest || json.Unmarshal(r.Body, &p) != nil || len(p.Errors) == 0 || p.Errors[0].Field != field {
			t.Errorf("%s: %d %.120s; want 400 naming %s", bad, r.Status, r.Body, field)
		}
	}
}
