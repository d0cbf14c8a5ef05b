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
// elapsed.
func TestReadAfter(t *testing.T) {
	start := time.Now()
	for range 10_000 {
		before := time.Now()
		r := readAfter(start)
		after := time.Now()
		checkReading(t, "readAfter", r, before, after)
	}
}

// The exchange's start is a full reading of both clocks: the token cache,
// the limit leases and the event loop's deadline (Unix nanoseconds) read
// its wall part against readings time.Now takes elsewhere. Without a clock
// step this cannot tell a reading derived from an older one (7579b0cd's
// shared anchor) from a fresh one: it holds the contract, it does not
// reproduce that defect.
func TestExchangeStartReadsBothClocks(t *testing.T) {
	var req fasthttp.Request
	var resp fasthttp.Response
	for range 1_000 {
		before := time.Now()
		x := NewExchange(&req, &resp, netip.Addr{}, nil)
		after := time.Now()
		start := x.start
		x.Release()
		checkReading(t, "the exchange's start", start, before, after)
	}
}

// checkReading fails t unless r, a clock reading named name, lies between
// the time.Now readings before and after on the monotonic clock, and within
// a second of them on the wall clock (loose so that a step of the machine's
// clock during the test does not fail it).
func checkReading(t *testing.T, name string, r, before, after time.Time) {
	t.Helper()
	if r.Before(before) || r.After(after) {
		t.Fatalf("%s %v outside [%v, %v]", name, r, before, after)
	}
	if w := r.Round(0); w.Before(before.Round(0).Add(-time.Second)) || w.After(after.Round(0).Add(time.Second)) {
		t.Fatalf("%s's wall reading %v far from time.Now's %v", name, w, before.Round(0))
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
