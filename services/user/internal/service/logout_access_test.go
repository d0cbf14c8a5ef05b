package service_test

import (
	"fmt"
	"net/http"
	"testing"
)

// TestLogoutEndsRefreshingNotTheAccessToken holds the trade-off the README
// states: a logout revokes the refresh token's family, and the access token
// already issued stays good until its exp (ACCESS_TOKEN_TTL), since every
// service verifies it offline against the JWKS and none keeps a deny-list.
// A logout with a token the service does not know is a 204 like any other,
// so it tells nothing about which tokens exist.
func TestLogoutEndsRefreshingNotTheAccessToken(t *testing.T) {
	h := newHarness(t, nil)
	email := uniqEmail()
	h.register(email)
	access, refresh := h.tokens(email)
	body := fmt.Sprintf(`{"refresh_token":%q}`, refresh)
	if r := h.do("DELETE", "/api/v1/sessions", body); r.Code != http.StatusNoContent {
		t.Fatalf("logout: %d %s", r.Code, r.Body)
	}
	isProblem(t, h.do("POST", "/api/v1/sessions/refresh", body), http.StatusUnauthorized, "")
	if r := h.do("GET", "/api/v1/users/me", "", "Authorization", "Bearer "+access); r.Code != http.StatusOK {
		t.Fatalf("the access token after logout: %d %s", r.Code, r.Body)
	}
	if r := h.do("DELETE", "/api/v1/sessions", `{"refresh_token":"no such token"}`); r.Code != http.StatusNoContent {
		t.Fatalf("logout with an unknown token: %d %s", r.Code, r.Body)
	}
}
