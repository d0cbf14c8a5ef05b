package adapters_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"
	"github.com/shanhai-dev/shanhai/services/payment/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/payment/internal/config"
	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

// answeredAtCutOff is a processor whose approval arrives just as the stop
// cuts the handler off: it took the money, and its answer is in hand.
type answeredAtCutOff struct {
	*adapters.SimulatedProvider
	called chan struct{}
}

func (p answeredAtCutOff) Charge(ctx context.Context, _ payment.Charge) (payment.Answer, error) {
	close(p.called)
	<-ctx.Done()
	return payment.Answer{Approved: true}, nil
}

// TestStopStoresAChargeAnsweredAtTheCutOff: a charge the provider approved
// as the stop cut its handler off must still be stored. Before, the store
// ran on the cut-off context and failed: the row stayed PENDING with the
// money taken and no payment.succeeded, and the message was left for a
// redelivery that, on its last allowed delivery, never comes (the order
// then waits for a cancel to refund it).
func TestStopStoresAChargeAnsweredAtTheCutOff(t *testing.T) {
	payments := adapters.NewPaymentGorm(stores(t)[database.Postgres])
	provider := answeredAtCutOff{adapters.NewSimulatedProvider(func() config.Dynamic { return config.Dynamic{} }), make(chan struct{})}
	f, stop := consumeWith(t, "PAYCUTANSWER", payments, provider, 5)

	o := adapters.OrderCreatedData{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 5000, Currency: "EUR"}
	env, err := event.New(adapters.OrderCreated, "/shanhai/order", o.OrderID, o)
	if err != nil {
		t.Fatal(err)
	}
	f.s.Publish(t, f.names.Subject, "shanhai.orders", o.OrderID, svctest.Headers(env, nil), env.Data)
	select {
	case <-provider.called:
	case <-time.After(30 * time.Second):
		t.Fatal("the order was never charged")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	stop(ctx)

	p, err := payments.ByOrder(context.Background(), o.OrderID)
	if err != nil {
		t.Fatal(err)
	}
	if p.Status() != payment.Succeeded {
		t.Fatalf("payment %s after a charge approved at the cut-off, want SUCCEEDED", p.Status())
	}
}
