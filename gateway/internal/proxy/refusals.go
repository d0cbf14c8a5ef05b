package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
)

// Refusals counts refusals of one kind (a client connection over
// GATEWAY_LOOP_MAX_CONNS, a request past the event loops' budget) for a
// counter, and logs them at WARN at most once per RefusalWarnEvery: a flood
// of hostile clients must not flood the log, yet each line says how many
// were refused since the last one. Both transports use it, so their lines
// and counts read alike.
type Refusals struct {
	atomic.Int64 // refusals since the start
	// warned is when the last WARN was logged (unix ns), and logged how
	// many refusals had been counted then.
	warned, logged atomic.Int64
}

// RefusalWarnEvery spaces the WARN lines of one Refusals.
const RefusalWarnEvery = 10 * time.Second

// Note counts a refusal and logs msg with attrs and the refusals since the
// last line, unless one was logged within RefusalWarnEvery.
func (r *Refusals) Note(log *slog.Logger, msg string, attrs ...any) {
	n := r.Add(1)
	now := time.Now().UnixNano()
	last := r.warned.Load()
	if now-last < int64(RefusalWarnEvery) || !r.warned.CompareAndSwap(last, now) {
		return
	}
	log.Warn(msg, append(attrs, "refused", n-r.logged.Swap(n))...)
}

// ExportClientConns publishes a transport's cap on client connections
// (GATEWAY_LOOP_MAX_CONNS): both the fasthttp transport and the event loop
// register through it, under one scope and one pair of names, so one graph
// and one alert read either. open is the connections held now (a gauge),
// refused the connections refused over the cap (a counter), both read at
// collection. Unregister on return, as for ExportEvictions: one transport
// runs at a time, and a stopped one must not keep reporting.
func ExportClientConns(mp metric.MeterProvider, open func() int64, refused *Refusals) (metric.Registration, error) {
	m := mp.Meter(instrumentation)
	conns, err := m.Int64ObservableGauge("shanhai.gateway.loop.conns", metric.WithUnit("{connection}"),
		metric.WithDescription("Client connections the gateway holds (GATEWAY_LOOP_MAX_CONNS bounds them)"))
	if err != nil {
		return nil, fmt.Errorf("gateway: client connections gauge: %w", err)
	}
	refusals, err := m.Int64ObservableCounter("shanhai.gateway.loop.conns.refusals", metric.WithUnit("{connection}"),
		metric.WithDescription("Client connections refused 503 because the gateway holds GATEWAY_LOOP_MAX_CONNS"))
	if err != nil {
		return nil, fmt.Errorf("gateway: client connections refusals counter: %w", err)
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(conns, open())
		o.ObserveInt64(refusals, refused.Load())
		return nil
	}, conns, refusals)
	if err != nil {
		return nil, fmt.Errorf("gateway: client connections callback: %w", err)
	}
	return reg, nil
}
