package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/shanhai-dev/shanhai/pkg/deadline"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
)

type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkServer is one request through everything New installs
// (telemetry, request id, recovery, access log at info level so it is off)
// compared with a bare gin engine: what a Shanhai binary pays per request.
//
//	go test ./server -run '^$' -bench Server -count 6 | benchstat -
func BenchmarkServer(b *testing.B) {
	handler := func(c *gin.Context) { c.Status(http.StatusNoContent) }
	run := func(b *testing.B, h http.Handler, timeoutMs string) {
		req := httptest.NewRequest(http.MethodGet, "/orders/42", nil)
		if timeoutMs != "" {
			req.Header.Set(deadline.Header, timeoutMs)
		}
		w := &discardWriter{h: http.Header{}}
		b.ReportAllocs()
		cpu0 := processCPU()
		for b.Loop() {
			clear(w.h)
			h.ServeHTTP(w, req)
		}
		b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	}
	b.Run("BareGin", func(b *testing.B) {
		gin.SetMode(gin.ReleaseMode)
		e := gin.New()
		e.GET("/orders/:id", handler)
		run(b, e, "")
	})
	// The provider comes from telemetry.Setup, as in every binary, so the
	// middleware decides unsampled requests without the SDK (a provider
	// built by hand sends every span through it). Sampled spans go through
	// a batch processor into an exporter that drops them.
	// UnsampledCallerDeadline is a request as the gateway sends it, with
	// the caller's remaining time (deadline.Header): the request's one
	// copy then carries a context with that deadline too (a timer), beside
	// the span and the request id.
	for _, tc := range []struct{ name, sampler, timeoutMs string }{
		{"Sampled", "always_on", ""}, {"Unsampled", "always_off", ""}, {"UnsampledCallerDeadline", "always_off", "5000"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
			b.Setenv("OTEL_TRACES_SAMPLER", tc.sampler)
			p, err := telemetry.Setup(context.Background(), telemetry.Options{
				ServiceName:    "bench",
				Logger:         slog.New(slog.DiscardHandler),
				SpanProcessors: []sdktrace.SpanProcessor{sdktrace.NewBatchSpanProcessor(nopExporter{})},
			})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Shutdown(context.Background())
			s := New(Options{Telemetry: p, Logger: telemetry.NewLogger(io.Discard, slog.LevelInfo)})
			s.Router().GET("/orders/:id", handler)
			run(b, s.Handler(), tc.timeoutMs)
		})
	}
}
