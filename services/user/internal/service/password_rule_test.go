package service_test

import (
	"encoding/json"
	"net/http"
	"testing"
)

// A local part is looked for in the password from 3 characters on, whatever
// their bytes: the owner of 王@example.cn (one character, 3 bytes) signs up
// with a password holding 王, as the owner of ab@example.com may with one
// holding "ab". Counted in bytes, it was a 422 "must not contain the email
// address".
func TestShortLocalPartInAnyScriptIsNoPasswordRule(t *testing.T) {
	h := newHarness(t, nil)
	body, _ := json.Marshal(map[string]string{"email": "\u738b@example.cn", "password": "\u738b\u5c0f\u660e\u7684\u5bc6\u7801\u5f88\u957f\u5f88\u957f", "name": "\u738b"})
	if r := h.do("POST", "/api/v1/users", string(body)); r.Code != http.StatusCreated {
		t.Fatalf("sign-up of a one-character local part with it in the password: %d %s", r.Code, r.Body)
	}
}
