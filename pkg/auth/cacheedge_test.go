package auth

import (
	"context"
	"testing"
	"time"
)

// At exactly exp plus the leeway the parser already refuses a token (it
// accepts only before that instant), so the cache must not answer it then
// either: a cached entry is used only while the token would still verify.
func TestCacheRefusesAtTheParsersLastInstant(t *testing.T) {
	s := NewSigner(mustKey(t))
	clk := newClock()
	clk.ns.Store(time.Now().Truncate(time.Second).UnixNano()) // exp is whole seconds
	s.now = clk.now
	tok, err := s.Sign("alice", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	cachedV, _ := NewStaticVerifier(s.JWKS(), clk.opts())
	mustVerify(t, cachedV, tok)

	clk.add(time.Minute + 10*time.Second) // exp plus the default leeway, to the nanosecond
	fresh := clk.opts()
	fresh.CacheEntries = -1
	freshV, _ := NewStaticVerifier(s.JWKS(), fresh)
	if _, err := freshV.Verify(context.Background(), tok); err == nil {
		t.Fatal("the parser accepts the token at exp plus the leeway; the test's premise is wrong")
	}
	if _, err := cachedV.Verify(context.Background(), tok); err == nil {
		t.Fatal("the cache answered a token the parser refuses at this instant")
	}
}
