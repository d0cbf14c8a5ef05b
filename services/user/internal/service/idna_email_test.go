package service_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// An internationalised domain reaches the service in more than one form: as
// typed (the U-label "bücher"), as DNS and many mail clients and password
// managers show it (the A-label "xn--bcher-kva", RFC 5890), and with an
// ideographic full stop between its labels, which IDNA reads as a dot
// (UTS #46). All are one mailbox, so one account: the second sign-up is a
// 409 and a login in any of the forms finds the account.
func TestOneAccountPerInternationalisedDomain(t *testing.T) {
	h := newHarness(t, map[string]string{"SIGNUP_IP_ATTEMPTS": "1000", "LOGIN_IP_ATTEMPTS": "1000", "LOGIN_ACCOUNT_ATTEMPTS": "1000"})
	for name, forms := range map[string][2]string{
		"U-label then A-label":        {"b\u00fccher.example", "xn--bcher-kva.example"},
		"A-label then U-label":        {"XN--BCHER-KVA.example", "B\u00dcCHER.example"},
		"ideographic full stop":       {"mail.example.org", "mail.example\u3002org"},
		"halfwidth ideographic stop":  {"mail.b\u00fccher.example", "mail\uff61xn--bcher-kva\uff61example"},
		"A-label in a subdomain, CJK": {"\u4f8b\u5b50.example", "xn--fsqu00a.example"},
		// A domain of 200 bytes with its A-labels, 349 decoded: the bound is on the first.
		"A-labels longer decoded": {
			strings.Repeat("xn--d1a"+strings.Repeat("a", 56)+".", 3) + "xn--p1ai",
			strings.Repeat(strings.Repeat("\u0434", 57)+".", 3) + "\u0440\u0444",
		},
	} {
		t.Run(name, func(t *testing.T) {
			local := strings.TrimSuffix(uniqEmail(), "@example.com")
			first := h.do("POST", "/api/v1/users", fmt.Sprintf(`{"email":%q,"password":%q,"name":"A"}`, local+"@"+forms[0], password))
			if first.Code != http.StatusCreated {
				t.Fatalf("first sign-up: %d %s", first.Code, first.Body)
			}
			isProblem(t, h.do("POST", "/api/v1/users", fmt.Sprintf(`{"email":%q,"password":%q,"name":"B"}`, local+"@"+forms[1], password)), 409, "email")
			for _, form := range forms {
				if r := h.login(local+"@"+form, password); r.Code != http.StatusCreated {
					t.Errorf("login as %+q: %d %s", local+"@"+form, r.Code, r.Body)
				}
			}
		})
	}
}
