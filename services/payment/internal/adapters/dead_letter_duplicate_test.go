package adapters_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/shanhai-dev/shanhai/pkg/stream"
	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"
	"github.com/shanhai-dev/shanhai/services/payment/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/payment/internal/app"
	"github.com/shanhai-dev/shanhai/services/payment/internal/config"
	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

// termFailsOnce is a consumer whose first termination is lost: the call
// fails (the connection dropped, say) and the server never hears of it, so
// it delivers the message again on its back-off.
type termFailsOnce struct {
	jetstream.Consumer
	failed atomic.Bool
}

func (c *termFailsOnce) Consume(handler jetstream.MessageHandler, opts ...jetstream.PullConsumeOpt) (jetstream.ConsumeContext, error) {
	return c.Consumer.Consume(func(m jetstream.Msg) { handler(&lostTerm{Msg: m, c: c}) }, opts...)
}

type lostTerm struct {
	jetstream.Msg
	c *termFailsOnce
}

func (m *lostTerm) TermWithReason(reason string) error {
	if m.c.failed.CompareAndSwap(false, true) {
		return errors.New("nats: connection closed")
	}
	return m.Msg.TermWithReason(reason)
}

// TestLostTerminationRecordsOneDeadLetter: a message that can never succeed
// is recorded as dead and terminated; when the termination is lost, the
// server delivers it again, and that delivery gives it up again. It must
// find the dead letter already recorded and only terminate: before, it
// stored a second row for the same message (the table had no key naming the
// message), and an operator replaying the dead letters replayed it twice.
// It must count it once too: shanhai.payment.dead_letters counted the
// redelivery's dead letter again though no row was written (an alert on its
// rate saw two dead letters of one message).
func TestLostTerminationRecordsOneDeadLetter(t *testing.T) {
	for dialect, db := range stores(t) {
		t.Run(dialect, func(t *testing.T) {
			reader := sdkmetric.NewManualReader()
			otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
			payments := adapters.NewPaymentGorm(db)
			a := app.New(app.Deps{Payments: payments, Provider: adapters.NewSimulatedProvider(func() config.Dynamic { return config.Dynamic{} }),
				NewID: uuid.NewString})
			s := svctest.NewStream(t, "PAYDLDUP")
			names := adapters.Names{Stream: s.Name, StreamSubjects: s.Subjects(), Subject: s.Prefix + adapters.OrdersSubject, Durable: "payment"}
			const maxDeliver = 5
			cfg := adapters.ConsumerConfig(names, maxDeliver)
			cfg.BackOff = stream.BackOff(200*time.Millisecond, maxDeliver)
			cons, err := stream.EnsureConsumer(context.Background(), s.JS, names, cfg)
			if err != nil {
				t.Fatal(err)
			}
			lossy := &termFailsOnce{Consumer: cons}
			stop, err := adapters.NewOrderEvents(lossy, names, a, maxDeliver, nil).Start()
			if err != nil {
				t.Fatal(err)
			}
			defer stop(context.Background())

			// Not a CloudEvent: dead-lettered invalid_event on every delivery.
			s.Publish(t, names.Subject, "shanhai.orders", "", nats.Header{}, []byte("not an event"))
			s.Drained(t, names.Durable, 30*time.Second)

			if !lossy.failed.Load() {
				t.Fatal("the message was never terminated")
			}
			if n := svctest.Delivered(t, cons); n != 2 {
				t.Fatalf("delivered %d times, want twice (the lost termination, then the one that held)", n)
			}
			dl, err := payments.DeadLetters(context.Background(), 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(dl) != 1 {
				t.Fatalf("%d dead letters of one message terminated twice, want 1: %+v", len(dl), dl)
			}
			if got := adapters.CounterBy(t, reader, "shanhai.payment.dead_letters", "cause"); got["invalid_event"] != 1 || len(got) != 1 {
				t.Fatalf("dead letters counted %v for one message dead-lettered on two deliveries, want map[invalid_event:1]", got)
			}
		})
	}
}

// TestDeadLetterRecordedAgainSaysSo: the consumer counts a dead letter only
// when the store wrote it, so the store must tell a message already
// recorded from a new one, through the use case, on both dialects: a second
// dead letter of one message key writes nothing and is
// payment.ErrDeadLetterRecorded; dead letters with no key (no metadata to
// name the message by) are each new.
func TestDeadLetterRecordedAgainSaysSo(t *testing.T) {
	for dialect, db := range stores(t) {
		t.Run(dialect, func(t *testing.T) {
			ctx := context.Background()
			payments := adapters.NewPaymentGorm(db)
			a := app.New(app.Deps{Payments: payments, Provider: adapters.NewSimulatedProvider(func() config.Dynamic { return config.Dynamic{} }),
				NewID: uuid.NewString})
			keyed := payment.DeadLetter{Consumer: "payment", Subject: "shanhai.orders", MsgID: "ORDERS/7", Reason: "not a CloudEvent",
				MessageKey: "payment ORDERS 7 1", Payload: []byte("x")}
			if err := a.RecordDeadLetter.Handle(ctx, keyed); err != nil {
				t.Fatalf("first dead letter of the message: %v", err)
			}
			if err := a.RecordDeadLetter.Handle(ctx, keyed); !errors.Is(err, payment.ErrDeadLetterRecorded) {
				t.Fatalf("second dead letter of the message = %v, want payment.ErrDeadLetterRecorded", err)
			}
			unkeyed := keyed
			unkeyed.MessageKey = ""
			for i := range 2 {
				if err := a.RecordDeadLetter.Handle(ctx, unkeyed); err != nil {
					t.Fatalf("dead letter %d with no message key: %v", i+1, err)
				}
			}
			dl, err := payments.DeadLetters(ctx, 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(dl) != 3 {
				t.Fatalf("%d dead letters stored, want 3 (one keyed, two with no key): %+v", len(dl), dl)
			}
		})
	}
}
