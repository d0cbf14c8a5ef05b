package user

import (
	"net/mail"
	"strings"

	"golang.org/x/text/unicode/norm"
)

// MaxEmailLen is the longest address RFC 5321 lets through SMTP.
const MaxEmailLen = 254

// NormalizeEmail returns the canonical form under which an address is stored
// and looked up: trimmed, NFKC-normalised and lower-cased. RFC 5321 lets the
// local part be case-sensitive, but no mainstream provider treats it so, and
// folding case is what stops "Alice@x" and "alice@x" becoming two accounts.
// NFKC does the same for addresses that only look alike: "é" typed as one
// code point or as "e" plus a combining accent, and full-width "ａ" against
// "a". It runs before lower-casing (compatibility forms such as "ℌ" become
// upper-case letters) and again after it, so the result is a fixed point.
// Display names ("Alice <a@x>") are refused rather than silently stripped.
func NormalizeEmail(email string) (string, *FieldError) {
	e := norm.NFKC.String(strings.ToLower(norm.NFKC.String(strings.TrimSpace(email))))
	if e == "" {
		return "", &FieldError{Field: "email", Detail: "must not be empty"}
	}
	if len(e) > MaxEmailLen {
		return "", &FieldError{Field: "email", Detail: "must be at most 254 bytes"}
	}
	addr, err := mail.ParseAddress(e)
	if err != nil || addr.Address != e || addr.Name != "" {
		return "", &FieldError{Field: "email", Detail: "must be a plain email address like name@example.com"}
	}
	local, domain, _ := strings.Cut(e, "@")
	if local == "" || !strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") {
		return "", &FieldError{Field: "email", Detail: "must be a plain email address like name@example.com"}
	}
	return e, nil
}
