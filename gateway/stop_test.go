package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/telemetry"

	"github.com/shanhai-dev/shanhai/gateway/internal/config"
)

// TestDrainThatTakesTheWholeTimeoutLeavesTheFlushItsFloor: the drain and the
// telemetry flush shared one SHUTDOWN_TIMEOUT, so a drain that used all of
// it (a client that kept its request going to the end) handed the flush a
// context already over, and the spans of the last requests, which explain
// that slow stop, were never sent. The flush now follows pkg/server's rule:
// what is left of the stop's one deadline, never less than
// server.FlushFloor.
func TestDrainThatTakesTheWholeTimeoutLeavesTheFlushItsFloor(t *testing.T) {
	var traces atomic.Int32
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/traces" {
			traces.Add(1)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{ServiceName: "gateway-stop-test"})
	if err != nil {
		t.Fatal(err)
	}
	// The last request's span, still in the batch when the stop begins.
	_, span := tel.Tracer.Tracer("gateway-stop-test").Start(context.Background(), "last request")
	span.End()

	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the stop begins at once
	var drained atomic.Bool
	drain := func(sctx context.Context) error {
		<-sctx.Done() // a request that holds the drain to its deadline
		drained.Store(true)
		return nil
	}
	var shuttingDown atomic.Bool
	cfg := config.Config{ShutdownTimeout: time.Second} // its floor: server.FlushFloor
	if err := serveUntil(ctx, cfg, slog.New(slog.DiscardHandler), make(chan error), &shuttingDown, tel, drain); err != nil {
		t.Fatalf("serveUntil: %v", err)
	}
	if !drained.Load() || !shuttingDown.Load() {
		t.Fatalf("drained %v, readiness failed %v: the stop did not run", drained.Load(), shuttingDown.Load())
	}
	if traces.Load() == 0 {
		t.Error("the collector got no spans: the flush after a drain that took the whole SHUTDOWN_TIMEOUT had no time left")
	}
}
