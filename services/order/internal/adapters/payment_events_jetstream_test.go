package adapters_test

import (
	"context"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"
	"github.com/shanhai-dev/shanhai/services/order/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/order/internal/app"
	"github.com/shanhai-dev/shanhai/services/order/internal/domain/order"
)

// TestSlowResultIsDeliveredOnce runs the consumer as the service does (its
// ConsumerConfig, on the real NATS server and PostgreSQL) while another
// transaction holds the order's row for 2.5 s: longer than the first
// back-off step (1 s), after which the server would deliver the result
// again, unless Handle tells it the result is still in progress.
func TestSlowResultIsDeliveredOnce(t *testing.T) {
	const held = 2500 * time.Millisecond
	ctx := context.Background()
	db := stores(t)[database.Postgres]
	repo := adapters.NewOrderGorm(db)
	o := newOrder(t, db, "alice", 1)
	if err := repo.Create(ctx, o, order.Replay{UserID: "alice", Key: "k-" + o.ID(), RequestHash: "h", StatusCode: 201}); err != nil {
		t.Fatal(err)
	}
	s := svctest.NewStream(t, "ORDSLOW")
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
	defer stop()

	lock := db.Begin()
	if err := lock.Exec("SELECT 1 FROM orders WHERE id = ? FOR UPDATE", o.ID()).Error; err != nil {
		lock.Rollback()
		t.Fatal(err)
	}
	d := adapters.PaymentResultData{PaymentID: "pay-1", OrderID: o.ID(), UserID: "alice", AmountCents: o.TotalCents()}
	env, err := event.New(adapters.PaymentSucceeded, "/shanhai/payment", o.ID(), d)
	if err != nil {
		lock.Rollback()
		t.Fatal(err)
	}
	s.Publish(t, names.Subject, "shanhai.payments", o.ID(), svctest.Headers(env, nil), env.Data)
	time.Sleep(held) // the handler waits on the row meanwhile
	if err := lock.Rollback().Error; err != nil {
		t.Fatal(err)
	}
	s.Drained(t, names.Durable, 20*time.Second)

	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.Delivered.Consumer; n != 1 {
		t.Fatalf("payment result delivered %d times while its order was held %v, want once", n, held)
	}
	got, err := repo.Get(ctx, "alice", o.ID())
	if err != nil {
		t.Fatal(err)
	}
	if got.Status() != order.Paid {
		t.Fatalf("order %s after its payment succeeded", got.Status())
	}
}
