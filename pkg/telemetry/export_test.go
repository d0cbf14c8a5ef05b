package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"go.opentelemetry.io/otel"
)

// TestOTLPExportWhenEndpointSet runs a stand-in OTLP/HTTP receiver and
// checks that Setup exports spans and metrics to the configured endpoint and
// that Shutdown flushes them.
func TestOTLPExportWhenEndpointSet(t *testing.T) {
	var (
		mu    sync.Mutex
		paths = map[string]int{}
	)
	rx := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths[r.URL.Path]++
		mu.Unlock()
		if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
			t.Errorf("OTLP request with Content-Type %q", ct)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	defer rx.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rx.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")

	p, err := Setup(context.Background(), Options{ServiceName: "export-test"})
	if err != nil {
		t.Fatal(err)
	}
	_, span := otel.Tracer("test").Start(context.Background(), "work")
	span.End()
	c, _ := otel.Meter("test").Int64Counter("jobs")
	c.Add(context.Background(), 1)
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if paths["/v1/traces"] == 0 || paths["/v1/metrics"] == 0 {
		t.Errorf("receiver got %v, want /v1/traces and /v1/metrics", paths)
	}
}

func TestUnsupportedProtocolFails(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")
	if _, err := Setup(context.Background(), Options{ServiceName: "x"}); err == nil {
		t.Fatal("Setup accepted an unknown OTLP protocol")
	}
}
