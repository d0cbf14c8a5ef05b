package hist

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// bucket mirrors lat_bucket in include/goabi.h so the Go decoding is tested against the kernel-side encoding.
func bucket(ns uint64) int {
	if ns < 1<<MinShift {
		return 0
	}
	msb := 63
	for ns>>uint(msb) == 0 {
		msb--
	}
	if msb >= MinShift+Octaves {
		return Buckets - 1
	}
	sub := int(ns>>uint(msb-SubShift)) & (Sub - 1)
	return (msb-MinShift)*Sub + sub
}

func TestBoundsContainEncodedValues(t *testing.T) {
	for _, ns := range []uint64{1 << MinShift, 1500, 2047, 2048, 999_999, 1_000_000, 123_456_789, 1 << 35} {
		b := bucket(ns)
		lo, hi := Bounds(b)
		if float64(ns) < lo || float64(ns) >= hi {
			t.Errorf("%d ns -> bucket %d [%v, %v): outside", ns, b, lo, hi)
		}
	}
}

func TestQuantileWithinOneBucket(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h Hist
	var xs []float64
	for range 5000 {
		ns := uint64(50_000 + r.ExpFloat64()*2e6)
		xs = append(xs, float64(ns))
		h.Count++
		h.SumNs += ns
		h.Buckets[bucket(ns)]++
	}
	slices.Sort(xs)
	for _, q := range []float64{0.5, 0.9, 0.99} {
		exact := xs[int(q*float64(len(xs)))-1]
		got := float64(h.Quantile(q))
		if rel := (got - exact) / exact; rel > 1.0/Sub || rel < -1.0/Sub {
			t.Errorf("q%.2f: got %v, exact %v (%.1f%% off)", q, time.Duration(got), time.Duration(exact), rel*100)
		}
	}
	if c := h.Cumulative(); c[mustLast(c)] != h.Count {
		t.Errorf("cumulative top bucket %d != count %d", c[mustLast(c)], h.Count)
	}
}

func mustLast(m map[float64]uint64) float64 {
	var top float64
	for k := range m {
		top = max(top, k)
	}
	return top
}

// The last bucket holds everything beyond 2^36 ns as well as its own range, so a 100 s request (a long poll, a
// stream) counted in it was exposed under le=68.7 s (found by review). It must be in +Inf only; a 60 s one stays
// under the last finite bound.
func TestOverflowOnlyInInf(t *testing.T) {
	var h Hist
	for _, ns := range []uint64{60e9, 100e9} {
		h.Count++
		h.SumNs += ns
		h.Buckets[bucket(ns)]++
	}
	c := h.Cumulative()
	for le, n := range c {
		want := uint64(0)
		if le >= 60 {
			want = 1
		}
		if n != want {
			t.Errorf("le=%v: count %d, want %d (observations of 60 s and 100 s)", le, n, want)
		}
	}
	if top := mustLast(c); top < 60 || top >= 100 {
		t.Errorf("last finite bound %v s, want between the two observations", top)
	}
}

// The last bucket takes every request beyond 2^36 ns as well as its own range, so a quantile landing there was
// interpolated inside [64.4 s, 68.7 s): 100 s and 200 s requests gave a median of 66.6 s, less than either (found by
// review). Any quantile there is the largest finite bound, Overflow, as Prometheus's histogram_quantile reads +Inf.
func TestQuantileInOverflowIsTheLargestFiniteBound(t *testing.T) {
	var h Hist
	for _, ns := range []uint64{1e6, 100e9, 200e9, 3600e9} {
		h.Count++
		h.SumNs += ns
		h.Buckets[bucket(ns)]++
	}
	if lo, _ := Bounds(Buckets - 1); Overflow != time.Duration(lo) || Overflow.Seconds() != mustLast(h.Cumulative()) {
		t.Fatalf("Overflow %v: want the last bucket's lower bound %v, the largest finite bound exposed", Overflow, time.Duration(lo))
	}
	for _, q := range []float64{0.3, 0.5, 0.75, 0.99, 1} {
		if got := h.Quantile(q); got != Overflow {
			t.Errorf("q%.2f of 1 ms, 100 s, 200 s, 1 h: %v, want %v (at least the largest finite bound)", q, got, Overflow)
		}
	}
	if got := h.Quantile(0.25); got <= 0 || got > 2*time.Millisecond {
		t.Errorf("q0.25 of 1 ms, 100 s, 200 s, 1 h: %v, want within the 1 ms bucket", got)
	}
}
