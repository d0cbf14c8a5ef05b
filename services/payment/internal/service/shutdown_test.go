package service_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/server"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"
	"github.com/shanhai-dev/shanhai/services/payment/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/payment/internal/config"
	"github.com/shanhai-dev/shanhai/services/payment/internal/service"
)

// TestShutdownCutsOffASlowCharge runs the service as main does and stops it
// while a charge waits on a slow provider (9 s, under config.MaxLatency):
// the shutdown hook must end within SHUTDOWN_TIMEOUT (2 s), not wait out the
// provider. The charge cut off is a provider fault: its order.created is left
// unacknowledged, and the next instance charges it under the same payment id.
func TestShutdownCutsOffASlowCharge(t *testing.T) {
	issuer := svctest.NewIssuer(t)
	stream := svctest.NewStream(t, "PAYMENT_STOP")
	names := adapters.Names{Stream: stream.Name, StreamSubjects: stream.Subjects(), Subject: stream.Prefix + adapters.OrdersSubject, Durable: "payment"}
	cfg := config.Config{
		Addr: "127.0.0.1:0", ShutdownTimeout: 2 * time.Second, Version: "test",
		DatabaseURL: testenv.Postgres(t), NATSURL: testenv.NATS(t), KafkaBrokers: testenv.Kafka(t), EtcdEndpoints: testenv.Etcd(t),
		JWKSURL: issuer.URL, SettingsKey: "/shanhai/test/payment/" + svctest.Random(4), MaxDeliver: 10, DatabaseMaxConns: 5,
		ProviderLatencyMedian: 9 * time.Second, ProviderLatencyP99: 9 * time.Second, DeclineAboveCents: 100000,
	}
	svc, err := service.New(context.Background(), cfg, service.Options{JetStream: names})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- svc.Run(ctx) }()

	o := orderEvent{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 500, Currency: "EUR"}
	env, err := event.New("order.created", "/shanhai/order", o.OrderID, o)
	if err != nil {
		t.Fatal(err)
	}
	stream.Publish(t, names.Subject, "shanhai.orders", o.OrderID, svctest.Headers(env, nil), env.Data)
	var claimed []paymentRow
	runtest.Eventually(t, 10*time.Second, "the order claimed", func() bool {
		claimed = nil
		svc.DB.Table("payments").Where("order_id = ?", o.OrderID).Find(&claimed)
		return len(claimed) == 1
	})
	if claimed[0].Status != "PENDING" {
		t.Fatalf("claimed %+v, want PENDING while the provider answers", claimed[0])
	}

	start := time.Now()
	cancel()
	select {
	case <-ran:
	case <-time.After(time.Minute):
		t.Fatal("Run did not return within a minute of its context ending")
	}
	// The steps before the hook: deregistration and its delay, the drain
	// (no requests here); then the hook's own ShutdownTimeout.
	took := time.Since(start)
	if bound := server.DefaultDeregisterDelay + cfg.ShutdownTimeout + time.Second; took > bound {
		t.Fatalf("shutdown took %v with a charge in flight; want at most %v (SHUTDOWN_TIMEOUT %v)", took, bound, cfg.ShutdownTimeout)
	}

	// The same deployment, its provider fast again.
	cfg.ProviderLatencyMedian, cfg.ProviderLatencyP99 = time.Millisecond, 5*time.Millisecond
	svc2, err := service.New(context.Background(), cfg, service.Options{JetStream: names})
	if err != nil {
		t.Fatal(err)
	}
	svctest.Serve(t, svc2, svc2.Server.Handler())
	stream.Drained(t, names.Durable, 30*time.Second)
	var rows []paymentRow
	if err := svc2.DB.Table("payments").Where("order_id = ?", o.OrderID).Find(&rows).Error; err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].ID != claimed[0].ID || rows[0].Status != "SUCCEEDED" {
		t.Fatalf("after the restart: %+v, want the claimed payment %s SUCCEEDED", rows, claimed[0].ID)
	}
	if n := svc2.Provider.Charges(); n != 1 {
		t.Fatalf("the restarted provider charged %d times, want 1", n)
	}
	if dl, err := svc2.Payments.DeadLetters(context.Background(), 10); err != nil || len(dl) != 0 {
		t.Fatalf("dead letters %v (%v), want none: a charge cut off by a stop is retried", dl, err)
	}
}
