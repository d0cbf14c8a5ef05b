// Package hist decodes the log-linear latency histograms the probes keep in BPF maps (struct lat_hist in
// include/goabi.h): 8 buckets per power of two from 2^10 ns, so any quantile read from it is within one bucket, at
// most 12.5% of the true value, of the exact one.
package hist

import (
	"math"
	"time"
)

// Layout constants; they must match LAT_SUB_SHIFT, LAT_MIN_SHIFT and LAT_OCTAVES in include/goabi.h.
const (
	SubShift = 3
	Sub      = 1 << SubShift
	MinShift = 10
	Octaves  = 26
	Buckets  = Octaves * Sub
)

// Hist is one latency histogram, summed over CPUs.
type Hist struct {
	Count   uint64
	SumNs   uint64
	Buckets [Buckets]uint64
}

// Add merges o into h (per-CPU values are summed this way).
func (h *Hist) Add(o *Hist) {
	h.Count += o.Count
	h.SumNs += o.SumNs
	for i := range h.Buckets {
		h.Buckets[i] += o.Buckets[i]
	}
}

// Sub returns h minus an earlier reading of the same counters.
func (h Hist) Sub(o Hist) Hist {
	h.Count -= o.Count
	h.SumNs -= o.SumNs
	for i := range h.Buckets {
		h.Buckets[i] -= o.Buckets[i]
	}
	return h
}

// Bounds gives bucket i's range [lo, hi) in nanoseconds. Bucket 0 also holds everything below 2^MinShift ns and
// the last bucket everything above its bound.
func Bounds(i int) (lo, hi float64) {
	oct, sub := i/Sub, i%Sub
	base := math.Ldexp(1, MinShift+oct)
	return base * (1 + float64(sub)/Sub), base * (1 + float64(sub+1)/Sub)
}

// Quantile estimates the q-quantile (0 < q <= 1) by linear interpolation inside the bucket that holds it.
//
// A quantile in the last bucket returns that bucket's lower bound, Overflow (64.4 s), for any q: the bucket also takes
// everything beyond 2^(MinShift+Octaves) ns (lat_bucket clamps), so a position inside it says nothing (100 s and
// 1 h requests land there alike), and interpolating gave a value between 64.4 s and 68.7 s, below what was measured
// (found by review). Overflow is the largest finite bound Cumulative exposes, and it is what Prometheus's
// histogram_quantile returns when a quantile falls in +Inf, so both read the same: "at least 64.4 s".
func (h *Hist) Quantile(q float64) time.Duration {
	if h.Count == 0 {
		return 0
	}
	rank := q * float64(h.Count)
	var seen float64
	for i, c := range h.Buckets[:Buckets-1] {
		if c == 0 {
			continue
		}
		if seen+float64(c) >= rank {
			lo, hi := Bounds(i)
			return time.Duration(lo + (hi-lo)*(rank-seen)/float64(c))
		}
		seen += float64(c)
	}
	return Overflow
}

// Overflow is where the last bucket begins: a quantile there is only known to be at least this (see Quantile).
var Overflow = func() time.Duration { lo, _ := Bounds(Buckets - 1); return time.Duration(lo) }()

// Mean is the exact mean duration (the sum is kept exactly in the kernel).
func (h *Hist) Mean() time.Duration {
	if h.Count == 0 {
		return 0
	}
	return time.Duration(h.SumNs / h.Count)
}

// Cumulative folds the buckets onto the power-of-two bounds used for Prometheus exposition: le (seconds) -> count.
// Exposing 208 fine buckets per series would make every scrape heavy; the octave bounds are exact sums of them.
// The last bucket also holds everything beyond 2^(MinShift+Octaves) ns (lat_bucket clamps), so no finite bound may
// include it: under its own bound (68.7 s) a 100 s request would be exposed as <= 68.7 s. The last octave's bound is
// where that bucket begins (64.4 s), and its observations are only in +Inf, the count.
func (h *Hist) Cumulative() map[float64]uint64 {
	out := make(map[float64]uint64, Octaves)
	var cum uint64
	for i, c := range h.Buckets[:Buckets-1] {
		cum += c
		if i%Sub == Sub-1 {
			_, hi := Bounds(i)
			out[hi/1e9] = cum
		}
	}
	out[Overflow.Seconds()] = cum
	return out
}
