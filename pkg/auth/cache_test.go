package auth

import (
	"context"
	"errors"
	"fmt"
	"sync"
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

// changingJWKS serves doc until set replaces it.
func changingJWKS(t *testing.T, doc []byte) (url string, set func([]byte)) {
	var cur atomic.Pointer[[]byte]
	set = func(b []byte) { cur.Store(&b) }
	set(doc)
	srv, _ := jwksServer(t, func() []byte { return *cur.Load() })
	return srv.URL, set
}

// A key dropped from the JWKS (or replaced under the same kid) stops its
// cached tokens as soon as the verifier holds the new set.
func TestCacheFollowsTheKeySet(t *testing.T) {
	old, next := mustKey(t), mustKey(t)
	url, set := changingJWKS(t, NewSigner(old).JWKS())
	v := NewVerifier(url, VerifierOptions{})
	ctx := context.Background()
	tok, _ := NewSigner(old).Sign("alice", time.Hour)
	mustVerify(t, v, tok)

	// Rotated, old key still published: still valid, still cached.
	set(NewSigner(next, old).JWKS())
	if _, err := v.refresh(ctx, true); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, v, tok)
	if entries(v.cache) != 1 {
		t.Fatalf("cache len = %d, want 1", entries(v.cache))
	}

	// Old key withdrawn.
	set(NewSigner(next).JWKS())
	if _, err := v.refresh(ctx, true); err != nil {
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
	if _, err := v.refresh(ctx, true); err != nil {
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

// VerifyBytes and Verify share the cache; the byte form finds a cached
// token without copying it, and the cache never keeps the caller's buffer:
// reusing it for another token (as fasthttp reuses its header buffers) must
// neither change what the first token answers nor let the second borrow the
// first one's entry.
func TestCacheBytesKeyIsTheCallersOnlyDuringTheCall(t *testing.T) {
	s := NewSigner(mustKey(t))
	v, _ := NewStaticVerifier(s.JWKS(), VerifierOptions{})
	alice, _ := s.Sign("alice", time.Minute)
	bob, _ := s.Sign("carol", time.Minute)
	if len(alice) != len(bob) {
		t.Fatalf("test needs tokens of one length (%d, %d)", len(alice), len(bob))
	}
	buf := []byte(alice)
	c, err := v.VerifyBytes(context.Background(), buf)
	if err != nil || c.Subject != "alice" {
		t.Fatalf("VerifyBytes = %+v, %v", c, err)
	}
	copy(buf, bob) // the caller reuses its buffer
	if c, err := v.VerifyBytes(context.Background(), buf); err != nil || c.Subject != "carol" {
		t.Fatalf("reused buffer answered %+v, %v; want carol", c, err)
	}
	breakParser(v)
	if c := mustVerify(t, v, alice); c.Subject != "alice" {
		t.Fatalf("alice's entry now says %q", c.Subject)
	}
	copy(buf, alice)
	if c, err := v.VerifyBytes(context.Background(), buf); err != nil || c.Subject != "alice" {
		t.Fatalf("byte lookup of a cached token: %+v, %v", c, err)
	}
	if n := entries(v.cache); n != 2 {
		t.Fatalf("cache holds %d entries, want 2", n)
	}
	buf[len(buf)-1] ^= 1 // one bit of the signature
	if _, err := v.VerifyBytes(context.Background(), buf); err == nil {
		t.Fatal("a changed token was answered from the cache")
	}
}

// A cache hit through VerifyBytes allocates nothing (the gateway calls it
// for every request with a token).
func TestCacheBytesHitAllocatesNothing(t *testing.T) {
	s := NewSigner(mustKey(t))
	v, _ := NewStaticVerifier(s.JWKS(), VerifierOptions{})
	tok, _ := s.Sign("alice", time.Minute)
	buf := []byte(tok)
	if _, err := v.VerifyBytes(context.Background(), buf); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, err := v.VerifyBytes(context.Background(), buf); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("a cache hit allocates %v times", n)
	}
}

// Only successes are cached: a token rejected because its key was not
// published yet verifies once the key set has it.
func TestCacheKeepsNoFailures(t *testing.T) {
	old, next := mustKey(t), mustKey(t)
	url, set := changingJWKS(t, NewSigner(old).JWKS())
	clk := newClock()
	o := clk.opts()
	o.MinRefreshInterval = time.Second
	v := NewVerifier(url, o)
	tok, _ := NewSigner(next).Sign("alice", time.Hour)
	for range 2 {
		if _, err := v.VerifyBytes(context.Background(), []byte(tok)); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("err = %v, want ErrUnknownKey", err)
		}
	}
	if n := entries(v.cache); n != 0 {
		t.Fatalf("cache holds %d entries after failures", n)
	}
	set(NewSigner(next, old).JWKS())
	clk.add(2 * time.Second) // past the refresh bound
	if c, err := v.VerifyBytes(context.Background(), []byte(tok)); err != nil || c.Subject != "alice" {
		t.Fatalf("after the key was published: %+v, %v", c, err)
	}
}

// BenchmarkVerifyCached is a repeated token, the gateway's common case: the
// byte form (fasthttp header bytes) and the string form (net/http).
func BenchmarkVerifyCached(b *testing.B) {
	s := NewSigner(mustKey(b))
	v, _ := NewStaticVerifier(s.JWKS(), VerifierOptions{})
	tok, _ := s.Sign("alice", time.Hour)
	buf := []byte(tok)
	ctx := context.Background()
	b.Run("bytes", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.VerifyBytes(ctx, buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("string", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	// Every core at once on one token, as the gateway's event loops look
	// up a busy client's: what a shared write per hit costs.
	b.Run("bytes-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := v.VerifyBytes(ctx, buf); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// Hits come from the shard's lock-free copy once it holds the token, and
// the copy never answers for an entry that no longer would: expiry is
// checked on the copy's entry as on the map's.
func TestCacheCopyAnswersLikeTheMap(t *testing.T) {
	clk := newClock()
	s := NewSigner(mustKey(t))
	v, err := NewStaticVerifier(s.JWKS(), clk.opts())
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := s.Sign("alice", time.Minute)
	mustVerify(t, v, tok)
	sh := shardOf(v.cache, tok)
	if _, ok := sh.ro.Load()[tok]; !ok {
		t.Fatal("the first token of a shard is not in its copy")
	}
	breakParser(v)
	for range 100 {
		mustVerify(t, v, tok)
	}
	if n := sh.ro.Misses(); n != 0 {
		t.Fatalf("hits from the copy counted %d misses", n)
	}
	clk.add(time.Hour)
	if _, err := v.Verify(context.Background(), tok); err == nil {
		t.Fatal("an expired token verified from the copy")
	}
	if n := entries(v.cache); n != 0 {
		t.Fatalf("%d entries after expiry", n)
	}
}

// Lookups and insertions from several goroutines agree (run with -race).
func TestCacheConcurrentUse(t *testing.T) {
	s := NewSigner(mustKey(t))
	v, err := NewStaticVerifier(s.JWKS(), VerifierOptions{CacheEntries: 64})
	if err != nil {
		t.Fatal(err)
	}
	toks := make([]string, 200)
	for i := range toks {
		toks[i], _ = s.Sign(fmt.Sprintf("u%d", i), time.Minute)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				j := (i*7 + g) % len(toks)
				c, err := v.Verify(context.Background(), toks[j])
				if err != nil || c.Subject != fmt.Sprintf("u%d", j) {
					t.Errorf("token %d: %+v, %v", j, c, err)
					return
				}
			}
		})
	}
	wg.Wait()
}
