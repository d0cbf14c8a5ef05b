package telemetry

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// The OTLP exporters read endpoint, headers, TLS and timeout from the
// environment themselves; this file only decides whether to build one and
// which transport to use. The autoexport contrib module would also do that,
// but it exports to localhost by default, and a binary started without a
// collector should not spend its time failing to reach one.

func traceExporter(ctx context.Context, disabled bool) (sdktrace.SpanExporter, error) {
	if disabled || tracesOTLP.exportsTo(processEnv) == "" {
		return nil, nil
	}
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch p := processEnv.protocol(tracesOTLP.own("PROTOCOL")); p {
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	case "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	default:
		return nil, fmt.Errorf("OTLP protocol %q not supported (grpc or http/protobuf)", p)
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	return exp, nil
}

func metricReader(ctx context.Context, disabled bool, producers []sdkmetric.Producer) (sdkmetric.Reader, error) {
	if disabled || metricsOTLP.exportsTo(processEnv) == "" {
		return nil, nil
	}
	var (
		exp sdkmetric.Exporter
		err error
	)
	switch p := processEnv.protocol(metricsOTLP.own("PROTOCOL")); p {
	case "grpc":
		exp, err = otlpmetricgrpc.New(ctx)
	case "http/protobuf":
		exp, err = otlpmetrichttp.New(ctx)
	default:
		return nil, fmt.Errorf("OTLP protocol %q not supported (grpc or http/protobuf)", p)
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP metric exporter: %w", err)
	}
	// The periodic reader reads OTEL_METRIC_EXPORT_INTERVAL itself.
	var opts []sdkmetric.PeriodicReaderOption
	for _, p := range producers {
		opts = append(opts, sdkmetric.WithProducer(p))
	}
	return sdkmetric.NewPeriodicReader(exp, opts...), nil
}

// protocol is the OTLP protocol of a signal, lower-cased (the specification
// reads enum values case-insensitively).
func (e environment) protocol(signalKey string) string {
	if p := e.first(signalKey, "OTEL_EXPORTER_OTLP_PROTOCOL"); p != "" {
		return strings.ToLower(p)
	}
	return "http/protobuf"
}

// The batch processor's OnEnd is a channel send to its exporting goroutine,
// which parks whenever the queue is empty, so on a busy server nearly every
// ended span wakes it: a futex wake of another thread, a scheduler round
// trip there, and the goroutine back to sleep after taking one span. In the
// gateway on the event loop (two loops on two cores, 10 % sampling) that
// was about 3 µs of CPU per request, against 1 µs for recording the spans
// (gateway/README.md, G4). batchFront sits in front of it: ended spans
// collect in a slice under a mutex and reach the batch processor in bursts,
// when frontBurst have gathered or every frontDelay, so the goroutine wakes
// once per burst instead of once per span. The batch processor still does
// everything else as configured (OTEL_BSP_*: queue size and drops, batch
// size, schedule delay, export timeout); spans reach the exporter at most
// frontDelay later, against its 5 s schedule delay by default.
const (
	frontBurst = 128
	frontDelay = 50 * time.Millisecond
	frontMax   = 4096 // held spans beyond which new ones are dropped, as a full batch queue drops them
)

type batchFront struct {
	next sdktrace.SpanProcessor
	kick chan struct{} // a burst is ready; capacity 1, a send never waits
	stop chan struct{}
	done chan struct{}
	once sync.Once

	mu   sync.Mutex
	held []sdktrace.ReadOnlySpan

	drainMu sync.Mutex // one hand-over at a time, in the order spans ended
	spare   []sdktrace.ReadOnlySpan
}

func newBatchFront(next sdktrace.SpanProcessor) *batchFront {
	f := &batchFront{next: next, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go f.run()
	return f
}

func (f *batchFront) run() {
	defer close(f.done)
	tick := time.NewTicker(frontDelay)
	defer tick.Stop()
	for {
		select {
		case <-f.stop:
			f.drain()
			return
		case <-f.kick:
		case <-tick.C:
		}
		f.drain()
	}
}

// drain hands every held span to the batch processor.
func (f *batchFront) drain() {
	f.drainMu.Lock()
	defer f.drainMu.Unlock()
	f.mu.Lock()
	out := f.held
	f.held = f.spare[:0]
	f.mu.Unlock()
	for _, s := range out {
		f.next.OnEnd(s)
	}
	clear(out)
	f.spare = out
}

func (f *batchFront) OnStart(ctx context.Context, s sdktrace.ReadWriteSpan) { f.next.OnStart(ctx, s) }

func (f *batchFront) OnEnd(s sdktrace.ReadOnlySpan) {
	f.mu.Lock()
	n := len(f.held)
	if n < frontMax {
		f.held = append(f.held, s)
		n++
	}
	f.mu.Unlock()
	if n == frontBurst {
		select {
		case f.kick <- struct{}{}:
		default:
		}
	}
}

// ForceFlush hands the held spans over, then flushes the batch processor.
func (f *batchFront) ForceFlush(ctx context.Context) error {
	f.drain()
	return f.next.ForceFlush(ctx)
}

// Shutdown stops the front (handing over what it holds) and shuts the batch
// processor down, which exports what it has.
func (f *batchFront) Shutdown(ctx context.Context) error {
	f.once.Do(func() { close(f.stop) })
	select {
	case <-f.done:
	case <-ctx.Done():
		return fmt.Errorf("telemetry: span hand-over: %w", ctx.Err())
	}
	return f.next.Shutdown(ctx)
}
