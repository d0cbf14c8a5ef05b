package telemetry

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// A hosted service's shutdown (on its Shared view) flushes what it traced but
// leaves the providers running for the services still up; only the owner's
// Shutdown stops them.
func TestSharedShutdownOnlyFlushes(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	rec := tracetest.NewSpanRecorder()
	p, err := Setup(context.Background(), Options{ServiceName: "host", SpanProcessors: []sdktrace.SpanProcessor{rec}})
	if err != nil {
		t.Fatal(err)
	}
	view := p.Shared()
	if view.Tracer != p.Tracer || view.Registry != p.Registry {
		t.Fatal("Shared view does not use the owner's providers")
	}
	if err := view.Shutdown(context.Background()); err != nil {
		t.Fatalf("shared shutdown: %v", err)
	}
	_, span := p.Tracer.Tracer("test").Start(context.Background(), "after shared shutdown")
	if !span.IsRecording() {
		t.Fatal("the owner's tracer stopped when a Shared view shut down")
	}
	span.End()
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatalf("owner shutdown: %v", err)
	}
	_, span = p.Tracer.Tracer("test").Start(context.Background(), "after owner shutdown")
	if span.IsRecording() {
		t.Fatal("the owner's Shutdown left the tracer recording")
	}
	if n := len(rec.Ended()); n != 1 {
		t.Fatalf("recorded %d spans, want the one started between the two shutdowns", n)
	}
}
