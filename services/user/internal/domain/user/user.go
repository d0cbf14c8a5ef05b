// Package user holds the rules about accounts: what a valid email, name and
// password are, and what the store must guarantee (one account per email).
// It knows nothing of HTTP, SQL or brokers.
package user

import (
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// User is an account. PasswordHash is a PHC string (argon2id); it leaves the
// service never: Profile is what responses and caches carry.
type User struct {
	ID           string
	Email        string
	Name         string
	PasswordHash string
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// Profile is the public face of a User: everything but the hash.
type Profile struct {
	ID        string
	Email     string
	Name      string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Profile drops the password hash.
func (u User) Profile() Profile {
	return Profile{ID: u.ID, Email: u.Email, Name: u.Name, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt}
}

// MaxNameLen bounds a display name in characters.
const MaxNameLen = 100

// maxTypedNameBytes bounds a name as typed, before it is composed: a
// character within MaxNameLen may arrive as up to four code points (a
// Vietnamese "ệ" is "e" and two marks, a Hangul syllable two or three jamo).
// A longer name is refused unread.
const maxTypedNameBytes = 4 * MaxNameLen * utf8.UTFMax

// NormalizeName trims the name, composes it (NFC) and checks its length in
// code points, as sent or composed, whichever is fewer. A device may send
// "é" as "e" and a combining accent (NFD: macOS, some input methods):
// counted as it came, a 60-letter name with an accent on every letter was
// over MaxNameLen, and the same name was stored in two forms. Counted
// composed only, the few letters NFC decomposes (composition exclusions:
// "क़" U+0958 is "क" and a nukta) counted twice, and a name the API schema's
// maxLength accepts as sent was refused. NFC, not NFKC: a name shows what
// its owner typed, ligatures and circled digits included. Errors name the
// field "name".
func NormalizeName(name string) (string, *FieldError) {
	name = strings.TrimSpace(name)
	if len(name) > maxTypedNameBytes {
		return "", &FieldError{Field: "name", Detail: "must be at most 100 characters"}
	}
	sent := utf8.RuneCountInString(name)
	name = norm.NFC.String(name)
	switch n := min(sent, utf8.RuneCountInString(name)); {
	case n == 0:
		return "", &FieldError{Field: "name", Detail: "must not be empty"}
	case n > MaxNameLen:
		return "", &FieldError{Field: "name", Detail: "must be at most 100 characters"}
	}
	if decodingLoss(name) {
		return "", &FieldError{Field: "name", Detail: "must be valid UTF-8"}
	}
	visible := false
	for _, r := range name {
		// C0 and C1 controls (NUL, newline, NEL, ...), line and paragraph
		// separators, and the bidi controls that make "Alice\u202Eevil"
		// display reversed: a name is shown to other people, who must see
		// what was stored.
		if unicode.IsControl(r) || unicode.In(r, unicode.Zl, unicode.Zp, unicode.Bidi_Control) {
			return "", &FieldError{Field: "name", Detail: "must not contain control characters"}
		}
		visible = visible || !blank(r)
	}
	if !visible {
		return "", &FieldError{Field: "name", Detail: "must not be empty"}
	}
	return name, nil
}

// blank reports whether r shows nothing by itself, so that a name of only
// such characters is empty on screen, which NormalizeName forbids: format
// characters (zero-width space and joiners, BOM, soft hyphen), combining
// marks and spaces; the other default-ignorable code points, which include
// letters (the Hangul fillers U+3164, U+115F, U+1160, U+FFA0 render blank
// and were accepted as a name on their own, the usual trick for a blank
// display name); the braille blank U+2800, a symbol drawn as nothing; and
// what has no glyph anyone else sees (private use, noncharacters). Beside a
// character that shows, each stays allowed: a name keeps what its owner typed.
//
// A code point unassigned in Go's tables (Unicode 15.0) is not blank: it may
// be a character of a later version, which the user's device draws (the
// emoji "🫩" U+1FAE9 and the Garay script are Unicode 16), and a name of only
// those was refused as empty. The code points Unicode keeps for future
// characters that render blank are Other_Default_Ignorable_Code_Point
// already, assigned or not (U+2065, U+FFF0–U+FFF8, U+E0000–U+E0FFF), so no
// later character can be drawn as nothing and pass here.
func blank(r rune) bool {
	return unicode.IsSpace(r) || r == '\u2800' || unicode.In(r, unicode.Cf, unicode.Co, unicode.M,
		unicode.Noncharacter_Code_Point, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector)
}

// decodingLoss reports whether s holds U+FFFD or bytes that are not UTF-8.
// encoding/json decodes bytes that are not UTF-8, and a lone UTF-16
// surrogate escape, to U+FFFD without an error, so a request's text may
// carry it where the client sent something else: stored, the value is not
// what was sent, and a password of that shape matches every other byte
// sequence decoded the same way. The service cannot tell a U+FFFD someone
// typed from one of those, so sign-up and profile changes refuse both; the
// price, nobody putting "�" in a name, address or password on purpose,
// is one nobody pays. Logins do not check it: an account stored with one
// before still logs in.
func decodingLoss(s string) bool { return strings.ContainsRune(s, utf8.RuneError) }

// Rename changes the display name.
func (u *User) Rename(name string, now time.Time) error {
	n, fe := NormalizeName(name)
	if fe != nil {
		return &ValidationError{Fields: []FieldError{*fe}}
	}
	u.Name = n
	u.UpdatedAt = now
	return nil
}
