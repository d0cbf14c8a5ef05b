package auth

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

// A key set naming a member twice in one object meant one thing to the
// verifier and another to a reader that keeps the first copy (a proxy, a
// cache, an auditor's jq): encoding/json kept the last "keys", "kid" or "x",
// so a second "keys" array appended by whoever could edit the document in
// transit replaced the set this verifier trusted while a first-key-wins
// reviewer saw the genuine one. The platform refuses such JSON everywhere it
// reads it (pkg/jsonkey); a key set so written is a failed fetch, as one
// without a usable key is, and a set already held stays.
func TestKeySetNamingAMemberTwiceIsAFailedFetch(t *testing.T) {
	good, evil := mustKey(t), mustKey(t)
	goodJWK := string(NewSigner(good).JWKS())
	goodJWK = strings.TrimSuffix(strings.TrimPrefix(goodJWK, `{"keys":[`), `]}`)
	evilJWK := string(NewSigner(evil).JWKS())
	evilJWK = strings.TrimSuffix(strings.TrimPrefix(evilJWK, `{"keys":[`), `]}`)
	evilX := base64.RawURLEncoding.EncodeToString(evil.Private.Public().(ed25519.PublicKey))
	for _, tc := range []struct{ name, doc, path string }{
		{"two keys arrays", `{"keys":[` + goodJWK + `],"keys":[` + evilJWK + `]}`, "keys"},
		{"keys and Keys", `{"keys":[` + goodJWK + `],"Keys":[` + evilJWK + `]}`, "Keys"},
		{"two x in one key", `{"keys":[` + strings.TrimSuffix(goodJWK, "}") + `,"x":"` + evilX + `"}]}`, "keys[0].x"},
		{"two kid in one key", `{"keys":[` + strings.TrimSuffix(evilJWK, "}") + `,"kid":"` + good.Kid + `"}]}`, "keys[0].kid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := jwksServer(t, func() []byte { return []byte(tc.doc) })
			err := NewVerifier(srv.URL, VerifierOptions{}).Ready(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.path) || !strings.Contains(err.Error(), "twice") {
				t.Errorf("Ready with key set %s: %v, want an error saying %s appears twice", tc.doc, err, tc.path)
			}
			if _, err := NewStaticVerifier([]byte(tc.doc), VerifierOptions{}); err == nil {
				t.Errorf("NewStaticVerifier took key set %s", tc.doc)
			}
		})
	}

	// A good set held, then the endpoint answers one with a second "keys":
	// tokens of the good key keep verifying, the other key's do not.
	url, set := changingJWKS(t, []byte(`{"keys":[`+goodJWK+`]}`))
	clk := newClock()
	o := clk.opts()
	o.CacheEntries = -1
	v := NewVerifier(url, o)
	tok, err := NewSigner(good).Sign("alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	mustVerify(t, v, tok)
	set([]byte(`{"keys":[` + goodJWK + `],"keys":[` + evilJWK + `]}`))
	evilTok, err := NewSigner(evil).Sign("mallory", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	clk.add(time.Minute) // past MinRefreshInterval: the unknown kid fetches the set again
	if c, err := v.Verify(context.Background(), evilTok); err == nil {
		t.Fatalf("a token of the key in the second \"keys\" verified: %+v", c)
	}
	mustVerify(t, v, tok)
}
