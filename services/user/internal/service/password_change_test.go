package service_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestPasswordChange: a signed-in user changes the password with the
// current one, the new one passes the sign-up policy, and every session
// opened with the old password ends (each refresh token of the account is
// revoked); the old password no longer logs in and the new one does. There
// was no route: a user whose password leaked could not change it.
func TestPasswordChange(t *testing.T) {
	// Room for this test's logins and changes (TestPasswordChangeIsThrottledWithLogins
	// holds the default quota).
	h := newHarness(t, map[string]string{"LOGIN_ACCOUNT_ATTEMPTS": "20"})
	email := uniqEmail()
	h.register(email)
	access, refresh1 := h.tokens(email)
	_, refresh2 := h.tokens(email) // a second session, on another device
	const next = "a brand new passphrase 7"
	change := func(token, current, next string) response {
		body := fmt.Sprintf(`{"current_password":%q,"new_password":%q}`, current, next)
		if token == "" {
			return h.do("POST", "/api/v1/users/me/password", body)
		}
		return h.do("POST", "/api/v1/users/me/password", body, "Authorization", "Bearer "+token)
	}

	isProblem(t, change("", password, next), http.StatusUnauthorized, "")
	isProblem(t, change(access, "not my password", next), http.StatusForbidden, "current_password")
	isProblem(t, change(access, password, "password123"), http.StatusUnprocessableEntity, "new_password")
	isProblem(t, change(access, password, "short"), http.StatusUnprocessableEntity, "new_password")
	isProblem(t, h.do("POST", "/api/v1/users/me/password", `{"current_password":"x","new_password":"y","extra":1}`,
		"Authorization", "Bearer "+access), http.StatusBadRequest, "extra")
	// Refused attempts changed nothing.
	if r := h.login(email, password); r.Code != http.StatusCreated {
		t.Fatalf("login with the password after refused changes: %d %s", r.Code, r.Body)
	}

	r := change(access, password, next)
	if r.Code != http.StatusNoContent {
		t.Fatalf("change: %d %s", r.Code, r.Body)
	}
	if r.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q; want no-store", r.Header.Get("Cache-Control"))
	}
	for _, rt := range []string{refresh1, refresh2} {
		isProblem(t, h.do("POST", "/api/v1/sessions/refresh", fmt.Sprintf(`{"refresh_token":%q}`, rt)), http.StatusUnauthorized, "")
	}
	isProblem(t, h.login(email, password), http.StatusUnauthorized, "")
	if r := h.login(email, next); r.Code != http.StatusCreated {
		t.Fatalf("login with the new password: %d %s", r.Code, r.Body)
	}
	// Neither password, nor any hash, leaves the service or reaches a log.
	h.mu.Lock()
	seen := strings.Join(h.bodies, "\n") + h.logs.String()
	h.mu.Unlock()
	for _, secret := range []string{password, next, "$argon2id$"} {
		if strings.Contains(seen, secret) {
			t.Errorf("%q was answered or logged", secret)
		}
	}
}

// TestPasswordChangeIsThrottledWithLogins: a wrong current password is a
// guess at the account's password, made with a (perhaps stolen) access
// token, so it spends the account's login attempts: the sixth rapid wrong
// one is a 429, and logins of the account are throttled with it.
func TestPasswordChangeIsThrottledWithLogins(t *testing.T) {
	h := newHarness(t, nil)
	email := uniqEmail()
	h.register(email)
	access, _ := h.tokens(email) // one attempt
	for i := range 4 {
		body := fmt.Sprintf(`{"current_password":"wrong password %d","new_password":"a brand new passphrase 7"}`, i)
		isProblem(t, h.do("POST", "/api/v1/users/me/password", body, "Authorization", "Bearer "+access), http.StatusForbidden, "current_password")
	}
	body := fmt.Sprintf(`{"current_password":%q,"new_password":"a brand new passphrase 7"}`, password)
	r := h.do("POST", "/api/v1/users/me/password", body, "Authorization", "Bearer "+access)
	isProblem(t, r, http.StatusTooManyRequests, "")
	checkRateLimitHeaders(t, r, `"login-account";q=5;w=300`, `"login-account";r=0;t=`)
	isProblem(t, h.login(email, password), http.StatusTooManyRequests, "")
}

// TestPasswordChangeToTheSamePasswordIsRefused: a new password equal to the
// current one (as hashed: in NFKC form, so a full-width spelling is the
// same password) is a 422 naming new_password, and the sessions stay
// (OWASP ASVS: the new password differs from the current). It was a 204
// that changed nothing but ended every session of the account. The refusal
// spends no login attempt (it compares two strings of the client's): more
// of them than the account's quota (5, one spent by the login) are each a
// 422, not a 429, and a login after them succeeds.
func TestPasswordChangeToTheSamePasswordIsRefused(t *testing.T) {
	h := newHarness(t, nil)
	email := uniqEmail()
	h.register(email)
	access, refresh := h.tokens(email)
	for range 3 {
		// "ｃ" (U+FF43) is "c" in NFKC.
		for _, next := range []string{password, "ｃorrect horse battery"} {
			body := fmt.Sprintf(`{"current_password":%q,"new_password":%q}`, password, next)
			isProblem(t, h.do("POST", "/api/v1/users/me/password", body, "Authorization", "Bearer "+access),
				http.StatusUnprocessableEntity, "new_password")
		}
	}
	if r := h.do("POST", "/api/v1/sessions/refresh", fmt.Sprintf(`{"refresh_token":%q}`, refresh)); r.Code != http.StatusOK {
		t.Fatalf("refresh after a refused change to the same password: %d %s", r.Code, r.Body)
	}
	if r := h.login(email, password); r.Code != http.StatusCreated {
		t.Fatalf("login after six refused changes to the same password: %d %s", r.Code, r.Body)
	}
}
