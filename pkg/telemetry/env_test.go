package telemetry

import (
	"context"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/config"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// otlpReceiver is a stand-in OTLP/HTTP receiver that fails the test on a
// request that is not protobuf; got returns how many requests came per path.
func otlpReceiver(t *testing.T) (url string, got func() map[string]int) {
	t.Helper()
	var (
		mu    sync.Mutex
		paths = map[string]int{}
	)
	rx := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths[r.URL.Path]++
		mu.Unlock()
		if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
			t.Errorf("OTLP request with Content-Type %q", ct)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(rx.Close)
	return rx.URL, func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		return paths
	}
}

// emit sets up from the environment, records a span and a counter, and
// shuts down (which exports them), returning Setup's error.
func emit(t *testing.T, procs ...sdktrace.SpanProcessor) error {
	t.Helper()
	p, err := Setup(context.Background(), Options{ServiceName: "env-test", SpanProcessors: procs})
	if err != nil {
		return err
	}
	_, span := otel.Tracer("test").Start(context.Background(), "work")
	span.End()
	c, _ := otel.Meter("test").Int64Counter("jobs")
	c.Add(context.Background(), 1)
	if err := p.Shutdown(context.Background()); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	return nil
}

// TestBadOTLPVariablesRefused: what the exporters would misread fails Setup
// naming the variable. An endpoint without a scheme went to
// https://localhost:4318 (an IP address and port without one, over grpc
// too: localhost:4317) and a header without '=' was dropped, each with only
// a line on the standard logger.
func TestBadOTLPVariablesRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no scheme", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "127.0.0.1:4318"},
			"OTEL_EXPORTER_OTLP_ENDPOINT"},
		{"no scheme grpc", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "127.0.0.1:4317",
			"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_ENDPOINT"},
		// A gRPC target is read as one only by the gRPC exporter: the
		// metrics, over http/protobuf by default, went to localhost.
		{"grpc target over http", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317",
			"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "ftp://collector/v1/traces"},
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"},
		{"header without =", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
			"OTEL_EXPORTER_OTLP_HEADERS": "api-key=1,Authorization"}, "OTEL_EXPORTER_OTLP_HEADERS"},
		{"header name", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
			"OTEL_EXPORTER_OTLP_METRICS_HEADERS": "a b=1"}, "OTEL_EXPORTER_OTLP_METRICS_HEADERS"},
		{"header value", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
			"OTEL_EXPORTER_OTLP_HEADERS": "k=%zz"}, "OTEL_EXPORTER_OTLP_HEADERS"},
		{"exporter", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"},
		// The message named no variable: a signal's own or the general one?
		{"protocol", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
			"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}, `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "http/json"`},
		// Each of these was ignored by the exporters with a line on the
		// standard logger: the default timeout, no compression, the
		// system's roots, no client certificate.
		{"timeout with a unit", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
			"OTEL_EXPORTER_OTLP_TIMEOUT": "10s"}, "OTEL_EXPORTER_OTLP_TIMEOUT"},
		{"propagators", map[string]string{"OTEL_PROPAGATORS": "b3"}, "OTEL_PROPAGATORS"},
		{"propagators with SDK disabled", map[string]string{"OTEL_PROPAGATORS": "tracecontext",
			"OTEL_SDK_DISABLED": "true"}, "OTEL_PROPAGATORS"},
		{"batch delay with a unit", map[string]string{"OTEL_BSP_SCHEDULE_DELAY": "5s"}, "OTEL_BSP_SCHEDULE_DELAY"},
		// Taken as it is by the batch processor, whose goroutine then spun.
		{"batch delay zero", map[string]string{"OTEL_BSP_SCHEDULE_DELAY": "0"}, "OTEL_BSP_SCHEDULE_DELAY"},
		{"batch queue zero", map[string]string{"OTEL_BSP_MAX_QUEUE_SIZE": "0"}, "OTEL_BSP_MAX_QUEUE_SIZE"},
		{"metric interval zero", map[string]string{"OTEL_METRIC_EXPORT_INTERVAL": "0"}, "OTEL_METRIC_EXPORT_INTERVAL"},
		{"compression", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
			"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "zstd"}, "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"},
		{"insecure not a boolean", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
			"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_INSECURE": "1"},
			"OTEL_EXPORTER_OTLP_TRACES_INSECURE"},
		// Go's exporters let the flag override the scheme, which the
		// specification says decides: TLS to a plain-text collector.
		{"insecure false beside http", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
			"OTEL_EXPORTER_OTLP_INSECURE": "false"}, "OTEL_EXPORTER_OTLP_INSECURE: false contradicts"},
		{"insecure true beside https", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://127.0.0.1:1",
			"OTEL_EXPORTER_OTLP_TRACES_INSECURE": "TRUE"}, "OTEL_EXPORTER_OTLP_TRACES_INSECURE: TRUE contradicts"},
		{"CA file missing", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://127.0.0.1:1",
			"OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent/ca.pem"}, "OTEL_EXPORTER_OTLP_CERTIFICATE"},
		{"CA file not PEM", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://127.0.0.1:1",
			"OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE": "env_test.go"}, "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE"},
		{"client key alone", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://127.0.0.1:1",
			"OTEL_EXPORTER_OTLP_CLIENT_KEY": "env_test.go"}, "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"},
		{"client pair unreadable", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://127.0.0.1:1",
			"OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE": "env_test.go",
			"OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY":         "env_test.go"}, "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY"},
		// The SDK kept service.name=a and dropped "broken" silently; the
		// specification discards the whole value and reports it.
		{"resource member", map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "service.name=a,broken"},
			"OTEL_RESOURCE_ATTRIBUTES"},
		{"resource value", map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "zone=%zz"}, "OTEL_RESOURCE_ATTRIBUTES"},
		{"resource with SDK disabled", map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "=a", "OTEL_SDK_DISABLED": "true"},
			"OTEL_RESOURCE_ATTRIBUTES"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			err := emit(t)
			var invalid *config.Error
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &invalid) {
				t.Errorf("Setup = %v, want a *config.Error naming %s", err, tc.want)
			}
			// Setup's callers add "telemetry: " (it used to read twice).
			if err != nil && strings.HasPrefix(err.Error(), "telemetry:") {
				t.Errorf("Setup = %q, want no telemetry: prefix of its own", err)
			}
			// A hosted part's own variables (LoadFrom's map) are checked
			// as the process's are.
			if err := CheckEnv(tc.env); err == nil || !strings.Contains(err.Error(), tc.want) ||
				!errors.As(err, &invalid) {
				t.Errorf("CheckEnv = %v, want a *config.Error naming %s", err, tc.want)
			}
		})
	}
}

// TestGRPCTargetWithoutScheme: for OTLP/gRPC the specification accepts
// any target the gRPC client does, and Go's gRPC exporter dials
// "localhost:<port>" (no scheme) where it says. Setup refused it as it
// refuses such an endpoint over http/protobuf, which sends to localhost:4318.
func TestGRPCTargetWithoutScheme(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dialed := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			dialed <- struct{}{}
			c.Close()
		}
	}()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:"+strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "gRPC")
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1000") // the stand-in answers no export
	t.Setenv("OTEL_METRICS_EXPORTER", "none")
	p, err := Setup(context.Background(), Options{ServiceName: "env-test"})
	if err != nil {
		t.Fatal(err)
	}
	_, span := otel.Tracer("test").Start(context.Background(), "work")
	span.End()
	_ = p.Shutdown(context.Background()) // exports, and fails: the stand-in speaks no gRPC
	select {
	case <-dialed:
	case <-time.After(10 * time.Second): // a hang guard: Shutdown has dialed by now or never will
		t.Error("the exporter did not dial the endpoint given")
	}
}

// TestOTLPSignalEndpoints: a signal's own endpoint is used as it is, the
// general one with the signal's path; headers are sent; enum values are
// case-insensitive.
func TestOTLPSignalEndpoints(t *testing.T) {
	url, got := otlpReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url+"/custom/traces")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "HTTP/Protobuf")
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%20b, ,")
	t.Setenv("OTEL_TRACES_EXPORTER", "OTLP")
	t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "5000")
	t.Setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true") // agrees with the http:// scheme
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	t.Setenv("OTEL_PROPAGATORS", "Baggage, tracecontext,baggage") // deduplicated, as the specification says
	t.Setenv("OTEL_METRIC_EXPORT_INTERVAL", "60000")
	if err := emit(t); err != nil {
		t.Fatal(err)
	}
	if p := got(); p["/custom/traces"] != 1 || p["/v1/metrics"] != 1 || len(p) != 2 {
		t.Errorf("receiver got %v, want /custom/traces and /v1/metrics once each", p)
	}

	t.Setenv("OTEL_TRACES_EXPORTER", "None")
	t.Setenv("OTEL_METRICS_EXPORTER", "NONE")
	if err := emit(t); err != nil {
		t.Fatal(err)
	}
	if p := got(); p["/custom/traces"] != 1 || p["/v1/metrics"] != 1 {
		t.Errorf("exporters None/NONE still exported: receiver got %v", p)
	}
}

// TestSDKDisabled: OTEL_SDK_DISABLED=true (any case) records no span and
// exports nothing, even with an endpoint set (it was ignored); the other
// variables are not checked then.
func TestSDKDisabled(t *testing.T) {
	url, got := otlpReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "broken")
	t.Setenv("OTEL_SDK_DISABLED", "True")
	rec := tracetest.NewSpanRecorder()
	if err := emit(t, rec); err != nil {
		t.Fatal(err)
	}
	if p := got(); len(p) != 0 {
		t.Errorf("OTEL_SDK_DISABLED=True exported: receiver got %v", p)
	}
	if n := len(rec.Ended()); n != 0 {
		t.Errorf("OTEL_SDK_DISABLED=True recorded %d spans", n)
	}
}

// TestTracesEndpoint: what TracesEndpoint says is what Setup does with the
// same variables.
func TestTracesEndpoint(t *testing.T) {
	for _, tc := range []struct {
		name                          string
		general, traces, exp, disable string
		endpoint, off                 string
	}{
		{"nothing set", "", "", "", "", "", ""},
		{"general", "http://c:4318", "", "", "", "http://c:4318", ""},
		{"traces first", "http://c:4318", "http://j:4318/t", "", "", "http://j:4318/t", ""},
		{"exporter NONE", "http://c:4318", "", "NONE", "", "", "OTEL_TRACES_EXPORTER=none"},
		{"SDK disabled", "http://c:4318", "", "otlp", "TRUE", "", "OTEL_SDK_DISABLED=true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", tc.general)
			t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", tc.traces)
			t.Setenv("OTEL_TRACES_EXPORTER", tc.exp)
			t.Setenv("OTEL_SDK_DISABLED", tc.disable)
			if ep, off := TracesEndpoint(); ep != tc.endpoint || off != tc.off {
				t.Errorf("TracesEndpoint() = %q, %q; want %q, %q", ep, off, tc.endpoint, tc.off)
			}
		})
	}
}

// TestOTLPCertificateFile: a CA file checkEnv accepts is the one the
// exporters trust.
func TestOTLPCertificateFile(t *testing.T) {
	var (
		mu   sync.Mutex
		hits int
	)
	rx := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer rx.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	block := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rx.Certificate().Raw})
	if err := os.WriteFile(ca, block, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rx.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", ca)
	if err := emit(t); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if hits != 2 {
		t.Errorf("TLS receiver got %d requests, want traces and metrics", hits)
	}
}

// TestServiceNamePrecedence: OTEL_SERVICE_NAME before service.name in
// OTEL_RESOURCE_ATTRIBUTES (the specification's order), either before the
// compiled-in name.
func TestServiceNamePrecedence(t *testing.T) {
	for _, tc := range []struct{ name, attrs, want string }{
		{"", "", "compiled"},
		{"", "service.name=from-attrs,zone=a", "from-attrs"},
		{"from-name", "service.name=from-attrs", "from-name"},
	} {
		t.Setenv("OTEL_SERVICE_NAME", tc.name)
		t.Setenv("OTEL_RESOURCE_ATTRIBUTES", tc.attrs)
		res, err := newResource(context.Background(), Options{ServiceName: "compiled"})
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := res.Set().Value("service.name"); v.AsString() != tc.want {
			t.Errorf("OTEL_SERVICE_NAME=%q OTEL_RESOURCE_ATTRIBUTES=%q: service.name %q, want %q",
				tc.name, tc.attrs, v.AsString(), tc.want)
		}
	}
}

// TestSDKDisabledNotABoolean: a value other than true or false is read as
// false, with a warning, as the specification asks of booleans.
func TestSDKDisabledNotABoolean(t *testing.T) {
	url, got := otlpReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
	t.Setenv("OTEL_SDK_DISABLED", "yes")
	var logs strings.Builder
	p, err := Setup(context.Background(), Options{ServiceName: "env-test",
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	_, span := otel.Tracer("test").Start(context.Background(), "work")
	span.End()
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got()["/v1/traces"] != 1 {
		t.Errorf("OTEL_SDK_DISABLED=yes turned export off: receiver got %v", got())
	}
	if !strings.Contains(logs.String(), "OTEL_SDK_DISABLED=yes") {
		t.Errorf("no warning naming OTEL_SDK_DISABLED=yes in:\n%s", logs.String())
	}
}
