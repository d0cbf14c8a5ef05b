// Package telemetry wires a Shanhai binary into OpenTelemetry: tracer and
// meter providers configured from the standard OTEL_* variables, the W3C
// tracecontext + baggage propagator, a Prometheus /metrics handler whose
// histograms carry trace-id exemplars, a log/slog JSON logger that stamps
// trace_id and span_id on every record, and a gin middleware for server spans
// and the semantic-convention http.server.request.duration histogram.
//
// Application code never imports the SDK: after Setup it uses otel.Tracer and
// otel.Meter (the global providers), which keeps the domain free of
// observability plumbing and lets tests run without any of it.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	promexp "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Options name the service. Everything else comes from the standard
// environment variables, so the same binary is configured the same way as any
// other OpenTelemetry-instrumented program:
//
//   - OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES override the resource;
//   - OTEL_EXPORTER_OTLP_ENDPOINT (or the _TRACES_/_METRICS_ variants) turns
//     on OTLP export; without one nothing is exported over the network and
//     metrics are only served on /metrics;
//   - OTEL_EXPORTER_OTLP_PROTOCOL chooses grpc or http/protobuf (default, as
//     the specification says);
//   - OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG choose the sampler
//     (default parentbased_always_on) with the SDK's names and rules; Setup
//     reads them itself so Middleware can decide before the SDK
//     (sampling.go);
//   - OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER=none switch OTLP off even
//     when an endpoint is set (otlp, the default, is the only other value);
//   - OTEL_SDK_DISABLED=true records no spans and exports nothing over OTLP;
//     /metrics is still served.
//
// A variable the exporters would misread (an endpoint that is not an http or
// https URL, or over grpc a gRPC target such as collector:4317, a header that is not key=value, a timeout that is not whole
// milliseconds, a compression other than gzip or none, an insecure flag
// other than true or false or contradicting the endpoint's scheme, a certificate file
// that cannot be loaded, an OTEL_BSP_* or OTEL_METRIC_EXPORT_* value that is
// not a whole number, an OTEL_PROPAGATORS other than tracecontext,baggage,
// an unknown protocol or exporter, an
// OTEL_RESOURCE_ATTRIBUTES member that is not key=value) makes Setup fail
// naming it (env.go). Enum values are read
// case-insensitively, as the specification asks.
type Options struct {
	ServiceName    string
	ServiceVersion string

	// Logger receives OpenTelemetry's internal errors (an unreachable
	// collector, a dropped batch) and the SDK's own log messages (its
	// warnings at Warn). Nil means slog.Default().
	Logger *slog.Logger

	// SpanProcessors are added to the tracer provider, mainly for tests
	// (tracetest.NewSpanRecorder) or an extra exporter. Add processors here,
	// not to Provider.Tracer later: the server spans Middleware and
	// ServerTracer record without the SDK go to the processors Setup knew.
	SpanProcessors []sdktrace.SpanProcessor

	// MetricProducers add metrics from outside the SDK (a Prometheus
	// registry through the contrib bridge: the eBPF agent's) to what the
	// OTLP exporter sends, read at each export. They are not added to the
	// Prometheus reader: those metrics are served on /metrics already.
	MetricProducers []sdkmetric.Producer
}

// Provider owns the SDK providers Setup installed. Shut it down last, after
// the server has drained, so the spans of the final requests are exported.
type Provider struct {
	Tracer   *sdktrace.TracerProvider
	Meter    *sdkmetric.MeterProvider
	Registry *prometheus.Registry

	shared bool // a view from Shared: Shutdown only flushes
	// warnings counts the SDK's warnings held back (otellog.go), written
	// at Shutdown; nil on a Provider not from Setup.
	warnings *repeats
}

// Shared is p for a user that does not own it: several services hosted in
// one process (cmd/shanhai) run on the one Setup of their host, and each
// server's shutdown flushes its last spans but must not stop the exporters
// the services still running need. Shutdown on the view only flushes; the
// owner's Shutdown stops everything once, at the end.
func (p *Provider) Shared() *Provider {
	v := *p
	v.shared = true
	return &v
}

// Setup builds the providers, installs them as the otel globals together with
// the W3C tracecontext + baggage propagator, and returns them for Shutdown.
// The SDK's logger and error handler it installs are process-wide as well:
// a later Setup in the same process receives this one's SDK messages, so a
// process hosting several services sets up once and hands out Shared views.
// A bad OTEL_* variable is refused with CheckEnv's *config.Error. Its errors
// do not start with "telemetry:": every caller adds that, and the message
// read "telemetry: telemetry: ...".
func Setup(ctx context.Context, o Options) (*Provider, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("opentelemetry", slog.String("error", err.Error()))
	}))
	warnings := newRepeats(time.Minute, time.Now)
	otel.SetLogger(sdkLogger(log, warnings)) // otellog.go: the SDK's own messages, as JSON records

	res, err := newResource(ctx, o)
	if err != nil {
		return nil, err
	}

	// OTEL_SDK_DISABLED=true: no span is recorded and nothing is exported
	// over OTLP, whatever the other variables say; /metrics, which is
	// scraped rather than sent, is still served.
	disabled := sdkDisabled(log)
	if err := checkEnv(processEnv, disabled); err != nil {
		return nil, err
	}
	sampler, samp, err := sdktrace.NeverSample(), sampling{}, error(nil)
	if !disabled {
		sampler, samp, err = samplerFromEnv()
	}
	if err != nil {
		log.Warn("opentelemetry sampler", slog.String("error", err.Error()))
	}
	topts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(sampler)}
	if samp.needsIDs() {
		topts = append(topts, sdktrace.WithIDGenerator(idGenerator{}))
	}
	// The processors are kept, in the provider's order, for the server
	// spans Middleware and ServerTracer record without the SDK
	// (serverspan.go); WithBatcher(exp) is this batch processor (behind
	// batchFront, export.go).
	var procs []sdktrace.SpanProcessor
	if exp, err := traceExporter(ctx, disabled); err != nil {
		return nil, err
	} else if exp != nil {
		procs = append(procs, newBatchFront(sdktrace.NewBatchSpanProcessor(exp))) // export.go: batchFront
	}
	procs = append(procs, o.SpanProcessors...)
	for _, sp := range procs {
		topts = append(topts, sdktrace.WithSpanProcessor(sp))
	}
	tp := sdktrace.NewTracerProvider(topts...)
	if !strings.EqualFold(os.Getenv(envObservability), "true") {
		samp.rec = newRecorder(res, procs)
		configured.Store(tp, &samp)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	promReader, err := promexp.New(promexp.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	mopts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(promReader)}
	if r, err := metricReader(ctx, disabled, o.MetricProducers); err != nil {
		return nil, err
	} else if r != nil {
		mopts = append(mopts, sdkmetric.WithReader(r))
	}
	mp := sdkmetric.NewMeterProvider(mopts...)

	otel.SetTracerProvider(tp)
	otel.SetMeterProvider(mp)
	otel.SetTextMapPropagator(Propagator())
	lastRegistry.Store(reg)
	return &Provider{Tracer: tp, Meter: mp, Registry: reg, warnings: warnings}, nil
}

// lastRegistry is the registry of the last Setup, where Middleware registers
// its histogram by default. Like the otel globals, it is process-wide
// telemetry state, set once at start.
var lastRegistry atomic.Pointer[prometheus.Registry]

func defaultRegisterer() prometheus.Registerer {
	if r := lastRegistry.Load(); r != nil {
		return r
	}
	return prometheus.DefaultRegisterer
}

// Propagator is the one propagation format of the platform: W3C trace
// context and W3C baggage.
func Propagator() propagation.TextMapPropagator {
	return w3c{propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})}
}

// w3c marks the propagator Propagator returns, so Middleware knows which
// headers it reads (traceparent, and tracestate only beside it; baggage) and
// can skip extraction for the many requests that carry neither. Of another
// propagator it cannot know that: Fields lists what Inject writes, not
// everything Extract may read.
type w3c struct{ propagation.TextMapPropagator }

func newResource(ctx context.Context, o Options) (*resource.Resource, error) {
	attrs := resource.WithAttributes(semconv.ServiceName(o.ServiceName))
	if o.ServiceVersion != "" {
		attrs = resource.WithAttributes(semconv.ServiceName(o.ServiceName), semconv.ServiceVersion(o.ServiceVersion))
	}
	// Later options win: the environment overrides the compiled-in name.
	res, err := resource.New(ctx, attrs, resource.WithTelemetrySDK(), resource.WithHost(), resource.WithFromEnv())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("resource: %w", err)
	}
	return res, nil
}

// Shutdown flushes pending spans and metrics and stops the exporters (on a
// Shared view it only flushes), then writes the counts of the SDK warnings
// held back (otellog.go's repeats), which a quiet kind would otherwise never
// write.
func (p *Provider) Shutdown(ctx context.Context) error {
	var errs []error
	if p.shared {
		if err := p.Tracer.ForceFlush(ctx); err != nil {
			errs = append(errs, fmt.Errorf("tracer provider: %w", err))
		}
		if err := p.Meter.ForceFlush(ctx); err != nil {
			errs = append(errs, fmt.Errorf("meter provider: %w", err))
		}
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("telemetry flush: %w", err)
		}
		return nil
	}
	if s, _ := samplingOf(p.Tracer); s != nil && s.rec != nil {
		s.rec.stopped.Store(true)
	}
	configured.Delete(p.Tracer)
	if err := p.Tracer.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("tracer provider: %w", err))
	}
	if err := p.Meter.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("meter provider: %w", err))
	}
	if p.warnings != nil {
		errs = append(errs, p.warnings.flush(ctx))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("telemetry shutdown: %w", err)
	}
	return nil
}

// MetricsHandler serves the Prometheus registry. It speaks OpenMetrics when
// the scraper asks for it (Prometheus does by default), which is the only
// exposition format that carries exemplars, so histogram buckets link to the
// trace of a request that landed in them.
func (p *Provider) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(p.Registry, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorHandling:     promhttp.ContinueOnError,
	})
}
