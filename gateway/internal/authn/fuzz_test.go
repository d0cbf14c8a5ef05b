package authn

import (
	"context"
	"testing"
	"time"
)

// FuzzToken runs arbitrary Authorization values through bearer extraction,
// the real verifier (pkg/auth, EdDSA) and the cache. Property: nothing
// panics, and the only token that ever verifies is the one actually signed:
// no mutation of it (re-encoding, padding, case, truncation) is accepted,
// and the cache never turns a rejected token into an accepted one.
func FuzzToken(f *testing.F) {
	c, good := testVerifier(f, "fuzz-user", time.Hour)
	f.Add("Bearer " + good)
	f.Add("bearer " + good + "=")
	f.Add("Bearer " + good[:len(good)-2])
	f.Add("Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Add("Basic " + good)
	f.Fuzz(func(t *testing.T, authz string) {
		tok := Bearer([]byte(authz))
		for range 2 { // second round goes through the cache
			sub, err := c.Subject(context.Background(), tok)
			if err != nil {
				continue
			}
			if string(tok) != good || sub != "fuzz-user" {
				t.Fatalf("accepted %q as %q", tok, sub)
			}
		}
	})
}
