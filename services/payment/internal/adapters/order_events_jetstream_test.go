package adapters_test

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/stream"
	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"
	"github.com/shanhai-dev/shanhai/services/payment/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/payment/internal/app"
	"github.com/shanhai-dev/shanhai/services/payment/internal/config"
	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

// providerLatency is how long the tests' provider takes to answer, in ms:
// longer than the first back-off step (1 s), after which the server would
// deliver an order.created that is not settled again, and shorter than the
// first two together. Median = p99, so every charge takes this long.
const providerLatency = 2500

// TestSlowChargeIsDeliveredOnce runs the consumer as the service does (its
// ConsumerConfig, on the real NATS server and PostgreSQL): the charge takes
// longer than the first ack wait, so the consumer must tell the server the
// order.created is still in progress.
func TestSlowChargeIsDeliveredOnce(t *testing.T) {
	if n, charges := chargeSlowly(t, "PAYSLOW", 1); n != 1 || charges != 1 {
		t.Fatalf("order.created delivered %d times and charged %d times while its charge took %d ms, want once", n, charges, providerLatency)
	}
}

// TestQueuedChargeIsDeliveredOnce: with more orders than workers, the last
// ones wait for a worker a whole slow charge long. The wait counts against
// the server's ack timer as much as charging does, so a waiting order.created
// must be kept alive from its reception, not only once a worker takes it.
func TestQueuedChargeIsDeliveredOnce(t *testing.T) {
	const orders = adapters.Workers + 8
	if n, charges := chargeSlowly(t, "PAYQUEUE", orders); n != orders || charges != orders {
		t.Fatalf("%d order.created (%d workers) delivered %d times and charged %d times while each charge took %d ms, want %d",
			orders, adapters.Workers, n, charges, providerLatency, orders)
	}
}

// TestBacklogAtTheLatencyLimitIsDeliveredOnce: the dynamic settings accept
// a provider as slow as config.MaxLatency (10 s), "a third of AckWait", but
// a message was kept from redelivery for AckWait from its reception, the
// wait in the queue included. The queue holds MaxAckPending (256) for 64
// workers, four charges' worth each: here one worker and four orders. The
// fourth waited 30 s and was delivered again while it was being charged
// (two replicas: charged on both, each simulated provider remembering only
// its own keys).
func TestBacklogAtTheLatencyLimitIsDeliveredOnce(t *testing.T) {
	const orders = 4
	latency := float64(config.MaxLatency.Milliseconds())
	if err := (config.Dynamic{LatencyMedianMs: latency, LatencyP99Ms: latency}).Validate(); err != nil {
		t.Fatalf("the settings refuse the latency limit: %v", err)
	}
	if n, charges := chargeSlowlyWith(t, "PAYBACKLOG", orders, latency, 1); n != orders || charges != orders {
		t.Fatalf("%d order.created (one worker) delivered %d times and charged %d times while each charge took %g ms, want %d",
			orders, n, charges, latency, orders)
	}
}

// chargeSlowly publishes orders order.created with a provider that takes
// providerLatency to answer and returns how many deliveries the consumer
// made once all were settled, and how many charges the provider saw.
func chargeSlowly(t *testing.T, prefix string, orders int) (delivered uint64, charges int) {
	t.Helper()
	return chargeSlowlyWith(t, prefix, orders, providerLatency, adapters.Workers)
}

// chargeSlowlyWith is chargeSlowly with a provider answering in latencyMs
// and the consumer running workers workers.
func chargeSlowlyWith(t *testing.T, prefix string, orders int, latencyMs float64, workers int) (delivered uint64, charges int) {
	t.Helper()
	provider := adapters.NewSimulatedProvider(func() config.Dynamic {
		return config.Dynamic{LatencyMedianMs: latencyMs, LatencyP99Ms: latencyMs, DeclineAboveCents: 100000}
	})
	a := app.New(app.Deps{Payments: adapters.NewPaymentGorm(stores(t)[database.Postgres]), Provider: provider, NewID: uuid.NewString})
	const maxDeliver = 10
	oc := newOrderConsumer(t, prefix, maxDeliver, nil)
	s, names, cons := oc.s, oc.names, oc.cons
	stop, err := adapters.WithWorkers(adapters.NewOrderEvents(cons, names, a, maxDeliver, nil), workers).Start()
	if err != nil {
		t.Fatal(err)
	}
	defer stop(context.Background())

	for range orders {
		publishOrder(t, s, names.Subject)
	}
	// Every charge's latency, one worker's share after another, and the
	// 30 s the check allowed before.
	s.Drained(t, names.Durable, 30*time.Second+time.Duration(float64(orders/workers+1)*latencyMs)*time.Millisecond)
	return svctest.Delivered(t, cons), provider.Charges()
}

// orderConsumer is a fresh test stream with the payment consumer on it.
type orderConsumer struct {
	s     *svctest.Stream
	names adapters.Names
	cfg   jetstream.ConsumerConfig
	cons  jetstream.Consumer
}

// newOrderConsumer creates the stream of service's test and the payment
// consumer on it: the service's config (adapters.ConsumerConfig), changed
// by tune when not nil.
func newOrderConsumer(t *testing.T, service string, maxDeliver int, tune func(*jetstream.ConsumerConfig)) orderConsumer {
	t.Helper()
	s := svctest.NewStream(t, service)
	names := adapters.Names{Stream: s.Name, StreamSubjects: s.Subjects(), Subject: s.Prefix + adapters.OrdersSubject, Durable: "payment"}
	cfg := adapters.ConsumerConfig(names, maxDeliver)
	if tune != nil {
		tune(&cfg)
	}
	cons, err := stream.EnsureConsumer(context.Background(), s.JS, names, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return orderConsumer{s: s, names: names, cfg: cfg, cons: cons}
}

// publishOrder publishes the order.created of a new order of 50 EUR on
// subject, as the bridge does, and returns it.
func publishOrder(t *testing.T, s *svctest.Stream, subject string) event.Envelope {
	t.Helper()
	o := adapters.OrderCreatedData{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 5000, Currency: "EUR"}
	env, err := event.New(adapters.OrderCreated, "/shanhai/order", o.OrderID, o)
	if err != nil {
		t.Fatal(err)
	}
	s.Publish(t, subject, "shanhai.orders", o.OrderID, svctest.Headers(env, nil), env.Data)
	return env
}

// TestFailingChargeIsRedeliveredOnTheBackOffThenDeadLettered runs the
// consumer as the service does, on the real NATS server and PostgreSQL, with
// a provider that always faults and a short back-off (the service's is
// 1 s ... 16 s): each redelivery must wait at least its step of the schedule,
// in order, and the order.created must be dead-lettered on its MaxDeliver-th
// delivery and not delivered again. A handler that naks as well is
// redelivered at once: nats-server times a nak's delay against AckWait and
// BackOff both.
func TestFailingChargeIsRedeliveredOnTheBackOffThenDeadLettered(t *testing.T) {
	payments := adapters.NewPaymentGorm(stores(t)[database.Postgres])
	const maxDeliver = 5
	f := failAlways(t, "PAYBACKOFF", payments, maxDeliver)
	env := publishOrder(t, f.s, f.names.Subject)
	f.s.Drained(t, f.names.Durable, 30*time.Second)

	want := []string{"order event will be retried", "order event will be retried", "order event will be retried",
		"order event will be retried", "message dead-lettered"}
	f.logged.FollowedBackOff(t, want, f.backOff)
	if n := svctest.Delivered(t, f.cons); n != maxDeliver {
		t.Errorf("order.created delivered %d times, want MaxDeliver (%d)", n, maxDeliver)
	}
	dl, err := payments.DeadLetters(context.Background(), 10)
	if err != nil || len(dl) != 1 || dl[0].EventID != env.ID || !strings.Contains(dl[0].Reason, "after 5 deliveries") {
		t.Fatalf("dead letters = %+v, %v; want %s's, after 5 deliveries", dl, err, env.ID)
	}
}

// noDeadLetters is a payment store whose dead letters cannot be recorded
// (their table gone, say), everything else working.
type noDeadLetters struct{ payment.Repository }

func (noDeadLetters) SaveDeadLetter(context.Context, payment.DeadLetter) error {
	return errors.New("dead letter table unavailable")
}

// TestUnrecordedLastDeliveryIsLoud: when the dead letter of a message given
// up on cannot be recorded on its last allowed delivery, JetStream will not
// deliver it again, so the stream's copy is all that is left: the consumer
// must say so with where to find it, not go quiet (before, that delivery
// logged nothing at all).
func TestUnrecordedLastDeliveryIsLoud(t *testing.T) {
	const maxDeliver = 3
	f := failAlways(t, "PAYUNRECORDED", noDeadLetters{adapters.NewPaymentGorm(stores(t)[database.Postgres])}, maxDeliver)
	publishOrder(t, f.s, f.names.Subject)
	f.s.Drained(t, f.names.Durable, 30*time.Second)

	f.logged.FollowedBackOff(t, []string{"order event will be retried", "order event will be retried",
		"message given up on and not recorded as dead: recover it from the stream"}, f.backOff)
	if n := svctest.Delivered(t, f.cons); n != maxDeliver {
		t.Errorf("order.created delivered %d times, want MaxDeliver (%d)", n, maxDeliver)
	}
}

// failing is an order consumer running as the service does, on the real NATS
// server, whose provider always faults, with a 200 ms back-off.
type failing struct {
	s       *svctest.Stream
	names   adapters.Names
	cons    jetstream.Consumer
	backOff []time.Duration
	logged  *svctest.Deliveries
}

// failAlways starts a failing consumer on a stream of its own (prefix),
// storing into payments; it stops with the test.
func failAlways(t *testing.T, prefix string, payments payment.Repository, maxDeliver int) failing {
	t.Helper()
	f, stop := consumeWith(t, prefix, payments, adapters.NewSimulatedProvider(func() config.Dynamic { return config.Dynamic{FailureRate: 1} }), maxDeliver)
	t.Cleanup(func() { stop(context.Background()) })
	return f
}

// consumeWith starts an order consumer as failAlways does, charging through
// provider; the caller stops it.
func consumeWith(t *testing.T, prefix string, payments payment.Repository, provider payment.Provider, maxDeliver int) (failing, func(context.Context)) {
	t.Helper()
	a := app.New(app.Deps{Payments: payments, Provider: provider, NewID: uuid.NewString})
	oc := newOrderConsumer(t, prefix, maxDeliver, func(cfg *jetstream.ConsumerConfig) {
		cfg.BackOff = stream.BackOff(200*time.Millisecond, maxDeliver)
	})
	s, names, cfg, cons := oc.s, oc.names, oc.cfg, oc.cons
	logged := &svctest.Deliveries{}
	stop, err := adapters.NewOrderEvents(cons, names, a, maxDeliver, slog.New(logged)).Start()
	if err != nil {
		t.Fatal(err)
	}
	return failing{s: s, names: names, cons: cons, backOff: cfg.BackOff, logged: logged}, stop
}

// TestOnlyRefundingDeliveryIsCountedRefunded: a worker charged an order,
// stored SUCCEEDED with the flag a concurrent order.cancelled had set, and
// died before refunding. The redelivered order.created charges nothing and
// only refunds; counted "charged", the metric read as one more charge.
func TestOnlyRefundingDeliveryIsCountedRefunded(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	ctx := context.Background()
	payments := adapters.NewPaymentGorm(stores(t)[database.Postgres])
	provider := adapters.NewSimulatedProvider(func() config.Dynamic { return config.Dynamic{DeclineAboveCents: 100000} })
	f, stop := consumeWith(t, "PAYREFUNDONLY", payments, provider, 5)
	defer stop(ctx)

	o := adapters.OrderCreatedData{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 5000, Currency: "EUR"}
	p, err := payment.New(uuid.NewString(), o.OrderID, o.UserID, o.TotalCents, o.Currency, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := payments.Claim(ctx, p); err != nil {
		t.Fatal(err)
	}
	if a, err := provider.Charge(ctx, payment.Charge{IdempotencyKey: p.ID(), AmountCents: o.TotalCents, Currency: o.Currency}); err != nil || !a.Approved {
		t.Fatalf("the first delivery's charge: %+v, %v", a, err)
	}
	if p.OnCancel() != payment.CancelFlag {
		t.Fatal("a PENDING payment was not flagged by the cancel")
	}
	if flagged, err := payments.RequestCancel(ctx, p); err != nil || !flagged {
		t.Fatalf("flag: %v, %v", flagged, err)
	}
	p.Succeed(time.Now())
	if stored, cancelled, err := payments.Complete(ctx, p); err != nil || !stored || !cancelled {
		t.Fatalf("the first delivery's store: stored %v, flag %v, %v", stored, cancelled, err)
	}

	env, err := event.New(adapters.OrderCreated, "/shanhai/order", o.OrderID, o)
	if err != nil {
		t.Fatal(err)
	}
	f.s.Publish(t, f.names.Subject, "shanhai.orders", o.OrderID, svctest.Headers(env, nil), env.Data)
	f.s.Drained(t, f.names.Durable, 30*time.Second)

	if provider.Charges() != 1 || !provider.Refunded(p.ID()) {
		t.Fatalf("provider charges %d, refunded %v; want the one charge refunded", provider.Charges(), provider.Refunded(p.ID()))
	}
	if got, want := adapters.CounterBy(t, reader, "shanhai.payment.order_events", "outcome"), map[string]int64{"refunded": 1}; !maps.Equal(got, want) {
		t.Fatalf("order events by outcome = %v, want %v", got, want)
	}
}
