package adapters_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/testenv/storetest"
	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"
	"github.com/shanhai-dev/shanhai/services/payment/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/payment/internal/app"
	"github.com/shanhai-dev/shanhai/services/payment/internal/config"
	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

// chargesFault is the simulated provider with every charge faulting (a
// processor timing out on charges) while refunds and voids go through.
type chargesFault struct{ *adapters.SimulatedProvider }

func (chargesFault) Charge(context.Context, payment.Charge) (payment.Answer, error) {
	return payment.Answer{}, fmt.Errorf("%w: charge timed out", payment.ErrProviderFault)
}

// cancelFirst is a payment store that runs cancel before it records a dead
// letter: the order.cancelled lands between the order.created's last failed
// delivery and the record of its dead letter.
type cancelFirst struct {
	*adapters.PaymentGorm
	cancel func(context.Context) error
}

func (s cancelFirst) SaveDeadLetter(ctx context.Context, d payment.DeadLetter) error {
	if err := s.cancel(ctx); err != nil {
		return fmt.Errorf("cancel before the dead letter: %w", err)
	}
	return s.PaymentGorm.SaveDeadLetter(ctx, d)
}

// deadLetteredThenCancelled runs the consumer on the real NATS server and
// each database with charges that always fault, until the order.created is
// dead-lettered on its last delivery, with cancelling in between (see
// cancelFirst) or, when between is false, with an order.cancelled published
// after the dead letter. Either way the payment must end CANCELLED with no
// event (nothing was charged) and its key void: a late charge under it is
// declined.
func deadLetteredThenCancelled(t *testing.T, prefix string, between bool) {
	for name, db := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			sim := adapters.NewSimulatedProvider(func() config.Dynamic { return config.Dynamic{DeclineAboveCents: 100000} })
			provider := chargesFault{sim}
			store := adapters.NewPaymentGorm(db)
			var payments payment.Repository = store
			o := adapters.OrderCreatedData{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 5000, Currency: "EUR"}
			if between {
				cancels := app.New(app.Deps{Payments: store, Provider: provider, NewID: uuid.NewString}).CancelOrder
				payments = cancelFirst{store, func(ctx context.Context) error {
					_, err := cancels.Handle(ctx, app.CancelOrder(o))
					return err
				}}
			}
			f, stop := consumeWith(t, prefix+strings.ToUpper(name), payments, provider, 2)
			defer stop(ctx)

			publish := func(typ string) {
				env, err := event.New(typ, "/shanhai/order", o.OrderID, o)
				if err != nil {
					t.Fatal(err)
				}
				f.s.Publish(t, f.names.Subject, "shanhai.orders", o.OrderID, svctest.Headers(env, nil), env.Data)
				f.s.Drained(t, f.names.Durable, 30*time.Second)
			}
			publish(adapters.OrderCreated)
			dl, err := store.DeadLetters(ctx, 10)
			if err != nil || len(dl) != 1 || !strings.Contains(dl[0].Reason, "after 2 deliveries") || dl[0].OrderID != o.OrderID {
				t.Fatalf("dead letters = %+v, %v; want the order.created's of order %s, after 2 deliveries", dl, err, o.OrderID)
			}
			if !between {
				publish(adapters.OrderCancelled)
			}

			var row struct{ ID, Status string }
			if err := db.Table("payments").Select("id, status").Where("order_id = ?", o.OrderID).Take(&row).Error; err != nil {
				t.Fatal(err)
			}
			late, err := sim.Charge(ctx, payment.Charge{IdempotencyKey: row.ID, AmountCents: o.TotalCents, Currency: o.Currency})
			if row.Status != string(payment.Cancelled) || err != nil || late.Reason != payment.ReasonVoided {
				t.Fatalf("payment %s, a late charge of its key = %+v, %v; want CANCELLED and the key void (%s)",
					row.Status, late, err, payment.ReasonVoided)
			}
			if events := storetest.OutboxRows(t, db, o.OrderID); len(events) != 0 {
				t.Fatalf("outbox = %+v; want nothing: nothing was charged", events)
			}
		})
	}
}

// TestCancelAfterTheCreateWasDeadLetteredVoidsTheKey: the order.created
// faulted on every delivery and was dead-lettered, then the order was
// cancelled. No delivery of the order.created is left to void the flagged
// row, so the cancel must: the last charge may have been taken with its
// answer lost (before, the row stayed PENDING and the key was never voided).
func TestCancelAfterTheCreateWasDeadLetteredVoidsTheKey(t *testing.T) {
	deadLetteredThenCancelled(t, "PAYDLCANCEL", false)
}

// TestCancelBeforeTheDeadLetterIsRecordedVoidsTheKey: the cancel lands after
// the order.created's last failed delivery but before its dead letter is
// recorded, so it finds no dead letter and only flags the row; the delivery
// that records the dead letter must then void it.
func TestCancelBeforeTheDeadLetterIsRecordedVoidsTheKey(t *testing.T) {
	deadLetteredThenCancelled(t, "PAYDLBETWEEN", true)
}
