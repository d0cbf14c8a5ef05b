package adapters_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shanhai-dev/shanhai/pkg/testenv/storetest"
	"github.com/shanhai-dev/shanhai/services/payment/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

var now = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func newPayment(t *testing.T, orderID, user string, amount int64) *payment.Payment {
	t.Helper()
	p, err := payment.New(uuid.Must(uuid.NewV7()).String(), orderID, user, amount, "EUR", now)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPaymentGorm(t *testing.T) {
	for name, db := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			repo := adapters.NewPaymentGorm(db)

			t.Run("ClaimIsOnePerOrderEvenConcurrently", func(t *testing.T) {
				orderID := uuid.NewString()
				var wg sync.WaitGroup
				ids := make([]string, 8)
				for i := range ids {
					wg.Go(func() {
						p, err := repo.Claim(ctx, newPayment(t, orderID, "alice", 500))
						if err != nil {
							t.Error(err)
							return
						}
						ids[i] = p.ID()
					})
				}
				wg.Wait()
				for _, id := range ids {
					if id != ids[0] {
						t.Fatalf("claims returned different payments: %v", ids)
					}
				}
				var n int64
				db.Table("payments").Where("order_id = ?", orderID).Count(&n)
				if n != 1 {
					t.Fatalf("%d payment rows for one order", n)
				}
			})

			t.Run("CompleteOnceWithEvent", func(t *testing.T) {
				orderID := uuid.NewString()
				p, err := repo.Claim(ctx, newPayment(t, orderID, "alice", 500))
				if err != nil {
					t.Fatal(err)
				}
				p.Succeed(now)
				if ok, flagged, err := repo.Complete(ctx, p); err != nil || !ok || flagged {
					t.Fatalf("complete = %v, %v, %v", ok, flagged, err)
				}
				// A second worker that got a different answer loses.
				late, _ := repo.Claim(ctx, newPayment(t, orderID, "alice", 500))
				if !late.Final() {
					t.Fatal("claim after completion is not final")
				}
				stale := payment.FromSnapshot(payment.Snapshot{ID: p.ID(), OrderID: orderID, UserID: "alice", AmountCents: 500, Currency: "EUR", Status: payment.Pending})
				stale.Fail("x", now)
				if ok, _, err := repo.Complete(ctx, stale); err != nil || ok {
					t.Fatalf("stale complete = %v, %v; want false", ok, err)
				}
				got, err := repo.Get(ctx, "alice", p.ID())
				if err != nil || got.Status() != payment.Succeeded {
					t.Fatalf("stored = %v, %v", got, err)
				}
				rows := storetest.OutboxRows(t, db, orderID)
				if len(rows) != 1 || rows[0].EventType != "payment.succeeded" || rows[0].Topic != adapters.Topic {
					t.Fatalf("outbox = %+v", rows)
				}
			})

			t.Run("DeclinedClaimIsStoredWithItsEventOnce", func(t *testing.T) {
				orderID := uuid.NewString()
				declined := newPayment(t, orderID, "alice", 500)
				declined.Fail(payment.ReasonOverLimit, now)
				got, err := repo.Claim(ctx, declined)
				if err != nil || got.ID() != declined.ID() || got.Status() != payment.Failed {
					t.Fatalf("claim = %+v, %v", got.Snapshot(), err)
				}
				// A redelivery declined again (or a racing one) finds the row and adds nothing.
				again := newPayment(t, orderID, "alice", 500)
				again.Fail(payment.ReasonOverLimit, now)
				if got, err := repo.Claim(ctx, again); err != nil || got.ID() != declined.ID() || !got.Final() {
					t.Fatalf("second claim = %+v, %v", got.Snapshot(), err)
				}
				stored, err := repo.Get(ctx, "alice", declined.ID())
				if err != nil || stored.Status() != payment.Failed || stored.Reason() != payment.ReasonOverLimit {
					t.Fatalf("stored = %+v, %v", stored, err)
				}
				rows := storetest.OutboxRows(t, db, orderID)
				if len(rows) != 1 || rows[0].EventType != "payment.failed" || rows[0].Topic != adapters.Topic {
					t.Fatalf("outbox = %+v, want one payment.failed", rows)
				}
			})

			t.Run("CancelFlagReachesTheCompletingCharge", func(t *testing.T) {
				orderID := uuid.NewString()
				p, err := repo.Claim(ctx, newPayment(t, orderID, "alice", 500))
				if err != nil {
					t.Fatal(err)
				}
				if ok, err := repo.RequestCancel(ctx, p); err != nil || !ok {
					t.Fatalf("request cancel on PENDING = %v, %v", ok, err)
				}
				p.Succeed(now)
				ok, flagged, err := repo.Complete(ctx, p)
				if err != nil || !ok || !flagged {
					t.Fatalf("complete after cancel = stored %v, flagged %v, %v; want both true", ok, flagged, err)
				}
				// The flag survives a read back, so a redelivered order.created sees it.
				again, err := repo.Claim(ctx, newPayment(t, orderID, "alice", 500))
				if err != nil || !again.NeedsRefund() {
					t.Fatalf("reclaimed = %+v, %v; want SUCCEEDED needing a refund", again.Snapshot(), err)
				}
				if ok, err := repo.RequestCancel(ctx, again); err != nil || ok {
					t.Fatalf("request cancel on SUCCEEDED = %v, %v; want false", ok, err)
				}
			})

			t.Run("RefundOnceWithEvent", func(t *testing.T) {
				orderID := uuid.NewString()
				p, _ := repo.Claim(ctx, newPayment(t, orderID, "alice", 500))
				p.Succeed(now)
				if ok, _, err := repo.Complete(ctx, p); err != nil || !ok {
					t.Fatalf("complete = %v, %v", ok, err)
				}
				// Two workers read the charge as SUCCEEDED and both refund it.
				var readers []*payment.Payment
				for range 2 {
					r, _ := repo.Claim(ctx, newPayment(t, orderID, "alice", 500))
					readers = append(readers, r)
				}
				var stored []bool
				for _, r := range readers {
					if !r.Refund(now) {
						t.Fatalf("refund of %s refused", r.Status())
					}
					ok, err := repo.SaveRefund(ctx, r)
					if err != nil {
						t.Fatal(err)
					}
					stored = append(stored, ok)
				}
				if !stored[0] || stored[1] {
					t.Fatalf("stored = %v, want [true false]", stored)
				}
				got, err := repo.Get(ctx, "alice", p.ID())
				if err != nil || got.Status() != payment.Refunded || got.Reason() != payment.ReasonOrderCancelled {
					t.Fatalf("stored = %+v, %v", got.Snapshot(), err)
				}
				rows := storetest.OutboxRows(t, db, orderID)
				if len(rows) != 2 || rows[0].EventType != "payment.succeeded" || rows[1].EventType != "payment.refunded" {
					t.Fatalf("outbox = %+v", rows)
				}
			})

			t.Run("CancelledClaimIsFinal", func(t *testing.T) {
				orderID := uuid.NewString()
				c, err := payment.NewCancelled(uuid.Must(uuid.NewV7()).String(), orderID, "alice", 500, "EUR", now)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := repo.Claim(ctx, c); err != nil {
					t.Fatal(err)
				}
				got, err := repo.Claim(ctx, newPayment(t, orderID, "alice", 500))
				if err != nil || got.ID() != c.ID() || got.Status() != payment.Cancelled || !got.Final() {
					t.Fatalf("create after cancel claimed %+v, %v", got.Snapshot(), err)
				}
			})

			t.Run("OwnDataOnly", func(t *testing.T) {
				orderID := uuid.NewString()
				p, _ := repo.Claim(ctx, newPayment(t, orderID, "bob", 700))
				if _, err := repo.Get(ctx, "mallory", p.ID()); !errors.Is(err, payment.ErrNotFound) {
					t.Fatalf("get other's: %v", err)
				}
				if ps, _, err := repo.List(ctx, "mallory", payment.ListQuery{OrderID: orderID, Limit: 10}); err != nil || len(ps) != 0 {
					t.Fatalf("list other's: %v, %v", ps, err)
				}
				ps, _, err := repo.List(ctx, "bob", payment.ListQuery{OrderID: orderID, Limit: 10})
				if err != nil || len(ps) != 1 || ps[0].ID() != p.ID() {
					t.Fatalf("list own: %v, %v", ps, err)
				}
				all, next, err := repo.List(ctx, "bob", payment.ListQuery{Limit: 10})
				if err != nil || len(all) != 1 || next != "" {
					t.Fatalf("list all own: %v, %q, %v", all, next, err)
				}
			})

			t.Run("DeadLetters", func(t *testing.T) {
				d := payment.DeadLetter{ID: uuid.NewString(), Consumer: "payment", Subject: "shanhai.orders", MsgID: "shanhai.orders/0/7",
					Reason: "not a CloudEvent", Payload: []byte{0xff, 0x00, 'x'}, Headers: map[string]string{"ce_id": "e"}, CreatedAt: now}
				if err := repo.SaveDeadLetter(ctx, d); err != nil {
					t.Fatal(err)
				}
				got, err := repo.DeadLetters(ctx, 10)
				if err != nil || len(got) != 1 {
					t.Fatalf("dead letters = %v, %v", got, err)
				}
				if string(got[0].Payload) != string(d.Payload) || got[0].Reason != d.Reason || got[0].Headers["ce_id"] != "e" {
					t.Fatalf("round trip = %+v", got[0])
				}
			})
		})
	}
}
