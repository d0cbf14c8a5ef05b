package service_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shanhai-dev/shanhai/pkg/auth"
	"github.com/shanhai-dev/shanhai/pkg/discovery"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/services/order/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/order/internal/config"
	"github.com/shanhai-dev/shanhai/services/order/internal/service"
)

// TestRunRegistersServesAndDeregisters runs the service the way main does:
// it appears in etcd with its real address, answers /readyz there, and
// disappears from etcd when it shuts down.
func TestRunRegistersServesAndDeregisters(t *testing.T) {
	key, _ := auth.GenerateKey()
	signer := auth.NewSigner(key)
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(signer.JWKS()) }))
	defer jwks.Close()
	suffix := randomHex(4)
	version := "test-" + suffix
	cfg := config.Config{
		Addr: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second, LogLevel: "info", Version: version,
		DatabaseURL: testenv.Postgres(t), RedisURL: testenv.Redis(t), NATSURL: testenv.NATS(t), KafkaBrokers: testenv.Kafka(t),
		EtcdEndpoints: testenv.Etcd(t), JWKSURL: jwks.URL, CatalogCacheTTL: time.Minute,
	}
	names := adapters.Names{Stream: "TEST_ORDER_RUN_" + suffix, StreamSubjects: "t" + suffix + ".>", Subject: "t" + suffix + ".shanhai.payments"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := service.New(ctx, cfg, service.Options{JetStream: names})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()

	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.EtcdEndpoints, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	mine := func() (discovery.Instance, bool) {
		resp, err := cli.Get(context.Background(), discovery.Prefix+service.Name+"/", clientv3.WithPrefix())
		if err != nil {
			return discovery.Instance{}, false
		}
		for _, kv := range resp.Kvs {
			var in discovery.Instance
			if json.Unmarshal(kv.Value, &in) == nil && in.Version == version {
				return in, true
			}
		}
		return discovery.Instance{}, false
	}
	var in discovery.Instance
	eventually(t, 10*time.Second, "registration in etcd", func() (ok bool) { in, ok = mine(); return ok })
	eventually(t, 10*time.Second, "/readyz 200 at the registered address", func() bool {
		resp, err := http.Get("http://" + in.Addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if _, ok := mine(); ok {
		t.Fatal("still registered after shutdown")
	}
	js := connectJS(t, cfg.NATSURL)
	_ = js.DeleteStream(context.Background(), names.Stream)
}

// TestNewFailsCleanly: a dependency that is down is an error from New, not
// a panic, and nothing is left open.
func TestNewFailsCleanly(t *testing.T) {
	testenv.Postgres(t) // the server is up; the database below is not there
	cfg := config.Config{DatabaseURL: "postgres://shanhai@127.0.0.1:15432/no_such_db_" + randomHex(4) + "?sslmode=disable&connect_timeout=2"}
	if _, err := service.New(context.Background(), cfg, service.Options{}); err == nil {
		t.Fatal("New succeeded without a database")
	}
}
