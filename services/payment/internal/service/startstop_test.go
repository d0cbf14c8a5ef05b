package service_test

import (
	"context"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"
	"github.com/shanhai-dev/shanhai/services/payment/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/payment/internal/config"
	"github.com/shanhai-dev/shanhai/services/payment/internal/service"
)

// TestStopWhileStarting: Stop called while Start runs (a test's cleanup racing a Start, an embedded run stopped
// during start-up) must not race on the workers' stop function: Start wrote it while Stop read it, unsynchronised (a
// data race under -race), and a Stop that read it before Start wrote it left the relay, the settle rounds and the
// order-event consumer running on closed connections, never stopped. Stop ends the workers Start started, and a
// Start after Stop fails.
func TestStopWhileStarting(t *testing.T) {
	issuer := svctest.NewIssuer(t)
	stream := svctest.NewStream(t, "PAYMENT_STARTSTOP")
	names := adapters.Names{Stream: stream.Name, StreamSubjects: stream.Subjects(), Subject: stream.Prefix + adapters.OrdersSubject, Durable: "payment"}
	cfg := config.Config{
		Addr: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second, Version: "test",
		DatabaseURL: testenv.Postgres(t), NATSURL: testenv.NATS(t), KafkaBrokers: testenv.Kafka(t),
		JWKSURL: issuer.URL, MaxDeliver: 10,
		ProviderLatencyMedian: time.Millisecond, ProviderLatencyP99: 5 * time.Millisecond, DeclineAboveCents: 100000,
	}
	svc, err := service.New(context.Background(), cfg, service.Options{JetStream: names})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })

	started := make(chan error, 1)
	go func() { started <- svc.Start(context.Background()) }()
	// Stop once the consumer pulls, from what the server sees: a wait in this process (on started) would order
	// Start's end before Stop for the race detector, and a Stop sooner could close NATS before Start's consumer,
	// which then fails and starts no workers to race over.
	cons, err := stream.JS.Consumer(t.Context(), stream.Name, names.Durable)
	if err != nil {
		t.Fatal(err)
	}
	runtest.Eventually(t, 10*time.Second, "the order-event consumer to pull", func() bool {
		info, err := cons.Info(t.Context())
		return err == nil && info.NumWaiting > 0
	})
	if err := svc.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := <-started; err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := svc.Start(context.Background()); err == nil {
		t.Error("Start after Stop succeeded: its workers would run on closed connections, and nothing stops them")
	}
}
