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

// The same ambiguity one level down: two keys in the set naming one kid.
// parseJWKS indexed the keys by kid, the last one winning, while a reader
// that takes the first key with a kid (RFC 7517 asks for distinct kids)
// saw the genuine one; a key appended to the set under the genuine key's
// kid took over that kid here. The user service never publishes a kid
// twice (KeyConfig refuses two equal keys), so such a set is a failed
// fetch, as a member named twice is.
func TestKeySetNamingAKidTwiceIsAFailedFetch(t *testing.T) {
	good, evil := mustKey(t), mustKey(t)
	impostor := Key{Kid: good.Kid, Private: evil.Private} // evil's key under good's kid
	jwk := func(k Key) string {
		s := string(NewSigner(k).JWKS())
		return strings.TrimSuffix(strings.TrimPrefix(s, `{"keys":[`), `]}`)
	}
	doc := `{"keys":[` + jwk(good) + `,` + jwk(impostor) + `]}`
	srv, _ := jwksServer(t, func() []byte { return []byte(doc) })
	if err := NewVerifier(srv.URL, VerifierOptions{}).Ready(context.Background()); err == nil ||
		!strings.Contains(err.Error(), good.Kid) || !strings.Contains(err.Error(), "twice") {
		t.Errorf("Ready with key set %s: %v, want an error saying kid %s appears twice", doc, err, good.Kid)
	}
	if _, err := NewStaticVerifier([]byte(doc), VerifierOptions{}); err == nil {
		t.Errorf("NewStaticVerifier took key set %s", doc)
	}

	evilTok, err := NewSigner(impostor).Sign("mallory", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := NewVerifier(srv.URL, VerifierOptions{}).Verify(context.Background(), evilTok); err == nil {
		t.Errorf("a token of the key appended under kid %s verified: %+v", good.Kid, c)
	}
}
