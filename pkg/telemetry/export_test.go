package telemetry

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestOTLPExportWhenEndpointSet runs a stand-in OTLP/HTTP receiver and
// checks that Setup exports spans and metrics to the configured endpoint and
// that Shutdown flushes them.
func TestOTLPExportWhenEndpointSet(t *testing.T) {
	url, got := otlpReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	if err := emit(t); err != nil {
		t.Fatal(err)
	}
	if p := got(); p["/v1/traces"] == 0 || p["/v1/metrics"] == 0 {
		t.Errorf("receiver got %v, want /v1/traces and /v1/metrics", p)
	}
}

func TestUnsupportedProtocolFails(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")
	if _, err := Setup(context.Background(), Options{ServiceName: "x"}); err == nil {
		t.Fatal("Setup accepted an unknown OTLP protocol")
	}
}

// TestBatchFront checks that the front keeps ended spans from the batch
// processor until a burst, its tick, ForceFlush or Shutdown, and hands them
// over in the order they ended.
func TestBatchFront(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	f := newBatchFront(rec)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(f))
	tr := tp.Tracer("front")
	end := func(name string) {
		_, s := tr.Start(context.Background(), name)
		s.End()
	}
	names := func() []string {
		var n []string
		for _, s := range rec.Ended() {
			n = append(n, s.Name())
		}
		return n
	}

	end("a")
	end("b")
	if got := len(rec.Started()); got != 2 {
		t.Fatalf("OnStart reached the next processor %d times, want 2 (passed straight on)", got)
	}
	if err := f.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := names(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("after ForceFlush the next processor has %v, want [a b]", got)
	}

	// A burst goes over without a flush (the tick would too; either will do).
	for range frontBurst {
		end("burst")
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(rec.Ended()) < 2+frontBurst && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := len(rec.Ended()); got != 2+frontBurst {
		t.Fatalf("a burst of %d spans: the next processor has %d spans, want %d", frontBurst, got, 2+frontBurst)
	}

	end("last")
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := names(); got[len(got)-1] != "last" {
		t.Fatalf("Shutdown did not hand over the held span: last is %q", got[len(got)-1])
	}
	if err := f.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
}

// countingProducer counts the times a reader asked it for metrics.
type countingProducer struct{ calls atomic.Int32 }

func (p *countingProducer) Produce(context.Context) ([]metricdata.ScopeMetrics, error) {
	p.calls.Add(1)
	return nil, nil
}

// TestMetricProducersGoToOTLPOnly: a producer given to Setup is read by the
// OTLP reader (its Shutdown exports once more) and by nothing when OTLP is
// off, so its metrics are not sent twice or served on /metrics beside the
// registry they come from.
func TestMetricProducersGoToOTLPOnly(t *testing.T) {
	for _, endpoint := range []bool{false, true} {
		if endpoint {
			url, _ := otlpReceiver(t)
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
		}
		var prod countingProducer
		p, err := Setup(context.Background(), Options{ServiceName: "producer-test", MetricProducers: []sdkmetric.Producer{&prod}})
		if err != nil {
			t.Fatal(err)
		}
		scrape(t, p, false)
		if err := p.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := prod.calls.Load(); endpoint && got == 0 || !endpoint && got != 0 {
			t.Errorf("with OTLP endpoint %v the producer was read %d times", endpoint, got)
		}
	}
}
