package user

import (
	"context"
	_ "embed"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

// Password length bounds in characters. The policy follows NIST SP 800-63B:
// length and a block list matter; composition rules ("one digit, one symbol")
// push people to predictable patterns and are not imposed. The upper bound
// only keeps a single request from buying seconds of hashing.
const (
	MinPasswordLen = 10
	MaxPasswordLen = 128
)

// commonPasswords is the block list CheckPassword refuses as "too common":
// the 1,090 passwords of 10 characters or more among the 30,000 most common
// that zxcvbn ships, and a few of the project's own (common_passwords.txt
// says where they come from and its licence file how they may be shipped).
// It was 15 entries, a token of NIST SP 800-63B's "values known to be
// commonly used"; the short passwords of bigger lists are refused by length
// already. Read once, at the first check, so a start pays nothing for it.
//
//go:embed common_passwords.txt
var commonPasswordsFile string

var commonPasswords = sync.OnceValue(func() map[string]bool {
	m := make(map[string]bool, 1200)
	for line := range strings.Lines(commonPasswordsFile) {
		line = strings.TrimRight(line, "\r\n")
		if line != "" && !strings.HasPrefix(line, "#") {
			m[line] = true
		}
	}
	return m
})

// CheckPasswordLength refuses a password longer than any account can have.
// Login calls it before hashing, so a megabyte "password" is turned away
// without the hasher reading it.
func CheckPasswordLength(pw string) *FieldError {
	// utf8.UTFMax bytes per character bound the count without reading a
	// huge input to the end.
	if len(pw) > MaxPasswordLen*utf8.UTFMax || utf8.RuneCountInString(pw) > MaxPasswordLen {
		return &FieldError{Field: "password", Detail: "must be at most 128 characters"}
	}
	return nil
}

// NormalizePassword is the form a password is checked, hashed and verified
// in: NFKC, as NIST SP 800-63B §5.1.1.2 asks of Unicode passwords. The same
// password reaches the service in other byte sequences from other devices:
// "é" as one code point or as "e" and a combining accent (NFC against NFD),
// "Ｐ" from a full-width input method against "P"; hashed as they came, one
// of them was a wrong password. The length rules apply to the result; an
// input longer than any password's typed form (maxTypedPasswordBytes) is
// returned as it is, to be refused unread.
func NormalizePassword(pw string) string {
	if len(pw) > maxTypedPasswordBytes {
		return pw
	}
	return norm.NFKC.String(pw)
}

// maxTypedPasswordBytes bounds a password as typed, before normalisation,
// which composes what a device may send decomposed: a character within
// MaxPasswordLen can arrive as up to four code points ("ᾇ" is α and three
// marks; a Hangul syllable three jamo).
const maxTypedPasswordBytes = 4 * MaxPasswordLen * utf8.UTFMax

// CheckPassword applies the password policy. email is the account's
// (normalised) address: a password that contains its local part (of
// minLocalPartLen characters or more) or the whole address, in either
// spelling of its domain, is refused.
func CheckPassword(pw, email string) *FieldError {
	if fe := CheckPasswordLength(pw); fe != nil {
		return fe
	}
	switch {
	case decodingLoss(pw): // invalid UTF-8 as well as the U+FFFD decoding made of it
		return &FieldError{Field: "password", Detail: "must be valid UTF-8"}
	case utf8.RuneCountInString(pw) < MinPasswordLen:
		return &FieldError{Field: "password", Detail: "must be at least 10 characters"}
	}
	lower := strings.ToLower(pw)
	if commonPasswords()[lower] {
		return &FieldError{Field: "password", Detail: "is too common"}
	}
	if first, _ := utf8.DecodeRuneInString(lower); strings.Count(lower, string(first)) == utf8.RuneCountInString(lower) {
		return &FieldError{Field: "password", Detail: "must not repeat a single character"}
	}
	// The address is folded as NormalizeEmail folds it (a final sigma "ς"
	// is "σ" there), so the password is compared folded alike: lower-cased
	// only, "σοφιας2024!" passed for the address σοφιας@..., stored σοφιασ@.
	folded := fold(pw)
	if local, _, _ := strings.Cut(email, "@"); utf8.RuneCountInString(local) >= minLocalPartLen && strings.Contains(folded, local) {
		return &FieldError{Field: "password", Detail: "must not contain the email address"}
	}
	for _, spelling := range emailSpellings(email) {
		if strings.Contains(folded, spelling) {
			return &FieldError{Field: "password", Detail: "must not contain the email address"}
		}
	}
	return nil
}

// minLocalPartLen is the shortest local part, in characters, a password is
// refused for containing: a shorter one is in too many passwords. Counted
// in bytes, a single CJK character (3 bytes) was looked for, so the owner of
// 王@example.cn could use no password holding 王, while "ab@..." was exempt.
// The whole address is looked for however short its local part
// (emailSpellings): "AB@x.co!!!" is no password for ab@x.co.
const minLocalPartLen = 3

// emailSpellings is the normalised address email as NormalizeEmail stores
// it (its domain in Unicode) and, for an internationalised domain, with its
// A-labels too ("a@xn--bcher-kva.de" beside "a@bücher.de"): the spelling
// DNS carries and many mail clients and password managers show, so the one
// a password is likely to be copied from. IDNA's A-labels are lower-case
// ASCII, which fold leaves as it is.
func emailSpellings(email string) []string {
	if email == "" {
		return nil
	}
	spellings := []string{email}
	at := strings.LastIndexByte(email, '@')
	if at < 0 {
		return spellings
	}
	if a, err := idna.Lookup.ToASCII(email[at+1:]); err == nil && a != email[at+1:] {
		spellings = append(spellings, email[:at+1]+a)
	}
	return spellings
}

// Hasher turns passwords into self-describing hash strings and checks them.
// The implementation (argon2id) is an adapter: the domain only needs to
// know that a hash can be checked without the hashing parameters at hand.
type Hasher interface {
	Hash(ctx context.Context, password string) (string, error)
	// Verify reports whether password matches encoded. An error means the
	// encoded hash is unreadable, not that the password is wrong.
	Verify(ctx context.Context, password, encoded string) (bool, error)
	// NeedsRehash reports whether encoded was made with other settings than
	// new hashes get, so a login can upgrade it while the password is at hand.
	NeedsRehash(encoded string) bool
}
