package retry

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestTransportRetriesIdempotentOnly(t *testing.T) {
	var hits atomic.Int32
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
		if hits.Add(1) <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	client := &http.Client{Transport: Transport(nil, noSleep(Policy{Attempts: 3}), NewBudget(0.2, 3, 0))}

	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || hits.Load() != 3 {
		t.Fatalf("GET: status %d after %d hits, want 200 after 3", resp.StatusCode, hits.Load())
	}

	hits.Store(0)
	resp, err = client.Post(srv.URL, "application/json", strings.NewReader(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || hits.Load() != 1 {
		t.Fatalf("POST without Idempotency-Key: status %d after %d hits, want the 503 after 1", resp.StatusCode, hits.Load())
	}

	hits.Store(0)
	bodies = nil
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(`{"a":1}`))
	req.Header.Set("Idempotency-Key", "k-1")
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || hits.Load() != 3 {
		t.Fatalf("keyed POST: status %d after %d hits", resp.StatusCode, hits.Load())
	}
	for i, b := range bodies {
		if b != `{"a":1}` {
			t.Fatalf("attempt %d sent body %q: body not replayed", i+1, b)
		}
	}
}

func TestTransportReturnsLastResponseWhenAttemptsRunOut(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer srv.Close()
	client := &http.Client{Transport: Transport(nil, noSleep(Policy{Attempts: 2}), nil)}
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || hits.Load() != 2 {
		t.Fatalf("status %d after %d hits, want 502 after 2", resp.StatusCode, hits.Load())
	}
}

// TestTransportFreesTheConnectionOfARetried5xxForTheBackoff: a 5xx to be
// retried kept its connection busy, its body unread, through the whole
// backoff (up to Policy.Max), so during an upstream's trouble every retrying
// request held a connection doing nothing, and other requests to the host
// dialled new ones (or queued behind MaxConnsPerHost). An error answer is
// read at once and its connection goes back to the pool; the caller still
// gets the body of the last one.
func TestTransportFreesTheConnectionOfARetried5xxForTheBackoff(t *testing.T) {
	var hits, conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/flaky" && hits.Add(1) == 1 {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"status":503,"detail":"warming up"}`)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	base := &http.Transport{}
	defer base.CloseIdleConnections()

	p := Policy{Attempts: 2}
	p.sleep = func(ctx context.Context, _ time.Duration) error {
		// Another request to the same host during the backoff.
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/other", nil)
		resp, err := base.RoundTrip(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	}
	client := &http.Client{Transport: Transport(base, p, nil)}
	resp, err := client.Get(srv.URL + "/flaky")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || hits.Load() != 2 {
		t.Fatalf("status %d after %d attempts, want 200 after 2", resp.StatusCode, hits.Load())
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections, want 1: the retried 503 held its connection through the backoff", n)
	}

	// Out of attempts, the caller relays the last error answer, body and all.
	hits.Store(0)
	client = &http.Client{Transport: Transport(base, noSleep(Policy{Attempts: 1}), nil)}
	resp, err = client.Get(srv.URL + "/flaky")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable || string(body) != `{"status":503,"detail":"warming up"}` {
		t.Fatalf("status %d body %q (%v), want the upstream's 503 problem", resp.StatusCode, body, err)
	}
}

// A 503 with Retry-After asks the client not to come back before then (RFC
// 9110 §10.2.3). Transport retried it after its own backoff (up to 50 ms by
// default): a delay longer than the policy ever waits now ends the retries
// with that answer, and a shorter one is waited out at least.
func TestTransportHonoursRetryAfter(t *testing.T) {
	var hits atomic.Int32
	var after atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			w.Header().Set("Retry-After", after.Load().(string))
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	var waited []time.Duration
	p := Policy{Attempts: 3, Max: 2 * time.Second}
	p.sleep = func(_ context.Context, d time.Duration) error { waited = append(waited, d); return nil }
	client := &http.Client{Transport: Transport(nil, p, nil)}

	for _, v := range []string{"3600", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)} {
		hits.Store(0)
		after.Store(v)
		resp, err := client.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || hits.Load() != 1 || resp.Header.Get("Retry-After") != v {
			t.Fatalf("Retry-After %s: %d after %d hits, want the 503 after 1", v, resp.StatusCode, hits.Load())
		}
	}

	hits.Store(0)
	waited = nil
	after.Store("1")
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || hits.Load() != 2 || len(waited) != 1 || waited[0] < time.Second {
		t.Fatalf("Retry-After 1: %d after %d hits, waits %v; want 200 after 2, having waited at least 1s", resp.StatusCode, hits.Load(), waited)
	}
}
