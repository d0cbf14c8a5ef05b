package auth

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A key set with no key a token could be verified with (empty, or only keys
// of another type) is no key set the user service publishes: its signer
// always has a key. Taken as one, it made Ready (the order and payment
// services' /readyz check; the gateway's /readyz does not ask it) report a
// service ready that then answered every request 401, and a refresh that
// fetched it (a proxy answering {} while the user service restarts) dropped
// the good keys, so every user was logged out. It fails like an unreachable
// endpoint: Ready says why, and a set already held stays.
func TestKeySetWithoutUsableKeyIsAFailedFetch(t *testing.T) {
	k := mustKey(t)
	s := NewSigner(k)
	for _, doc := range []string{
		`{"keys":[]}`,
		`{}`,
		`null`,
		`{"keys":[{"kty":"EC","crv":"P-256","kid":"a","x":"AAAA","y":"AAAA"}]}`,
	} {
		srv, _ := jwksServer(t, func() []byte { return []byte(doc) })
		err := NewVerifier(srv.URL, VerifierOptions{}).Ready(context.Background())
		if err == nil || !strings.Contains(err.Error(), "no Ed25519") {
			t.Errorf("Ready with key set %s: %v, want an error saying it holds no Ed25519 key", doc, err)
		}
	}

	// A good set held, then the endpoint answers an empty one: tokens keep verifying.
	var bad atomic.Bool
	srv, _ := jwksServer(t, func() []byte {
		if !bad.Load() {
			return s.JWKS()
		}
		return []byte(`{"keys":[]}`)
	})
	clk := newClock()
	o := clk.opts()
	o.CacheEntries = -1 // every Verify looks the key up
	o.MaxAge = time.Minute
	v := NewVerifier(srv.URL, o)
	tok, err := s.Sign("alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	mustVerify(t, v, tok)
	bad.Store(true)
	clk.add(2 * time.Minute) // the set is old: this Verify refreshes it, in the background
	mustVerify(t, v, tok)
	for v.attempts.Load() < 2 { // the background refresh has ended
		time.Sleep(time.Millisecond)
	}
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("after the endpoint answered an empty key set: %v", err)
	}
}
