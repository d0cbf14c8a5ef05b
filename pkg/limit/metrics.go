package limit

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// One meter for the package, taken once: observable callbacks may only
// observe instruments of the meter they are registered on.
var (
	meterOnce     sync.Once
	meter         metric.Meter
	limitGauge    metric.Int64ObservableGauge
	inflightGauge metric.Int64ObservableGauge
)

func instruments() metric.Meter {
	meterOnce.Do(func() {
		meter = otel.Meter(instrumentation)
		limitGauge, _ = meter.Int64ObservableGauge("shanhai.limit.concurrency.limit",
			metric.WithDescription("Current adaptive concurrency limit"), metric.WithUnit("{call}"))
		inflightGauge, _ = meter.Int64ObservableGauge("shanhai.limit.concurrency.inflight",
			metric.WithDescription("Calls admitted by the adaptive limiter and not yet released"), metric.WithUnit("{call}"))
	})
	return meter
}

func observeAdaptive(a *Adaptive) func() {
	m := instruments()
	attrs := metric.WithAttributes(attribute.String("limit.name", a.o.Name))
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(limitGauge, int64(a.Limit()), attrs)
		o.ObserveInt64(inflightGauge, int64(a.InFlight()), attrs)
		return nil
	}, limitGauge, inflightGauge)
	if err != nil {
		return func() {}
	}
	return func() { _ = reg.Unregister() }
}
