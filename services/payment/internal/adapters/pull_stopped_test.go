package adapters_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"
	"github.com/shanhai-dev/shanhai/services/payment/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/payment/internal/app"
	"github.com/shanhai-dev/shanhai/services/payment/internal/config"
)

// TestPullStoppedByTheServerIsRestarted: a pull the client stops on its
// own (here the server deleted the durable consumer, which ends the pull
// with 409 Consumer Deleted) was never noticed: the replica stayed ready
// and charged nothing, without a word. The watch now logs it, counts it
// and restarts the pull, recreating the consumer, so an order published
// after the deletion is charged. Before, it never was.
func TestPullStoppedByTheServerIsRestarted(t *testing.T) {
	db := stores(t)[database.Postgres]
	s := svctest.NewStream(t, "PAYPULLSTOP")
	names := adapters.Names{Stream: s.Name, StreamSubjects: s.Subjects(), Subject: s.Prefix + adapters.OrdersSubject, Durable: "payment"}
	ctx := context.Background()
	const maxDeliver = 10
	cons, err := adapters.EnsureConsumer(ctx, s.JS, names, maxDeliver)
	if err != nil {
		t.Fatal(err)
	}
	prov := adapters.NewSimulatedProvider(func() config.Dynamic {
		return config.Dynamic{LatencyMedianMs: 1, LatencyP99Ms: 1, DeclineAboveCents: 100000}
	})
	logs := &logSeen{msgs: map[string]bool{}}
	reader := sdkmetric.NewManualReader()
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	a := app.New(app.Deps{Payments: adapters.NewPaymentGorm(db), Provider: prov, NewID: uuid.NewString})
	stop, err := adapters.NewOrderEvents(cons, names, a, maxDeliver, slog.New(logs)).Recreates(s.JS).Start()
	if err != nil {
		t.Fatal(err)
	}
	defer stop(context.Background())

	publishOrder(t, s, names.Subject)
	runtest.Eventually(t, 10*time.Second, "the first order to be charged", func() bool { return prov.Charges() == 1 })

	if err := s.JS.DeleteConsumer(ctx, s.Name, names.Durable); err != nil {
		t.Fatal(err)
	}
	runtest.Eventually(t, 10*time.Second, "the stopped pull to be logged", func() bool {
		return logs.seen("order pull stopped on its own: restarting it")
	})
	publishOrder(t, s, names.Subject)
	runtest.Eventually(t, 30*time.Second, "the order published after the deletion to be charged", func() bool {
		return prov.Charges() == 2
	})
	if !logs.seen("order pull restarted") {
		t.Error("the restart was not logged")
	}
	if got := adapters.CounterBy(t, reader, "shanhai.payment.consumer.pull_stops", "")[""]; got != 1 {
		t.Errorf("shanhai.payment.consumer.pull_stops = %d, want 1", got)
	}
}
