package service_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/testenv/storetest"
	"github.com/shanhai-dev/shanhai/services/payment/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/payment/internal/app"
	"github.com/shanhai-dev/shanhai/services/payment/internal/config"
	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
	"github.com/shanhai-dev/shanhai/services/payment/internal/service"
)

// flaggedApp is the payment use cases on a real database (each dialect) and
// the simulated provider, driven by direct calls: each Handle call is one
// delivery, so a test decides exactly which deliveries overlap.
type flaggedApp struct {
	app.Application
	db       *gorm.DB
	prov     *adapters.SimulatedProvider
	settings atomic.Pointer[config.Dynamic]
	// gate, when set, holds a charge in flight: the call signals held, then
	// waits for release, before (or, with afterProvider, after) the
	// provider answers it.
	gate struct {
		held, release chan struct{}
		afterProvider bool
	}
	// voidGate, when set, holds a void once the provider has answered it.
	voidGate struct{ held, release chan struct{} }
}

func newFlaggedApp(db *gorm.DB) *flaggedApp {
	f := &flaggedApp{db: db}
	f.setFailureRate(0)
	f.prov = adapters.NewSimulatedProvider(func() config.Dynamic { return *f.settings.Load() })
	f.Application = app.New(app.Deps{
		Payments: adapters.NewPaymentGorm(db), Provider: gatedProvider{f},
		NewID: func() string { return uuid.Must(uuid.NewV7()).String() },
	})
	return f
}

func (f *flaggedApp) setFailureRate(r float64) { f.settings.Store(&config.Dynamic{FailureRate: r}) }

type gatedProvider struct{ f *flaggedApp }

func (g gatedProvider) Charge(ctx context.Context, c payment.Charge) (payment.Answer, error) {
	gate := g.f.gate
	if gate.held != nil && !gate.afterProvider {
		gate.held <- struct{}{}
		<-gate.release
	}
	a, err := g.f.prov.Charge(ctx, c)
	if gate.held != nil && gate.afterProvider {
		gate.held <- struct{}{}
		<-gate.release
	}
	return a, err
}

func (g gatedProvider) Refund(ctx context.Context, r payment.Refund) error {
	return g.f.prov.Refund(ctx, r)
}

func (g gatedProvider) Void(ctx context.Context, v payment.Void) (bool, error) {
	refunded, err := g.f.prov.Void(ctx, v)
	if gate := g.f.voidGate; gate.held != nil {
		gate.held <- struct{}{}
		<-gate.release
	}
	return refunded, err
}

// row is the order's one stored payment.
func (f *flaggedApp) row(t *testing.T, orderID string) (id, status string) {
	t.Helper()
	var r struct{ ID, Status string }
	if err := f.db.Table("payments").Select("id, status").Where("order_id = ?", orderID).Take(&r).Error; err != nil {
		t.Fatal(err)
	}
	return r.ID, r.Status
}

func (f *flaggedApp) outbox(t *testing.T, orderID string) []string {
	t.Helper()
	var out []string
	for _, m := range storetest.OutboxRows(t, f.db, orderID) {
		out = append(out, m.EventType)
	}
	return out
}

// fault is the first delivery of a new order's order.created faulting at
// the provider: the row stays PENDING and its message unacked.
func (f *flaggedApp) fault(t *testing.T) app.ChargeOrder {
	t.Helper()
	o := app.ChargeOrder{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 4200, Currency: "EUR"}
	f.setFailureRate(1)
	if _, err := f.ChargeOrder.Handle(context.Background(), o); !errors.Is(err, payment.ErrProviderFault) {
		t.Fatalf("first delivery: err = %v, want a provider fault", err)
	}
	f.setFailureRate(0)
	return o
}

// cancel is order.cancelled finding the PENDING row and flagging it.
func (f *flaggedApp) cancel(t *testing.T, o app.ChargeOrder) {
	t.Helper()
	c, err := f.CancelOrder.Handle(context.Background(), app.CancelOrder(o))
	if err != nil || c.Status != payment.Pending {
		t.Fatalf("cancel = %+v, %v; want the PENDING row flagged", c, err)
	}
}

// faultThenCancel is where most tests here start: the order was cancelled
// while its first charge had faulted.
func (f *flaggedApp) faultThenCancel(t *testing.T) app.ChargeOrder {
	t.Helper()
	o := f.fault(t)
	f.cancel(t, o)
	return o
}

// TestCancelledWhileItsChargeFaultedIsNeverCharged: the order was cancelled
// while its first charge had faulted. The redelivered order.created must not
// charge it (before, it charged and then refunded: a customer saw both).
func TestCancelledWhileItsChargeFaultedIsNeverCharged(t *testing.T) {
	for name, db := range storetest.Databases(t, service.Migrate) {
		t.Run(name, func(t *testing.T) {
			f := newFlaggedApp(db)
			o := f.faultThenCancel(t)
			res, err := f.ChargeOrder.Handle(context.Background(), o)
			if err != nil || res.Status != payment.Cancelled || res.Duplicate || !res.Voided {
				t.Fatalf("redelivery = %+v, %v; want the row voided and closed CANCELLED", res, err)
			}
			for range 2 {
				again, err := f.ChargeOrder.Handle(context.Background(), o)
				if err != nil || !again.Duplicate || again.Status != payment.Cancelled {
					t.Fatalf("later redelivery = %+v, %v", again, err)
				}
			}
			if _, st := f.row(t, o.OrderID); st != "CANCELLED" {
				t.Fatalf("row %s", st)
			}
			if c, r := f.prov.Charges(), f.prov.Refunds(); c != 0 || r != 0 {
				t.Fatalf("provider charges %d, refunds %d; want none", c, r)
			}
			if got := f.outbox(t, o.OrderID); len(got) != 0 {
				t.Fatalf("outbox = %v, want nothing", got)
			}
		})
	}
}

// TestCancelledAfterAChargeWhoseAnswerWasLostIsRefunded: the first delivery's
// charge went through at the provider but its answer never reached the row
// (a timeout after the processor took the money, a crash). Closing the row
// CANCELLED from the database alone would keep that money; the redelivery
// must settle the key with the provider, which refunds it.
func TestCancelledAfterAChargeWhoseAnswerWasLostIsRefunded(t *testing.T) {
	for name, db := range storetest.Databases(t, service.Migrate) {
		t.Run(name, func(t *testing.T) {
			f := newFlaggedApp(db)
			o := f.faultThenCancel(t)
			id, _ := f.row(t, o.OrderID)
			if a, err := f.prov.Charge(context.Background(), payment.Charge{IdempotencyKey: id, AmountCents: o.TotalCents, Currency: o.Currency}); err != nil || !a.Approved {
				t.Fatalf("the lost charge: %+v, %v", a, err)
			}
			res, err := f.ChargeOrder.Handle(context.Background(), o)
			if err != nil || res.Status != payment.Refunded || !res.Voided {
				t.Fatalf("redelivery = %+v, %v; want REFUNDED by the void", res, err)
			}
			if !f.prov.Charged(id) || !f.prov.Refunded(id) || f.prov.Charges() != 1 || f.prov.Refunds() != 1 {
				t.Fatalf("provider charges %d, refunds %d", f.prov.Charges(), f.prov.Refunds())
			}
			if got := f.outbox(t, o.OrderID); !slices.Equal(got, []string{"payment.succeeded", "payment.refunded"}) {
				t.Fatalf("outbox = %v", got)
			}
		})
	}
}

// TestConcurrentRedeliveriesOfAFlaggedOrderChargeNothing: eight deliveries of
// the same order.created (the redelivery and duplicates the bridge or the
// outbox relay let through) find the flagged row at once.
func TestConcurrentRedeliveriesOfAFlaggedOrderChargeNothing(t *testing.T) {
	for name, db := range storetest.Databases(t, service.Migrate) {
		t.Run(name, func(t *testing.T) {
			f := newFlaggedApp(db)
			o := f.faultThenCancel(t)
			var wg sync.WaitGroup
			var firsts atomic.Int32
			for range 8 {
				wg.Go(func() {
					res, err := f.ChargeOrder.Handle(context.Background(), o)
					if err != nil || res.Status != payment.Cancelled {
						t.Errorf("delivery = %+v, %v", res, err)
					}
					if !res.Duplicate {
						firsts.Add(1)
					}
				})
			}
			wg.Wait()
			if _, st := f.row(t, o.OrderID); st != "CANCELLED" || firsts.Load() != 1 {
				t.Fatalf("row %s, %d deliveries stored it; want CANCELLED by one", st, firsts.Load())
			}
			if c, r := f.prov.Charges(), f.prov.Refunds(); c != 0 || r != 0 {
				t.Fatalf("provider charges %d, refunds %d; want none", c, r)
			}
		})
	}
}

// TestFlaggedOrderWithAChargeStillInFlight: a redelivery found the row
// PENDING and unflagged and is charging when the cancel flags the row and a
// duplicate delivery finds it flagged. Whichever
// reaches the provider first, no charge may stand: a charge that arrives
// after the duplicate closed the key is declined; one that was taken before
// is refunded.
func TestFlaggedOrderWithAChargeStillInFlight(t *testing.T) {
	for name, db := range storetest.Databases(t, service.Migrate) {
		for _, landed := range []bool{false, true} {
			t.Run(name+map[bool]string{false: "/chargeArrivesAfter", true: "/chargeTakenBefore"}[landed], func(t *testing.T) {
				f := newFlaggedApp(db)
				o := f.fault(t)
				id, _ := f.row(t, o.OrderID)
				f.gate.held, f.gate.release, f.gate.afterProvider = make(chan struct{}), make(chan struct{}), landed
				done := make(chan error, 1)
				go func() { _, err := f.ChargeOrder.Handle(context.Background(), o); done <- err }()
				<-f.gate.held // that delivery's charge is in flight
				f.gate.held = nil
				f.cancel(t, o)
				res, err := f.ChargeOrder.Handle(context.Background(), o)
				close(f.gate.release)
				if err := <-done; err != nil {
					t.Fatalf("the in-flight delivery: %v", err)
				}
				if err != nil {
					t.Fatalf("the duplicate delivery: %+v, %v", res, err)
				}
				charged, refunded := f.prov.Charged(id), f.prov.Refunded(id)
				_, st := f.row(t, o.OrderID)
				if charged != refunded || charged != landed {
					t.Fatalf("provider charged %v, refunded %v (row %s); want %v and %v", charged, refunded, st, landed, landed)
				}
				want := map[bool]string{false: "CANCELLED", true: "REFUNDED"}[landed]
				if st != want {
					t.Fatalf("row %s, want %s", st, want)
				}
			})
		}
	}
}

// TestChargeDeclinedByTheVoidStoresNoFailure: the void of a duplicate
// delivery reached the provider before the charge still in flight, which the
// provider then declined (charge_voided), and the in-flight delivery stores
// its answer before the void's delivery closes the row. No charge was ever
// made and the order was cancelled: the row must end CANCELLED with no event,
// as when the void's delivery stores first, not FAILED with a
// payment.failed for a cancelled order.
func TestChargeDeclinedByTheVoidStoresNoFailure(t *testing.T) {
	for name, db := range storetest.Databases(t, service.Migrate) {
		t.Run(name, func(t *testing.T) {
			f := newFlaggedApp(db)
			o := f.fault(t)
			id, _ := f.row(t, o.OrderID)
			f.gate.held, f.gate.release = make(chan struct{}), make(chan struct{})
			var inFlight, voiding app.ChargeResult
			inFlightErr, voidingErr := make(chan error, 1), make(chan error, 1)
			go func() { r, err := f.ChargeOrder.Handle(context.Background(), o); inFlight = r; inFlightErr <- err }()
			<-f.gate.held // that delivery's charge has not reached the provider yet
			f.gate.held = nil
			f.cancel(t, o)
			f.voidGate.held, f.voidGate.release = make(chan struct{}), make(chan struct{})
			go func() { r, err := f.ChargeOrder.Handle(context.Background(), o); voiding = r; voidingErr <- err }()
			<-f.voidGate.held // the key is void; that delivery has not stored it yet
			close(f.gate.release)
			if err := <-inFlightErr; err != nil || inFlight.Duplicate || !inFlight.Voided {
				t.Fatalf("the in-flight delivery = %+v, %v; want it to store the void (counted voided)", inFlight, err)
			}
			close(f.voidGate.release)
			if err := <-voidingErr; err != nil || !voiding.Duplicate {
				t.Fatalf("the voiding delivery = %+v, %v; want a duplicate", voiding, err)
			}
			if f.prov.Charged(id) || f.prov.Refunds() != 0 {
				t.Fatalf("provider charged %v, refunds %d; want nothing", f.prov.Charged(id), f.prov.Refunds())
			}
			var r struct{ Status, Reason string }
			if err := db.Table("payments").Select("status, reason").Where("order_id = ?", o.OrderID).Take(&r).Error; err != nil {
				t.Fatal(err)
			}
			if got := f.outbox(t, o.OrderID); r.Status != "CANCELLED" || r.Reason != payment.ReasonOrderCancelled || len(got) != 0 {
				t.Fatalf("row %s (%s), outbox %v; want CANCELLED (order_cancelled) and nothing", r.Status, r.Reason, got)
			}
		})
	}
}

// TestChargeBehindAnotherReplicasVoidIsGivenBack: two replicas, each with its own simulated provider, share the
// database. Replica A's redelivery of order.created is charging the PENDING row when the order is cancelled and a
// duplicate delivery on replica B finds the row flagged and voids the key. B's provider never saw A's charge, so the
// void gives nothing back and B stores CANCELLED (nothing taken); A's charge is approved (before or after B's void,
// A's provider knows no void) and its store loses the PENDING guard. A holds an approval the stored row denies: it
// must void the key on its own provider, which gives the charge back. Before, A counted a duplicate and the customer
// stayed charged behind a CANCELLED row. A processor whose keys hold across replicas declines A's charge after the
// void, or refunds it with the void (TestFlaggedOrderWithAChargeStillInFlight); this is the simulated provider as
// deployed with several replicas.
func TestChargeBehindAnotherReplicasVoidIsGivenBack(t *testing.T) {
	for name, db := range storetest.Databases(t, service.Migrate) {
		for _, landed := range []bool{false, true} {
			t.Run(name+map[bool]string{false: "/chargeArrivesAfter", true: "/chargeTakenBefore"}[landed], func(t *testing.T) {
				a, b := newFlaggedApp(db), newFlaggedApp(db)
				o := a.fault(t)
				id, _ := a.row(t, o.OrderID)
				a.gate.held, a.gate.release, a.gate.afterProvider = make(chan struct{}), make(chan struct{}), landed
				done := make(chan error, 1)
				go func() { _, err := a.ChargeOrder.Handle(context.Background(), o); done <- err }()
				<-a.gate.held // A's charge is in flight
				a.gate.held = nil
				b.cancel(t, o)
				if res, err := b.ChargeOrder.Handle(context.Background(), o); err != nil || !res.Voided {
					t.Fatalf("B's duplicate delivery = %+v, %v; want it to store the void", res, err)
				}
				close(a.gate.release)
				if err := <-done; err != nil {
					t.Fatalf("A's delivery: %v", err)
				}
				if _, st := a.row(t, o.OrderID); st != "CANCELLED" {
					t.Fatalf("row %s, want CANCELLED", st)
				}
				if b.prov.Charged(id) {
					t.Fatal("B's provider charged the key")
				}
				if !a.prov.Charged(id) || !a.prov.Refunded(id) {
					t.Fatalf("A's provider: charged %v, refunded %v; want its charge given back", a.prov.Charged(id), a.prov.Refunded(id))
				}
				if ev := a.outbox(t, o.OrderID); len(ev) != 0 {
					t.Fatalf("events %v for a CANCELLED payment; want none", ev)
				}
			})
		}
	}
}
