package app

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/shanhai-dev/shanhai/services/user/internal/domain/user"
)

// One password in the forms devices type it: "é" and "ö" as one code point
// each (NFC, most keyboards) or as a letter and a combining accent (NFD,
// macOS file names and some input methods); and its compatibility form, the
// full-width "Ｐ" of an East Asian input method.
const (
	nfcPassword = "Gr\u00fc\u00dfe aus K\u00f6ln, caf\u00e9"
	nfdPassword = "Gru\u0308\u00dfe aus Ko\u0308ln, cafe\u0301"
)

// A password registered as typed on one device logs in as typed on another
// (NIST SP 800-63B §5.1.1.2: normalise with NFKC or NFKD before hashing).
// The bytes were hashed as they came, so the NFD form of the NFC password
// was a wrong password.
func TestLoginAcceptsThePasswordInAnotherNormalForm(t *testing.T) {
	for name, c := range map[string]struct{ registered, typed string }{
		"NFC registered, NFD typed": {nfcPassword, nfdPassword},
		"NFD registered, NFC typed": {nfdPassword, nfcPassword},
		"full-width registered":     {"\uff30assword of mine", "Password of mine"},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture()
			p, err := f.app.Register.Handle(ctx, Register{Email: "alice@example.com", Password: c.registered, Name: "Alice"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.app.Login.Handle(ctx, Login{Email: "alice@example.com", Password: c.typed, IP: "10.0.0.1"}); err != nil {
				t.Fatalf("log in with %+q after registering %+q: %v", c.typed, c.registered, err)
			}
			if got, want := f.users.byID[p.ID].PasswordHash, "plain$"+user.NormalizePassword(c.registered); got != want {
				t.Fatalf("stored %+q, want the hash of the NFKC form %+q", got, want)
			}
		})
	}
}

// An account whose hash was made before passwords were normalised (of the
// bytes as typed, here NFD) still logs in with those bytes, and the login
// replaces the hash with one of the normalised form, so the password then
// works in any form.
func TestLoginUpgradesAHashOfAnUnnormalisedPassword(t *testing.T) {
	f := newFixture()
	p := register(t, f, "alice@example.com")
	u := f.users.byID[p.ID]
	u.PasswordHash = "plain$" + nfdPassword
	f.users.byID[p.ID] = u

	if _, err := f.app.Login.Handle(ctx, Login{Email: "alice@example.com", Password: nfdPassword, IP: "10.0.0.1"}); err != nil {
		t.Fatalf("log in with the password as it was hashed: %v", err)
	}
	if got, want := f.users.byID[p.ID].PasswordHash, "plain$"+nfcPassword; got != want {
		t.Fatalf("hash after the login = %+q, want %+q", got, want)
	}
	if _, err := f.app.Login.Handle(ctx, Login{Email: "alice@example.com", Password: nfcPassword, IP: "10.0.0.2"}); err != nil {
		t.Fatalf("log in with the NFC form after the upgrade: %v", err)
	}
	if _, err := f.app.Login.Handle(ctx, Login{Email: "alice@example.com", Password: nfdPassword + "x", IP: "10.0.0.3"}); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("a wrong password: %v", err)
	}
}

// Trying the raw form too costs a second verification, for an unknown email
// as for an account: a wrong unnormalised password must not take twice as
// long for an account that exists, which would tell who has one. Counted in
// argon2id computations: the first unknown email makes the dummy hash in
// place of its first verification.
func TestLoginVerifiesAsOftenForAnUnknownEmail(t *testing.T) {
	f := newFixture()
	register(t, f, "alice@example.com")
	hasher := &countingHasher{}
	login := New(Deps{Users: f.users, Profiles: f.cache, Sessions: f.sessions, Hasher: hasher, Tokens: fakeIssuer{},
		Guard: &countGuard{n: 100, m: map[string]int{}}, NewID: func() string { return "id" }}).Login
	for _, pw := range []string{nfdPassword, nfcPassword} {
		var counts []int
		for _, email := range []string{"alice@example.com", "nobody@example.com"} {
			before := hasher.ops
			if _, err := login.Handle(ctx, Login{Email: email, Password: pw, IP: "10.0.0.1"}); !errors.Is(err, ErrBadCredentials) {
				t.Fatalf("%s: %v", email, err)
			}
			counts = append(counts, hasher.ops-before)
		}
		if counts[0] != counts[1] {
			t.Errorf("password %+q: %d verifications for an account, %d for an unknown email", pw, counts[0], counts[1])
		}
	}
}

// The 128-character bound is on the normalised form, the password itself: a
// password of 100 characters with 40 accented letters is 140 code points
// typed decomposed (NFD). Counted as typed, such a device could neither
// register the password nor log in with it (422) where another device did.
func TestPasswordLengthIsCountedNormalised(t *testing.T) {
	nfc := strings.Repeat("\u00e9t", 40) + strings.Repeat("x", 20)
	nfd := norm.NFD.String(nfc)
	if utf8.RuneCountInString(nfc) != 100 || utf8.RuneCountInString(nfd) != 140 {
		t.Fatalf("lengths %d and %d", utf8.RuneCountInString(nfc), utf8.RuneCountInString(nfd))
	}
	f := newFixture()
	for i, c := range []struct{ registered, typed string }{{nfc, nfd}, {nfd, nfc}} {
		email := fmt.Sprintf("user%d@example.com", i)
		if _, err := f.app.Register.Handle(ctx, Register{Email: email, Password: c.registered, Name: "A", IP: "10.0.0.1"}); err != nil {
			t.Fatalf("register with the %d-code-point form: %v", utf8.RuneCountInString(c.registered), err)
		}
		if _, err := f.app.Login.Handle(ctx, Login{Email: email, Password: c.typed, IP: "10.0.0.1"}); err != nil {
			t.Fatalf("log in with the %d-code-point form: %v", utf8.RuneCountInString(c.typed), err)
		}
	}
}
