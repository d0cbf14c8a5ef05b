package svctest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Service is a service's in-process wiring as its New returns it: Start runs its background work (consumers, relays)
// and Stop ends it and closes its connections.
type Service interface {
	Start(context.Context) error
	Stop() error
}

// Serve starts svc, stops it when the test ends (also when Start fails part-way), and serves handler on a local
// httptest server, so tests drive the real wiring over HTTP without the service's own listener.
func Serve(t testing.TB, svc Service, handler http.Handler) *httptest.Server {
	t.Helper()
	t.Cleanup(func() { _ = svc.Stop() })
	if err := svc.Start(context.Background()); err != nil {
		t.Fatalf("svctest: start the service: %v", err)
	}
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	return srv
}

// Continues reports whether one of spans is named name and is a child of parent: a consumer's span that continues the
// trace a message carried in its headers.
func Continues(spans []sdktrace.ReadOnlySpan, name string, parent trace.SpanContext) bool {
	for _, s := range spans {
		if s.Name() == name && s.SpanContext().TraceID() == parent.TraceID() && s.Parent().SpanID() == parent.SpanID() {
			return true
		}
	}
	return false
}
