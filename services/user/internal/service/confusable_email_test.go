package service_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// An address whose local part or a domain label mixes letters of scripts
// that are never written together reads as another's: "аlice" with a
// Cyrillic "а" is "alice" on every screen, "раypal" with two is "paypal".
// Sign-up refuses it with a 422 naming email, as it refuses an invisible
// character; the account it imitates was there first. Addresses written in
// one script, or in the scripts Chinese, Japanese and Korean mix with Latin
// letters, still register.
func TestSignupRefusesMixedScriptLookAlikes(t *testing.T) {
	h := newHarness(t, map[string]string{"SIGNUP_IP_ATTEMPTS": "1000"})
	// "a" and uniqEmail's "u" first: the Cyrillic "а" below takes the
	// place of the one and stays beside the other, where the random hex
	// after them is all digits about one run in a hundred, and Cyrillic
	// with digits mixes no scripts.
	local := "a" + strings.TrimSuffix(uniqEmail(), "@example.com")
	h.register(local + "@example.com")
	digits := strconv.FormatInt(time.Now().UnixNano(), 10)
	for name, email := range map[string]string{
		"Cyrillic a in a Latin local part": "\u0430" + local[1:] + "@example.com",
		"Greek omicron in a Latin local":   local + "\u03bf@example.com",
		"Cyrillic e in a Latin label":      local + "@\u0435xample.com",
		"Latin a in a Cyrillic label":      local + "@\u043f\u0440\u0438\u043c\u0435\u0440a.\u0440\u0444",
		"Latin o in an Armenian local":     "\u0570o" + local + "@example.com",
	} {
		body, _ := json.Marshal(map[string]string{"email": email, "password": password, "name": "Mallory"})
		r := h.do("POST", "/api/v1/users", string(body))
		if r.Code != http.StatusUnprocessableEntity || !strings.Contains(string(r.Body), `"field":"email"`) {
			t.Errorf("sign-up as %+q (%s): %d %s, want 422 naming email", email, name, r.Code, r.Body)
		}
	}
	for _, email := range []string{
		"\u0438\u0432\u0430\u043d" + digits + "@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444", // Cyrillic local, Cyrillic domain
		"\u0438\u0432\u0430\u043d" + digits + "@example.com",                                       // ... at a Latin domain
		"\u5c71\u7530\u305f\u308d\u3046" + local + "@example.jp",                                   // Han, Hiragana and Latin
		"\u30e4\u30de\u30c0" + local + "@\u4f8b\u5b50.jp",                                          // Katakana and Latin
		"\uae40" + local + "@example.kr",                                                           // Hangul and Latin
		"\u00e9" + local + "2@example.com",                                                         // Latin with a digit and an accent
	} {
		h.register(email)
	}
}
