package service_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/auth"
)

// Rotation step 1: with AUTH_NEXT_KEY set, the JWKS publishes the next key
// after the current one, new tokens still name the current key, and a token
// of the next key (what a promoted replica signs in step 3) is taken by this
// replica's own check, which never fetches the key set: without the next key
// published, users logged in on a promoted replica were refused here until
// this replica restarted.
func TestNextKeyIsPublishedNotUsed(t *testing.T) {
	current, err := auth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	next, err := auth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"AUTH_PREVIOUS_KEY": ""}
	for name, k := range map[string]auth.Key{"AUTH_SIGNING_KEY": current, "AUTH_NEXT_KEY": next} {
		if vars[name], err = auth.MarshalKey(k); err != nil {
			t.Fatal(err)
		}
	}
	h := newHarness(t, vars)

	var jwks struct {
		Keys []struct{ Kid string } `json:"keys"`
	}
	if err := json.Unmarshal(h.do("GET", "/.well-known/jwks.json", "").Body, &jwks); err != nil ||
		len(jwks.Keys) != 2 || jwks.Keys[0].Kid != current.Kid || jwks.Keys[1].Kid != next.Kid {
		t.Fatalf("jwks kids = %+v (%v), want %s then %s", jwks.Keys, err, current.Kid, next.Kid)
	}
	email := uniqEmail()
	id := h.register(email)["id"].(string)
	access, _ := h.tokens(email)
	header, _, _ := strings.Cut(access, ".")
	b, _ := base64.RawURLEncoding.DecodeString(header)
	var hdr struct{ Kid string }
	if err := json.Unmarshal(b, &hdr); err != nil || hdr.Kid != current.Kid {
		t.Fatalf("a new token names kid %q (%v), want the current key's %q, never the next key's", hdr.Kid, err, current.Kid)
	}
	promoted, err := auth.NewSigner(next).Sign(id, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if r := h.do("GET", "/api/v1/users/me", "", "Authorization", "Bearer "+promoted); r.Code != http.StatusOK {
		t.Fatalf("a token of the next key: %d %s", r.Code, r.Body)
	}
}
