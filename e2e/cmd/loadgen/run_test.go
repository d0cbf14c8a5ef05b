package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeGateway answers the routes the mix uses, the catalogue after browseTook.
func fakeGateway(browseTook time.Duration) *httptest.Server {
	var orders atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/users", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusCreated) })
	mux.HandleFunc("POST /api/v1/sessions", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"user_id":"u","access_token":"token"}`)
	})
	mux.HandleFunc("GET /api/v1/products", func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(browseTook)
		fmt.Fprint(w, `{"products":[{"sku":"TEA-1","price_cents":450,"currency":"EUR"}]}`)
	})
	mux.HandleFunc("POST /api/v1/orders", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":"o%d","status":"PENDING"}`, orders.Add(1))
	})
	mux.HandleFunc("GET /api/v1/orders", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, `{"orders":[]}`) })
	mux.HandleFunc("GET /api/v1/orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"id":%q,"status":"PAID"}`, r.PathValue("id"))
	})
	return httptest.NewServer(mux)
}

// A whole run with -drain 0 against a catalogue that takes 600 ms: the
// browses still in flight when sending ends (the last 600 ms of them) are
// awaited and in the summary; they used to be left out, the slowest first.
// The mix is sent at its rates: per second 20 of browse, order and poll, and
// 20 × 0.5 log ins.
func TestRunAwaitsRequestsInFlightAndSendsTheMix(t *testing.T) {
	gw := fakeGateway(600 * time.Millisecond)
	defer gw.Close()
	var out, status bytes.Buffer
	c, err := parseFlags([]string{"-target", gw.URL, "-rate", "20", "-duration", "1s", "-drain", "0s", "-login-ratio", "0.5",
		"-users", "2", "-json"}, &status)
	if err != nil {
		t.Fatal(err)
	}
	c.out, c.status = &out, &status
	if err := run(context.Background(), c); err != nil {
		t.Fatalf("run: %v (status %q)", err, status.String())
	}
	var sum Summary
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
		t.Fatalf("summary %q: %v", out.String(), err)
	}
	if sum.Sent == 0 || sum.Done != sum.Sent || sum.Dropped != 0 || sum.Total.ErrCount != 0 {
		t.Errorf("sent %d, done %d, dropped %d, errors %v: want every request answered and in the summary", sum.Sent, sum.Done, sum.Dropped, sum.Total.Errors)
	}
	for op, want := range map[string]int{"browse": 20, "order": 20, "poll": 20, "login": 10} {
		if n := sum.Ops[op].Count; n < want-1 || n > want+1 {
			t.Errorf("%s: %d answered, want %d±1", op, n, want)
		}
	}
	if p := sum.Ops["browse"].P50Ms; p < 600 {
		t.Errorf("browse p50 %.1f ms, below the catalogue's 600 ms", p)
	}
	if !strings.Contains(status.String(), "in flight") {
		t.Errorf("no live line on the status output: %q", status.String())
	}
}
