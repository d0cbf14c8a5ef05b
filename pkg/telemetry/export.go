package telemetry

import (
	"context"
	"fmt"

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

func traceExporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	if envFirst("OTEL_TRACES_EXPORTER") == "none" ||
		envFirst("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT") == "" {
		return nil, nil
	}
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch p := protocol("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"); p {
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	case "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	default:
		return nil, fmt.Errorf("telemetry: OTLP protocol %q not supported (grpc or http/protobuf)", p)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP trace exporter: %w", err)
	}
	return exp, nil
}

func metricReader(ctx context.Context) (sdkmetric.Reader, error) {
	if envFirst("OTEL_METRICS_EXPORTER") == "none" ||
		envFirst("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT") == "" {
		return nil, nil
	}
	var (
		exp sdkmetric.Exporter
		err error
	)
	switch p := protocol("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"); p {
	case "grpc":
		exp, err = otlpmetricgrpc.New(ctx)
	case "http/protobuf":
		exp, err = otlpmetrichttp.New(ctx)
	default:
		return nil, fmt.Errorf("telemetry: OTLP protocol %q not supported (grpc or http/protobuf)", p)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP metric exporter: %w", err)
	}
	// The periodic reader reads OTEL_METRIC_EXPORT_INTERVAL itself.
	return sdkmetric.NewPeriodicReader(exp), nil
}

func protocol(signalKey string) string {
	if p := envFirst(signalKey, "OTEL_EXPORTER_OTLP_PROTOCOL"); p != "" {
		return p
	}
	return "http/protobuf"
}
