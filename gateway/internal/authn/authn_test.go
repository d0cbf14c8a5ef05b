package authn

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/auth"
)

// The cache's own properties (expiry plus leeway, key set, only successes,
// bounded size, byte keys) are tested with it in pkg/auth; this is the
// adapter: no token, a good one, a forged one.
func TestVerifierSubject(t *testing.T) {
	a, good := testVerifier(t, "user-1", time.Minute)
	for range 2 { // the second time from the cache
		if sub, err := a.Subject(context.Background(), []byte(good)); err != nil || sub != "user-1" {
			t.Fatalf("Subject = %q, %v", sub, err)
		}
	}
	if _, err := a.Subject(context.Background(), []byte(good+"x")); err == nil || errors.Is(err, ErrNoToken) {
		t.Fatalf("forged token: %v", err)
	}
	if _, err := a.Subject(context.Background(), nil); !errors.Is(err, ErrNoToken) {
		t.Fatalf("empty token: %v", err)
	}
}

func TestBearer(t *testing.T) {
	cases := map[string]string{
		"Bearer abc":   "abc",
		"bearer  abc ": "abc",
		"BEARER x.y.z": "x.y.z",
		"Basic abc":    "",
		"Bearer":       "",
		"Bearer ":      "",
		"":             "",
	}
	for in, want := range cases {
		if got := string(Bearer([]byte(in))); got != want {
			t.Errorf("Bearer(%q) = %q, want %q", in, got, want)
		}
	}
}

// BenchmarkSubjectCached is a repeated token from a reused header buffer,
// the gateway's common case.
func BenchmarkSubjectCached(b *testing.B) {
	key, _ := auth.GenerateKey()
	signer := auth.NewSigner(key)
	v, _ := auth.NewStaticVerifier(signer.JWKS(), auth.VerifierOptions{})
	tok, _ := signer.Sign("user-1", time.Hour)
	buf := []byte(tok)
	a := Verifier{V: v}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Subject(context.Background(), buf); err != nil {
			b.Fatal(err)
		}
	}
}

// testVerifier returns a Verifier over a fresh key set and a token of sub
// signed with it.
func testVerifier(tb testing.TB, sub string, ttl time.Duration) (Verifier, string) {
	tb.Helper()
	key, err := auth.GenerateKey()
	if err != nil {
		tb.Fatal(err)
	}
	signer := auth.NewSigner(key)
	v, err := auth.NewStaticVerifier(signer.JWKS(), auth.VerifierOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	tok, err := signer.Sign(sub, ttl)
	if err != nil {
		tb.Fatal(err)
	}
	return Verifier{V: v}, tok
}
