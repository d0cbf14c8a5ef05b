package app_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/services/order/internal/app"
	"github.com/shanhai-dev/shanhai/services/order/internal/domain/catalog"
	"github.com/shanhai-dev/shanhai/services/order/internal/domain/order"
)

// store puts a PENDING order placed at the given time into repo.
func store(t *testing.T, repo *memoryOrders, id string, at time.Time) {
	t.Helper()
	o, err := order.New(id, "alice", []order.Requested{{SKU: "TEA-1", Quantity: 1}},
		catalog.Index([]catalog.Product{{SKU: "TEA-1", Name: "Tea", PriceCents: 1250, Currency: "EUR"}}), at)
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Create(context.Background(), o, order.Replay{UserID: "alice", Key: id}); err != nil {
		t.Fatal(err)
	}
}

// ExpireOrders cancels, with order.cancelled and reason payment_timeout,
// the orders still PENDING more than the timeout after they were placed,
// working through a backlog a batch per call until a batch comes back
// short; an order placed exactly the timeout ago is left.
func TestExpireOrders(t *testing.T) {
	clock := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	const timeout = 10 * time.Minute
	repo := newMemoryOrders()
	a := app.New(app.Deps{Orders: repo, Now: func() time.Time { return clock }, PendingTimeout: timeout})
	backlog := 2*app.ExpireBatch + 3
	for i := range backlog {
		store(t, repo, fmt.Sprintf("old-%03d", i), clock.Add(-timeout-time.Duration(i+1)*time.Second))
	}
	store(t, repo, "at-timeout", clock.Add(-timeout))
	store(t, repo, "young", clock.Add(-time.Minute))
	repo.events = nil

	n, err := a.ExpireOrders.Handle(context.Background())
	if err != nil || n != backlog {
		t.Fatalf("expired %d, %v; want %d", n, err, backlog)
	}
	if repo.expireCalls != 3 {
		t.Errorf("%d batches for %d orders, want 3", repo.expireCalls, backlog)
	}
	for id, s := range repo.orders {
		old := id != "at-timeout" && id != "young"
		switch {
		case old && (s.Status != order.Cancelled || s.CancelReason != order.PaymentTimeout || !s.UpdatedAt.Equal(clock)):
			t.Errorf("%s: %+v, want CANCELLED by payment_timeout", id, s)
		case !old && s.Status != order.Pending:
			t.Errorf("%s: %s, want PENDING", id, s.Status)
		}
	}
	if len(repo.events) != backlog {
		t.Fatalf("%d events, want one order.cancelled per expired order", len(repo.events))
	}
	for _, e := range repo.events {
		if e.EventType() != "order.cancelled" {
			t.Fatalf("event %s", e.EventType())
		}
	}
	if n, err := a.ExpireOrders.Handle(context.Background()); err != nil || n != 0 {
		t.Fatalf("second round: %d, %v", n, err)
	}
}

// A Deps without a timeout (built by hand; the configuration refuses one)
// expires nothing rather than every order at once.
func TestExpireOrdersWithoutATimeoutExpiresNothing(t *testing.T) {
	repo := newMemoryOrders()
	a := app.New(app.Deps{Orders: repo})
	store(t, repo, "old", time.Now().Add(-24*time.Hour))
	if n, err := a.ExpireOrders.Handle(context.Background()); err != nil || n != 0 || repo.orders["old"].Status != order.Pending {
		t.Fatalf("expired %d, %v", n, err)
	}
}
