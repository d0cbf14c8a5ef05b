package app_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/shanhai-dev/shanhai/services/payment/internal/app"
	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

var cancel1 = app.CancelOrder{OrderID: "o1", UserID: "u1", TotalCents: 500, Currency: "EUR"}

func TestCancelAfterChargeRefundsOnce(t *testing.T) {
	a, repo, prov := setup(payment.Rules{})
	ctx := context.Background()
	charged, err := a.ChargeOrder.Handle(ctx, order1)
	if err != nil || charged.Status != payment.Succeeded {
		t.Fatalf("charge = %+v, %v", charged, err)
	}
	first, err := a.CancelOrder.Handle(ctx, cancel1)
	if err != nil || first.Status != payment.Refunded || first.Duplicate || first.PaymentID != charged.PaymentID {
		t.Fatalf("cancel = %+v, %v", first, err)
	}
	for range 2 {
		again, err := a.CancelOrder.Handle(ctx, cancel1)
		if err != nil || !again.Duplicate || again.Status != payment.Refunded {
			t.Fatalf("duplicate cancel = %+v, %v", again, err)
		}
	}
	if res, err := a.ChargeOrder.Handle(ctx, order1); err != nil || !res.Duplicate || res.Status != payment.Refunded {
		t.Fatalf("late create redelivery = %+v, %v", res, err)
	}
	if got := repo.eventTypes(); !slices.Equal(got, []string{"payment.succeeded", "payment.refunded"}) {
		t.Fatalf("events = %v", got)
	}
	if prov.calls != 1 || prov.refunded() != 1 {
		t.Fatalf("charges %d, refunds %d; want 1 and 1", prov.calls, prov.refunded())
	}
}

func TestCancelBeforeCreateNeverCharges(t *testing.T) {
	a, repo, prov := setup(payment.Rules{})
	ctx := context.Background()
	c, err := a.CancelOrder.Handle(ctx, cancel1)
	if err != nil || c.Status != payment.Cancelled || c.Duplicate {
		t.Fatalf("cancel = %+v, %v", c, err)
	}
	res, err := a.ChargeOrder.Handle(ctx, order1)
	if err != nil || !res.Duplicate || res.Status != payment.Cancelled || res.PaymentID != c.PaymentID {
		t.Fatalf("create after cancel = %+v, %v", res, err)
	}
	if prov.calls != 0 || len(repo.eventTypes()) != 0 {
		t.Fatalf("charges %d, events %v; want none", prov.calls, repo.eventTypes())
	}
}

func TestCancelDuringChargeRefundsWhenTheChargeLands(t *testing.T) {
	a, repo, prov := setup(payment.Rules{})
	prov.charging, prov.release = make(chan struct{}), make(chan struct{})
	ctx := context.Background()
	done := make(chan app.ChargeResult)
	go func() {
		res, err := a.ChargeOrder.Handle(ctx, order1)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	<-prov.charging // the claim is PENDING and the provider is charging
	c, err := a.CancelOrder.Handle(ctx, cancel1)
	if err != nil || c.Status != payment.Pending || c.Duplicate {
		t.Fatalf("cancel during the charge = %+v, %v; want the PENDING row flagged", c, err)
	}
	close(prov.release)
	res := <-done
	if res.Status != payment.Refunded {
		t.Fatalf("charge finished as %+v; want it refunded by the charging path", res)
	}
	if got := repo.eventTypes(); !slices.Equal(got, []string{"payment.succeeded", "payment.refunded"}) {
		t.Fatalf("events = %v", got)
	}
	if prov.calls != 1 || prov.refunded() != 1 {
		t.Fatalf("charges %d, refunds %d", prov.calls, prov.refunded())
	}
}

func TestRefundFaultIsRetriedByTheRedeliveredCreate(t *testing.T) {
	a, repo, prov := setup(payment.Rules{})
	prov.charging, prov.release = make(chan struct{}), make(chan struct{})
	// A fault, as Provider says: an error that does not wrap
	// ErrProviderFault is a refusal, not retried by the settle round.
	prov.refundFault = fmt.Errorf("%w: timeout", payment.ErrProviderFault)
	ctx := context.Background()
	errc := make(chan error)
	go func() { _, err := a.ChargeOrder.Handle(ctx, order1); errc <- err }()
	<-prov.charging
	if _, err := a.CancelOrder.Handle(ctx, cancel1); err != nil {
		t.Fatal(err)
	}
	close(prov.release)
	if err := <-errc; !errors.Is(err, payment.ErrProviderFault) {
		t.Fatalf("charge with a faulting refund: err = %v; want a retryable fault", err)
	}
	prov.mu.Lock()
	prov.refundFault, prov.charging = nil, nil
	prov.mu.Unlock()
	res, err := a.ChargeOrder.Handle(ctx, order1) // the nakked order.created again
	if err != nil || res.Status != payment.Refunded || res.Duplicate {
		t.Fatalf("redelivery = %+v, %v", res, err)
	}
	if got := repo.eventTypes(); !slices.Equal(got, []string{"payment.succeeded", "payment.refunded"}) {
		t.Fatalf("events = %v", got)
	}
}

func TestCancelOfFailedChargeDoesNothing(t *testing.T) {
	a, repo, prov := setup(payment.Rules{MaxAmountCents: 100})
	ctx := context.Background()
	if res, _ := a.ChargeOrder.Handle(ctx, order1); res.Status != payment.Failed {
		t.Fatalf("charge = %+v", res)
	}
	c, err := a.CancelOrder.Handle(ctx, cancel1)
	if err != nil || !c.Duplicate || c.Status != payment.Failed {
		t.Fatalf("cancel = %+v, %v", c, err)
	}
	if prov.refunded() != 0 || len(repo.eventTypes()) != 1 {
		t.Fatalf("refunds %d, events %v", prov.refunded(), repo.eventTypes())
	}
}

func TestInvalidCancelIsPermanent(t *testing.T) {
	a, _, _ := setup(payment.Rules{})
	if _, err := a.CancelOrder.Handle(context.Background(), app.CancelOrder{OrderID: "o", UserID: "", TotalCents: 5, Currency: "EUR"}); !errors.Is(err, payment.ErrInvalid) {
		t.Fatalf("err = %v", err)
	}
}

// TestEventsNotMatchingThePaymentAreInvalid: an order event for a charged
// order with another user, total or currency neither refunds nor charges.
func TestEventsNotMatchingThePaymentAreInvalid(t *testing.T) {
	a, repo, prov := setup(payment.Rules{})
	ctx := context.Background()
	if res, err := a.ChargeOrder.Handle(ctx, order1); err != nil || res.Status != payment.Succeeded {
		t.Fatalf("charge = %+v, %v", res, err)
	}
	for _, c := range []app.CancelOrder{
		{OrderID: cancel1.OrderID, UserID: "mallory", TotalCents: cancel1.TotalCents, Currency: cancel1.Currency},
		{OrderID: cancel1.OrderID, UserID: cancel1.UserID, TotalCents: cancel1.TotalCents + 1, Currency: cancel1.Currency},
		{OrderID: cancel1.OrderID, UserID: cancel1.UserID, TotalCents: cancel1.TotalCents, Currency: "USD"},
	} {
		if _, err := a.CancelOrder.Handle(ctx, c); !errors.Is(err, payment.ErrInvalid) {
			t.Fatalf("cancel %+v: err = %v, want ErrInvalid", c, err)
		}
		if _, err := a.ChargeOrder.Handle(ctx, app.ChargeOrder(c)); !errors.Is(err, payment.ErrInvalid) {
			t.Fatalf("create %+v: err = %v, want ErrInvalid", c, err)
		}
	}
	if prov.calls != 1 || prov.refunded() != 0 || !slices.Equal(repo.eventTypes(), []string{"payment.succeeded"}) {
		t.Fatalf("charges %d, refunds %d, events %v; want 1, 0, one success", prov.calls, prov.refunded(), repo.eventTypes())
	}
}
