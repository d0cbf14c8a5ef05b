package adapters_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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

// refundOutage is the simulated provider with refunds faulting until the
// outage ends (see outageEndsAtDeadLetter), and an order.cancelled landing
// while the first charge is in flight: it flags the PENDING row, so the
// charge is stored SUCCEEDED and flagged and its refund is owed.
type refundOutage struct {
	*adapters.SimulatedProvider
	faulting   atomic.Bool
	cancelOnce sync.Once
	cancel     func(context.Context) error
	cancelled  chan error // the cancel's answer, once it ran (buffered)
}

func (p *refundOutage) Charge(ctx context.Context, c payment.Charge) (payment.Answer, error) {
	p.cancelOnce.Do(func() { p.cancelled <- p.cancel(ctx) })
	return p.SimulatedProvider.Charge(ctx, c)
}

func (p *refundOutage) Refund(ctx context.Context, r payment.Refund) error {
	if p.faulting.Load() {
		return fmt.Errorf("%w: refund timed out", payment.ErrProviderFault)
	}
	return p.SimulatedProvider.Refund(ctx, r)
}

// outageEndsAtDeadLetter is a payment store that ends the provider's refund
// outage as it records a dead letter: every delivery's refund faulted, and
// the next refund asked for goes through.
type outageEndsAtDeadLetter struct {
	*adapters.PaymentGorm
	outage *refundOutage
}

func (s outageEndsAtDeadLetter) SaveDeadLetter(ctx context.Context, d payment.DeadLetter) error {
	s.outage.faulting.Store(false)
	return s.PaymentGorm.SaveDeadLetter(ctx, d)
}

// TestDeadLetteredRefundOfACancelledOrderIsRefunded: the order was cancelled
// while its charge was in flight, the charge was stored SUCCEEDED and
// flagged, and its refund faulted on every delivery of the order.created,
// which was dead-lettered. No delivery is left to refund it, so the one that
// dead-letters it must, once (before, GiveUp settled only PENDING flagged
// rows: the cancelled order stayed charged).
func TestDeadLetteredRefundOfACancelledOrderIsRefunded(t *testing.T) {
	for name, db := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			sim := adapters.NewSimulatedProvider(func() config.Dynamic { return config.Dynamic{DeclineAboveCents: 100000} })
			provider := &refundOutage{SimulatedProvider: sim, cancelled: make(chan error, 1)}
			provider.faulting.Store(true)
			store := adapters.NewPaymentGorm(db)
			o := adapters.OrderCreatedData{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 5000, Currency: "EUR"}
			cancels := app.New(app.Deps{Payments: store, Provider: provider, NewID: uuid.NewString}).CancelOrder
			provider.cancel = func(ctx context.Context) error {
				c, err := cancels.Handle(ctx, app.CancelOrder(o))
				if err == nil && c.Status != payment.Pending {
					err = fmt.Errorf("cancel = %+v; want the PENDING row flagged", c)
				}
				return err
			}
			f, stop := consumeWith(t, "PAYDLREFUND"+strings.ToUpper(name), outageEndsAtDeadLetter{store, provider}, provider, 2)
			defer stop(ctx)

			env, err := event.New(adapters.OrderCreated, "/shanhai/order", o.OrderID, o)
			if err != nil {
				t.Fatal(err)
			}
			f.s.Publish(t, f.names.Subject, "shanhai.orders", o.OrderID, svctest.Headers(env, nil), env.Data)
			f.s.Drained(t, f.names.Durable, 30*time.Second)
			select {
			case err := <-provider.cancelled:
				if err != nil {
					t.Fatalf("cancel while the charge was in flight: %v", err)
				}
			default:
				t.Fatal("the order was never charged, so never cancelled while its charge was in flight")
			}
			dl, err := store.DeadLetters(ctx, 10)
			if err != nil || len(dl) != 1 || !strings.Contains(dl[0].Reason, "after 2 deliveries") || dl[0].OrderID != o.OrderID {
				t.Fatalf("dead letters = %+v, %v; want the order.created's of order %s, after 2 deliveries", dl, err, o.OrderID)
			}

			var row struct{ ID, Status string }
			if err := db.Table("payments").Select("id, status").Where("order_id = ?", o.OrderID).Take(&row).Error; err != nil {
				t.Fatal(err)
			}
			if row.Status != string(payment.Refunded) || !sim.Refunded(row.ID) || sim.Charges() != 1 || sim.Refunds() != 1 {
				t.Fatalf("payment %s, key refunded %v, provider charges %d, refunds %d; want REFUNDED, one charge refunded once",
					row.Status, sim.Refunded(row.ID), sim.Charges(), sim.Refunds())
			}
			var events []string
			for _, m := range storetest.OutboxRows(t, db, o.OrderID) {
				events = append(events, m.EventType)
			}
			if want := []string{"payment.succeeded", "payment.refunded"}; !slices.Equal(events, want) {
				t.Fatalf("outbox = %v; want %v", events, want)
			}
		})
	}
}

// gatedRefundOutage is refundOutage's provider without its cancel: a charge
// signals charging and waits for release, so the test decides what lands
// while it is in flight.
type gatedRefundOutage struct {
	*adapters.SimulatedProvider
	faulting          *atomic.Bool
	charging, release chan struct{}
}

func (p gatedRefundOutage) Charge(ctx context.Context, c payment.Charge) (payment.Answer, error) {
	p.charging <- struct{}{}
	<-p.release
	return p.SimulatedProvider.Charge(ctx, c)
}

func (p gatedRefundOutage) Refund(ctx context.Context, r payment.Refund) error {
	if p.faulting.Load() {
		return fmt.Errorf("%w: refund timed out", payment.ErrProviderFault)
	}
	return p.SimulatedProvider.Refund(ctx, r)
}

// deadBeforeTheLook is a payment store that runs dead once, when the cancel
// first asks whether the order's order.created was dead-lettered: between
// the cancel's flag and its look.
type deadBeforeTheLook struct {
	*adapters.PaymentGorm
	once *sync.Once
	dead func(context.Context)
}

func (s deadBeforeTheLook) ChargeDeadLettered(ctx context.Context, orderID string) (bool, error) {
	s.once.Do(func() { s.dead(ctx) })
	return s.PaymentGorm.ChargeDeadLettered(ctx, orderID)
}

// TestCancelFindingADeadLetteredRefundRefunds: the cancel flags the PENDING
// row of a charge in flight; before it looks for a dead letter, the charge
// is stored SUCCEEDED and flagged, its refund faults on the last delivery
// and again in GiveUp, and the order.created is dead-lettered; then the
// refund outage ends. The cancel finds the dead letter and a row it cannot
// void (not PENDING): it must read the row again and refund it, once, rather
// than leave it charged. (This held before GiveUp refunded: the cancel's
// loop reads a row its void did not settle and refunds a SUCCEEDED one.)
func TestCancelFindingADeadLetteredRefundRefunds(t *testing.T) {
	for name, db := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			sim := adapters.NewSimulatedProvider(func() config.Dynamic { return config.Dynamic{DeclineAboveCents: 100000} })
			provider := gatedRefundOutage{SimulatedProvider: sim, faulting: &atomic.Bool{},
				charging: make(chan struct{}), release: make(chan struct{})}
			provider.faulting.Store(true)
			o := app.ChargeOrder{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 5000, Currency: "EUR"}
			store := adapters.NewPaymentGorm(db)
			var a app.Application
			charged := make(chan error, 1)
			a = app.New(app.Deps{Payments: deadBeforeTheLook{store, &sync.Once{}, func(ctx context.Context) {
				close(provider.release)
				if err := <-charged; !errors.Is(err, payment.ErrProviderFault) {
					t.Errorf("last delivery: err = %v; want the refund's provider fault", err)
				}
				if err := a.RecordDeadLetter.Handle(ctx, payment.DeadLetter{Consumer: "payment", EventType: adapters.OrderCreated,
					Reason: "retries_exhausted", OrderID: o.OrderID}); err != nil {
					t.Error(err)
				}
				if _, err := a.ChargeOrder.GiveUp(ctx, o.OrderID); !errors.Is(err, payment.ErrProviderFault) {
					t.Errorf("give up: err = %v; want the refund's provider fault", err)
				}
				provider.faulting.Store(false)
			}}, Provider: provider, NewID: uuid.NewString})

			go func() { _, err := a.ChargeOrder.Handle(ctx, o); charged <- err }()
			<-provider.charging
			c, err := a.CancelOrder.Handle(ctx, app.CancelOrder(o))
			if err != nil || c.Status != payment.Refunded || c.Duplicate {
				t.Fatalf("cancel = %+v, %v; want the charge refunded by it", c, err)
			}
			if sim.Charges() != 1 || sim.Refunds() != 1 || !sim.Refunded(c.PaymentID) {
				t.Fatalf("provider charges %d, refunds %d; want one charge refunded once", sim.Charges(), sim.Refunds())
			}
			var events []string
			for _, m := range storetest.OutboxRows(t, db, o.OrderID) {
				events = append(events, m.EventType)
			}
			if want := []string{"payment.succeeded", "payment.refunded"}; !slices.Equal(events, want) {
				t.Fatalf("outbox = %v; want %v", events, want)
			}
		})
	}
}
