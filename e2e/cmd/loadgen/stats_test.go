package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"
)

// Nearest-rank percentiles over 1..1000 ms: p50 is the 500th value, p99.9 the 999th.
func TestStatPercentiles(t *testing.T) {
	var ds []time.Duration
	for i := 1000; i >= 1; i-- { // unsorted on purpose
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	s := stat(ds, map[string]int{"http 503": 3, "timeout": 2}, 10)
	want := Stat{Count: 1000, PerSec: 100, P50Ms: 500, P90Ms: 900, P99Ms: 990, P999Ms: 999, MaxMs: 1000, ErrCount: 5}
	if s.Count != want.Count || s.PerSec != want.PerSec || s.P50Ms != want.P50Ms || s.P90Ms != want.P90Ms ||
		s.P99Ms != want.P99Ms || s.P999Ms != want.P999Ms || s.MaxMs != want.MaxMs || s.ErrCount != want.ErrCount {
		t.Fatalf("stat = %+v, want %+v", s, want)
	}
	if ds[0] != 1000*time.Millisecond {
		t.Fatal("stat sorted the caller's slice")
	}
}

func TestClassify(t *testing.T) {
	cases := []struct {
		status int
		err    error
		want   string
	}{
		{201, nil, ""},
		{429, nil, "http 429"},
		{503, nil, "http 503"},
		{0, fmt.Errorf("get: %w", context.DeadlineExceeded), "timeout"},
		{0, &net.OpError{Op: "dial", Err: errors.New("connection refused")}, "connect/io: dial"},
		{0, errors.New("strange"), "other"},
	}
	for _, c := range cases {
		if got := classify(c.status, c.err); got != c.want {
			t.Errorf("classify(%d, %v) = %q, want %q", c.status, c.err, got, c.want)
		}
	}
}
