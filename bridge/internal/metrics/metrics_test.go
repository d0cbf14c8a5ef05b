package metrics_test

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/shanhai-dev/shanhai/bridge/internal/metrics"
)

// BenchmarkPerMessage is what each leg records for every message it carries: in flight on publish, out of flight, its
// result and its hop on confirmation.
func BenchmarkPerMessage(b *testing.B) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	m, err := metrics.New(mp.Meter("bench"))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		m.InFlight(metrics.LegA, 1)
		m.InFlight(metrics.LegA, -1)
		m.Count(metrics.LegA, "ok", 1)
		m.Hop(ctx, metrics.LegA, time.Millisecond)
	}
}

// The sets built once in New label each measurement as building them at every call did: by leg, and by leg and result,
// a result New did not foresee included.
func TestMeasurementsKeepTheirAttributes(t *testing.T) {
	r := sdkmetric.NewManualReader()
	m, err := metrics.New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(r)).Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	m.InFlight(metrics.LegB, 3)
	m.Count(metrics.LegA, "ok", 2)
	m.Count(metrics.LegA, "unforeseen", 1)
	m.Hop(context.Background(), metrics.LegB, time.Second)
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, sm := range rm.ScopeMetrics {
		for _, md := range sm.Metrics {
			switch d := md.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					got[md.Name+" "+p.Attributes.Encoded(attribute.DefaultEncoder())] = fmt.Sprint(p.Value)
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					got[md.Name+" "+p.Attributes.Encoded(attribute.DefaultEncoder())] = fmt.Sprint(p.Count)
				}
			}
		}
	}
	want := map[string]string{
		"bridge.inflight leg=nats-pulsar":                  "3",
		"bridge.messages leg=kafka-nats,result=ok":         "2",
		"bridge.messages leg=kafka-nats,result=unforeseen": "1",
		"bridge.hop.duration leg=nats-pulsar":              "1",
	}
	if !maps.Equal(got, want) {
		t.Fatalf("measurements %v, want %v", got, want)
	}
}

// A hop that comes out negative (leg A's starts at the record's timestamp, which with CreateTime is the producer's
// clock: one ahead of the bridge's gives a confirmation "before" the append) is recorded as 0. It went into the
// histogram as it was, so its sum, and every mean latency taken from it, shrank by the skew.
func TestNegativeHopIsRecordedAsZero(t *testing.T) {
	r := sdkmetric.NewManualReader()
	m, err := metrics.New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(r)).Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	m.Hop(context.Background(), metrics.LegA, 2*time.Millisecond)
	m.Hop(context.Background(), metrics.LegA, -time.Hour)
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, md := range sm.Metrics {
			if d, ok := md.Data.(metricdata.Histogram[float64]); ok && md.Name == "bridge.hop.duration" {
				p := d.DataPoints[0]
				if lo, _ := p.Min.Value(); p.Count != 2 || p.Sum != 0.002 || lo != 0 {
					t.Fatalf("hops of 2 ms and -1 h recorded as count %d, sum %v s, min %v s; want 2, 0.002 s (the second as 0), 0 s", p.Count, p.Sum, lo)
				}
				return
			}
		}
	}
	t.Fatal("no bridge.hop.duration recorded")
}
