package service_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// A name is measured and stored composed: 60 accented letters typed
// decomposed ("e" and a combining accent each, as macOS sends them) are a
// name of 60 characters, not a 422 over the 100-character bound, and sign-up
// and PATCH /users/me store the composed form, the one every device shows
// and sends alike.
func TestNameIsCountedAndStoredComposed(t *testing.T) {
	h := newHarness(t, nil)
	decomposed, composed := strings.Repeat("e\u0301", 60), strings.Repeat("\u00e9", 60)
	email := uniqEmail()
	body, _ := json.Marshal(map[string]string{"email": email, "password": password, "name": decomposed})
	r := h.do("POST", "/api/v1/users", string(body))
	if r.Code != http.StatusCreated || r.json(t)["name"] != composed {
		t.Fatalf("sign-up with a decomposed name: %d %s", r.Code, r.Body)
	}
	access, _ := h.tokens(email)
	bearer := []string{"Authorization", "Bearer " + access}
	body, _ = json.Marshal(map[string]string{"name": strings.Repeat("o\u0308", 70)})
	if r := h.do("PATCH", "/api/v1/users/me", string(body), bearer...); r.Code != http.StatusOK {
		t.Fatalf("PATCH a decomposed name: %d %s", r.Code, r.Body)
	}
	if r := h.do("GET", "/api/v1/users/me", "", bearer...); r.Code != http.StatusOK || r.json(t)["name"] != strings.Repeat("\u00f6", 70) {
		t.Fatalf("GET after the PATCH: %d %s", r.Code, r.Body)
	}
}

// A few letters are two code points composed (NFC's composition exclusions,
// "क़" U+0958 among them): 60 of them are 60 characters as sent, within the
// schema's maxLength, and sign up, stored composed.
func TestNameOfCompositionExclusionsSignsUp(t *testing.T) {
	h := newHarness(t, nil)
	body, _ := json.Marshal(map[string]string{"email": uniqEmail(), "password": password, "name": strings.Repeat("\u0958", 60)})
	r := h.do("POST", "/api/v1/users", string(body))
	if r.Code != http.StatusCreated || r.json(t)["name"] != strings.Repeat("\u0915\u093c", 60) {
		t.Fatalf("sign-up with 60 U+0958: %d %s", r.Code, r.Body)
	}
}

// A name of only characters newer than Go's Unicode tables (15.0) is not
// empty: "🫩" U+1FAE9, an emoji of Unicode 16, signs up and is a name PATCH
// /users/me takes. Counted blank as unassigned, each was a 422 "must not be
// empty" naming name.
func TestNameOfNewerCharactersIsNotEmpty(t *testing.T) {
	h := newHarness(t, nil)
	email := uniqEmail()
	body, _ := json.Marshal(map[string]string{"email": email, "password": password, "name": "\U0001FAE9"})
	if r := h.do("POST", "/api/v1/users", string(body)); r.Code != http.StatusCreated || r.json(t)["name"] != "\U0001FAE9" {
		t.Fatalf("sign-up named U+1FAE9: %d %s", r.Code, r.Body)
	}
	access, _ := h.tokens(email)
	body, _ = json.Marshal(map[string]string{"name": "\U0002EBF0"}) // a CJK ideograph of Unicode 15.1
	if r := h.do("PATCH", "/api/v1/users/me", string(body), "Authorization", "Bearer "+access); r.Code != http.StatusOK {
		t.Fatalf("PATCH to U+2EBF0: %d %s", r.Code, r.Body)
	}
}
