package user

import (
	"net/mail"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

// MaxEmailLen is the longest address RFC 5321 lets through SMTP, in bytes of
// its shortest spelling: an internationalised domain's labels counted in
// UTF-8 or as their A-labels (shortestLen).
const MaxEmailLen = 254

// MaxTypedEmailBytes bounds an address as typed (trimmed), before it is
// normalised: NFKC and case folding shorten a character at most fourfold (a
// 4-byte mathematical "𝐚" is "a"), and a U-label holds at most four bytes
// for each byte of its A-label (shortestLen), so nothing longer can normalise to
// MaxEmailLen bytes (but a contrived domain typed decomposed, a Hangul
// syllable as three jamo), and it is refused unread.
const MaxTypedEmailBytes = MaxEmailLen * utf8.UTFMax

// NormalizeEmail returns the canonical form under which an address is stored
// and looked up: trimmed, NFKC-normalised and lower-cased. RFC 5321 lets the
// local part be case-sensitive, but no mainstream provider treats it so, and
// folding case is what stops "Alice@x" and "alice@x" becoming two accounts.
// NFKC does the same for addresses that only look alike: "é" typed as one
// code point or as "e" plus a combining accent, and full-width "ａ" against
// "a". It runs before lower-casing (compatibility forms such as "ℌ" become
// upper-case letters) and again after it, so the result is a fixed point.
// Lower-casing alone left a few letters whose upper case is another's: case
// is folded (foldLetter), so "ΣΟΦΙΑΣ@x" and "σοφιας@x" are one address.
// An internationalised domain is kept in Unicode, its A-labels decoded
// (unicodeDomain), so "a@bücher.de" and "a@xn--bcher-kva.de" are one too.
// Display names ("Alice <a@x>") are refused rather than silently stripped.
func NormalizeEmail(email string) (string, *FieldError) {
	e := strings.TrimSpace(email)
	// Before normalising: NFKC of a megabyte address (a sign-up body may
	// be one) cost seconds of CPU, "\ufdfa" becoming 18 letters.
	if len(e) > MaxTypedEmailBytes {
		return "", &FieldError{Field: "email", Detail: "must be at most 254 bytes"}
	}
	e = canonical(e)
	if e == "" {
		return "", &FieldError{Field: "email", Detail: "must not be empty"}
	}
	if shortestLen(e) > MaxEmailLen {
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

// canonical is an address's case-insensitive compatibility form: NFKC,
// lower-cased, case-folded (foldLetter) and NFKC again, which composes what
// the folding freed (the old Cyrillic "ᲂ" with a diaeresis is "ӧ" once it is
// "о"); then its domain in Unicode (unicodeDomain), folded again where that
// decoded a label.
func canonical(s string) string {
	s = fold(s)
	if d, changed := unicodeDomain(s); changed {
		s = fold(d)
	}
	return s
}

func fold(s string) string {
	s = strings.ToLower(norm.NFKC.String(s))
	if strings.ContainsFunc(s, func(r rune) bool { return foldLetter(r) != r }) {
		s = strings.Map(foldLetter, s)
	}
	return norm.NFKC.String(s)
}

// unicodeDomain writes the domain of the folded address s (what follows its
// last "@") as IDNA's U-labels, and reports whether that changed anything.
// An internationalised domain has two spellings of one name: "bücher" as
// typed and its A-label "xn--bcher-kva" (RFC 5890), which DNS carries and
// many mail clients and password managers show; and IDNA reads the
// ideographic full stop "。" (what NFKC makes of the half-width "｡") as the
// dot between labels (UTS #46). Left apart, each spelling signed up as an
// account of its own for the one mailbox, and its owner, signed up under
// one, found no account logging in under another. The Unicode form is kept,
// as addresses are stored as typed: only an A-label is decoded, and only a
// valid one (idna.Lookup checks what it decodes to), since anything else
// starting "xn--" is not an IDN and DNS reads it as it is.
func unicodeDomain(s string) (string, bool) {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return s, false
	}
	domain := s[at+1:]
	if !strings.Contains(domain, "xn--") && !strings.ContainsRune(domain, '\u3002') {
		return s, false
	}
	labels := strings.Split(strings.ReplaceAll(domain, "\u3002", "."), ".")
	for i, l := range labels {
		if !strings.HasPrefix(l, "xn--") {
			continue
		}
		if u, err := idna.Lookup.ToUnicode(l); err == nil && u != "" && !strings.Contains(u, ".") {
			labels[i] = u
		}
	}
	d := strings.Join(labels, ".")
	return s[:at+1] + d, d != domain
}

// shortestLen is the length in bytes of the address s in its shortest
// spelling: each label of its domain that IDNA accepts counted as its U-label
// (s holds it so, from unicodeDomain) or as its A-label, whichever is
// shorter. RFC 5321 counts an address with A-labels, the form DNS carries,
// and RFC 6531 in UTF-8. Counted decoded only, a label may grow: a Cyrillic
// letter is one byte of punycode but two of UTF-8, so a valid 206-byte
// address typed with A-labels was 355 bytes once unicodeDomain decoded them,
// refused in both its spellings and locking out an account stored under it.
// Counted as A-labels only, "bücher" (13 bytes as one) would have refused
// addresses accepted before. A U-label has no more characters than its own
// bytes or its A-label's, so the address stored stays within MaxEmailLen
// characters, as the API's schema says. It encodes nothing for an address
// that fits as it is, and stops counting past MaxEmailLen, so a hostile
// domain of hundreds of labels costs a few encodings at most.
func shortestLen(s string) int {
	if len(s) <= MaxEmailLen {
		return len(s)
	}
	at := strings.LastIndexByte(s, '@')
	rest := s[at+1:]
	n := at + 1
	for n <= MaxEmailLen {
		label, more, found := strings.Cut(rest, ".")
		w := len(label)
		// An A-label is "xn--" and at least a byte a character: a label
		// no longer than that as it is (any ASCII one, "bücher") is not
		// encoded.
		if w > len("xn--")+utf8.RuneCountInString(label) {
			if a, err := idna.Lookup.ToASCII(label); err == nil {
				w = min(w, len(a))
			}
		}
		n += w
		if !found {
			return n
		}
		n++
		rest = more
	}
	return n
}

// foldLetter maps a lower-case letter to the letter Unicode's case folding
// gives, where lower-casing keeps the two apart: the letter its upper case
// lower-cases to. After NFKC that is the final sigma "ς" (Σ lower-cases to
// "σ", so the address signed up as "ΣΟΦΙΑΣ" was another account than the
// same one typed "σοφιας") and the old Cyrillic letter forms U+1C80–U+1C88
// ("ᲂ" is a tall "о"). The dotless "ı" stays apart, as in Unicode's default
// folding (its upper case I is i's; only Turkic folding joins them).
func foldLetter(r rune) rune {
	if r < 0x80 || r == 'ı' || !unicode.IsLetter(r) {
		return r
	}
	if f := unicode.ToLower(unicode.ToUpper(r)); f != r && unicode.IsLetter(f) {
		return f
	}
	return r
}

// CheckNewEmail reports why email, in the form NormalizeEmail returns, may
// not be the address of a new account: it holds a character that shows
// nothing of its own where the address is displayed, so it would register
// beside the address without it, an account that looks like someone else's.
// NFKC keeps such characters, and mail.ParseAddress accepts any non-ASCII
// one. Refused are controls (Cc), format characters (Cf: zero-width space,
// joiners, BOM, soft hyphen, bidi embeddings, overrides and isolates, tags),
// line and paragraph separators, white space, private-use and unassigned
// code points (anything unicode.IsGraphic is not, or that is a space), and
// the other default-ignorable code points (variation selectors, Hangul
// fillers), much as PRECIS's IdentifierClass (RFC 8264) refuses them. The
// price is that an internationalised domain name needing a joiner (IDNA2008
// allows ZWJ and ZWNJ in some scripts) cannot sign up.
//
// U+FFFD is refused too, as "must be valid UTF-8": it stands for bytes the
// request's decoding lost (decodingLoss).
//
// So is a local part or a domain label mixing scripts (mixedScripts): a
// Cyrillic "а" or a Greek "ο" among Latin letters reads as the Latin one,
// and "аlice@x" would register beside "alice@x" looking like it, as an
// invisible character does.
//
// Only sign-up applies it. An account an older release stored with such an
// address keeps it, and logs in under it: NormalizeEmail, which a login and
// the email migrations use, accepts it still.
func CheckNewEmail(email string) *FieldError {
	if decodingLoss(email) {
		return &FieldError{Field: "email", Detail: "must be valid UTF-8"}
	}
	if strings.ContainsFunc(email, invisible) {
		return &FieldError{Field: "email", Detail: "must not contain invisible or control characters"}
	}
	local, domain, _ := strings.Cut(email, "@")
	if mixedScripts(local) || slices.ContainsFunc(strings.Split(domain, "."), mixedScripts) {
		return &FieldError{Field: "email", Detail: "must not mix letters of different scripts in its local part or a domain label"}
	}
	if strayMark(email) {
		return &FieldError{Field: "email", Detail: "must not put a combining mark on a digit, a punctuation mark, or a Latin, Greek or Cyrillic letter that has no such letter precomposed"}
	}
	if len(local) > MaxLocalLen {
		return &FieldError{Field: "email", Detail: "must have at most 64 bytes before the @"}
	}
	if !hostName(domain) {
		return &FieldError{Field: "email", Detail: "must have a domain name after the @, like example.com"}
	}
	return nil
}

// MaxLocalLen bounds the part of a new account's address before the @, in
// bytes (RFC 5321 section 4.5.3.1.1; RFC 6531 keeps it for UTF-8 addresses).
const MaxLocalLen = 64

// hostName reports whether domain, as NormalizeEmail leaves it (in Unicode),
// is a name mail can be sent to: IDNA2008 registration rules (letters,
// digits and hyphens, no hyphen first or last, labels of at most 63 bytes
// as A-labels, a valid A-label where one is written as such; code points
// as UTS #46's table has them, so emoji pass, as the registered "i❤.ws"
// does) and a top-level label not all digits (RFC 3696 section 2: "1.2.3.4" is an IP address, not
// a name). mail.ParseAddress takes any dot-atom, so "x_y.com", "x.com%00",
// "-x.com" and a 64-letter label signed up, and so did the domain literal
// "[127.0.0.1]", which would have mail sent to an address of the caller's
// choosing; such addresses are refused at sign-up (a login still finds an
// account stored with one before).
func hostName(domain string) bool {
	if _, err := idna.Registration.ToASCII(domain); err != nil {
		return false
	}
	tld := domain[strings.LastIndexByte(domain, '.')+1:]
	return strings.ContainsFunc(tld, func(r rune) bool { return r < '0' || r > '9' })
}

// mixedScripts reports whether part holds letters of more than one script,
// other than the mixes Chinese, Japanese and Korean are written in (Han with
// Latin, and with Hiragana and Katakana, Bopomofo, or Hangul): UTS #39's
// "highly restrictive" level, which browsers apply to domain labels before
// they show one in Unicode. Digits, punctuation and combining marks belong
// to no script of their own (Common, Inherited) and mix with any.
//
// It does not catch an address written wholly in another script that looks
// like a Latin one (Cyrillic "асе" and "ace"): telling those apart needs
// Unicode's confusables table, which this service does not carry. And it
// refuses the rare real address that mixes, say, Cyrillic and Latin letters
// in one local part; its owner signs up with another.
//
// It answers as soon as the scripts seen are no such mix (more letters can
// only add scripts), so the list it checks each letter against stays at the
// four of the largest mix, whatever letters of how many scripts a client
// sends: sign-ups it is applied to are counted by no quota when another
// field makes them a 422.
func mixedScripts(part string) bool {
	var seen []*unicode.RangeTable
	for _, r := range part {
		// Most letters are of a script seen already: those few tables
		// first, before the hundred and more of every script.
		if slices.ContainsFunc(seen, func(s *unicode.RangeTable) bool { return unicode.Is(s, r) }) {
			continue
		}
		s := scriptOf(r)
		if s == nil {
			continue
		}
		if seen = append(seen, s); len(seen) > 1 && !cjkMix(seen) {
			return true
		}
	}
	return false
}

// strayMark reports whether a nonspacing mark is left on a Latin, Greek or
// Cyrillic letter once email is composed (NFC): one that makes no letter
// those scripts have precomposed. Such a mark can hide in the letter under
// it, "i" with U+0307 reading as "i" and "o" with U+0338 as "ø", and NFKC does
// not make the two spellings one, so each signed up beside the address it
// looks like. Every letter of the languages written in those scripts is
// precomposed but for a few (Lithuanian's accented "i̇", some Yoruba and
// Navajo vowels), whose addresses cannot sign up: the price. Scripts
// written with marks (Devanagari, Hebrew points, Thai) are not looked at.
//
// A mark on a character of no script (Common: digits, "_", "-", ".", "@")
// or on nothing (the address's first character) is refused too: no
// language writes one there, and "_" with U+0332 or "-" with U+0335 draws
// the same line twice.
func strayMark(email string) bool {
	var base rune
	for _, r := range norm.NFC.String(email) {
		if !unicode.Is(unicode.Mn, r) {
			base = r
			continue
		}
		if base == 0 || unicode.In(base, unicode.Latin, unicode.Greek, unicode.Cyrillic, unicode.Common) {
			return true
		}
	}
	return false
}

// cjkMix reports whether the scripts are all of one of cjkMixes.
func cjkMix(scripts []*unicode.RangeTable) bool {
	for _, mix := range cjkMixes {
		if !slices.ContainsFunc(scripts, func(s *unicode.RangeTable) bool { return !slices.Contains(mix, s) }) {
			return true
		}
	}
	return false
}

// cjkMixes are the sets of scripts mixedScripts lets one part hold.
var cjkMixes = [][]*unicode.RangeTable{
	{unicode.Latin, unicode.Han, unicode.Hiragana, unicode.Katakana},
	{unicode.Latin, unicode.Han, unicode.Bopomofo},
	{unicode.Latin, unicode.Han, unicode.Hangul},
}

// scriptOf is the script of the letter r, or nil for a character of the
// Common or Inherited script (or of none). Those two are looked at first:
// punctuation, symbols and combining marks are of no other, and were each
// looked up in all the hundred and more tables of unicode.Scripts (a
// 252-byte address of "§" cost 0.3 ms: BenchmarkCheckNewEmail).
func scriptOf(r rune) *unicode.RangeTable {
	if r < 0x80 {
		if unicode.IsLetter(r) {
			return unicode.Latin
		}
		return nil
	}
	if unicode.In(r, unicode.Common, unicode.Inherited) {
		return nil
	}
	for name, t := range unicode.Scripts {
		if name != "Common" && name != "Inherited" && unicode.Is(t, r) {
			return t
		}
	}
	return nil
}

// invisible reports whether r is a character CheckNewEmail refuses.
func invisible(r rune) bool {
	return !unicode.IsGraphic(r) || unicode.IsSpace(r) ||
		unicode.In(r, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector)
}

// VisibleEmail is what email, in the form NormalizeEmail returns, reads as
// where it is displayed: without the characters CheckNewEmail refuses, and
// normalised again as NormalizeEmail does (a character between a letter and
// its combining accent kept NFKC from composing them). An account stored
// under an address whose visible form is another's shadows it: the two look
// alike. An address CheckNewEmail accepts is its own visible form.
func VisibleEmail(email string) string {
	if !strings.ContainsFunc(email, invisible) {
		return email
	}
	v := strings.Map(func(r rune) rune {
		if invisible(r) {
			return -1
		}
		return r
	}, email)
	return canonical(v)
}
