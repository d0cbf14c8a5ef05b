package proxy

import (
	"net/netip"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// readAfter's monotonic part is exact: a reading falls between the
// time.Now readings taken around it, so the durations and deadlines
// computed from it are time.Now's. Its wall part is start's plus the time
// elapsed; the bound is loose (a second) only so that a step of the
// machine's wall clock during the test does not fail it.
func TestReadAfter(t *testing.T) {
	start := time.Now()
	for range 10_000 {
		before := time.Now()
		r := readAfter(start)
		after := time.Now()
		if r.Before(before) || r.After(after) {
			t.Fatalf("readAfter %v outside [%v, %v]", r, before, after)
		}
		if w := r.Round(0); w.Before(before.Round(0).Add(-time.Second)) || w.After(after.Round(0).Add(time.Second)) {
			t.Fatalf("readAfter's wall reading %v far from time.Now's %v", w, before.Round(0))
		}
	}
}

// The exchange's start is a full reading of both clocks: the token cache,
// the limit leases and the event loop's deadline (Unix nanoseconds) read
// its wall part against readings time.Now takes elsewhere. Without a clock
// step this cannot tell a reading derived from an older one (7579b0cd's
// shared anchor) from a fresh one; a step of the wall clock during the test
// fails it (the second of slack aside), as it would any wall-clock test.
func TestExchangeStartReadsBothClocks(t *testing.T) {
	var req fasthttp.Request
	var resp fasthttp.Response
	for range 1_000 {
		before := time.Now()
		x := NewExchange(&req, &resp, netip.Addr{}, nil)
		after := time.Now()
		start := x.start
		x.Release()
		if start.Before(before) || start.After(after) {
			t.Fatalf("exchange start %v outside [%v, %v]", start, before, after)
		}
		if w := start.Round(0); w.Before(before.Round(0).Add(-time.Second)) || w.After(after.Round(0).Add(time.Second)) {
			t.Fatalf("exchange start's wall reading %v far from time.Now's %v", w, before.Round(0))
		}
	}
}

// BenchmarkReadAfter: what one of the request path's later clock reads
// costs, against time.Now.
func BenchmarkReadAfter(b *testing.B) {
	var sink time.Time
	b.Run("time.Now", func(b *testing.B) {
		for b.Loop() {
			sink = time.Now()
		}
	})
	b.Run("readAfter", func(b *testing.B) {
		start := time.Now()
		for b.Loop() {
			sink = readAfter(start)
		}
	})
	_ = sink
}
