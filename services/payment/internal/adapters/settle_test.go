package adapters_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/testenv/storetest"
	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"
	"github.com/shanhai-dev/shanhai/services/payment/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/payment/internal/app"
	"github.com/shanhai-dev/shanhai/services/payment/internal/config"
	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

// outage is the simulated provider with the calls named in faults faulting
// until healed, and onCharge (if set) run once, while the first charge is in
// flight.
type outage struct {
	*adapters.SimulatedProvider
	charges, voids, refunds atomic.Bool
	// declineRefunds: a refund is refused (a business answer, not a fault),
	// as the simulated provider refuses a key it remembers declining.
	declineRefunds atomic.Bool
	refundCalls    atomic.Int64
	onChargeOnce   sync.Once
	onCharge       func(context.Context)
}

func (p *outage) heal() { p.charges.Store(false); p.voids.Store(false); p.refunds.Store(false) }

func (p *outage) Charge(ctx context.Context, c payment.Charge) (payment.Answer, error) {
	if p.onCharge != nil {
		p.onChargeOnce.Do(func() { p.onCharge(ctx) })
	}
	if p.charges.Load() {
		return payment.Answer{}, fmt.Errorf("%w: charge timed out", payment.ErrProviderFault)
	}
	return p.SimulatedProvider.Charge(ctx, c)
}

func (p *outage) Void(ctx context.Context, v payment.Void) (bool, error) {
	if p.voids.Load() {
		return false, fmt.Errorf("%w: void timed out", payment.ErrProviderFault)
	}
	return p.SimulatedProvider.Void(ctx, v)
}

func (p *outage) Refund(ctx context.Context, r payment.Refund) error {
	p.refundCalls.Add(1)
	if p.declineRefunds.Load() {
		return fmt.Errorf("refund %s: %w", r.IdempotencyKey, adapters.ErrChargeDeclined)
	}
	if p.refunds.Load() {
		return fmt.Errorf("%w: refund timed out", payment.ErrProviderFault)
	}
	return p.SimulatedProvider.Refund(ctx, r)
}

func newOutage() *outage {
	return &outage{SimulatedProvider: adapters.NewSimulatedProvider(func() config.Dynamic { return config.Dynamic{DeclineAboveCents: 100000} })}
}

// settleRounds runs two rounds at once (two replicas), then one more, and
// checks that together they settled the order's payment exactly once, as
// want says (voided or refunded), and that the last round found nothing.
// wantVoided checks o's payment after a settle round voided it: CANCELLED,
// its key void at the provider (a late charge of it is refused as voided),
// and no event in the outbox, since nothing was charged.
func wantVoided(t *testing.T, db *gorm.DB, provider *outage, o app.ChargeOrder) {
	t.Helper()
	id, status := paymentRow(t, db, o.OrderID)
	late, err := provider.SimulatedProvider.Charge(context.Background(), payment.Charge{IdempotencyKey: id, AmountCents: o.TotalCents, Currency: o.Currency})
	if status != string(payment.Cancelled) || err != nil || late.Reason != payment.ReasonVoided {
		t.Fatalf("payment %s, a late charge of its key = %+v, %v; want CANCELLED and the key void", status, late, err)
	}
	if events := outboxTypes(t, db, o.OrderID); len(events) != 0 {
		t.Fatalf("outbox = %v; want nothing: nothing was charged", events)
	}
}

func settleRounds(t *testing.T, a app.Application, want string) {
	t.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	results := make([]app.SettleResult, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() { results[i], errs[i] = a.Settle.Handle(ctx) })
	}
	wg.Wait()
	var total app.SettleResult
	for i := range 2 {
		if errs[i] != nil {
			t.Fatalf("settle round %d: %v", i, errs[i])
		}
		total.Voided += results[i].Voided
		total.Refunded += results[i].Refunded
		total.RefundDeclined = append(total.RefundDeclined, results[i].RefundDeclined...)
	}
	wantTotal := app.SettleResult{Voided: 1}
	if want == "refunded" {
		wantTotal = app.SettleResult{Refunded: 1}
	}
	if total.Voided != wantTotal.Voided || total.Refunded != wantTotal.Refunded || len(total.RefundDeclined) != 0 {
		t.Fatalf("two concurrent settle rounds = %+v, %+v; want %+v between them", results[0], results[1], wantTotal)
	}
	if again, err := a.Settle.Handle(ctx); err != nil || again.Voided+again.Refunded+len(again.RefundDeclined) != 0 {
		t.Fatalf("a later settle round = %+v, %v; want nothing left to settle", again, err)
	}
}

func paymentRow(t *testing.T, db *gorm.DB, orderID string) (id, status string) {
	t.Helper()
	var row struct{ ID, Status string }
	if err := db.Table("payments").Select("id, status").Where("order_id = ?", orderID).Take(&row).Error; err != nil {
		t.Fatal(err)
	}
	return row.ID, row.Status
}

func outboxTypes(t *testing.T, db *gorm.DB, orderID string) []string {
	t.Helper()
	var events []string
	for _, m := range storetest.OutboxRows(t, db, orderID) {
		events = append(events, m.EventType)
	}
	return events
}

// TestSettleRoundVoidsADeadLetteredChargeWhoseVoidFaulted: the charge
// faulted on every delivery, the order was cancelled (the row flagged), and
// the void the dead-lettering delivery tried (GiveUp) faulted too. Before,
// nothing tried again: the row stayed PENDING and flagged, the key unvoided,
// until an operator replayed the dead letter. Once the provider is back, a
// settle round voids it, once, whatever the number of replicas running one.
func TestSettleRoundVoidsADeadLetteredChargeWhoseVoidFaulted(t *testing.T) {
	for name, db := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			provider := newOutage()
			provider.charges.Store(true)
			provider.voids.Store(true)
			a := app.New(app.Deps{Payments: adapters.NewPaymentGorm(db), Provider: provider, NewID: uuid.NewString})
			o := app.ChargeOrder{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 5000, Currency: "EUR"}

			if _, err := a.ChargeOrder.Handle(ctx, o); err == nil {
				t.Fatal("charge went through; want it faulting")
			}
			if c, err := a.CancelOrder.Handle(ctx, app.CancelOrder(o)); err != nil || c.Status != payment.Pending {
				t.Fatalf("cancel = %+v, %v; want the PENDING row flagged", c, err)
			}
			if err := a.RecordDeadLetter.Handle(ctx, payment.DeadLetter{Consumer: "payment", EventType: adapters.OrderCreated,
				Reason: "retries_exhausted", OrderID: o.OrderID}); err != nil {
				t.Fatal(err)
			}
			if _, err := a.ChargeOrder.GiveUp(ctx, o.OrderID); err == nil {
				t.Fatal("give up voided the key; want the void faulting")
			}
			provider.heal()

			settleRounds(t, a, "voided")
			wantVoided(t, db, provider, o)
		})
	}
}

// TestSettleRoundRefundsADeadLetteredChargeWhoseRefundFaulted: the order was
// cancelled while its charge was in flight, the charge was stored SUCCEEDED
// and flagged, and its refund faulted on the last delivery and in GiveUp.
// Before, the row stayed SUCCEEDED and flagged (the customer charged) until
// an operator replayed the dead letter; a settle round refunds it, once.
func TestSettleRoundRefundsADeadLetteredChargeWhoseRefundFaulted(t *testing.T) {
	for name, db := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			provider := newOutage()
			provider.refunds.Store(true)
			a := app.New(app.Deps{Payments: adapters.NewPaymentGorm(db), Provider: provider, NewID: uuid.NewString})
			o := app.ChargeOrder{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 5000, Currency: "EUR"}
			provider.onCharge = func(ctx context.Context) {
				if c, err := a.CancelOrder.Handle(ctx, app.CancelOrder(o)); err != nil || c.Status != payment.Pending {
					t.Errorf("cancel while the charge was in flight = %+v, %v; want the PENDING row flagged", c, err)
				}
			}

			if _, err := a.ChargeOrder.Handle(ctx, o); err == nil {
				t.Fatal("the cancelled order's charge was refunded; want the refund faulting")
			}
			if err := a.RecordDeadLetter.Handle(ctx, payment.DeadLetter{Consumer: "payment", EventType: adapters.OrderCreated,
				Reason: "retries_exhausted", OrderID: o.OrderID}); err != nil {
				t.Fatal(err)
			}
			if _, err := a.ChargeOrder.GiveUp(ctx, o.OrderID); err == nil {
				t.Fatal("give up refunded the charge; want the refund faulting")
			}
			provider.heal()

			settleRounds(t, a, "refunded")
			id, status := paymentRow(t, db, o.OrderID)
			if status != string(payment.Refunded) || !provider.Refunded(id) || provider.Charges() != 1 || provider.Refunds() != 1 {
				t.Fatalf("payment %s, key refunded %v, provider charges %d, refunds %d; want REFUNDED, one charge refunded once",
					status, provider.Refunded(id), provider.Charges(), provider.Refunds())
			}
			if events, want := outboxTypes(t, db, o.OrderID), []string{"payment.succeeded", "payment.refunded"}; !slices.Equal(events, want) {
				t.Fatalf("outbox = %v; want %v", events, want)
			}
		})
	}
}

// TestSettleRoundRefundsACancelWhoseRefundWasDeadLettered: the order was
// charged, then its order.cancelled found the row SUCCEEDED and the refund
// faulted on every delivery, so the cancel was dead-lettered. The cancel
// does not flag a SUCCEEDED row, and before, its dead letter did not name
// the order either: nothing marked the order as owed a refund and nothing
// retried it. The dead letter now names the order, without making it read
// as a dead charge (the cancel's own void guard), and a settle round
// refunds the charge, once.
func TestSettleRoundRefundsACancelWhoseRefundWasDeadLettered(t *testing.T) {
	for name, db := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			provider := newOutage()
			store := adapters.NewPaymentGorm(db)
			a := app.New(app.Deps{Payments: store, Provider: provider, NewID: uuid.NewString})
			o := adapters.OrderCreatedData{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 5000, Currency: "EUR"}
			if c, err := a.ChargeOrder.Handle(ctx, app.ChargeOrder(o)); err != nil || c.Status != payment.Succeeded {
				t.Fatalf("charge = %+v, %v; want SUCCEEDED", c, err)
			}
			provider.refunds.Store(true)
			f, stop := consumeWith(t, "PAYSETTLECANCEL"+strings.ToUpper(name), store, provider, 2)
			defer stop(ctx)
			env, err := event.New(adapters.OrderCancelled, "/shanhai/order", o.OrderID, o)
			if err != nil {
				t.Fatal(err)
			}
			f.s.Publish(t, f.names.Subject, "shanhai.orders", o.OrderID, svctest.Headers(env, nil), env.Data)
			f.s.Drained(t, f.names.Durable, 30*time.Second)
			dl, err := store.DeadLetters(ctx, 10)
			if err != nil || len(dl) != 1 || dl[0].EventType != adapters.OrderCancelled || !strings.Contains(dl[0].Reason, "after 2 deliveries") {
				t.Fatalf("dead letters = %+v, %v; want the order.cancelled's, after 2 deliveries", dl, err)
			}
			if dead, err := store.ChargeDeadLettered(ctx, o.OrderID); err != nil || dead {
				t.Fatalf("charge dead-lettered = %v, %v; want false: only the cancel was", dead, err)
			}
			provider.heal()

			settleRounds(t, a, "refunded")
			id, status := paymentRow(t, db, o.OrderID)
			if status != string(payment.Refunded) || !provider.Refunded(id) || provider.Charges() != 1 || provider.Refunds() != 1 {
				t.Fatalf("payment %s, key refunded %v, provider charges %d, refunds %d; want REFUNDED, one charge refunded once",
					status, provider.Refunded(id), provider.Charges(), provider.Refunds())
			}
			if events, want := outboxTypes(t, db, o.OrderID), []string{"payment.succeeded", "payment.refunded"}; !slices.Equal(events, want) {
				t.Fatalf("outbox = %v; want %v", events, want)
			}
		})
	}
}

// TestSettleRoundStopsRetryingARefundTheProviderDeclined: a cancelled order's
// charge whose refund the provider refuses (a business answer: it says
// there is nothing under the key to give back, as a replica that voided
// the key says of a charge another replica took) is no fault a later round
// can outlast. Before, every round asked for the refund again, for ever.
// The round that gets the refusal stores it on the row (still SUCCEEDED:
// the money is taken, reason refund_declined, for a person to settle) and
// reports it once, whatever the number of replicas; later rounds leave it.
func TestSettleRoundStopsRetryingARefundTheProviderDeclined(t *testing.T) {
	for name, db := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			provider := newOutage()
			a := app.New(app.Deps{Payments: adapters.NewPaymentGorm(db), Provider: provider, NewID: uuid.NewString})
			o := app.ChargeOrder{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 5000, Currency: "EUR"}
			if c, err := a.ChargeOrder.Handle(ctx, o); err != nil || c.Status != payment.Succeeded {
				t.Fatalf("charge = %+v, %v; want SUCCEEDED", c, err)
			}
			if err := a.RecordDeadLetter.Handle(ctx, payment.DeadLetter{Consumer: "payment", EventType: adapters.OrderCancelled,
				Reason: "retries_exhausted", OrderID: o.OrderID}); err != nil {
				t.Fatal(err)
			}
			provider.declineRefunds.Store(true)

			var wg sync.WaitGroup
			results := make([]app.SettleResult, 2)
			for i := range 2 {
				wg.Go(func() {
					var err error
					if results[i], err = a.Settle.Handle(ctx); err != nil {
						t.Errorf("settle round %d: %v; want the refusal stored, not an error", i, err)
					}
				})
			}
			wg.Wait()
			declined := slices.Concat(results[0].RefundDeclined, results[1].RefundDeclined)
			id, status := paymentRow(t, db, o.OrderID)
			if len(declined) != 1 || declined[0].PaymentID != id || declined[0].OrderID != o.OrderID {
				t.Fatalf("two concurrent settle rounds reported declined refunds %+v; want payment %s of order %s once", declined, id, o.OrderID)
			}
			calls := provider.refundCalls.Load()
			again, err := a.Settle.Handle(ctx)
			if err != nil || len(again.RefundDeclined) != 0 || provider.refundCalls.Load() != calls {
				t.Fatalf("a later settle round = %+v, %v, provider refunds asked %d more; want nothing asked again",
					again, err, provider.refundCalls.Load()-calls)
			}
			var reason string
			if err := db.Table("payments").Select("reason").Where("id = ?", id).Scan(&reason).Error; err != nil {
				t.Fatal(err)
			}
			if status != string(payment.Succeeded) || reason != payment.ReasonRefundDeclined {
				t.Fatalf("payment %s, reason %q; want SUCCEEDED (still charged), %q", status, reason, payment.ReasonRefundDeclined)
			}
			if events, want := outboxTypes(t, db, o.OrderID), []string{"payment.succeeded"}; !slices.Equal(events, want) {
				t.Fatalf("outbox = %v; want %v: nothing was refunded", events, want)
			}
		})
	}
}

// TestSettleRoundVoidsAnUnflaggedChargeWhoseMessagesWereBothDeadLettered:
// the charge faulted on every delivery of order.created, and the order's
// order.cancelled found the row PENDING but its own writes (the flag)
// failed on every delivery, so both were dead-lettered and the row was
// never flagged. Before, the round voided only flagged rows and this one
// stayed PENDING, its key unvoided (the fault may have been a timeout after
// the processor took the money). No delivery of either message is left, so
// the round flags it as the cancel would have and voids it, once.
func TestSettleRoundVoidsAnUnflaggedChargeWhoseMessagesWereBothDeadLettered(t *testing.T) {
	for name, db := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			provider := newOutage()
			provider.charges.Store(true)
			a := app.New(app.Deps{Payments: adapters.NewPaymentGorm(db), Provider: provider, NewID: uuid.NewString})
			o := app.ChargeOrder{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 5000, Currency: "EUR"}
			if _, err := a.ChargeOrder.Handle(ctx, o); err == nil {
				t.Fatal("charge went through; want it faulting")
			}
			for _, typ := range []string{adapters.OrderCreated, adapters.OrderCancelled} {
				if err := a.RecordDeadLetter.Handle(ctx, payment.DeadLetter{Consumer: "payment", EventType: typ,
					Reason: "retries_exhausted", OrderID: o.OrderID}); err != nil {
					t.Fatal(err)
				}
			}
			if r, err := a.ChargeOrder.GiveUp(ctx, o.OrderID); err != nil || r.Status != payment.Pending {
				t.Fatalf("give up = %+v, %v; want the unflagged PENDING row left alone", r, err)
			}
			provider.heal()

			settleRounds(t, a, "voided")
			wantVoided(t, db, provider, o)
		})
	}
}

// TestSettleRoundLeavesAnUnflaggedChargeWhoseCreateIsStillDelivered: only
// the order.cancelled was dead-lettered; the order.created may still be
// delivered (it is not dead), and a void from outside that delivery could
// miss its charge in flight on another replica. The round leaves the
// unflagged PENDING row to the delivery.
func TestSettleRoundLeavesAnUnflaggedChargeWhoseCreateIsStillDelivered(t *testing.T) {
	for name, db := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			provider := newOutage()
			provider.charges.Store(true)
			a := app.New(app.Deps{Payments: adapters.NewPaymentGorm(db), Provider: provider, NewID: uuid.NewString})
			o := app.ChargeOrder{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 5000, Currency: "EUR"}
			if _, err := a.ChargeOrder.Handle(ctx, o); err == nil {
				t.Fatal("charge went through; want it faulting")
			}
			if err := a.RecordDeadLetter.Handle(ctx, payment.DeadLetter{Consumer: "payment", EventType: adapters.OrderCancelled,
				Reason: "retries_exhausted", OrderID: o.OrderID}); err != nil {
				t.Fatal(err)
			}
			provider.heal()
			if res, err := a.Settle.Handle(ctx); err != nil || res.Voided+res.Refunded != 0 {
				t.Fatalf("settle round = %+v, %v; want nothing settled", res, err)
			}
			if _, status := paymentRow(t, db, o.OrderID); status != string(payment.Pending) {
				t.Fatalf("payment %s; want PENDING, left to its order.created", status)
			}
		})
	}
}

// TestSettleRoundCountsWhatItFailedOn: a round reports what it left
// unsettled by cause, for the service's shanhai_payment_settle_failures_total:
// a refund the provider faulted on as Faulted, a round whose database is
// gone as Failed (its listing, once), and neither for a clean round or for
// what a stop cut off (ctx ended). Before, a failing round returned only an
// error, which the service could only log.
func TestSettleRoundCountsWhatItFailedOn(t *testing.T) {
	for name, db := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			provider := newOutage()
			a := app.New(app.Deps{Payments: adapters.NewPaymentGorm(db), Provider: provider, NewID: uuid.NewString})
			o := app.ChargeOrder{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 5000, Currency: "EUR"}
			if c, err := a.ChargeOrder.Handle(ctx, o); err != nil || c.Status != payment.Succeeded {
				t.Fatalf("charge = %+v, %v; want SUCCEEDED", c, err)
			}
			if err := a.RecordDeadLetter.Handle(ctx, payment.DeadLetter{Consumer: "payment", EventType: adapters.OrderCancelled,
				Reason: "retries_exhausted", OrderID: o.OrderID}); err != nil {
				t.Fatal(err)
			}

			provider.refunds.Store(true)
			if res, err := a.Settle.Handle(ctx); err == nil || res.Faulted != 1 || res.Failed != 0 || res.Refunded != 0 {
				t.Fatalf("round with the refund faulting = %+v, %v; want an error and Faulted 1", res, err)
			}
			stopped, cancel := context.WithCancel(ctx)
			cancel()
			if res, err := a.Settle.Handle(stopped); err == nil || res.Faulted+res.Failed != 0 {
				t.Fatalf("round cut off by its stop = %+v, %v; want an error and nothing counted", res, err)
			}
			provider.heal()
			if res, err := a.Settle.Handle(ctx); err != nil || res.Faulted+res.Failed != 0 || res.Refunded != 1 {
				t.Fatalf("clean round = %+v, %v; want the refund and no failure", res, err)
			}

			sqlDB, err := db.DB()
			if err != nil {
				t.Fatal(err)
			}
			if err := sqlDB.Close(); err != nil {
				t.Fatal(err)
			}
			if res, err := a.Settle.Handle(ctx); err == nil || res.Failed != 1 || res.Faulted != 0 {
				t.Fatalf("round on a closed database = %+v, %v; want an error and Failed 1", res, err)
			}
		})
	}
}
