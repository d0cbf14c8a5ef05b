package service_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"
	"github.com/shanhai-dev/shanhai/services/order/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/order/internal/config"
	"github.com/shanhai-dev/shanhai/services/order/internal/service"
)

// TestRunRegistersServesAndDeregisters runs the service the way main does:
// it appears in etcd with its real address, answers /readyz there, and
// disappears from etcd when it shuts down.
func TestRunRegistersServesAndDeregisters(t *testing.T) {
	issuer := svctest.NewIssuer(t)
	stream := svctest.NewStream(t, "ORDER_RUN")
	version := "test-" + svctest.Random(4)
	cfg := config.Config{
		Addr: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second, Version: version,
		DatabaseURL: testenv.Postgres(t), RedisURL: testenv.Redis(t), NATSURL: testenv.NATS(t), KafkaBrokers: testenv.Kafka(t),
		EtcdEndpoints: testenv.Etcd(t), JWKSURL: issuer.URL, CatalogCacheTTL: time.Minute,
	}
	names := adapters.Names{Stream: stream.Name, StreamSubjects: stream.Subjects(), Subject: stream.Prefix + adapters.PaymentsSubject}
	svc, err := service.New(context.Background(), cfg, service.Options{JetStream: names})
	if err != nil {
		t.Fatal(err)
	}
	runtest.RegistersServesAndDeregisters(t, service.Name, version, svc.Run)
}

// TestNewFailsCleanly: a dependency that is down is an error from New, not
// a panic, and nothing is left open.
func TestNewFailsCleanly(t *testing.T) {
	testenv.Postgres(t) // the server is up; the database below is not there
	cfg := config.Config{DatabaseURL: "postgres://shanhai@127.0.0.1:15432/no_such_db_" + svctest.Random(4) + "?sslmode=disable&connect_timeout=2"}
	if _, err := service.New(context.Background(), cfg, service.Options{}); err == nil {
		t.Fatal("New succeeded without a database")
	}
}

// TestNewFailsOnConsumer: the JetStream consumer is looked up while wiring,
// beside the database; when that fails, New fails naming the consumer, after
// the other connections it waited for, and closes them.
func TestNewFailsOnConsumer(t *testing.T) {
	cfg := config.Config{
		DatabaseURL: testenv.Postgres(t), RedisURL: testenv.Redis(t), NATSURL: testenv.NATS(t), KafkaBrokers: testenv.Kafka(t),
	}
	// A stream name with dots is refused by the lookup itself.
	names := adapters.Names{Stream: "no.such.stream", Subject: adapters.PaymentsSubject}
	_, err := service.New(context.Background(), cfg, service.Options{JetStream: names})
	if err == nil || !strings.Contains(err.Error(), "create consumer order") {
		t.Fatalf("New = %v, want the consumer lookup's error", err)
	}
}
