package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/e2e/internal/api"
)

// The default -max-inflight, which bounds the connections to the target
// too, is under the gateway's GATEWAY_LOOP_MAX_CONNS default, read from the
// generated configuration table (the gateway's TestConfigDoc keeps it
// true). It was 20,000: past 1,024 requests in flight the gateway answered
// each new connection 503 gateway-busy, and a run reported the client's own
// overload as the server's errors.
func TestDefaultBoundIsUnderTheGatewaysConnectionCap(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("\\| `GATEWAY_LOOP_MAX_CONNS` \\| `(\\d+)` \\|").FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/configuration.md has no default for GATEWAY_LOOP_MAX_CONNS: follow it here")
	}
	capConns, _ := strconv.ParseInt(string(m[1]), 10, 64)
	c, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.maxInflight >= capConns {
		t.Errorf("-max-inflight defaults to %d, want under the gateway's GATEWAY_LOOP_MAX_CONNS %d", c.maxInflight, capConns)
	}
}

// With the run's transport and -max-inflight at a bound, the target never
// holds more connections from the run than the bound, however many requests
// are due (4 ops at 400/s each, answers taking 20 ms): those due at the
// bound are dropped and counted, and every request sent is answered.
func TestConnectionsToTheTargetStayWithinTheBound(t *testing.T) {
	const bound = 8
	var conns concurrency
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		time.Sleep(20 * time.Millisecond)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			conns.enter()
		case http.StateClosed, http.StateHijacked:
			conns.leave()
		}
	}
	srv.Start()
	defer srv.Close()
	tr := transport(bound)
	defer tr.CloseIdleConnections()
	cli := &api.Client{Base: srv.URL, HTTP: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
	fn := func(ctx context.Context) (api.Response, error) { return cli.Do(ctx, http.MethodGet, "/", "", nil, nil) }
	var ops []op
	for _, name := range []string{"a", "b", "c", "d"} {
		ops = append(ops, op{name, 400, fn})
	}
	s := sendFor(ops, time.Second, bound)
	s.wait()

	sum := s.rec.summary("", 400, 1, 0)
	if p := conns.peak.Load(); p > bound {
		t.Errorf("the target held %d connections at once, want at most %d", p, bound)
	}
	if sum.Dropped == 0 || sum.Done+sum.Dropped != sum.Sent || len(sum.Total.Errors) != 0 {
		t.Errorf("sent %d, done %d, dropped %d, errors %v: want the bound to drop some, every other answered", sum.Sent, sum.Done, sum.Dropped, sum.Total.Errors)
	}
}
