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
	"github.com/shanhai-dev/shanhai/services/payment/internal/app"
	"github.com/shanhai-dev/shanhai/services/payment/internal/config"
)

// TestSlowChargeIsDeliveredOnce runs the consumer as the service does (its
// ConsumerConfig, on the real NATS server and PostgreSQL) with a provider
// that takes 2.5 s to answer: longer than the first back-off step (1 s),
// after which the server would deliver the order.created again to another
// worker, unless Handle tells it the charge is still in progress.
func TestSlowChargeIsDeliveredOnce(t *testing.T) {
	const providerLatency = 2500 // ms; median = p99, so every charge takes this long
	provider := adapters.NewSimulatedProvider(func() config.Dynamic {
		return config.Dynamic{LatencyMedianMs: providerLatency, LatencyP99Ms: providerLatency, DeclineAboveCents: 100000}
	})
	a := app.New(app.Deps{Payments: adapters.NewPaymentGorm(stores(t)[database.Postgres]), Provider: provider, NewID: uuid.NewString})
	s := svctest.NewStream(t, "PAYSLOW")
	names := adapters.Names{Stream: s.Name, StreamSubjects: s.Subjects(), Subject: s.Prefix + adapters.OrdersSubject, Durable: "payment"}
	ctx := context.Background()
	const maxDeliver = 10
	cons, err := adapters.EnsureConsumer(ctx, s.JS, names, maxDeliver)
	if err != nil {
		t.Fatal(err)
	}
	stop, err := adapters.NewOrderEvents(cons, names, a, maxDeliver, nil).Start()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	o := adapters.OrderCreatedData{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 5000, Currency: "EUR"}
	env, err := event.New(adapters.OrderCreated, "/shanhai/order", o.OrderID, o)
	if err != nil {
		t.Fatal(err)
	}
	s.Publish(t, names.Subject, "shanhai.orders", o.OrderID, svctest.Headers(env, nil), env.Data)
	s.Drained(t, names.Durable, 20*time.Second)

	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.Delivered.Consumer; n != 1 {
		t.Fatalf("order.created delivered %d times while its charge took %d ms, want once", n, providerLatency)
	}
	if n := provider.Charges(); n != 1 {
		t.Fatalf("%d charges, want 1", n)
	}
}
