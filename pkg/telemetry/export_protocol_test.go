package telemetry

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestGRPCProtocolIsABuildChoice: a binary built without -tags otlpgrpc
// refuses the grpc protocol at start, saying how to get it; one built with it
// exports over gRPC (the exporters connect lazily, so nothing need listen).
func TestGRPCProtocolIsABuildChoice(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	p, err := Setup(context.Background(), Options{ServiceName: "grpc-choice"})
	if grpcBuilt {
		if err != nil {
			t.Fatalf("built with otlpgrpc, Setup refused grpc: %v", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // nothing listens: do not wait for the flush
		_ = p.Shutdown(ctx)
		return
	}
	if err == nil {
		_ = p.Shutdown(context.Background())
		t.Fatal("built without otlpgrpc, Setup accepted OTEL_EXPORTER_OTLP_PROTOCOL=grpc")
	}
	for _, want := range []string{"http/protobuf", "-tags otlpgrpc"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// TestGRPCExportersNotLinkedByDefault keeps the gRPC exporters out of a
// default build: every binary pays for what this package imports.
func TestGRPCExportersNotLinkedByDefault(t *testing.T) {
	if grpcBuilt {
		t.Skip("built with -tags otlpgrpc")
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	for _, p := range []string{
		"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc",
		"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc",
	} {
		if slices.Contains(deps, p) {
			t.Errorf("pkg/telemetry links %s without -tags otlpgrpc", p)
		}
	}
}
