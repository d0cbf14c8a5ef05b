package app_test

import (
	"context"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/shanhai-dev/shanhai/pkg/server"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
)

// TestHostedBridgeTracesIntoTheProviderItIsGiven: a bridge hosted as a part (cmd/shanhai) records both hops' producer
// spans into the host's tracer provider, whichever provider the otel globals hold by then, and carries the trace
// Kafka → NATS → Pulsar: each archived record's traceparent is in the producer's trace and names the Pulsar hop's
// span, whose parent is the NATS hop's span, whose parent is the producer's (remote) span.
func TestHostedBridgeTracesIntoTheProviderItIsGiven(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	spans := tracetest.NewSpanRecorder()
	host, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: "host", SpanProcessors: []sdktrace.SpanProcessor{spans}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = host.Shutdown(ctx) })
	later, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: "later"}) // now the otel globals
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = later.Shutdown(ctx) })

	b := startBridgeIn(t, nil, server.Part{Telemetry: host})
	const n = 20
	b.produce(t, 0, n)
	b.archived(t, n, time.Minute)

	// problem is what the host's spans lack for the archived records: "" once every record's two hops are there.
	problem := func() string {
		byID := map[string]sdktrace.ReadOnlySpan{}
		for _, s := range spans.Ended() {
			byID[s.SpanContext().SpanID().String()] = s
		}
		for _, r := range b.recs {
			tp := strings.Split(r.Props["traceparent"], "-")
			if len(tp) != 4 {
				return "record " + r.Props["traceparent"] + ": traceparent malformed"
			}
			legB, ok := byID[tp[2]]
			switch {
			case !ok:
				return "the span " + tp[2] + " an archived record names as parent is not among the host's spans"
			case legB.SpanContext().TraceID().String() != tp[1] || !strings.HasPrefix(legB.Name(), "persistent://"):
				return "span " + legB.Name() + " in trace " + legB.SpanContext().TraceID().String() + ", record in " + tp[1]
			}
			legA, ok := byID[legB.Parent().SpanID().String()]
			switch {
			case !ok:
				return "the parent of the Pulsar hop's span " + legB.Name() + " is not among the host's spans"
			case strings.HasPrefix(legA.Name(), "persistent://") || !strings.HasSuffix(legA.Name(), " publish"):
				return "the parent of the Pulsar hop's span is " + legA.Name() + ", not the NATS hop's"
			case !legA.Parent().IsRemote() || legA.Parent().TraceID().String() != tp[1]:
				return "the NATS hop's span " + legA.Name() + " does not continue the producer's trace"
			}
		}
		return ""
	}
	for deadline := time.Now().Add(30 * time.Second); problem() != ""; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d archived records, %d spans in the host's provider: %s", len(b.recs), len(spans.Ended()), problem())
		}
	}
}
