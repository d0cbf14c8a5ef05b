package service_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"github.com/shanhai-dev/shanhai/pkg/testenv/storetest"
	"github.com/shanhai-dev/shanhai/services/payment/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/payment/internal/app"
	"github.com/shanhai-dev/shanhai/services/payment/internal/config"
	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
	"github.com/shanhai-dev/shanhai/services/payment/internal/service"
)

// TestFailedPaymentIsNeverFollowedBySuccess: the order service marks an
// order FAILED on payment.failed and ignores any result after it, so a
// payment.succeeded following a payment.failed for one order would leave
// money taken with nothing to refund it. Every input that reaches a FAILED
// payment afterwards is tried on each dialect: order.created redelivered
// after the operator lifted the rule that declined it (eight at once, as
// the bridge or the relay may duplicate it), then order.cancelled, then
// order.created again. None may charge, refund or emit anything: the
// payment stays FAILED and its one event is the payment.failed.
func TestFailedPaymentIsNeverFollowedBySuccess(t *testing.T) {
	for name, db := range storetest.Databases(t, service.Migrate) {
		t.Run(name, func(t *testing.T) {
			prov := adapters.NewSimulatedProvider(func() config.Dynamic { return config.Dynamic{} })
			var limit atomic.Int64
			limit.Store(100)
			a := app.New(app.Deps{
				Payments: adapters.NewPaymentGorm(db), Provider: prov,
				Rules: func() payment.Rules { return payment.Rules{MaxAmountCents: limit.Load()} },
				NewID: func() string { return uuid.Must(uuid.NewV7()).String() },
			})
			ctx := context.Background()
			o := app.ChargeOrder{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 4200, Currency: "EUR"}
			if res, err := a.ChargeOrder.Handle(ctx, o); err != nil || res.Status != payment.Failed || res.Duplicate {
				t.Fatalf("first delivery = %+v, %v; want FAILED by the rules", res, err)
			}

			limit.Store(0) // the rule is lifted: a fresh claim would now charge
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					if res, err := a.ChargeOrder.Handle(ctx, o); err != nil || !res.Duplicate || res.Status != payment.Failed {
						t.Errorf("redelivery = %+v, %v; want a duplicate of the FAILED payment", res, err)
					}
				})
			}
			wg.Wait()
			if c, err := a.CancelOrder.Handle(ctx, app.CancelOrder(o)); err != nil || !c.Duplicate || c.Status != payment.Failed {
				t.Fatalf("cancel = %+v, %v; want nothing done", c, err)
			}
			if res, err := a.ChargeOrder.Handle(ctx, o); err != nil || !res.Duplicate || res.Status != payment.Failed {
				t.Fatalf("redelivery after the cancel = %+v, %v", res, err)
			}

			var st string
			if err := db.Table("payments").Select("status").Where("order_id = ?", o.OrderID).Take(&st).Error; err != nil {
				t.Fatal(err)
			}
			var events []string
			for _, m := range storetest.OutboxRows(t, db, o.OrderID) {
				events = append(events, m.EventType)
			}
			if st != "FAILED" || !slices.Equal(events, []string{"payment.failed"}) {
				t.Fatalf("payment %s, outbox %v; want FAILED and [payment.failed]", st, events)
			}
			if c, r := prov.Charges(), prov.Refunds(); c != 0 || r != 0 {
				t.Fatalf("provider charges %d, refunds %d; want none", c, r)
			}
		})
	}
}
