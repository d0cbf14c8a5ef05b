package canary

import (
	"bufio"
	"math/rand/v2"
	"strings"
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

// Of several release-tag cookies the first counts, over all Cookie lines in
// order, as the services' net/http Request.Cookie reads them: a browser sends
// the cookie of the longest path first (RFC 6265 §5.4), so the first is the
// one set for the most specific path, and an empty one there clears the tag.
func TestRequestedTakesTheFirstCookie(t *testing.T) {
	for _, c := range []struct{ head, want string }{
		{"Cookie: release-tag=v1\r\nCookie: release-tag=v2\r\n", "v1"},
		{"Cookie: a=b; release-tag=v1; release-tag=v2\r\n", "v1"},
		{"cookie: a=b\r\nCookie: release-tag=v2; release-tag=v1\r\n", "v2"},
		{"Cookie: release-tag=; release-tag=v2\r\n", ""},
		{"Cookie: Release-Tag=v2\r\n", ""}, // cookie names are case-sensitive
		{"X-Release-Tag: v3\r\nCookie: release-tag=v2\r\n", "v3"},
		{"X-Release-Tag: \r\nCookie: release-tag=v2\r\n", "v2"},
	} {
		var req fasthttp.Request
		raw := "GET / HTTP/1.1\r\nHost: x\r\n" + c.head + "\r\n"
		if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			t.Fatal(err)
		}
		if got := string(Requested(&req.Header)); got != c.want {
			t.Errorf("%q: got %q, want %q", c.head, got, c.want)
		}
	}
}
