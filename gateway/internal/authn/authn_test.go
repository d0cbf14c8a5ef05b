package authn

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestCacheRemembersUntilExpiry(t *testing.T) {
	now := time.Unix(1000, 0)
	calls := 0
	exp := now.Add(30 * time.Second)
	c := New(func(_ context.Context, tok string) (string, time.Time, error) {
		calls++
		if tok != "good" {
			return "", time.Time{}, errors.New("bad signature")
		}
		return "user-1", exp, nil
	}, Options{MaxAge: time.Minute, Now: func() time.Time { return now }})

	for range 3 {
		sub, err := c.Subject(context.Background(), []byte("good"))
		if err != nil || sub != "user-1" {
			t.Fatalf("Subject = %q, %v", sub, err)
		}
	}
	if calls != 1 {
		t.Fatalf("verify called %d times, want 1", calls)
	}
	now = exp // the token has expired: must be verified again
	if _, err := c.Subject(context.Background(), []byte("good")); err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Fatalf("expired entry served from cache (calls=%d)", calls)
	}
	for range 2 {
		if _, err := c.Subject(context.Background(), []byte("forged")); err == nil {
			t.Fatal("forged token accepted")
		}
	}
	if calls != 4 {
		t.Fatalf("failures must not be cached, calls=%d", calls)
	}
	if _, err := c.Subject(context.Background(), nil); !errors.Is(err, ErrNoToken) {
		t.Fatalf("empty token: %v", err)
	}
}

func TestCacheIsBounded(t *testing.T) {
	c := New(func(_ context.Context, tok string) (string, time.Time, error) {
		return tok, time.Now().Add(time.Hour), nil
	}, Options{MaxEntries: 32})
	for i := range 1000 {
		if _, err := c.Subject(context.Background(), []byte{byte(i), byte(i >> 8), 'x'}); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for i := range c.shards {
		n += len(c.shards[i].m)
	}
	if n > 32 {
		t.Fatalf("cache holds %d entries, max 32", n)
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
