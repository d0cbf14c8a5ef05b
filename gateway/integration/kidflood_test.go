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

// TestUnknownKidFloodFetchesTheKeySetBoundedly: tokens signed by keys the
// JWKS does not hold, each of another kid, are 401 invalid-token, and the
// flood does not turn into a flood on the user service's JWKS: pkg/auth
// refreshes on an unknown kid, at most once per MinRefreshInterval (5 s).
func TestUnknownKidFloodFetchesTheKeySetBoundedly(t *testing.T) {
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
	if r := w.do(g, "GET", "/api/v1/orders", map[string]string{"Authorization": "Bearer " + w.token("known")}, nil); r.Status != 200 {
		t.Fatalf("a token of the held key: %d %s", r.Status, r.Body)
	}

	// 100 kids the key set does not hold, sent round for 6 s: past one
	// MinRefreshInterval after the fetch above, so the refresh an unknown
	// kid asks for comes due once.
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
	start, before, sent := time.Now(), fetches.Load(), 0
	for ; time.Since(start) < 6*time.Second; sent++ {
		r := w.do(g, "GET", "/api/v1/orders", map[string]string{"Authorization": "Bearer " + toks[sent%len(toks)]}, nil)
		if r.Status != http.StatusUnauthorized || !strings.Contains(string(r.Body), "invalid-token") {
			t.Fatalf("unknown kid: %d %s", r.Status, r.Body)
		}
		// Paced, not synchronised: the time the flood spans matters, not
		// its rate, and a tight loop took a core of the shared machine.
		time.Sleep(5 * time.Millisecond)
	}
	// At least the one refresh that came due; at most one per started 5 s
	// and one more for the interval running when the flood began.
	took, n := time.Since(start), fetches.Load()-before
	t.Logf("%d requests of unknown kids in %v: %d JWKS fetches", sent, took, n)
	if most := int64(took/(5*time.Second)) + 2; n < 1 || n > most {
		t.Fatalf("%d requests of unknown kids in %v fetched the JWKS %d times, want 1 to %d", sent, took, n, most)
	}
}
