package auth

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// clock is a settable time source for VerifierOptions.Now.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}
func (c *clock) now() time.Time        { return time.Unix(0, c.ns.Load()) }
func (c *clock) add(d time.Duration)   { c.ns.Add(int64(d)) }
func (c *clock) opts() VerifierOptions { return VerifierOptions{Now: c.now} }

// entries counts the cached tokens (tests run one goroutine: no locks).
func entries(c *tokenCache) (n int) {
	for i := range c.shards {
		n += len(c.shards[i].m)
	}
	return n
}

// breakParser makes every parse fail, so only a cache hit can verify.
func breakParser(v *Verifier) { v.parser = jwt.NewParser(jwt.WithValidMethods([]string{"none-such"})) }

func mustVerify(t *testing.T, v *Verifier, tok string) Claims {
	t.Helper()
	c, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return c
}

func TestCacheAnswersRepeatsWithoutParsing(t *testing.T) {
	s := NewSigner(mustKey(t))
	v, err := NewStaticVerifier(s.JWKS(), VerifierOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := s.Sign("alice", time.Minute)
	first := mustVerify(t, v, tok)
	breakParser(v)
	if again := mustVerify(t, v, tok); again != first {
		t.Fatalf("cached claims %+v, want %+v", again, first)
	}
	// A token differing in one signature character is not the cached one.
	flipped := tok[:len(tok)-1] + "A"
	if flipped == tok {
		flipped = tok[:len(tok)-1] + "B"
	}
	if _, err := v.Verify(context.Background(), flipped); err == nil {
		t.Fatal("a changed token was answered from the cache")
	}
}

func TestCacheEndsAtExpiryPlusLeeway(t *testing.T) {
	s := NewSigner(mustKey(t))
	clk := newClock()
	v, _ := NewStaticVerifier(s.JWKS(), clk.opts())
	tok, _ := s.Sign("alice", time.Minute)
	mustVerify(t, v, tok)
	breakParser(v)
	clk.add(time.Minute + 5*time.Second) // past exp, inside the 10 s leeway: a fresh check accepts it too
	mustVerify(t, v, tok)
	clk.add(10 * time.Second)
	if _, err := v.Verify(context.Background(), tok); err == nil {
		t.Fatal("expired token answered from the cache")
	}
	if n := entries(v.cache); n != 0 {
		t.Fatalf("cache holds %d entries after expiry, want 0", n)
	}
}

// A key dropped from the JWKS (or replaced under the same kid) stops its
// cached tokens as soon as the verifier holds the new set.
func TestCacheFollowsTheKeySet(t *testing.T) {
	old, next := mustKey(t), mustKey(t)
	var doc atomic.Pointer[[]byte]
	set := func(b []byte) { doc.Store(&b) }
	set(NewSigner(old).JWKS())
	srv, _ := jwksServer(t, func() []byte { return *doc.Load() })
	v := NewVerifier(srv.URL, VerifierOptions{})
	ctx := context.Background()
	tok, _ := NewSigner(old).Sign("alice", time.Hour)
	mustVerify(t, v, tok)

	// Rotated, old key still published: still valid, still cached.
	set(NewSigner(next, old).JWKS())
	if err := v.refresh(ctx, true); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, v, tok)
	if entries(v.cache) != 1 {
		t.Fatalf("cache len = %d, want 1", entries(v.cache))
	}

	// Old key withdrawn.
	set(NewSigner(next).JWKS())
	if err := v.refresh(ctx, true); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, tok); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("err = %v, want ErrUnknownKey", err)
	}

	// Another key published under the old kid.
	impostor := mustKey(t)
	impostor.Kid = old.Kid
	tok2, _ := NewSigner(next).Sign("bob", time.Hour)
	mustVerify(t, v, tok2)
	set(NewSigner(impostor).JWKS())
	if err := v.refresh(ctx, true); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, tok2); err == nil {
		t.Fatal("token of a withdrawn key answered from the cache")
	}
}

func TestCacheIsBounded(t *testing.T) {
	s := NewSigner(mustKey(t))
	v, _ := NewStaticVerifier(s.JWKS(), VerifierOptions{CacheEntries: 64})
	for i := range 1000 {
		tok, _ := s.Sign(fmt.Sprint("user-", i), time.Minute)
		mustVerify(t, v, tok)
	}
	if n := entries(v.cache); n == 0 || n > 64 {
		t.Fatalf("cache len = %d, want 1..64", n)
	}
}

func TestCacheCanBeTurnedOff(t *testing.T) {
	s := NewSigner(mustKey(t))
	v, _ := NewStaticVerifier(s.JWKS(), VerifierOptions{CacheEntries: -1})
	tok, _ := s.Sign("alice", time.Minute)
	mustVerify(t, v, tok)
	breakParser(v)
	if _, err := v.Verify(context.Background(), tok); err == nil {
		t.Fatal("verified without parsing although the cache is off")
	}
}
