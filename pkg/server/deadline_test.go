package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/shanhai-dev/shanhai/pkg/deadline"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
)

// TestACallersDeadlineCostsNoSecondRequestCopy: every request the gateway forwards carries X-Request-Timeout-Ms.
// deadline.Middleware put its deadline on the request by copying the request a second time (320 bytes), after the
// telemetry middleware had copied it for the span and the request id, and it kept the caller's mark in a value node
// of its own with the deadline boxed beside it: 7 allocations over a request without the header, where the deadline
// needs only what context.WithDeadline allocates for its timer (measured here, so the bound follows the Go release)
// and one node for what the layers around the handlers read about it.
func TestACallersDeadlineCostsNoSecondRequestCopy(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_TRACES_SAMPLER", "always_off")
	p, err := telemetry.Setup(context.Background(), telemetry.Options{
		ServiceName: "server-test", Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	s := New(Options{Telemetry: p, Logger: telemetry.NewLogger(io.Discard, slog.LevelInfo)})
	s.Router().GET("/orders/:id", func(c *gin.Context) { c.Status(http.StatusNoContent) })
	allocs := func(timeoutMs string) float64 {
		req := httptest.NewRequest(http.MethodGet, "/orders/42", nil)
		if timeoutMs != "" {
			req.Header.Set(deadline.Header, timeoutMs)
		}
		w := &discardWriter{h: http.Header{}}
		s.Handler().ServeHTTP(w, req) // the route's first request builds its series
		return testing.AllocsPerRun(100, func() {
			clear(w.h)
			s.Handler().ServeHTTP(w, req)
		})
	}
	type key struct{}
	parent := context.WithValue(context.Background(), key{}, 1) // no cancellation, as a request from httptest
	timer := testing.AllocsPerRun(100, func() {
		_, cancel := context.WithDeadline(parent, time.Now().Add(5*time.Second))
		cancel()
	})
	without, with := allocs(""), allocs("5000")
	if extra := with - without; extra > timer+1 {
		t.Fatalf("a request with %s allocates %v times, %v without: %v more, want at most %v "+
			"(context.WithDeadline's %v and one node)", deadline.Header, with, without, extra, timer+1, timer)
	}
}

// TestACallersDeadlineKeepsTheClientsLeavingApart: the caller's deadline is released (its context cancelled) as the
// request's handlers return, before the access log reads the request's context. A request with the header whose
// client went away is still the client's doing (499, ended_by "client went away", at Info), and one whose client
// waits for its 500 is still the server's failure (ERROR, no ended_by).
func TestACallersDeadlineKeepsTheClientsLeavingApart(t *testing.T) {
	s, logs := newTestServer(t, Options{})
	started := make(chan struct{}, 1)
	s.Router().GET("/gone", func(c *gin.Context) {
		started <- struct{}{}
		<-c.Request.Context().Done()
		// Returns without answering: the access log tells who ended it.
	})
	served := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.Handler().ServeHTTP(w, r)
		served <- struct{}{}
	}))
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-started
		cancel()
	}()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/gone", nil)
	req.Header.Set(deadline.Header, "60000")
	if resp, err := srv.Client().Do(req); !errors.Is(err, context.Canceled) {
		if err == nil {
			resp.Body.Close()
		}
		t.Fatalf("GET /gone: %v, want the client's cancellation", err)
	}
	<-served
	want := `"level":"INFO","msg":"request","method":"GET","route":"/gone","path":"/gone","status":499,"ended_by":"client went away"`
	if !strings.Contains(logs.String(), want) {
		t.Errorf("no access log line with %s in:\n%s", want, logs)
	}
}
