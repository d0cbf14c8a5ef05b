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
	"sync"
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

// With -max-inflight at a bound, requests due while that many are in
// flight are dropped and counted, not queued (4 ops at 400/s each, answers
// taking 20 ms), every request sent is answered, and the target never holds
// more connections from the run than the bound.
func TestRequestsDueAtTheBoundAreDropped(t *testing.T) {
	const bound = 8
	url, conns := countedTarget(t, 20*time.Millisecond)
	tr := transport(bound)
	defer tr.CloseIdleConnections()
	cli := &api.Client{Base: url, HTTP: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
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

// The run's transport holds the connections to the target to the bound by
// itself (MaxConnsPerHost), whatever asks it: the sender's in-flight count
// is released when an answer is read, while the transport hands the
// connection back to its idle pool a moment later, so a request launched in
// between would dial another one; and a connection the gateway is past its
// cap for is answered 503 gateway-busy. Three times the bound at once wait
// for a connection here; the sender's test above cannot tell, as its own
// bound keeps the requests to the bound.
func TestTheTransportHoldsConnectionsToTheBound(t *testing.T) {
	const bound = 8
	url, conns := countedTarget(t, 50*time.Millisecond)
	tr := transport(bound)
	defer tr.CloseIdleConnections()
	cli := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	errs := make(chan error, 3*bound)
	for range 3 * bound {
		wg.Go(func() {
			r, err := cli.Get(url)
			if err != nil {
				errs <- err
				return
			}
			_, _ = io.Copy(io.Discard, r.Body)
			_ = r.Body.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if p := conns.peak.Load(); p > bound {
		t.Errorf("%d requests at once: the target held %d connections, want at most %d", 3*bound, p, bound)
	}
}

// countedTarget is a server answering after delay that counts the
// connections it holds.
func countedTarget(t *testing.T, delay time.Duration) (string, *concurrency) {
	t.Helper()
	conns := &concurrency{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		time.Sleep(delay)
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
	t.Cleanup(srv.Close)
	return srv.URL, conns
}
