package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/services/order/internal/app"
	"github.com/shanhai-dev/shanhai/services/order/internal/domain/order"
)

func newApp(t *testing.T) (app.Application, *memoryOrders) {
	t.Helper()
	repo := newMemoryOrders()
	n := 0
	a := app.New(app.Deps{
		Orders:  repo,
		Catalog: staticCatalog{{SKU: "TEA-1", Name: "Tea", PriceCents: 1250, Currency: "EUR"}},
		NewID: func() string {
			n++
			return fmt.Sprintf("o%03d", n)
		},
		Now: func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) },
		Render: func(s order.Snapshot) ([]byte, error) {
			return json.Marshal(map[string]any{"id": s.ID, "total": s.TotalCents})
		},
	})
	return a, repo
}

func create(t *testing.T, a app.Application, user, key string, qty int) app.CreateOrderResult {
	t.Helper()
	res, err := a.CreateOrder.Handle(context.Background(), app.CreateOrder{UserID: user, IdempotencyKey: key, Items: []order.Requested{{SKU: "TEA-1", Quantity: qty}}})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return res
}

func TestCreateOrderIdempotency(t *testing.T) {
	a, repo := newApp(t)
	first := create(t, a, "alice", "k1", 2)
	if first.StatusCode != http.StatusCreated || first.Replayed {
		t.Fatalf("first = %+v", first)
	}
	again := create(t, a, "alice", "k1", 2)
	if !again.Replayed || string(again.Body) != string(first.Body) || again.StatusCode != first.StatusCode {
		t.Fatalf("replay = %+v, want body %s", again, first.Body)
	}
	if len(repo.orders) != 1 || len(repo.events) != 1 {
		t.Fatalf("orders %d events %d after replay, want 1 and 1", len(repo.orders), len(repo.events))
	}
	_, err := a.CreateOrder.Handle(context.Background(), app.CreateOrder{UserID: "alice", IdempotencyKey: "k1", Items: []order.Requested{{SKU: "TEA-1", Quantity: 3}}})
	if !errors.Is(err, order.ErrKeyReused) {
		t.Fatalf("different body: err = %v, want ErrKeyReused", err)
	}
	// An invalid request under a used key is reported as key reuse.
	_, err = a.CreateOrder.Handle(context.Background(), app.CreateOrder{UserID: "alice", IdempotencyKey: "k1", Items: []order.Requested{{SKU: "NOPE", Quantity: 1}}})
	if !errors.Is(err, order.ErrKeyReused) {
		t.Fatalf("invalid body, used key: err = %v, want ErrKeyReused", err)
	}
	// Keys are scoped per user: bob's k1 is a new order.
	if bob := create(t, a, "bob", "k1", 2); bob.Replayed || string(bob.Body) == string(first.Body) {
		t.Fatalf("bob got alice's replay: %s", bob.Body)
	}
}

func TestCreateOrderInvalidStoresNothing(t *testing.T) {
	a, repo := newApp(t)
	_, err := a.CreateOrder.Handle(context.Background(), app.CreateOrder{UserID: "u", IdempotencyKey: "k", Items: []order.Requested{{SKU: "NOPE", Quantity: 1}}})
	var verr *order.ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("err = %v", err)
	}
	if len(repo.orders)+len(repo.replays) != 0 {
		t.Fatal("invalid request stored state")
	}
}

func TestCancelAndOwnership(t *testing.T) {
	a, _ := newApp(t)
	ctx := context.Background()
	create(t, a, "alice", "k", 1)
	if _, err := a.CancelOrder.Handle(ctx, "bob", "o001"); !errors.Is(err, order.ErrNotFound) {
		t.Fatalf("bob cancels alice's order: %v", err)
	}
	if _, err := a.GetOrder.Handle(ctx, "bob", "o001"); !errors.Is(err, order.ErrNotFound) {
		t.Fatalf("bob reads alice's order: %v", err)
	}
	s, err := a.CancelOrder.Handle(ctx, "alice", "o001")
	if err != nil || s.Status != order.Cancelled {
		t.Fatalf("cancel = %v %v", s.Status, err)
	}
}

func TestApplyPaymentOnce(t *testing.T) {
	a, repo := newApp(t)
	ctx := context.Background()
	create(t, a, "alice", "k", 1)
	// Another user's result, another amount, or the amount in another
	// currency (before, marked paid) is refused and changes nothing.
	for _, bad := range []app.ApplyPayment{
		{EventID: "e0", OrderID: "o001", UserID: "bob", AmountCents: 1250, Outcome: order.PaymentOutcome{PaymentID: "p", Succeeded: true}},
		{EventID: "e0", OrderID: "o001", UserID: "alice", AmountCents: 1, Outcome: order.PaymentOutcome{PaymentID: "p", Succeeded: true}},
		{EventID: "e0", OrderID: "o001", UserID: "alice", AmountCents: 1250, Currency: "USD", Outcome: order.PaymentOutcome{PaymentID: "p", Succeeded: true}},
	} {
		if _, err := a.ApplyPayment.Handle(ctx, bad); !errors.Is(err, order.ErrResultMismatch) {
			t.Fatalf("%+v: err = %v, want ErrResultMismatch", bad, err)
		}
	}
	if got := repo.orders["o001"].Status; got != order.Pending {
		t.Fatalf("status after mismatched results = %s", got)
	}
	// With no currency (a result written before payment sent it) the user
	// and amount alone are held.
	ok := app.ApplyPayment{EventID: "e1", OrderID: "o001", UserID: "alice", AmountCents: 1250, Outcome: order.PaymentOutcome{PaymentID: "p", Succeeded: true}}
	res, err := a.ApplyPayment.Handle(ctx, ok)
	if err != nil || !res.Changed || res.Duplicate {
		t.Fatalf("first apply = %+v %v", res, err)
	}
	res, err = a.ApplyPayment.Handle(ctx, ok)
	if err != nil || !res.Duplicate || res.Changed {
		t.Fatalf("duplicate apply = %+v %v", res, err)
	}
	late := app.ApplyPayment{EventID: "e2", OrderID: "o001", UserID: "alice", AmountCents: 1250, Outcome: order.PaymentOutcome{PaymentID: "p", Reason: "x"}}
	if res, err = a.ApplyPayment.Handle(ctx, late); err != nil || res.Changed || !res.Contradicts || res.Status != order.Paid || res.PaymentID != "p" {
		t.Fatalf("late failure = %+v %v, want unchanged, contradicting PAID by p", res, err)
	}
	again := app.ApplyPayment{EventID: "e4", OrderID: "o001", UserID: "alice", AmountCents: 1250, Outcome: order.PaymentOutcome{PaymentID: "p", Succeeded: true}}
	if res, err = a.ApplyPayment.Handle(ctx, again); err != nil || res.Changed || res.Contradicts {
		t.Fatalf("replayed success = %+v %v, want unchanged, no contradiction", res, err)
	}
	if got := repo.orders["o001"].Status; got != order.Paid {
		t.Fatalf("status = %s, want PAID", got)
	}
	if _, err := a.ApplyPayment.Handle(ctx, app.ApplyPayment{EventID: "e3", OrderID: "missing"}); !errors.Is(err, order.ErrNotFound) {
		t.Fatalf("unknown order: %v", err)
	}
}

func TestListOrdersPages(t *testing.T) {
	a, _ := newApp(t)
	ctx := context.Background()
	for i := range 5 {
		create(t, a, "alice", fmt.Sprint("k", i), 1)
	}
	create(t, a, "bob", "k", 1)
	var got []string
	q := order.ListQuery{Limit: 2}
	for {
		p, err := a.ListOrders.Handle(ctx, "alice", q)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range p.Orders {
			got = append(got, o.ID)
		}
		if p.Next == "" {
			break
		}
		q.Cursor = p.Next
	}
	if fmt.Sprint(got) != "[o005 o004 o003 o002 o001]" {
		t.Fatalf("pages = %v", got)
	}
}

// forgetOnConflict is memoryOrders whose housekeeping forgets a key between
// a create finding it held and the read of its replay: the key was past its
// retention, and the two statements are not one transaction.
type forgetOnConflict struct{ *memoryOrders }

func (f forgetOnConflict) Create(ctx context.Context, o *order.Order, r order.Replay) error {
	err := f.memoryOrders.Create(ctx, o, r)
	if errors.Is(err, order.ErrDuplicateKey) {
		f.mu.Lock()
		delete(f.replays, [2]string{r.UserID, r.Key})
		f.mu.Unlock()
	}
	return err
}

// TestKeyForgottenMidRequestIsANewOrder: a retry that meets its key just
// as housekeeping forgets it (24 h after the first request) failed with
// "idempotency key vanished after a conflict", a 500. Past retention a
// retry is a new order (README), so it now makes one, as it would have a
// moment later.
func TestKeyForgottenMidRequestIsANewOrder(t *testing.T) {
	_, repo := newApp(t)
	a := app.New(app.Deps{
		Orders:  forgetOnConflict{repo},
		Catalog: staticCatalog{{SKU: "TEA-1", Name: "Tea", PriceCents: 1250, Currency: "EUR"}},
		NewID:   func() string { return fmt.Sprintf("o%03d", len(repo.ids)+1) },
		Render:  func(s order.Snapshot) ([]byte, error) { return json.Marshal(map[string]any{"id": s.ID}) },
	})
	first := create(t, a, "alice", "k", 1)
	res, err := a.CreateOrder.Handle(context.Background(), app.CreateOrder{UserID: "alice", IdempotencyKey: "k", Items: []order.Requested{{SKU: "TEA-1", Quantity: 1}}})
	if err != nil {
		t.Fatalf("retry as its key is forgotten: %v", err)
	}
	if res.Replayed || res.StatusCode != http.StatusCreated || string(res.Body) == string(first.Body) || len(repo.orders) != 2 {
		t.Fatalf("retry = %+v with %d orders; want a second order", res, len(repo.orders))
	}
}
