package adapters_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shanhai-dev/shanhai/services/payment/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/payment/internal/app"
	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

// TestSettledDeadLettersAreDeletedAfterTheirRetention: before, no dead letter
// was ever deleted, and every settle round read all that named an order,
// settled or not. Past the retention, one whose order's payment is final is
// deleted, a bounded batch per statement; one that still marks a payment
// to settle (PENDING or SUCCEEDED), names no order or an order with no
// payment, or is younger than the retention, is kept.
func TestSettledDeadLettersAreDeletedAfterTheirRetention(t *testing.T) {
	for name, db := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			provider := newOutage()
			store := adapters.NewPaymentGorm(db)
			now := time.Now().UTC()
			a := app.New(app.Deps{Payments: store, Provider: provider, NewID: uuid.NewString, Now: func() time.Time { return now }})
			const retention = 24 * time.Hour
			old, young := now.Add(-retention-time.Minute), now.Add(-retention+time.Minute)

			order := func(status payment.Status) string {
				t.Helper()
				o := app.ChargeOrder{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 5000, Currency: "EUR"}
				if status == payment.Pending {
					provider.charges.Store(true)
					defer provider.charges.Store(false)
				}
				if status == payment.Failed {
					o.Currency = "XXX"
					a := app.New(app.Deps{Payments: store, Provider: provider, NewID: uuid.NewString,
						Rules: func() payment.Rules { return payment.Rules{Currencies: []string{"EUR"}} }})
					if c, err := a.ChargeOrder.Handle(ctx, o); err != nil || c.Status != payment.Failed {
						t.Fatalf("charge = %+v, %v; want FAILED", c, err)
					}
					return o.OrderID
				}
				_, _ = a.ChargeOrder.Handle(ctx, o)
				if status == payment.Refunded {
					if c, err := a.CancelOrder.Handle(ctx, app.CancelOrder(o)); err != nil || c.Status != payment.Refunded {
						t.Fatalf("cancel = %+v, %v; want REFUNDED", c, err)
					}
				}
				if _, s := paymentRow(t, db, o.OrderID); s != string(status) {
					t.Fatalf("payment %s; want %s", s, status)
				}
				return o.OrderID
			}
			var want []string // the ids kept
			dead := func(orderID, typ string, at time.Time, kept bool) {
				t.Helper()
				id := uuid.NewString()
				if err := store.SaveDeadLetter(ctx, payment.DeadLetter{ID: id, Consumer: "payment", EventType: typ,
					Reason: "retries_exhausted", OrderID: orderID, Payload: []byte("{}"), CreatedAt: at}); err != nil {
					t.Fatal(err)
				}
				if kept {
					want = append(want, id)
				}
			}
			for range 3 { // settled and old: deleted, whatever the batch
				dead(order(payment.Refunded), adapters.OrderCancelled, old, false)
			}
			dead(order(payment.Failed), adapters.OrderCreated, old, false)
			refunded := order(payment.Refunded)
			dead(refunded, adapters.OrderCreated, old, false)
			dead(refunded, adapters.OrderCancelled, young, true)               // settled, but within the retention
			dead(order(payment.Succeeded), adapters.OrderCancelled, old, true) // still owed a refund
			dead(order(payment.Pending), adapters.OrderCreated, old, true)     // its charge unsettled
			dead(uuid.NewString(), adapters.OrderCreated, old, true)           // an order with no payment
			dead("", adapters.OrderCreated, old, true)                         // names no order

			if n, err := store.DeleteSettledDeadLetters(ctx, now.Add(-retention), 2); err != nil || n != 2 {
				t.Fatalf("one bounded batch deleted %d, %v; want 2, the limit", n, err)
			}
			n, err := a.Settle.PurgeDeadLetters(ctx, retention)
			if err != nil || n != 3 {
				t.Fatalf("purge deleted %d, %v; want the 3 settled dead letters left past the retention", n, err)
			}
			left, err := store.DeadLetters(ctx, 100)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, d := range left {
				ids = append(ids, d.ID)
			}
			slices.Sort(ids)
			slices.Sort(want)
			if !slices.Equal(ids, want) {
				t.Fatalf("dead letters kept %v; want %v", ids, want)
			}
		})
	}
}

// TestPurgeWorksThroughABacklogOfSeveralBatches: the first purge after an
// upgrade meets every settled dead letter ever recorded. It deletes them all
// in statements of app.PurgeBatch, one after another until one comes back
// short, and keeps those within the retention (and those of an order still
// to settle) however many batches come before them.
func TestPurgeWorksThroughABacklogOfSeveralBatches(t *testing.T) {
	for name, db := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			provider := newOutage()
			store := adapters.NewPaymentGorm(db)
			now := time.Now().UTC()
			a := app.New(app.Deps{Payments: store, Provider: provider, NewID: uuid.NewString, Now: func() time.Time { return now }})
			const retention = 24 * time.Hour

			refunded := app.ChargeOrder{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 5000, Currency: "EUR"}
			charged := app.ChargeOrder{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 5000, Currency: "EUR"}
			for _, o := range []app.ChargeOrder{refunded, charged} {
				if c, err := a.ChargeOrder.Handle(ctx, o); err != nil || c.Status != payment.Succeeded {
					t.Fatalf("charge = %+v, %v; want SUCCEEDED", c, err)
				}
			}
			if c, err := a.CancelOrder.Handle(ctx, app.CancelOrder(refunded)); err != nil || c.Status != payment.Refunded {
				t.Fatalf("cancel = %+v, %v; want REFUNDED", c, err)
			}
			// One settled order's redelivered messages stand for the many
			// orders of a real backlog: the purge deletes by dead letter.
			backlog := 2*app.PurgeBatch + 1
			var want []string // the ids kept
			dead := func(orderID string, at time.Time, kept bool) {
				t.Helper()
				id := uuid.NewString()
				if err := store.SaveDeadLetter(ctx, payment.DeadLetter{ID: id, Consumer: "payment", EventType: adapters.OrderCancelled,
					Reason: "retries_exhausted", OrderID: orderID, Payload: []byte("{}"), CreatedAt: at}); err != nil {
					t.Fatal(err)
				}
				if kept {
					want = append(want, id)
				}
			}
			for i := range backlog {
				dead(refunded.OrderID, now.Add(-retention-time.Duration(i+1)*time.Second), false)
			}
			for i := range 3 {
				dead(refunded.OrderID, now.Add(-retention+time.Duration(i+1)*time.Minute), true) // settled, within the retention
			}
			dead(charged.OrderID, now.Add(-2*retention), true) // still owed a refund

			n, err := a.Settle.PurgeDeadLetters(ctx, retention)
			if err != nil || n != backlog {
				t.Fatalf("purge deleted %d, %v; want the whole backlog of %d (%d statements)", n, err, backlog, backlog/app.PurgeBatch+1)
			}
			left, err := store.DeadLetters(ctx, backlog+10)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, d := range left {
				ids = append(ids, d.ID)
			}
			slices.Sort(ids)
			slices.Sort(want)
			if !slices.Equal(ids, want) {
				t.Fatalf("%d dead letters kept %v; want %v", len(ids), ids, want)
			}
		})
	}
}
