package canary

import (
	"math/rand/v2"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestRequestedPrefersHeaderOverCookie(t *testing.T) {
	var h fasthttp.RequestHeader
	h.SetCookie(Cookie, "v3")
	if got := string(Requested(&h)); got != "v3" {
		t.Fatalf("cookie only: got %q", got)
	}
	h.Set(Header, " v2 ")
	if got := string(Requested(&h)); got != "v2" {
		t.Fatalf("header and cookie: got %q", got)
	}
}

func TestPickSplitsByWeight(t *testing.T) {
	w := Weights{"v1": 90, "v2": 10}
	all := func(string) bool { return true }
	rng := rand.New(rand.NewPCG(1, 2))
	counts := map[string]int{}
	const n = 100000
	for range n {
		counts[w.Pick(all, rng.Uint64()>>1)]++
	}
	share := float64(counts["v2"]) / n
	if share < 0.09 || share > 0.11 {
		t.Fatalf("v2 share %.3f, want 0.10±0.01 (counts %v)", share, counts)
	}
}

func TestPickIgnoresVersionsWithoutInstances(t *testing.T) {
	w := Weights{"v1": 90, "v2": 10}
	onlyV2 := func(v string) bool { return v == "v2" }
	for i := range uint64(100) {
		if got := w.Pick(onlyV2, i); got != "v2" {
			t.Fatalf("got %q with only v2 live", got)
		}
	}
	none := func(string) bool { return false }
	if got := w.Pick(none, 5); got != "" {
		t.Fatalf("got %q with nothing live", got)
	}
	if got := (Weights{"v1": 0}).Pick(func(string) bool { return true }, 5); got != "" {
		t.Fatalf("zero weights must mean no preference, got %q", got)
	}
}
