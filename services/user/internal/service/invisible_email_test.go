package service_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/services/user/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/user/internal/domain/user"
)

// invisible are characters that NFKC keeps and that show nothing (or nothing
// of their own) where an address is displayed, so an address with one looks
// like the address without it: format characters (zero-width space, joiners,
// word joiner, BOM, soft hyphen, bidi embeddings and isolates), a C1 control,
// a line separator, a variation selector, a Hangul filler and a private-use
// character.
var invisible = map[string]string{
	"ZERO WIDTH SPACE":          "\u200b",
	"ZERO WIDTH NON-JOINER":     "\u200c",
	"ZERO WIDTH JOINER":         "\u200d",
	"WORD JOINER":               "\u2060",
	"BYTE ORDER MARK":           "\ufeff",
	"SOFT HYPHEN":               "\u00ad",
	"RIGHT-TO-LEFT OVERRIDE":    "\u202e",
	"LEFT-TO-RIGHT EMBEDDING":   "\u202a",
	"FIRST STRONG ISOLATE":      "\u2068",
	"POP DIRECTIONAL ISOLATE":   "\u2069",
	"NEXT LINE (C1 control)":    "\u0085",
	"LINE SEPARATOR":            "\u2028",
	"VARIATION SELECTOR-16":     "\ufe0f",
	"HANGUL FILLER":             "\u3164",
	"private use U+E000":        "\ue000",
	"TAG LATIN SMALL LETTER A":  "\U000e0061",
	"MONGOLIAN VOWEL SEPARATOR": "\u180e",
}

// A sign-up whose email holds an invisible character, anywhere in it (but
// white space at either end, which is trimmed), is 422 naming the field email: it would register beside the address without
// the character, an account that looks like someone else's. An address with
// visible non-ASCII letters still registers.
func TestSignupRefusesInvisibleCharactersInEmail(t *testing.T) {
	h := newHarness(t, map[string]string{"SIGNUP_IP_ATTEMPTS": "1000"})
	for name, ch := range invisible {
		local := strings.TrimSuffix(uniqEmail(), "@example.com")
		emails := []string{local[:3] + ch + local[3:] + "@example.com", local + "@exa" + ch + "mple.com"}
		if strings.TrimSpace(ch) != "" { // white space at an end is trimmed off, as it always was
			emails = append(emails, ch+local+"@example.com")
		}
		for _, email := range emails {
			body, _ := json.Marshal(map[string]string{"email": email, "password": password, "name": "Mallory"})
			r := h.do("POST", "/api/v1/users", string(body))
			if r.Code != http.StatusUnprocessableEntity || !strings.Contains(string(r.Body), `"field":"email"`) {
				t.Errorf("sign-up as %+q (%s): %d %s, want 422 naming email", email, name, r.Code, r.Body)
			}
		}
	}
	h.register("\u00e9" + strings.TrimPrefix(uniqEmail(), "u"))
}

// An account an older release stored with an invisible character in its
// address (it normalised the address as today's NormalizeEmail does, and
// refused nothing more) still logs in, typed as it was stored or with the
// case and the spaces a login forgives; only sign-up refuses such addresses.
func TestAccountWithAnInvisibleCharacterInItsEmailLogsIn(t *testing.T) {
	h := newHarness(t, map[string]string{"LOGIN_IP_ATTEMPTS": "1000"})
	hasher := adapters.NewArgon2(adapters.Argon2Params{Memory: 8192, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}, 1)
	hash, err := hasher.Hash(t.Context(), password)
	if err != nil {
		t.Fatal(err)
	}
	repo := adapters.NewUserGorm(h.svc.DB)
	for name, ch := range invisible {
		// Inside the local part: a login trims white space (NEXT LINE, LINE
		// SEPARATOR) off the ends of what it is given, as sign-up always did.
		local := strings.TrimSuffix(uniqEmail(), "@example.com")
		typed := local[:3] + ch + local[3:] + "@example.com"
		stored, fe := user.NormalizeEmail(typed)
		if fe != nil {
			t.Errorf("NormalizeEmail(%+q) (%s) refused: %v; a login could never find such an account", typed, name, fe)
			continue
		}
		id := "invisible-" + local
		now := time.Now().UTC().Truncate(time.Microsecond)
		if err := repo.Add(t.Context(), user.User{ID: id, Email: stored, Name: "Old", PasswordHash: hash, CreatedAt: now, UpdatedAt: now}); err != nil {
			t.Fatal(err)
		}
		for _, as := range []string{typed, "  " + strings.ToUpper(typed) + " "} {
			body, _ := json.Marshal(map[string]string{"email": as, "password": password})
			r := h.do("POST", "/api/v1/sessions", string(body))
			if r.Code != http.StatusCreated || r.json(t)["user_id"] != id {
				t.Errorf("login as %+q (%s): %d %s, want 201 for %s", as, name, r.Code, r.Body, id)
			}
		}
	}
}
