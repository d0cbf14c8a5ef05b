package retry

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
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
