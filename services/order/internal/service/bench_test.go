package service_test

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkCreateOrder measures POST /api/v1/orders end to end through the
// real HTTP stack (auth, decoding, catalogue from Redis, one PostgreSQL
// transaction with order, lines, idempotency record and outbox row) while
// the outbox relay publishes to Kafka in the background. It reports
// orders/s and the p50/p99 latency of the requests it made.
//
//	go test -run '^$' -bench CreateOrder -benchtime 3000x ./internal/service/
func BenchmarkCreateOrder(b *testing.B) {
	h := newHarness(b)
	const users = 32
	tokens := make([]string, users)
	for i := range tokens {
		tokens[i] = "Bearer " + h.token(fmt.Sprint("bench-user-", i))
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	body := `{"items":[{"sku":"TEA-GREEN-100G","quantity":2},{"sku":"CUP-PORCELAIN","quantity":4}]}`
	var (
		n     atomic.Int64
		mu    sync.Mutex
		lats  []time.Duration
		fails atomic.Int64
	)
	b.SetParallelism(4) // 4 × GOMAXPROCS concurrent clients
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 1024)
		for pb.Next() {
			i := n.Add(1)
			req, _ := http.NewRequest("POST", h.srv.URL+"/api/v1/orders", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", tokens[i%users])
			req.Header.Set("Idempotency-Key", fmt.Sprint("bench-", i))
			t0 := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				fails.Add(1)
				continue
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			local = append(local, time.Since(t0))
			if resp.StatusCode != http.StatusCreated {
				fails.Add(1)
			}
		}
		mu.Lock()
		lats = append(lats, local...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if f := fails.Load(); f > 0 {
		b.Fatalf("%d of %d requests failed", f, n.Load())
	}
	slices.Sort(lats)
	q := func(p float64) float64 { return float64(lats[int(p*float64(len(lats)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(len(lats))/elapsed.Seconds(), "orders/s")
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}
