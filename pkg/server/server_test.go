package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/shanhai-dev/shanhai/pkg/problem"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

func newTestServer(t *testing.T, o Options) (*Server, *testenv.LogBuffer) {
	t.Helper()
	logs := &testenv.LogBuffer{}
	if o.Logger == nil {
		o.Logger = telemetry.NewLogger(logs, slog.LevelDebug)
	}
	return New(o), logs
}

func do(h http.Handler, method, path string, body io.Reader, hdr ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, body)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func decodeProblem(t *testing.T, w *httptest.ResponseRecorder) problem.Details {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != problem.ContentType {
		t.Fatalf("Content-Type %q, want %q; body %s", ct, problem.ContentType, w.Body)
	}
	var d problem.Details
	if err := json.Unmarshal(w.Body.Bytes(), &d); err != nil {
		t.Fatalf("problem body: %v: %s", err, w.Body)
	}
	if d.Status != w.Code {
		t.Errorf("problem status %d but HTTP status %d", d.Status, w.Code)
	}
	return d
}

func TestPanicBecomesProblem500(t *testing.T) {
	s, logs := newTestServer(t, Options{})
	s.Router().GET("/boom", func(*gin.Context) { panic("nil map write") })
	s.Router().GET("/ok", func(c *gin.Context) { c.String(http.StatusOK, "fine") })

	w := do(s.Handler(), http.MethodGet, "/boom", nil)
	if w.Code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", w.Code)
	}
	d := decodeProblem(t, w)
	if strings.Contains(d.Detail, "nil map write") {
		t.Errorf("panic value leaked to the client: %q", d.Detail)
	}
	if id := w.Header().Get(RequestIDHeader); id == "" || !strings.Contains(d.Detail, id) {
		t.Errorf("detail %q does not carry the request id %q", d.Detail, id)
	}
	if !strings.Contains(logs.String(), `"msg":"panic in handler"`) || !strings.Contains(logs.String(), "nil map write") {
		t.Errorf("panic not logged:\n%s", logs)
	}
	if !regexp.MustCompile(`"level":"ERROR","msg":"request".*"route":"/boom".*"status":500`).MatchString(logs.String()) {
		t.Errorf("the 500 is not in the access log at ERROR:\n%s", logs)
	}
	// The server keeps serving.
	if w := do(s.Handler(), http.MethodGet, "/ok", nil); w.Code != http.StatusOK {
		t.Errorf("after a panic: status %d", w.Code)
	}
}

func TestRequestID(t *testing.T) {
	s, logs := newTestServer(t, Options{})
	var seen string
	s.Router().GET("/id", func(c *gin.Context) {
		seen = RequestID(c.Request.Context())
		slog.New(telemetry.NewHandler(slog.NewJSONHandler(io.Discard, nil))).InfoContext(c, "x")
		c.Status(http.StatusNoContent)
	})

	w := do(s.Handler(), http.MethodGet, "/id", nil)
	gen := w.Header().Get(RequestIDHeader)
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(gen) || seen != gen {
		t.Errorf("generated id %q, handler saw %q", gen, seen)
	}
	if w2 := do(s.Handler(), http.MethodGet, "/id", nil); w2.Header().Get(RequestIDHeader) == gen {
		t.Error("two requests got the same generated id")
	}
	if !strings.Contains(logs.String(), `"request_id":"`+gen+`"`) {
		t.Errorf("access log lacks request_id %s:\n%s", gen, logs)
	}

	w = do(s.Handler(), http.MethodGet, "/id", nil, RequestIDHeader, "edge-123")
	if got := w.Header().Get(RequestIDHeader); got != "edge-123" || seen != "edge-123" {
		t.Errorf("caller's id not kept: echoed %q, seen %q", got, seen)
	}
	for _, bad := range []string{"has space", strings.Repeat("x", 129), "new\nline"} {
		w = do(s.Handler(), http.MethodGet, "/id", nil, RequestIDHeader, bad)
		if got := w.Header().Get(RequestIDHeader); got == bad || len(got) != 32 {
			t.Errorf("bad id %q was kept or not replaced: %q", bad, got)
		}
	}
}

func TestNotFoundAndMethodNotAllowedAreProblems(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	s.Router().GET("/orders", func(c *gin.Context) { c.Status(http.StatusOK) })

	w := do(s.Handler(), http.MethodGet, "/nope", nil)
	if w.Code != http.StatusNotFound {
		t.Fatalf("status %d", w.Code)
	}
	decodeProblem(t, w)

	w = do(s.Handler(), http.MethodDelete, "/orders", nil)
	if w.Code != http.StatusMethodNotAllowed {
		t.Fatalf("status %d", w.Code)
	}
	decodeProblem(t, w)
	if allow := w.Header().Get("Allow"); !strings.Contains(allow, "GET") {
		t.Errorf("Allow %q", allow)
	}

	// HEAD gets the same problem, without the body (gin used to answer these two with text/plain);
	// HEAD on a GET route is answered by it (head_test.go), so the 405 needs a route without GET.
	s.Router().POST("/payments", func(c *gin.Context) { c.Status(http.StatusCreated) })
	for path, want := range map[string]int{"/payments": http.StatusMethodNotAllowed, "/nope": http.StatusNotFound} {
		w = do(s.Handler(), http.MethodHead, path, nil)
		if ct := w.Header().Get("Content-Type"); w.Code != want || ct != problem.ContentType || w.Body.Len() != 0 {
			t.Errorf("HEAD %s: %d %q %q, want %d, %s and no body", path, w.Code, ct, w.Body.String(), want, problem.ContentType)
		}
	}
}

func TestHealthAndMetrics(t *testing.T) {
	p, err := telemetry.Setup(context.Background(), telemetry.Options{ServiceName: "server-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	s, _ := newTestServer(t, Options{Telemetry: p})
	s.Router().GET("/orders/:id", func(c *gin.Context) { c.Status(http.StatusOK) })
	if w := do(s.Handler(), http.MethodGet, "/healthz", nil); w.Code != http.StatusOK {
		t.Errorf("/healthz %d", w.Code)
	}
	do(s.Handler(), http.MethodGet, "/orders/1", nil)
	w := do(s.Handler(), http.MethodGet, "/metrics", nil)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `http_server_request_duration_seconds_count{http_request_method="GET",http_response_status_code="200",http_route="/orders/:id"} 1`) {
		t.Errorf("/metrics %d lacks the request histogram:\n%.2000s", w.Code, w.Body)
	}
}

func TestReadiness(t *testing.T) {
	var dbDown bool
	s, logs := newTestServer(t, Options{
		ReadyTimeout: 10 * time.Second, // generous: these probes answer at once
		Checks: []Check{
			{Name: "postgres", Probe: func(context.Context) error {
				if dbDown {
					return errors.New("connection refused")
				}
				return nil
			}},
			{Name: "kafka", Probe: func(context.Context) error { return nil }},
		},
	})
	if w := do(s.Handler(), http.MethodGet, "/readyz", nil); w.Code != http.StatusOK {
		t.Fatalf("all checks pass: /readyz %d %s", w.Code, w.Body)
	}
	dbDown = true
	w := do(s.Handler(), http.MethodGet, "/readyz", nil)
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("failing check: /readyz %d", w.Code)
	}
	d := decodeProblem(t, w)
	if len(d.Errors) != 1 || d.Errors[0].Field != "postgres" || !strings.Contains(d.Errors[0].Detail, "refused") {
		t.Errorf("errors %+v, want the postgres check only", d.Errors)
	}
	s.starting.Add(1)
	if w := do(s.Handler(), http.MethodGet, "/readyz", nil); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("starting: /readyz %d", w.Code)
	}
	// A 503 from /readyz answers the probe; it is no server error. The
	// failing dependency is a warning that names it.
	if strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Errorf("/readyz 503 logged as an error:\n%s", logs)
	}
	if !regexp.MustCompile(`"level":"WARN","msg":"not ready","failed":"postgres"`).MatchString(logs.String()) {
		t.Errorf("no warning naming the failed check:\n%s", logs)
	}
}

func TestReadinessProbeThatHangsFails(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	s, _ := newTestServer(t, Options{
		ReadyTimeout: 50 * time.Millisecond,
		Checks: []Check{
			// Ignores its context entirely.
			{Name: "stuck", Probe: func(context.Context) error { <-release; return nil }},
			{Name: "panics", Probe: func(context.Context) error { panic("probe bug") }},
		},
	})
	w := do(s.Handler(), http.MethodGet, "/readyz", nil)
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d", w.Code)
	}
	d := decodeProblem(t, w)
	if len(d.Errors) != 2 || d.Errors[0].Field != "panics" || d.Errors[1].Field != "stuck" ||
		!strings.Contains(d.Errors[1].Detail, "deadline") {
		t.Errorf("errors %+v", d.Errors)
	}
}

func TestPprofOnlyOnAdmin(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	if w := do(s.Handler(), http.MethodGet, "/debug/pprof/", nil); w.Code != http.StatusNotFound {
		t.Errorf("pprof on the public handler: %d", w.Code)
	}
	if w := do(adminMux(), http.MethodGet, "/debug/pprof/", nil); w.Code != http.StatusOK {
		t.Errorf("pprof on the admin mux: %d", w.Code)
	}
}

// recordingProcessor notes when the tracer provider is shut down, i.e. when
// telemetry is flushed.
type recordingProcessor struct {
	sdktrace.SpanProcessor
	onShutdown func()
}

func (r recordingProcessor) Shutdown(ctx context.Context) error {
	r.onShutdown()
	return r.SpanProcessor.Shutdown(ctx)
}

type steps struct {
	mu sync.Mutex
	s  []string
}

func (s *steps) add(v string) {
	s.mu.Lock()
	s.s = append(s.s, v)
	s.mu.Unlock()
}

func (s *steps) get() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.s...)
}

// TestShutdownOrder proves the fixed order with a request in flight:
// deregister, then the listener closes while the request is still running
// and it completes (drain), then the hooks in order, then the telemetry
// flush.
func TestShutdownOrder(t *testing.T) {
	var got steps
	p, err := telemetry.Setup(context.Background(), telemetry.Options{
		ServiceName:    "order-test",
		SpanProcessors: []sdktrace.SpanProcessor{recordingProcessor{sdktrace.NewSimpleSpanProcessor(nopExporter{}), func() { got.add("telemetry flush") }}},
	})
	if err != nil {
		t.Fatal(err)
	}
	deregistered := make(chan struct{})
	started := make(chan struct{})
	release := make(chan struct{})
	s, _ := newTestServer(t, Options{
		Name:            "order-test",
		ShutdownTimeout: 5 * time.Second,
		Telemetry:       p,
		Deregister: func(context.Context) error {
			got.add("deregister")
			close(deregistered)
			return nil
		},
	})
	s.Router().GET("/slow", func(c *gin.Context) {
		close(started)
		<-release
		got.add("in-flight request done")
		c.String(http.StatusOK, "done")
	})
	s.OnShutdown(func(context.Context) error { got.add("hook 1"); return nil })
	s.OnShutdown(func(context.Context) error { got.add("hook 2"); return errors.New("close db: already closed") })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- s.Serve(ctx, ln) }()

	type result struct {
		code int
		body string
		err  error
	}
	resc := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/slow")
		if err != nil {
			resc <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resc <- result{code: resp.StatusCode, body: string(b)}
	}()
	<-started
	cancel()
	<-deregistered
	// The drain has begun once new connections are refused; the request is
	// still blocked in its handler.
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break
		}
		c.Close()
		time.Sleep(5 * time.Millisecond)
	}
	if s := got.get(); len(s) != 1 {
		t.Fatalf("steps before the in-flight request finished: %v", s)
	}
	close(release)

	r := <-resc
	if r.err != nil || r.code != http.StatusOK || r.body != "done" {
		t.Errorf("in-flight request: %d %q %v, want 200 done", r.code, r.body, r.err)
	}
	err = <-runErr
	if err == nil || !strings.Contains(err.Error(), "already closed") {
		t.Errorf("Run error %v, want the failing hook's error", err)
	}
	want := []string{"deregister", "in-flight request done", "hook 1", "hook 2", "telemetry flush"}
	if g := got.get(); strings.Join(g, ",") != strings.Join(want, ",") {
		t.Errorf("shutdown order %v, want %v", g, want)
	}
}

func TestDrainDeadlineCutsOffAndStillFlushes(t *testing.T) {
	var got steps
	s, _ := newTestServer(t, Options{ShutdownTimeout: 100 * time.Millisecond})
	started := make(chan struct{})
	s.Router().GET("/forever", func(c *gin.Context) {
		close(started)
		<-c.Request.Context().Done() // ends only when the connection is cut
	})
	s.OnShutdown(func(context.Context) error { got.add("hook"); return nil })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- s.Serve(ctx, ln) }()
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/forever")
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-started
	cancel()
	err = <-runErr
	if err == nil || !strings.Contains(err.Error(), "cut off") {
		t.Errorf("Run error %v, want the drain cut-off", err)
	}
	if g := got.get(); len(g) != 1 {
		t.Errorf("hooks after a failed drain: %v, want them to run", g)
	}
}

func TestReadyzFailsWhileStopping(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	s.stopping.Store(true)
	if w := do(s.Handler(), http.MethodGet, "/readyz", nil); w.Code != http.StatusServiceUnavailable {
		t.Errorf("/readyz while stopping: %d", w.Code)
	}
}

type nopExporter struct{}

func (nopExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (nopExporter) Shutdown(context.Context) error                             { return nil }

func TestRequestIDHeaderSpelling(t *testing.T) {
	if got := http.CanonicalHeaderKey(RequestIDHeader); got != canonicalRequestID {
		t.Fatalf("canonical form of %s is %s, not %s", RequestIDHeader, got, canonicalRequestID)
	}
}

func TestAdminListenerServesPprof(t *testing.T) {
	// Reserve a free port for the admin listener, which Serve opens itself.
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminAddr := probe.Addr().String()
	probe.Close()

	s, _ := newTestServer(t, Options{AdminAddr: adminAddr})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	get := func(url string) int {
		for range 500 {
			resp, err := http.Get(url)
			if err == nil {
				resp.Body.Close()
				return resp.StatusCode
			}
			time.Sleep(20 * time.Millisecond) // Serve has not opened it yet
		}
		t.Fatalf("GET %s never connected", url)
		return 0
	}
	if code := get("http://" + adminAddr + "/debug/pprof/"); code != http.StatusOK {
		t.Errorf("admin pprof: %d", code)
	}
	if code := get("http://" + ln.Addr().String() + "/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("public pprof: %d, want 404", code)
	}
}

// Every binary takes its caller's remaining time (X-Request-Timeout-Ms, sent by the gateway) as the request's deadline.
func TestCallersDeadlineBecomesTheRequestDeadline(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	s.Router().GET("/wait", func(c *gin.Context) {
		if _, ok := c.Request.Context().Deadline(); !ok {
			c.String(http.StatusOK, "no deadline")
			return
		}
		<-c.Request.Context().Done() // the work a caller gave up on stops
	})
	h := s.Handler()

	if w := do(h, "GET", "/wait", nil); w.Code != http.StatusOK || w.Body.String() != "no deadline" {
		t.Fatalf("no header: %d %q, want 200 with no deadline", w.Code, w.Body)
	}
	start := time.Now()
	w := do(h, "GET", "/wait", nil, "X-Request-Timeout-Ms", "50")
	if w.Code != http.StatusGatewayTimeout {
		t.Fatalf("50 ms left: %d %s, want 504", w.Code, w.Body)
	}
	decodeProblem(t, w)
	if waited := time.Since(start); waited < 50*time.Millisecond {
		t.Fatalf("answered after %v, before the caller's deadline", waited)
	}
	if w := do(h, "GET", "/wait", nil, "X-Request-Timeout-Ms", "0"); w.Code != http.StatusGatewayTimeout {
		t.Fatalf("no time left: %d, want 504", w.Code)
	}
	w = do(h, "GET", "/wait", nil, "X-Request-Timeout-Ms", "soon")
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "X-Request-Timeout-Ms") {
		t.Fatalf("malformed header: %d %s, want 400 naming it", w.Code, w.Body)
	}
}
