package integration

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/auth"
)

// TestUnknownKidFloodFetchesTheKeySetOnce: tokens signed by keys the JWKS
// does not hold, each of another kid, are 401 invalid-token, and the flood
// does not turn into a flood on the user service's JWKS: pkg/auth
// refreshes on an unknown kid at most once per MinRefreshInterval (5 s)
// after a fetch ends. The first fetch is the known token's, after t0; so
// the flood's first refresh comes due 5 s after that, and a second no
// sooner than 10 s after t0: a flood that has ended by then fetches once
// exactly. It accepted 1 to 3 before, while the README said once.
func TestUnknownKidFloodFetchesTheKeySetOnce(t *testing.T) {
	w := newWorld(t)
	var fetches atomic.Int64
	jwks := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		rw.Header().Set("Content-Type", "application/json")
		_, _ = rw.Write(w.signer.JWKS())
	}))
	t.Cleanup(jwks.Close)
	w.jwks = jwks
	w.startUpstream("a", "v1")
	g := w.startGateway()

	// 100 kids the key set does not hold.
	var toks []string
	for range 100 {
		key, err := auth.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		tok, err := auth.NewSigner(key).Sign("flood", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
	}
	t0 := time.Now()
	if r := w.do(g, "GET", "/api/v1/orders", map[string]string{"Authorization": "Bearer " + w.token("known")}, nil); r.Status != 200 {
		t.Fatalf("a token of the held key: %d %s", r.Status, r.Body)
	}
	// The known token's fetch ended before its answer came (t1): the
	// refresh an unknown kid asks for is due by t1+5s. The flood goes on
	// until a request has been sent half a second past that.
	t1, before, sent := time.Now(), fetches.Load(), 0
	for ; ; sent++ {
		at := time.Now()
		r := w.do(g, "GET", "/api/v1/orders", map[string]string{"Authorization": "Bearer " + toks[sent%len(toks)]}, nil)
		if r.Status != http.StatusUnauthorized || !strings.Contains(string(r.Body), "invalid-token") {
			t.Fatalf("unknown kid: %d %s", r.Status, r.Body)
		}
		if at.Sub(t1) >= 5500*time.Millisecond {
			break
		}
		// Paced, not synchronised: the time the flood spans matters, not
		// its rate, and a tight loop took a core of the shared machine.
		time.Sleep(5 * time.Millisecond)
	}
	took, n := time.Since(t0), fetches.Load()-before
	t.Logf("%d requests of unknown kids, %v after t0: %d JWKS fetches", sent+1, took, n)
	if took < 10*time.Second {
		if n != 1 {
			t.Fatalf("%d requests of unknown kids ending %v after t0 fetched the JWKS %d times, want once", sent+1, took, n)
		}
		return
	}
	// A machine so loaded that the flood outlasted 10 s: a second refresh
	// may have come due, one per 5 s after the first.
	if most := int64(took / (5 * time.Second)); n < 1 || n > most {
		t.Fatalf("%d requests of unknown kids ending %v after t0 fetched the JWKS %d times, want 1 to %d", sent+1, took, n, most)
	}
}
