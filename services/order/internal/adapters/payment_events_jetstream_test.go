package adapters_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/stream"
	"github.com/shanhai-dev/shanhai/pkg/testenv/storetest"
	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"
	"github.com/shanhai-dev/shanhai/services/order/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/order/internal/app"
	"github.com/shanhai-dev/shanhai/services/order/internal/domain/order"
)

// rowHeld is how long the tests below hold an order's row: longer than the
// first back-off step (1 s), after which the server would deliver a result
// that is not settled again, and shorter than the first two together.
const rowHeld = 2500 * time.Millisecond

// TestSlowResultIsDeliveredOnce runs the consumer as the service does (its
// ConsumerConfig, on the real NATS server and PostgreSQL) while another
// transaction holds the order's row: the result's handler waits on the row
// longer than the first ack wait, so it must tell the server the result is
// still in progress.
func TestSlowResultIsDeliveredOnce(t *testing.T) {
	if n := deliveriesWhileRowHeld(t, "ORDSLOW", adapters.PaymentSucceeded); n != 1 {
		t.Fatalf("payment result delivered %d times while its order was held %v, want once", n, rowHeld)
	}
}

// TestQueuedResultIsDeliveredOnce: the second result of an order waits in
// the order's lane behind the first, whose handler waits on the held row.
// The wait counts against the server's ack timer as much as handling does,
// so the queued result must be kept alive from its reception, not only once
// a worker takes it.
func TestQueuedResultIsDeliveredOnce(t *testing.T) {
	if n := deliveriesWhileRowHeld(t, "ORDQUEUE", adapters.PaymentSucceeded, adapters.PaymentFailed); n != 2 {
		t.Fatalf("two payment results of one order delivered %d times while the order was held %v, want twice", n, rowHeld)
	}
}

// deliveriesWhileRowHeld publishes one result of each type in types for a
// new order, in that order, while another transaction holds the order's row
// for rowHeld, and returns how many deliveries the consumer made once all
// were settled. The first result must have won: the order is PAID when it
// was payment.succeeded.
func deliveriesWhileRowHeld(t *testing.T, prefix string, types ...string) uint64 {
	t.Helper()
	ctx := context.Background()
	db := stores(t)[database.Postgres]
	repo := adapters.NewOrderGorm(db)
	o := newOrder(t, db, "alice", 1)
	if err := repo.Create(ctx, o, order.Replay{UserID: "alice", Key: "k-" + o.ID(), RequestHash: "h", StatusCode: 201}); err != nil {
		t.Fatal(err)
	}
	s := svctest.NewStream(t, prefix)
	names := adapters.Names{Stream: s.Name, StreamSubjects: s.Subjects(), Subject: s.Prefix + adapters.PaymentsSubject, Durable: "order"}
	const maxDeliver = 10
	cons, err := adapters.EnsureConsumer(ctx, s.JS, names, maxDeliver)
	if err != nil {
		t.Fatal(err)
	}
	apply := app.New(app.Deps{Orders: repo}).ApplyPayment
	stop, err := adapters.NewPaymentEvents(cons, names, apply, maxDeliver, nil).Start()
	if err != nil {
		t.Fatal(err)
	}
	defer stop(context.Background())

	lock := db.Begin()
	if err := lock.Exec("SELECT 1 FROM orders WHERE id = ? FOR UPDATE", o.ID()).Error; err != nil {
		lock.Rollback()
		t.Fatal(err)
	}
	for i, typ := range types {
		d := adapters.PaymentResultData{PaymentID: fmt.Sprintf("pay-%d", i+1), OrderID: o.ID(), UserID: "alice", AmountCents: o.TotalCents()}
		env, err := event.New(typ, "/shanhai/payment", o.ID(), d)
		if err != nil {
			lock.Rollback()
			t.Fatal(err)
		}
		s.Publish(t, names.Subject, "shanhai.payments", o.ID(), svctest.Headers(env, nil), env.Data)
	}
	time.Sleep(rowHeld) // the first result's handler waits on the row meanwhile
	if err := lock.Rollback().Error; err != nil {
		t.Fatal(err)
	}
	s.Drained(t, names.Durable, 20*time.Second)

	got, err := repo.Get(ctx, "alice", o.ID())
	if err != nil {
		t.Fatal(err)
	}
	if types[0] == adapters.PaymentSucceeded && got.Status() != order.Paid {
		t.Fatalf("order %s after its first result, payment.succeeded", got.Status())
	}
	return svctest.Delivered(t, cons)
}

// TestFailingResultIsRedeliveredOnTheBackOffThenDropped runs the consumer as
// the service does, on the real NATS server, with its database closed (every
// result fails) and a short back-off (the service's is 1 s ... 16 s): each
// redelivery must wait at least its step of the schedule, in order, and the
// result must be terminated on its MaxDeliver-th delivery and not delivered
// again. A handler that naks as well is redelivered late: nats-server times a
// nak's delay against the back-off step too.
func TestFailingResultIsRedeliveredOnTheBackOffThenDropped(t *testing.T) {
	db, err := database.Open(storetest.URLs(t)[database.Postgres])
	if err != nil {
		t.Fatal(err)
	}
	if err := database.Close(db); err != nil {
		t.Fatal(err)
	}
	s := svctest.NewStream(t, "ORDBACKOFF")
	names := adapters.Names{Stream: s.Name, StreamSubjects: s.Subjects(), Subject: s.Prefix + adapters.PaymentsSubject, Durable: "order"}
	ctx := context.Background()
	const maxDeliver = 5
	cfg := adapters.ConsumerConfig(names, maxDeliver)
	cfg.BackOff = stream.BackOff(200*time.Millisecond, maxDeliver)
	cons, err := stream.EnsureConsumer(ctx, s.JS, names, cfg)
	if err != nil {
		t.Fatal(err)
	}
	logged := &svctest.Deliveries{}
	apply := app.New(app.Deps{Orders: adapters.NewOrderGorm(db)}).ApplyPayment
	stop, err := adapters.NewPaymentEvents(cons, names, apply, maxDeliver, slog.New(logged)).Start()
	if err != nil {
		t.Fatal(err)
	}
	defer stop(context.Background())

	orderID := uuid.NewString()
	d := adapters.PaymentResultData{PaymentID: "pay-1", OrderID: orderID, UserID: "alice", AmountCents: 100}
	env, err := event.New(adapters.PaymentSucceeded, "/shanhai/payment", orderID, d)
	if err != nil {
		t.Fatal(err)
	}
	s.Publish(t, names.Subject, "shanhai.payments", orderID, svctest.Headers(env, nil), env.Data)
	s.Drained(t, names.Durable, 30*time.Second)

	want := []string{"payment result will be retried", "payment result will be retried", "payment result will be retried",
		"payment result will be retried", "payment result dropped"}
	logged.FollowedBackOff(t, want, cfg.BackOff)
	if n := svctest.Delivered(t, cons); n != maxDeliver {
		t.Errorf("payment result delivered %d times, want MaxDeliver (%d)", n, maxDeliver)
	}
}
