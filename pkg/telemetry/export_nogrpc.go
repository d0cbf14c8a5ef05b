//go:build !otlpgrpc

package telemetry

import (
	"context"
	"errors"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// grpcBuilt reports whether this binary can export OTLP over gRPC.
const grpcBuilt = false

// errGRPCNotBuilt names both ways out: the operator's (the default protocol)
// and the builder's (the tag).
var errGRPCNotBuilt = errors.New("OTLP protocol grpc is not built into this binary: " +
	"set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf (the default) or build with -tags otlpgrpc")

func grpcTraceExporter(context.Context) (sdktrace.SpanExporter, error) { return nil, errGRPCNotBuilt }

func grpcMetricExporter(context.Context) (sdkmetric.Exporter, error) { return nil, errGRPCNotBuilt }
