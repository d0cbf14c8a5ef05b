package auth

import (
	"testing"
	"time"
)

// CachedBytes answers only what the cache holds, and follows its rules:
// nothing before a verification, nothing past exp plus the leeway.
func TestCachedBytesOnlyFromTheCache(t *testing.T) {
	s := NewSigner(mustKey(t))
	clk := newClock()
	v, err := NewStaticVerifier(s.JWKS(), clk.opts())
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := s.Sign("alice", time.Minute)
	if _, ok := v.CachedBytes([]byte(tok)); ok {
		t.Fatal("answered a token never verified")
	}
	first := mustVerify(t, v, tok)
	if c, ok := v.CachedBytes([]byte(tok)); !ok || c != first {
		t.Fatalf("CachedBytes = %+v, %v; want %+v", c, ok, first)
	}
	clk.add(2 * time.Minute)
	if _, ok := v.CachedBytes([]byte(tok)); ok {
		t.Fatal("answered an expired token")
	}
}
