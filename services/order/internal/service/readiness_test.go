package service_test

import (
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/telemetry"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
	"github.com/shanhai-dev/shanhai/services/order/internal/config"
	"github.com/shanhai-dev/shanhai/services/order/internal/service"
)

// TestReadyWithoutRedis: Redis is only the catalogue cache, and orders are
// priced from the database without it, so a Redis outage must not fail
// readiness: failing it took every pod out of the Service at once. The
// outage is logged, and a database that is gone still fails readiness.
func TestReadyWithoutRedis(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "redis://" + ln.Addr().String() + "/0"
	if err := ln.Close(); err != nil { // refused from now on, as a Redis that is down
		t.Fatal(err)
	}
	logs := &testenv.LogBuffer{}
	h := newHarnessConfig(t, func(c *config.Config) { c.RedisURL = down },
		func(o *service.Options) { o.Logger = telemetry.NewLogger(logs, slog.LevelInfo) })
	if r := h.do("GET", "/readyz", "", ""); r.Status != http.StatusOK {
		t.Fatalf("/readyz with Redis down: %d %s", r.Status, r.Body)
	}
	o := h.createOrder("alice", `{"items":[{"sku":"TEA-GREEN-100G","quantity":2}]}`)
	if o.TotalCents <= 0 || len(o.Items) != 1 || o.Items[0].UnitPriceCents <= 0 {
		t.Fatalf("order priced without Redis: %+v", o)
	}
	runtest.Eventually(t, 10*time.Second, "the Redis outage logged", func() bool {
		return strings.Contains(logs.String(), "redis unreachable")
	})

	sqlDB, err := h.svc.DB.DB()
	if err != nil {
		t.Fatal(err)
	}
	if err := sqlDB.Close(); err != nil {
		t.Fatal(err)
	}
	r := h.do("GET", "/readyz", "", "")
	if r.Status != http.StatusServiceUnavailable || !strings.Contains(string(r.Body), "database") || strings.Contains(string(r.Body), "redis") {
		t.Fatalf("/readyz with the database closed: %d %s, want 503 naming the database alone", r.Status, r.Body)
	}
}
