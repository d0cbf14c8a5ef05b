package proxy

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// The decision and retry counters are atomics behind observable counters;
// what a collection reports must be the exact totals, per series, as
// monotonic sums, with retries labelled by upstream (the dashboard groups by
// shanhai_upstream).
func TestCountersExportTotals(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	prev := otel.GetMeterProvider()
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	t.Cleanup(func() { otel.SetMeterProvider(prev) })

	m := newMetrics()
	for range 5 {
		m.decision("ip", true)
	}
	m.decision("ip", false)
	m.decision("breaker:order", false)
	m.retry("order", "sent")
	m.retry("order", "sent")
	m.retry("order", "denied_by_budget")

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			sum, ok := mt.Data.(metricdata.Sum[int64])
			if !ok {
				continue
			}
			if !sum.IsMonotonic {
				t.Errorf("%s is not monotonic", mt.Name)
			}
			got[mt.Name] = map[string]int64{}
			for _, dp := range sum.DataPoints {
				got[mt.Name][dp.Attributes.Encoded(attribute.DefaultEncoder())] = dp.Value
			}
		}
	}
	want := map[string]map[string]int64{
		"shanhai.gateway.limit.decisions": {
			"decision=allow,limit=ip": 5, "decision=deny,limit=ip": 1, "decision=deny,limit=breaker:order": 1,
		},
		"shanhai.gateway.retries": {
			"outcome=sent,shanhai.upstream=order": 2, "outcome=denied_by_budget,shanhai.upstream=order": 1,
		},
	}
	for name, series := range want {
		for k, v := range series {
			if got[name][k] != v {
				t.Errorf("%s{%s} = %d, want %d (all: %v)", name, k, got[name][k], v, got[name])
			}
		}
		if len(got[name]) != len(series) {
			t.Errorf("%s has series %v, want exactly %v", name, got[name], series)
		}
	}
}
