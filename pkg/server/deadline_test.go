package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
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

// TestACallersDeadlineIsReleasedOnEveryPath: the caller's deadline is put on the request's context by the telemetry
// middleware (deadline.Derive), outside every layer that may answer a request before the handlers, so each way a
// request with X-Request-Timeout-Ms can end must release its timer, not only the one through deadline.Enforce.
// undecodableQuery answered its 400 before Enforce ran, and the deadline's timer, with the request it holds, stayed
// until the caller's deadline passed (net/http's own cancellation hid it on a real connection, not under Handler).
//
// Each request's context here has a Done channel of its own that nothing closes while it is served, so that the
// deadline derived from it waits in a goroutine of the standard library's until it is released: a timer still set is
// a goroutine still there.
func TestACallersDeadlineIsReleasedOnEveryPath(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	s.Router().GET("/orders/:id", func(c *gin.Context) { c.Status(http.StatusNoContent) })
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/orders/42", http.StatusNoContent},
		{http.MethodGet, "/orders/42?status=%zz", http.StatusBadRequest},
		{http.MethodGet, "/nowhere", http.StatusNotFound},
		{http.MethodPost, "/orders/42", http.StatusMethodNotAllowed},
		{http.MethodHead, "/orders/42", http.StatusNoContent},
		{http.MethodGet, "/healthz", http.StatusOK},
	} {
		const requests = 20
		parent := neverDone{Context: context.Background(), done: make(chan struct{})}
		before := runtime.NumGoroutine()
		for range requests {
			req := httptest.NewRequestWithContext(parent, tc.method, tc.path, nil)
			req.Header.Set(deadline.Header, "600000")
			w := httptest.NewRecorder()
			s.Handler().ServeHTTP(w, req)
			if w.Code != tc.want {
				t.Fatalf("%s %s: status %d, want %d", tc.method, tc.path, w.Code, tc.want)
			}
		}
		// The goroutines of released deadlines end on their own, soon after.
		if left := waitGoroutines(before+requests-1) - before; left >= requests {
			t.Errorf("%s %s: %d goroutines still wait on the caller's deadline of %d requests answered: "+
				"its timer was not released", tc.method, tc.path, left, requests)
		}
		close(parent.done) // ends what a failure left waiting, before the next case counts
		waitGoroutines(before)
	}
}

// waitGoroutines waits a while for at most n goroutines to be left, and returns how many are.
func waitGoroutines(n int) int {
	left := runtime.NumGoroutine()
	for end := time.Now().Add(5 * time.Second); left > n && time.Now().Before(end); left = runtime.NumGoroutine() {
		time.Sleep(10 * time.Millisecond)
	}
	return left
}

// neverDone is a context that is not cancelled until its done is closed, with a Done channel the standard library
// cannot see into.
type neverDone struct {
	context.Context
	done chan struct{}
}

func (c neverDone) Done() <-chan struct{} { return c.done }

func (c neverDone) Err() error {
	select {
	case <-c.done:
		return context.Canceled
	default:
		return nil
	}
}
