// Package svctest holds the set-up every service's integration tests start from (the databases are in storetest): a
// private JetStream stream, events published the way the bridge publishes them, a tail of a Kafka topic, a token
// issuer whose JWKS the service fetches (the register/serve/deregister check of a running service is in runtest). The services
// are separate modules, so what their tests share can only live in pkg; each service keeps its own assertions.
//
// It is a package of its own, not part of testenv, because it needs JetStream, kafka-go and etcd clients, and testenv
// is linked into almost every test binary, which only need its reachability checks.
package svctest

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/auth"
)

// Random returns 2n random hex digits, so names of streams, keys and databases do not meet between tests sharing a
// server or between runs.
func Random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand panics rather than return an error since Go 1.24)
	return hex.EncodeToString(b)
}

// Issuer signs tokens with a key made for one test and publishes its JWKS at URL, standing in for the user service.
type Issuer struct {
	URL    string
	signer *auth.Signer
}

// NewIssuer starts the JWKS server; it stops when the test ends.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	key, err := auth.GenerateKey()
	if err != nil {
		t.Fatalf("svctest: generate signing key: %v", err)
	}
	signer := auth.NewSigner(key)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(signer.JWKS())
	}))
	t.Cleanup(srv.Close)
	return &Issuer{URL: srv.URL, signer: signer}
}

// Token returns a token for user valid for a minute.
func (i *Issuer) Token(t testing.TB, user string) string {
	t.Helper()
	tok, err := i.signer.Sign(user, time.Minute)
	if err != nil {
		t.Fatalf("svctest: sign a token for %s: %v", user, err)
	}
	return tok
}
