package breaker

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

const instrumentation = "github.com/shanhai-dev/shanhai/pkg/breaker"

// The instruments come from the global meter once per process (the global
// provider delegates to whatever telemetry.Setup installs later), and every
// callback is registered on that same meter: a callback may only observe
// instruments of its own meter.
var (
	instOnce   sync.Once
	meter      metric.Meter
	stateGauge metric.Int64ObservableGauge
	transCount metric.Int64Counter
)

func instruments() {
	instOnce.Do(func() {
		meter = otel.Meter(instrumentation)
		stateGauge, _ = meter.Int64ObservableGauge("shanhai.breaker.state",
			metric.WithDescription("Circuit breaker state: 0 closed, 1 half-open, 2 open"))
		transCount, _ = meter.Int64Counter("shanhai.breaker.transitions",
			metric.WithDescription("Circuit breaker state changes, by the state entered"),
			metric.WithUnit("{transition}"))
	})
}

// observe reports b's state on every collection until the returned func runs.
func observe(b *Breaker) func() {
	instruments()
	attrs := metric.WithAttributes(attribute.String("breaker.name", b.name))
	reg, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(stateGauge, int64(b.State()), attrs)
		return nil
	}, stateGauge)
	if err != nil {
		return func() {}
	}
	return func() { _ = reg.Unregister() }
}

func transitions(name string, to State) {
	instruments()
	transCount.Add(context.Background(), 1, metric.WithAttributes(
		attribute.String("breaker.name", name), attribute.String("breaker.state", to.String())))
}
