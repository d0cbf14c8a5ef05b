package user

import (
	"strings"
	"testing"
)

func TestNormalizeEmail(t *testing.T) {
	ok := map[string]string{
		"alice@example.com":       "alice@example.com",
		"  Alice@Example.COM\t":   "alice@example.com",
		"a.b+tag@sub.example.org": "a.b+tag@sub.example.org",
	}
	for in, want := range ok {
		got, fe := NormalizeEmail(in)
		if fe != nil || got != want {
			t.Errorf("NormalizeEmail(%q) = %q, %v; want %q", in, got, fe, want)
		}
	}
	for _, in := range []string{"", "alice", "alice@", "@example.com", "Alice <alice@example.com>", "alice@localhost",
		"alice@example.com.", "a b@example.com", strings.Repeat("a", 250) + "@example.com"} {
		if got, fe := NormalizeEmail(in); fe == nil || fe.Field != "email" {
			t.Errorf("NormalizeEmail(%q) = %q accepted", in, got)
		}
	}
}

func TestCheckPassword(t *testing.T) {
	for _, pw := range []string{"correct horse battery", "Tr0ub4dor&3x", strings.Repeat("ab", 64), "пароль-длинный"} {
		if fe := CheckPassword(pw, "alice@example.com"); fe != nil {
			t.Errorf("CheckPassword(%q) = %v", pw, fe)
		}
	}
	for _, pw := range []string{"", "short", "123456789", strings.Repeat("a", 129), "aaaaaaaaaaaa", "Password123", "xxalice2024xx", "\xff\xfe invalid utf8"} {
		if fe := CheckPassword(pw, "alice@example.com"); fe == nil || fe.Field != "password" {
			t.Errorf("CheckPassword(%q) accepted", pw)
		}
	}
}

func TestNormalizeName(t *testing.T) {
	if n, fe := NormalizeName("  Alice  "); fe != nil || n != "Alice" {
		t.Fatalf("%q %v", n, fe)
	}
	for _, in := range []string{"", "   ", strings.Repeat("é", 101), "a\x00b", "line\nbreak"} {
		if _, fe := NormalizeName(in); fe == nil {
			t.Errorf("NormalizeName(%q) accepted", in)
		}
	}
}

func TestProfileHasNoHash(t *testing.T) {
	u := User{ID: "1", Email: "a@b.co", Name: "A", PasswordHash: "$argon2id$secret"}
	if strings.Contains(strings.ToLower(strings.Join([]string{u.Profile().ID, u.Profile().Email, u.Profile().Name}, "|")), "argon2") {
		t.Fatal("hash in profile")
	}
}
