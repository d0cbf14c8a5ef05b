package authn

import (
	"context"
	"errors"
	"testing"
	"time"
)

// CachedSubject never verifies: it answers for tokens Subject verified, and
// says "ask Subject" for anything else.
func TestCachedSubjectNeverVerifies(t *testing.T) {
	a, tok := testVerifier(t, "user-1", time.Minute)
	if _, ok, err := a.CachedSubject(nil, time.Now()); !ok || !errors.Is(err, ErrNoToken) {
		t.Fatalf("no token: ok=%v err=%v, want decided ErrNoToken", ok, err)
	}
	if _, ok, _ := a.CachedSubject([]byte(tok), time.Now()); ok {
		t.Fatal("a token never verified was answered from the cache")
	}
	if _, err := a.Subject(context.Background(), []byte(tok)); err != nil {
		t.Fatal(err)
	}
	if sub, ok, err := a.CachedSubject([]byte(tok), time.Now()); !ok || err != nil || sub != "user-1" {
		t.Fatalf("verified token: %q ok=%v err=%v", sub, ok, err)
	}
	if _, ok, _ := a.CachedSubject([]byte(tok+"x"), time.Now()); ok {
		t.Fatal("a forged token was answered from the cache")
	}
}
