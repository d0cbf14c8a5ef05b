package auth

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A failed key set fetch names JWKS_URL without its secrets: its error
// reaches /readyz's log and the 503s of every request it fails. A URL may
// carry a password or a token in its query (an auth proxy in front of the
// user service).
func TestFetchErrorShowsNoSecret(t *testing.T) {
	const pw, token = "s3cretpw", "t0kenvalue"
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
	}))
	t.Cleanup(refusing.Close)
	huge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(make([]byte, maxJWKSBytes+1))
	}))
	t.Cleanup(huge.Close)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nobody := closed.Addr().String()
	closed.Close()

	hostOf := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
	for name, url := range map[string]string{
		"status":      "http://bob:" + pw + "@" + hostOf(refusing) + "/jwks.json?token=" + token,
		"too large":   "http://bob:" + pw + "@" + hostOf(huge) + "/jwks.json?token=" + token,
		"unreachable": "http://bob:" + pw + "@" + nobody + "/jwks.json?token=" + token,
		"not a URL":   "http://bob:" + pw + "%zz@" + nobody + "/jwks.json?token=" + token,
		"bad user":    "http://bob:" + pw + " x@" + nobody + "/jwks.json",
		"unencoded /": "http://bob:12/" + pw + "@" + nobody + "/jwks.json",
	} {
		t.Run(name, func(t *testing.T) {
			v := NewVerifier(url, VerifierOptions{})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := v.Ready(ctx)
			if err == nil {
				t.Fatal("Ready succeeded")
			}
			if msg := err.Error(); strings.Contains(msg, pw) || strings.Contains(msg, token) {
				t.Errorf("Ready = %q, shows a secret", msg)
			}
		})
	}
}

// A JWKS_URL that does not parse but holds no secret (its scheme forgotten:
// 127.0.0.1:8081/jwks.json) keeps url.Parse's reason. It was told to
// percent-encode its user name or password, which it has none of, and the
// reason, the one thing to act on, was dropped.
func TestFetchErrorOfASecretFreeURLKeepsItsReason(t *testing.T) {
	v := NewVerifier("127.0.0.1:1/jwks.json", VerifierOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := v.Ready(ctx)
	if err == nil || !strings.Contains(err.Error(), "first path segment in URL cannot contain colon") ||
		strings.Contains(err.Error(), "password") {
		t.Fatalf("Ready = %v, want url.Parse's reason and no talk of a password", err)
	}
}
