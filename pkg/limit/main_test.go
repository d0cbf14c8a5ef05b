package limit

import (
	"context"
	"os"
	"testing"

	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// testReader collects everything this package meters during the tests. The
// provider is installed once, before any instrument exists, because the
// global provider can be redirected only once.
var testReader = sdkmetric.NewManualReader()

func TestMain(m *testing.M) {
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(testReader)))
	os.Exit(m.Run())
}

// metricValue sums the int64 points of metric name whose limit.name is
// limitName; -1 if there are none.
func metricValue(t *testing.T, name, limitName string) int64 {
	t.Helper()
	return metricValueWith(t, name, limitName, "")
}

// metricValueWith is metricValue for the points whose reason is reason as
// well (any reason when it is empty).
func metricValueWith(t *testing.T, name, limitName, reason string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := testReader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	n, found := int64(0), false
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			var points []metricdata.DataPoint[int64]
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				points = d.DataPoints
			case metricdata.Gauge[int64]:
				points = d.DataPoints
			}
			for _, dp := range points {
				v, _ := dp.Attributes.Value("limit.name")
				r, _ := dp.Attributes.Value("reason")
				if v.AsString() == limitName && (reason == "" || r.AsString() == reason) {
					n, found = n+dp.Value, true
				}
			}
		}
	}
	if !found {
		return -1
	}
	return n
}
