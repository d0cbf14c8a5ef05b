package authn

import (
	"context"
	"errors"
	"testing"
	"time"
)

// CachedSubject never verifies: it answers from entries Subject made, and
// says "ask Subject" for anything else, including an expired entry.
func TestCachedSubjectNeverVerifies(t *testing.T) {
	now := time.Unix(1000, 0)
	calls := 0
	c := New(func(context.Context, string) (string, time.Time, error) {
		calls++
		return "user-1", now.Add(30 * time.Second), nil
	}, Options{MaxAge: time.Minute, Now: func() time.Time { return now }})

	if _, ok, err := c.CachedSubject(nil); !ok || !errors.Is(err, ErrNoToken) {
		t.Fatalf("no token: ok=%v err=%v, want decided ErrNoToken", ok, err)
	}
	if _, ok, _ := c.CachedSubject([]byte("tok")); ok || calls != 0 {
		t.Fatalf("uncached token: ok=%v calls=%d, want not decided and no verification", ok, calls)
	}
	if _, err := c.Subject(context.Background(), []byte("tok")); err != nil {
		t.Fatal(err)
	}
	if sub, ok, err := c.CachedSubject([]byte("tok")); !ok || err != nil || sub != "user-1" {
		t.Fatalf("cached token: %q ok=%v err=%v", sub, ok, err)
	}
	now = now.Add(30 * time.Second)
	if _, ok, _ := c.CachedSubject([]byte("tok")); ok || calls != 1 {
		t.Fatalf("expired entry: ok=%v calls=%d, want not decided", ok, calls)
	}
}
