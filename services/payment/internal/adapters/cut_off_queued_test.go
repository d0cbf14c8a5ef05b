package adapters_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"
	"github.com/shanhai-dev/shanhai/services/payment/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/payment/internal/app"
	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

// lastQueued is a consumer that closes queued once the last allowed
// delivery of orderID's message has been handed to the consumer's callback
// (which queues it for a worker).
type lastQueued struct {
	jetstream.Consumer
	orderID    string
	maxDeliver int
	queued     chan struct{}
	once       sync.Once
}

func (c *lastQueued) Consume(handler jetstream.MessageHandler, opts ...jetstream.PullConsumeOpt) (jetstream.ConsumeContext, error) {
	return c.Consumer.Consume(func(m jetstream.Msg) {
		handler(m)
		if md, err := m.Metadata(); err == nil && int(md.NumDelivered) >= c.maxDeliver && strings.Contains(string(m.Data()), c.orderID) {
			c.once.Do(func() { close(c.queued) })
		}
	}, opts...)
}

// lastInQueue is a provider that faults the first charge of the order of
// targetCents and approves its second, and holds every other charge until
// its context ends (a provider that stopped answering them).
type lastInQueue struct {
	targetCalls atomic.Int32
	hanging     atomic.Int32
}

const targetCents = 7777

func (p *lastInQueue) Charge(ctx context.Context, c payment.Charge) (payment.Answer, error) {
	if c.AmountCents == targetCents {
		if p.targetCalls.Add(1) == 1 {
			return payment.Answer{}, fmt.Errorf("%w: first call", payment.ErrProviderFault)
		}
		return payment.Answer{Approved: true}, nil
	}
	p.hanging.Add(1)
	<-ctx.Done()
	return payment.Answer{}, fmt.Errorf("%w: %w", payment.ErrProviderFault, ctx.Err())
}

func (p *lastInQueue) Refund(context.Context, payment.Refund) error { return nil }

func (p *lastInQueue) Void(context.Context, payment.Void) (bool, error) { return false, nil }

// TestStopTriesAQueuedLastDelivery: a stop whose deadline passed cuts off
// the handlers, and what is still queued fails fast, to be delivered again
// to the next replica. A message on its last allowed delivery is delivered
// no more, so failing fast gave it up: it was dead-lettered
// "retries_exhausted" without its last delivery ever reaching the provider,
// and its order, which the provider would now have charged, stayed PENDING
// (in payment and in order) for good. Every cut-off a queued message waits
// through costs it a delivery, so a few slow stops in a row could dead-letter
// an order none of its deliveries tried. Its last delivery must be tried,
// within the grace a dead letter gets.
func TestStopTriesAQueuedLastDelivery(t *testing.T) {
	payments := adapters.NewPaymentGorm(stores(t)[database.Postgres])
	provider := &lastInQueue{}
	a := app.New(app.Deps{Payments: payments, Provider: provider, NewID: uuid.NewString})
	s := svctest.NewStream(t, "PAYCUTQUEUED")
	names := adapters.Names{Stream: s.Name, StreamSubjects: s.Subjects(), Subject: s.Prefix + adapters.OrdersSubject, Durable: "payment"}
	const maxDeliver = 2
	cons, err := adapters.EnsureConsumer(context.Background(), s.JS, names, maxDeliver)
	if err != nil {
		t.Fatal(err)
	}
	o := adapters.OrderCreatedData{OrderID: uuid.NewString(), UserID: "alice", TotalCents: targetCents, Currency: "EUR"}
	queued := make(chan struct{})
	watch := &lastQueued{Consumer: cons, orderID: o.OrderID, maxDeliver: maxDeliver, queued: queued}
	stop, err := adapters.NewOrderEvents(watch, names, a, maxDeliver, nil).Start()
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			stop(expired()) // the charges that hang end only with the cut-off
		}
	}()

	env, err := event.New(adapters.OrderCreated, "/shanhai/order", o.OrderID, o)
	if err != nil {
		t.Fatal(err)
	}
	s.Publish(t, names.Subject, "shanhai.orders", o.OrderID, svctest.Headers(env, nil), env.Data)
	runtest.Eventually(t, 30*time.Second, "the order's first charge", func() bool { return provider.targetCalls.Load() == 1 })
	// Every worker busy on a charge that does not answer, so that the
	// order's redelivery (1 s later), its last, waits in the queue.
	for range adapters.Workers {
		publishOrder(t, s, names.Subject)
	}
	runtest.Eventually(t, 30*time.Second, "every worker charging", func() bool { return provider.hanging.Load() >= adapters.Workers })
	select {
	case <-queued:
	case <-time.After(30 * time.Second):
		t.Fatal("the order's last delivery was not received within 30 s")
	}
	if n := provider.targetCalls.Load(); n != 1 {
		t.Fatalf("the order's last delivery was charged (%d calls) before the stop: the workers were not all busy", n)
	}
	stop(expired())
	stopped = true

	if n := provider.targetCalls.Load(); n != 2 {
		t.Errorf("the order's charge was called %d times, want twice: its queued last delivery was never tried", n)
	}
	p, err := payments.ByOrder(context.Background(), o.OrderID)
	if err != nil {
		t.Fatal(err)
	}
	if p.Status() != payment.Succeeded {
		t.Errorf("payment %s after its last delivery, want SUCCEEDED", p.Status())
	}
	dl, err := payments.DeadLetters(context.Background(), 200)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dl {
		if d.OrderID == o.OrderID {
			t.Errorf("the order was dead-lettered untried: %s", d.Reason)
		}
	}
}
