package harness

import (
	"context"
	"fmt"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/shanhai-dev/shanhai/bridge/internal/metrics"
)

// Metrics returns the bridge's instruments on a meter of their own, and the reader to collect them.
func Metrics(t testing.TB) (*metrics.Bridge, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	m, err := metrics.New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	return m, reader
}

// Int64Metric is the value of the int64 gauge or sum name whose data point has attribute key = value, and whether
// there is one.
func Int64Metric(r sdkmetric.Reader, name, key, value string) (int64, bool, error) {
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		return 0, false, fmt.Errorf("collect metrics: %w", err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			var dps []metricdata.DataPoint[int64]
			switch d := m.Data.(type) {
			case metricdata.Gauge[int64]:
				dps = d.DataPoints
			case metricdata.Sum[int64]:
				dps = d.DataPoints
			}
			for _, dp := range dps {
				if v, ok := dp.Attributes.Value(attribute.Key(key)); m.Name == name && ok && v.String() == value {
					return dp.Value, true, nil
				}
			}
		}
	}
	return 0, false, nil
}
