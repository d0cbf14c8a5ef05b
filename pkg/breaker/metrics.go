package breaker

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

const instrumentation = "github.com/shanhai-dev/shanhai/pkg/breaker"

var (
	instOnce   sync.Once
	stateGauge metric.Int64ObservableGauge
	transCount metric.Int64Counter
)

func instruments() {
	instOnce.Do(func() {
		m := otel.Meter(instrumentation)
		stateGauge, _ = m.Int64ObservableGauge("shanhai.breaker.state",
			metric.WithDescription("Circuit breaker state: 0 closed, 1 half-open, 2 open"))
		transCount, _ = m.Int64Counter("shanhai.breaker.transitions",
			metric.WithDescription("Circuit breaker state changes, by the state entered"),
			metric.WithUnit("{transition}"))
	})
}

// observe reports b's state on every collection until the returned func runs.
func observe(b *Breaker) func() {
	instruments()
	attrs := metric.WithAttributes(attribute.String("breaker.name", b.name))
	reg, err := otel.Meter(instrumentation).RegisterCallback(func(_ context.Context, o metric.Observer) error {
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
