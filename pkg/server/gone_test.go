package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/shanhai-dev/shanhai/pkg/deadline"
	"github.com/shanhai-dev/shanhai/pkg/problem"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
)

// TestRequestsTheClientEndedAreNoServerErrors sends requests over a real connection and goes away while the handler
// waits on its context, as a client that times out or is closed does. The handler ends as the services' do: through
// deadline.Abort, or with a 500 for an error that wraps the context's (a handler that does not know Abort). Neither is
// the server failing: they were logged at ERROR, and Abort's 503 counted as a server error in
// http.server.request.duration, where Abort's answer is now 499 (no error_type: not a server error).
func TestRequestsTheClientEndedAreNoServerErrors(t *testing.T) {
	p, err := telemetry.Setup(context.Background(), telemetry.Options{ServiceName: "server-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	s, logs := newTestServer(t, Options{Telemetry: p})
	started := make(chan struct{}, 1)
	s.Router().GET("/abort", func(c *gin.Context) {
		started <- struct{}{}
		<-c.Request.Context().Done()
		deadline.Abort(c, fmt.Errorf("load order: %w", c.Request.Context().Err()))
	})
	s.Router().GET("/fail", func(c *gin.Context) {
		started <- struct{}{}
		<-c.Request.Context().Done()
		problem.Abort(c, http.StatusInternalServerError, "load order: "+c.Request.Context().Err().Error())
	})
	served := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.Handler().ServeHTTP(w, r)
		served <- struct{}{} // the access log and the metric are written by now
	}))
	defer srv.Close()

	for _, path := range []string{"/abort", "/fail"} {
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			<-started
			cancel()
		}()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
		if resp, err := srv.Client().Do(req); !errors.Is(err, context.Canceled) {
			if err == nil {
				resp.Body.Close()
			}
			t.Fatalf("GET %s: %v, want the client's cancellation", path, err)
		}
		<-served
	}

	// The deadline the caller sent passing is the caller's doing too (it answers its own client 504 already);
	// the route's own budget passing is this server's, and stays an error.
	s.Router().GET("/late", func(c *gin.Context) {
		<-c.Request.Context().Done()
		deadline.Abort(c, c.Request.Context().Err())
	})
	if w := do(s.Handler(), http.MethodGet, "/late", nil, deadline.Header, "5"); w.Code != http.StatusGatewayTimeout {
		t.Fatalf("GET /late past the caller's deadline: %d, want 504", w.Code)
	}

	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if strings.Contains(line, `"level":"ERROR"`) {
			t.Errorf("a request the client ended logged as an error: %s", line)
		}
	}
	for _, want := range []string{
		`"msg":"request","method":"GET","route":"/abort","path":"/abort","status":499,"ended_by":"client went away"`,
		`"msg":"request","method":"GET","route":"/fail","path":"/fail","status":500,"ended_by":"client went away"`,
		`"level":"INFO","msg":"request","method":"GET","route":"/late","path":"/late","status":504,"ended_by":"caller's deadline passed"`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no access log line with %s in:\n%s", want, logs)
		}
	}
	metrics := do(s.Handler(), http.MethodGet, "/metrics", nil).Body.String()
	want := `http_server_request_duration_seconds_count{http_request_method="GET",http_response_status_code="499",http_route="/abort"} 1`
	if !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %s:\n%.3000s", want, metrics)
	}
}

// TestServerErrorsOfRequestsWithADeadlineAreErrors: a request that carries X-Request-Timeout-Ms (every one the
// gateway forwards) and fails with a 5xx while its client waits is the server's failure and is logged at ERROR.
// deadline.Enforce (deadline.Middleware before 9be559b) cancels the deadline's context as it returns, before the
// access log looks at it, so the log took every such 5xx for a client that went away and wrote it at Info.
func TestServerErrorsOfRequestsWithADeadlineAreErrors(t *testing.T) {
	for _, hdr := range [][]string{nil, {deadline.Header, "5000"}} {
		s, logs := newTestServer(t, Options{})
		s.Router().GET("/boom", func(c *gin.Context) {
			problem.Abort(c, http.StatusInternalServerError, "database refused the statement")
		})
		if w := do(s.Handler(), http.MethodGet, "/boom", nil, hdr...); w.Code != http.StatusInternalServerError {
			t.Fatalf("GET /boom %v: %d, want 500", hdr, w.Code)
		}
		want := `"level":"ERROR","msg":"request","method":"GET","route":"/boom","path":"/boom","status":500`
		if got := logs.String(); !strings.Contains(got, want) || strings.Contains(got, "ended_by") {
			t.Errorf("GET /boom %v with its client waiting: want an ERROR line with no ended_by, got:\n%s", hdr, got)
		}
	}
}

// TestRequestsTheDrainCutOffAreNotTheClients: a request still running when the drain deadline passes is cut off by the
// server closing its connection, which cancels its context as a client leaving does. The access log said "client went
// away" at Info for it; it is the server's doing and is logged as such, at ERROR.
func TestRequestsTheDrainCutOffAreNotTheClients(t *testing.T) {
	s, logs := newTestServer(t, Options{ShutdownTimeout: 100 * time.Millisecond})
	started, logged := make(chan struct{}), make(chan struct{})
	s.Router().GET("/forever", func(c *gin.Context) {
		defer close(logged) // the access log runs once this returns: wait for it below
		close(started)
		<-c.Request.Context().Done() // ends only when the connection is cut
		deadline.Abort(c, c.Request.Context().Err())
	})
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
	if err := <-runErr; err == nil || !strings.Contains(err.Error(), "cut off") {
		t.Fatalf("Run error %v, want the drain cut-off", err)
	}
	<-logged
	var line string
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, `"msg":"request"`) && strings.Contains(l, `"route":"/forever"`) {
				line = l
			}
		}
		if line != "" {
			break
		}
	}
	if !strings.Contains(line, `"level":"ERROR"`) || !strings.Contains(line, `"ended_by":"drain deadline"`) {
		t.Fatalf("access log of a request the drain cut off: %q, want ERROR with ended_by drain deadline; logs:\n%s", line, logs)
	}
}

// TestAHandlerThatLeavesItsGoneClientUnansweredIs499: a handler that returns without writing once its client went
// away (it saw its context end and gave up) was recorded as gin's default, 200, in the access log and in
// http.server.request.duration: a success no client received. It is 499, as deadline.Abort's answer to the same event.
func TestAHandlerThatLeavesItsGoneClientUnansweredIs499(t *testing.T) {
	p, err := telemetry.Setup(context.Background(), telemetry.Options{ServiceName: "server-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	s, logs := newTestServer(t, Options{Telemetry: p})
	started := make(chan struct{}, 1)
	s.Router().GET("/silent", func(c *gin.Context) {
		started <- struct{}{}
		<-c.Request.Context().Done() // and return: nothing to answer, no one to answer it to
	})
	served := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.Handler().ServeHTTP(w, r)
		served <- struct{}{} // the access log and the metric are written by now
	}))
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-started
		cancel()
	}()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/silent", nil)
	if resp, err := srv.Client().Do(req); !errors.Is(err, context.Canceled) {
		if err == nil {
			resp.Body.Close()
		}
		t.Fatalf("GET /silent: %v, want the client's cancellation", err)
	}
	<-served

	want := `"level":"INFO","msg":"request","method":"GET","route":"/silent","path":"/silent","status":499,"ended_by":"client went away"`
	if !strings.Contains(logs.String(), want) {
		t.Errorf("no access log line with %s in:\n%s", want, logs)
	}
	metrics := do(s.Handler(), http.MethodGet, "/metrics", nil).Body.String()
	wantMetric := `http_server_request_duration_seconds_count{http_request_method="GET",http_response_status_code="499",http_route="/silent"} 1`
	if !strings.Contains(metrics, wantMetric) {
		t.Errorf("/metrics lacks %s:\n%.3000s", wantMetric, metrics)
	}
}

// TestRequestsTheDrainCutOffAreServerErrors: requests still running when the drain deadline passes are cut off by
// this server, which closes their connections. Whether the handler answered as for a client gone (deadline.Abort's
// 499) or returned without writing (gin's 200), the request was counted as no server error in
// http.server.request.duration, so a rollout that cut requests off looked clean on the RED dashboards. Both are 503
// now (error_type set), as the access log's ERROR line with ended_by "drain deadline" already said.
func TestRequestsTheDrainCutOffAreServerErrors(t *testing.T) {
	p, err := telemetry.Setup(context.Background(), telemetry.Options{ServiceName: "server-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	s, logs := newTestServer(t, Options{Telemetry: p, ShutdownTimeout: 100 * time.Millisecond})
	started := make(chan struct{}, 2)
	s.Router().GET("/abort", func(c *gin.Context) {
		started <- struct{}{}
		<-c.Request.Context().Done() // ends only when the connection is cut
		deadline.Abort(c, c.Request.Context().Err())
	})
	s.Router().GET("/silent", func(c *gin.Context) {
		started <- struct{}{}
		<-c.Request.Context().Done()
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- s.Serve(ctx, ln) }()
	for _, path := range []string{"/abort", "/silent"} {
		go func() {
			resp, err := http.Get("http://" + ln.Addr().String() + path)
			if err == nil {
				resp.Body.Close()
			}
		}()
	}
	<-started
	<-started
	cancel()
	if err := <-runErr; err == nil || !strings.Contains(err.Error(), "cut off") {
		t.Fatalf("Run error %v, want the drain cut-off", err)
	}

	// The handlers' goroutines record the metric after the cut-off; nothing signals it but the metric itself.
	wants := []string{
		`http_server_request_duration_seconds_count{error_type="503",http_request_method="GET",http_response_status_code="503",http_route="/abort"} 1`,
		`http_server_request_duration_seconds_count{error_type="503",http_request_method="GET",http_response_status_code="503",http_route="/silent"} 1`,
	}
	var metrics string
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		metrics = do(s.Handler(), http.MethodGet, "/metrics", nil).Body.String()
		if strings.Contains(metrics, wants[0]) && strings.Contains(metrics, wants[1]) {
			break
		}
	}
	for _, want := range wants {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s:\n%.4000s", want, metrics)
		}
	}
	for _, route := range []string{"/abort", "/silent"} {
		want := `"level":"ERROR","msg":"request","method":"GET","route":"` + route + `","path":"` + route + `","status":503,"ended_by":"drain deadline"`
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no access log line with %s in:\n%s", want, logs)
		}
	}
}

// TestRequestsThatArriveWithTheirDeadlineSpentAreTheCallers: X-Request-Timeout-Ms of 0 (or less) says the caller's
// deadline passed before the request arrived, and deadline.Enforce answers it 504 without running the handlers. That
// is the caller's deadline as much as one that passes while the request is handled, which is logged at Info with
// ended_by; this one was logged at ERROR with no ended_by, as if the server had failed.
func TestRequestsThatArriveWithTheirDeadlineSpentAreTheCallers(t *testing.T) {
	for _, v := range []string{"0", "-20"} {
		s, logs := newTestServer(t, Options{})
		ran := false
		s.Router().GET("/work", func(c *gin.Context) { ran = true })
		if w := do(s.Handler(), http.MethodGet, "/work", nil, deadline.Header, v); w.Code != http.StatusGatewayTimeout || ran {
			t.Fatalf("GET /work with %s %s: %d (handler ran: %v), want 504 without the handler", deadline.Header, v, w.Code, ran)
		}
		want := `"level":"INFO","msg":"request","method":"GET","route":"/work","path":"/work","status":504,"ended_by":"caller's deadline passed"`
		if got := logs.String(); !strings.Contains(got, want) || strings.Contains(got, `"level":"ERROR"`) {
			t.Errorf("GET /work with %s %s: want an INFO line %s, got:\n%s", deadline.Header, v, want, got)
		}
	}
}
