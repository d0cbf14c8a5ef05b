package user

import (
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

func TestNormalizeEmail(t *testing.T) {
	ok := map[string]string{
		"alice@example.com":       "alice@example.com",
		"  Alice@Example.COM\t":   "alice@example.com",
		"a.b+tag@sub.example.org": "a.b+tag@sub.example.org",
		// One address however its characters are encoded or cased.
		"e\u0301lise@example.com":     "\u00e9lise@example.com",
		"\u00c9lise@example.com":      "\u00e9lise@example.com",
		"\uff41lice@\uff25xample.com": "alice@example.com",
		"\u210cana@example.com":       "hana@example.com",
		"\u212aim@example.com":        "kim@example.com",
		// Case folded, not only lower-cased: "ΣΟΦΙΑΣ" lower-cases to
		// "σοφιασ", and the same address typed in lower case ends in the
		// final sigma; the old Cyrillic letter forms fold to their letters.
		"\u03a3\u039f\u03a6\u0399\u0391\u03a3@example.com": "\u03c3\u03bf\u03c6\u03b9\u03b1\u03c3@example.com",
		"\u03c3\u03bf\u03c6\u03b9\u03b1\u03c2@example.com": "\u03c3\u03bf\u03c6\u03b9\u03b1\u03c3@example.com",
		"\u1c82lga@example.com":                            "\u043elga@example.com",
		"\u1c82\u0308@example.com":                         "\u04e7@example.com", // composed once folded
		// Dotless i is its own letter (Unicode folds it to i for Turkic only).
		"\u0131rmak@example.com": "\u0131rmak@example.com",
	}
	for in, want := range ok {
		if again, _ := NormalizeEmail(want); again != want {
			t.Errorf("NormalizeEmail(%q) = %q: the normal form is not a fixed point", want, again)
		}
		got, fe := NormalizeEmail(in)
		if fe != nil || got != want {
			t.Errorf("NormalizeEmail(%q) = %q, %v; want %q", in, got, fe, want)
		}
	}
	for _, in := range []string{"", "alice", "alice@", "@example.com", "Alice <alice@example.com>", "alice@localhost",
		"alice@example.com.", "a b@example.com", "a\x00b@example.com", strings.Repeat("a", 250) + "@example.com"} {
		if got, fe := NormalizeEmail(in); fe == nil || fe.Field != "email" {
			t.Errorf("NormalizeEmail(%q) = %q accepted", in, got)
		}
	}
}

func TestCheckPassword(t *testing.T) {
	// The local part as NormalizeEmail stores it, in the password as typed:
	// a final sigma, upper case, full-width letters.
	for email, pw := range map[string]string{"\u03c3\u03bf\u03c6\u03b9\u03b1\u03c2@example.gr": "\u03c3\u03bf\u03c6\u03b9\u03b1\u03c2-2024!",
		"ALICE@example.com": "my-Alice-2024", "bob@example.com": "\uff22\uff2f\uff22-is-my-name",
		// A local part too short to be looked for alone: the whole address.
		"ab@example.com": "AB@example.com", "x@example.org": "my x@example.org!",
		// Three characters of a local part are looked for however few bytes
		// they are; an internationalised domain in its A-label spelling too.
		"王小明@example.cn": "王小明-2024-password", "ab@bücher.de": "AB@XN--BCHER-KVA.DE!",
		"ab@xn--bcher-kva.de": "my ab@xn--bcher-kva.de", "王@例え.jp": "王@xn--r8jz45g.jp-2024"} {
		e, fe := NormalizeEmail(email)
		if fe != nil {
			t.Fatal(fe)
		}
		if fe := CheckPassword(NormalizePassword(pw), e); fe == nil || fe.Detail != "must not contain the email address" {
			t.Errorf("CheckPassword(%+q, %+q) = %v", pw, e, fe)
		}
	}
	// A local part under 3 characters is not looked for alone, in whatever
	// script: 王 (3 bytes) no more than "ab" (before, every password holding
	// 王 was refused for 王@example.cn). Nor is the domain alone.
	for email, pw := range map[string]string{"王@example.cn": "王小明的密码很长很长",
		"ab@example.com": "abcdefghijk-2024", "ée@example.fr": "ée-is-a-long-pass", "ab@bücher.de": "xn--bcher-kva-2024"} {
		if fe := CheckPassword(pw, email); fe != nil {
			t.Errorf("CheckPassword(%+q, %+q) = %v", pw, email, fe)
		}
	}
	for _, pw := range []string{"correct horse battery", "Tr0ub4dor&3x", strings.Repeat("ab", 64), "пароль-длинный"} {
		if fe := CheckPassword(pw, "alice@example.com"); fe != nil {
			t.Errorf("CheckPassword(%q) = %v", pw, fe)
		}
	}
	for _, pw := range []string{"", "short", "123456789", strings.Repeat("a", 129), strings.Repeat("ab", 1<<19), strings.Repeat("é", 129), "aaaaaaaaaaaa", "Password123", "xxalice2024xx", "\xff\xfe invalid utf8",
		// What encoding/json makes of bytes that are not UTF-8.
		"correct horse \ufffd battery"} {
		if fe := CheckPassword(pw, "alice@example.com"); fe == nil || fe.Field != "password" {
			t.Errorf("CheckPassword(%q) accepted", pw)
		}
	}
}

func TestNormalizeName(t *testing.T) {
	if n, fe := NormalizeName("  Alice  "); fe != nil || n != "Alice" {
		t.Fatalf("%q %v", n, fe)
	}
	// Scripts and emoji that need joiners stay allowed, and so do marks,
	// variation selectors and tags on a character that shows.
	for _, in := range []string{"Zoë", "李小龙", "می\u200cخواهم", "👩\u200d💻", "❤\ufe0f", "한글", "x\u3164y", "\ue000Ann",
		"مُحَمَّد", "שָׁלוֹם", "👨\u200d👩\u200d👧", "葛\U000E0100", "\u115f\u1161", "🏴\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F",
		// Characters newer than Go's Unicode 15.0 tables, alone: an emoji
		// of Unicode 16, a CJK ideograph of 15.1.
		"\U0001FAE9", "\U0002EBF0"} {
		if n, fe := NormalizeName(in); fe != nil || n != in {
			t.Errorf("NormalizeName(%q) = %q, %v", in, n, fe)
		}
	}
	for _, in := range []string{"", "   ", strings.Repeat("é", 101), "a\x00b", "line\nbreak", "tab\there", "del\x7f",
		"next\u0085line", "Zo\ufffde", "line\u2028sep", "para\u2029sep", "Alice\u202eevil", "iso\u2066late", "mark\u200fRTL",
		// Nothing visible: format characters and a lone combining mark.
		"\u200b", "\ufeff", "\u2060\u00ad", "\u200d", "\u0301", " \u200b ",
		// Letters and symbols that render blank: Hangul fillers (default
		// ignorable though they are letters), the braille blank, a variation
		// selector; code points with no glyph anyone else has: private
		// use, a noncharacter; and unassigned ones Unicode keeps for
		// characters that render blank.
		"\u3164", "\u115f\u1160", "\uffa0", "\u2800\u2800", "\ufe0f", "\ue000", "\U000F0000", "\ufffe", "\ufdd0",
		"\u2065", "\ufff0", "\U000E0FFF"} {
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

func TestCheckPasswordLength(t *testing.T) {
	if fe := CheckPasswordLength(strings.Repeat("é", MaxPasswordLen)); fe != nil {
		t.Errorf("128 two-byte characters refused: %v", fe)
	}
	for _, pw := range []string{strings.Repeat("é", MaxPasswordLen+1), strings.Repeat("x", 1<<20)} {
		if fe := CheckPasswordLength(pw); fe == nil || fe.Field != "password" {
			t.Errorf("%d bytes accepted", len(pw))
		}
	}
}

func TestCheckNewEmail(t *testing.T) {
	for _, in := range []string{"alice@example.com", "\u00e9lise@example.com", "\u674e@\u4f8b\u5b50.\u4e2d\u56fd",
		"\u0645\u062b\u0627\u0644@example.com", "a.b+tag@sub.example.org", "e\u0301@example.com"} {
		if fe := CheckNewEmail(in); fe != nil {
			t.Errorf("CheckNewEmail(%+q) = %v", in, fe)
		}
	}
	for _, ch := range []string{"\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u202a", "\u202e", "\u2066",
		"\u2069", "\u200e", "\u061c", "\U000e0061", "\u0085", "\u009f", "\u2028", "\u2029", "\u1680", "\ue000",
		"\U000f0000", "\ufe0f", "\U000e0100", "\ufffd", "\u115f", "\u3164", "\uffa0", "\u034f", "\u180e", "\U0001bca0", "\u0378"} {
		in := "ali" + ch + "ce@example.com"
		if fe := CheckNewEmail(in); fe == nil || fe.Field != "email" {
			t.Errorf("CheckNewEmail(%+q) accepted", in)
		}
	}
}

// A new account's address must be one mail can reach: mail.ParseAddress
// takes any dot-atom after the @ and any length before it.
func TestCheckNewEmailRefusesUndeliverableAddresses(t *testing.T) {
	for _, in := range []string{strings.Repeat("a", 64) + "@example.com", "münchen@münchen.de",
		"a@例え.テスト", "a@xn--bcher-kva.example", "a@x.xn--p1ai", "a@sub-1.example.com",
		"a@" + strings.Repeat("b", 63) + ".com", "a@x.c",
		// As real users type them: mixed case, a tag, subdomains, A-labels
		// in capitals, an emoji domain.
		"Alice+Tag@Mail.Example.COM", "a@XN--BCHER-KVA.DE", "a@xn--i-7iq.ws"} {
		n, fe := NormalizeEmail(in) // as sign-up does first
		if fe == nil {
			fe = CheckNewEmail(n)
		}
		if fe != nil {
			t.Errorf("sign-up with %+q: %v", in, fe)
		}
	}
	for _, in := range []string{strings.Repeat("a", 65) + "@example.com", strings.Repeat("é", 33) + "@example.com",
		"a@" + strings.Repeat("b", 64) + ".com", "a@x_y.com", "a@x.com%00", "a@-x.com", "a@x-.com", "a@[127.0.0.1]",
		"a@1.2.3.4", "a@x.123", "a@xn--zz.com", "a@x!.com", "a@x*y.com"} {
		n, fe := NormalizeEmail(in)
		if fe != nil {
			t.Fatalf("NormalizeEmail(%+q): %v (the test wants an address only CheckNewEmail refuses)", in, fe)
		}
		if fe := CheckNewEmail(n); fe == nil || fe.Field != "email" {
			t.Errorf("CheckNewEmail(%+q) accepted", n)
		}
	}
}

// VisibleEmail is what an address stored by an older release reads as: the
// characters CheckNewEmail refuses removed, then normalised as
// NormalizeEmail does, so that a character hidden between a letter and its
// accent still gives the address a sign-up would store. Every address
// CheckNewEmail accepts is its own visible form.
func TestVisibleEmail(t *testing.T) {
	for in, want := range map[string]string{
		"ali\u200bce@example.com":                                "alice@example.com",
		"\u2060alice@exa\u00admple.com\ufeff":                    "alice@example.com",
		"ali\u202ece@example.com":                                "alice@example.com",
		"a\u2028li\u0085ce@example.com":                          "alice@example.com",
		"ali\ue000ce@example.com":                                "alice@example.com",
		"ali\U000e0061ce@example.com":                            "alice@example.com",
		"e\u200b\u0301@example.com":                              "\u00e9@example.com", // the accent meets its letter
		"\u3164\ufe0fbob@example.com":                            "bob@example.com",
		"\u03c3\u03bf\u03c6\u03b9\u03b1\u200b\u03c2@example.com": "\u03c3\u03bf\u03c6\u03b9\u03b1\u03c3@example.com",
	} {
		if got := VisibleEmail(in); got != want {
			t.Errorf("VisibleEmail(%+q) = %+q, want %+q", in, got, want)
		}
		if CheckNewEmail(VisibleEmail(in)) != nil {
			t.Errorf("CheckNewEmail refuses VisibleEmail(%+q)", in)
		}
	}
	for _, in := range []string{"alice@example.com", "\u00e9lise@example.com", "\u674e@\u4f8b\u5b50.\u4e2d\u56fd", "a.b+tag@sub.example.org"} {
		if got := VisibleEmail(in); got != in {
			t.Errorf("VisibleEmail(%+q) = %+q, want it unchanged", in, got)
		}
	}
}

// An address too long to be one once normalised is refused before it is
// normalised. Sign-up normalised whatever came, up to the 1 MiB body: NFKC
// turns "\ufdfa" into 18 letters, so one sign-up of such an address cost
// the service seconds of CPU for a 422, and a 422 is neither throttled nor
// counted against the sign-up quota. Measured by what it allocates, not by
// time: a normalised copy of the input is megabytes.
func TestNormalizeEmailRefusesAnOverlongAddressUnread(t *testing.T) {
	in := strings.Repeat("\ufdfa", 1<<16) + "@example.com"
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, fe := NormalizeEmail(in)
	runtime.ReadMemStats(&after)
	if fe == nil || fe.Field != "email" {
		t.Fatalf("a %d-byte address: %v, want a refusal naming email", len(in), fe)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > uint64(len(in)) {
		t.Errorf("refusing a %d-byte address allocated %d bytes: it was normalised first", len(in), got)
	}
	// The bound is on the typed form, which normalising may shorten up to
	// fourfold (a 4-byte mathematical letter is one ASCII letter): typed
	// addresses of up to MaxTypedEmailBytes that normalise within
	// MaxEmailLen stay accepted.
	for _, typed := range []string{
		strings.Repeat("\U0001d41a", 242) + "@x.co", // 973 bytes typed, 247 normalised
		strings.Repeat("\uff41", 240) + "@x.co",     // full-width, 725 bytes typed, 245 normalised
	} {
		if len(typed) > MaxTypedEmailBytes {
			t.Fatalf("test address of %d bytes is over the bound itself", len(typed))
		}
		if e, fe := NormalizeEmail(typed); fe != nil || len(e) > MaxEmailLen {
			t.Errorf("a %d-byte address normalising to %d bytes: %v", len(typed), len(e), fe)
		}
	}
}

// A domain's A-labels and its ideographic full stops are IDNA's other
// spellings of its U-labels and dots: one address, in the Unicode form the
// service stores. What only looks like an A-label is left as it is: DNS
// reads it so, and it is another name.
func TestNormalizeEmailDecodesTheDomainsALabels(t *testing.T) {
	for in, want := range map[string]string{
		"alice@xn--bcher-kva.example":                "alice@b\u00fccher.example",
		"Alice@XN--BCHER-KVA.Example":                "alice@b\u00fccher.example",
		"alice@mail.xn--fsqu00a.xn--0zwm56d":         "alice@mail.\u4f8b\u5b50.\u6d4b\u8bd5",
		"alice@mail.example\u3002org":                "alice@mail.example.org",
		"alice@mail\uff61xn--bcher-kva\uff0eexample": "alice@mail.b\u00fccher.example",
		"xn--bcher-kva@example.org":                  "xn--bcher-kva@example.org", // a local part is no label
		"alice@xn--abc-.example":                     "alice@xn--abc-.example",    // decodes to ASCII: not an A-label
		"alice@xn--a-ecp.example":                    "alice@xn--a-ecp.example",   // decodes to a disallowed "⒈"
		"alice@xn--.example":                         "alice@xn--.example",
	} {
		got, fe := NormalizeEmail(in)
		if fe != nil || got != want {
			t.Errorf("NormalizeEmail(%+q) = %+q, %v; want %+q", in, got, fe, want)
			continue
		}
		if again, _ := NormalizeEmail(got); again != got {
			t.Errorf("NormalizeEmail(%+q) = %+q: the normal form is not a fixed point", got, again)
		}
		if v := VisibleEmail(got); v != got {
			t.Errorf("VisibleEmail(%+q) = %+q, want it unchanged", got, v)
		}
	}
	// The A-label of a domain holding an invisible character reads as the
	// domain without it, as the character typed does.
	if got := VisibleEmail("alice@b\u00fc\u200bcher.example"); got != "alice@b\u00fccher.example" {
		t.Errorf("VisibleEmail = %+q", got)
	}
}

// A local part or a domain label holding letters of two scripts is refused,
// but for the mixes CJK writing uses; digits, punctuation and combining
// marks go with any script.
func TestCheckNewEmailRefusesMixedScripts(t *testing.T) {
	for _, in := range []string{"\u0430lice@example.com", "alic\u0435@example.com", "b\u03bfb@example.com",
		"alice@\u0435xample.com", "alice@mail.p\u0430ypal.com", "\u0438\u0432\u0430n@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444",
		"alice@\u043f\u0440\u0438\u043c\u0435\u0440a.\u0440\u0444", "\u0570o@example.com", "\u05d0a@example.com"} {
		if fe := CheckNewEmail(in); fe == nil || fe.Field != "email" {
			t.Errorf("CheckNewEmail(%+q) accepted", in)
		}
	}
	for _, in := range []string{"alice@example.com", "\u00e9lise.o'neil+x_1@sub-1.example.com", "e\u0301@example.com",
		"\u0438\u0432\u0430\u043d.42@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444", "\u0438\u0432\u0430\u043d@example.com",
		"\u5c71\u7530\u305f\u308d\u3046abc@example.jp", "\u30e4\u30de\u30c0x@\u4f8b\u5b50.jp", "\u674e\u3105x@example.tw",
		"\uae40\u4e00x@example.kr", "\u03c3\u03bf\u03c6\u03b9\u03b1@\u03c0\u03b1\u03c1\u03ac\u03b4\u03b5\u03b9\u03b3\u03bc\u03b1.gr",
		"\u0645\u062b\u0627\u0644@example.com"} {
		if fe := CheckNewEmail(in); fe != nil {
			t.Errorf("CheckNewEmail(%+q) = %v", in, fe)
		}
	}
}

// A name is as long as the characters it shows, however its device encoded
// them: "é" arrives as one code point (NFC) or as "e" and a combining accent
// (NFD, macOS and some input methods), and Vietnamese letters carry two
// marks. Counted as it came, a 60-letter name typed decomposed was "at most
// 100 characters" too long. It is kept composed (NFC), the form that shows
// alike everywhere; compatibility forms are left as typed.
func TestNormalizeNameCountsComposedCharacters(t *testing.T) {
	for in, want := range map[string]string{
		strings.Repeat("e\u0301", 60):       strings.Repeat("\u00e9", 60),
		strings.Repeat("e\u0323\u0302", 50): strings.Repeat("\u1ec7", 50),  // ệ: e, dot below, circumflex
		"Zoe\u0308 \ufb01ne " + "\u2460":    "Zo\u00eb \ufb01ne \u2460",    // ﬁ and ① stay
		strings.Repeat("\u1100\u1161", 100): strings.Repeat("\uac00", 100), // Hangul jamo compose
	} {
		got, fe := NormalizeName(in)
		if fe != nil || got != want {
			t.Errorf("NormalizeName(%+q) = %+q, %v; want %+q", in, got, fe, want)
		}
	}
	if _, fe := NormalizeName(strings.Repeat("e\u0301", 101)); fe == nil {
		t.Error("101 composed characters accepted")
	}
}

// An address is as long as its shortest spelling, each internationalised
// label in UTF-8 or as its A-label (RFC 5890), as every address was measured
// as typed until the domain was stored in Unicode. A Cyrillic letter is two
// bytes in UTF-8 but one in punycode, so a valid address of 200 bytes written
// with A-labels decodes to 353: measured decoded, both its spellings were
// refused as over 254 bytes, and an account stored under it failed every
// login.
func TestNormalizeEmailMeasuresAnIDNInItsShortestSpelling(t *testing.T) {
	label, alabel := strings.Repeat("\u0434", 57), "xn--d1a"+strings.Repeat("a", 56) // 57 "д": 114 bytes, 63 as an A-label
	domain, adomain := label+"."+label+"."+label+".ru", alabel+"."+alabel+"."+alabel+".ru"
	for _, tc := range []struct {
		local string
		ok    bool
	}{
		{"alice", true},
		{strings.Repeat("a", MaxEmailLen-len(adomain)-1), true}, // 254 bytes with A-labels
		{strings.Repeat("a", MaxEmailLen-len(adomain)), false},  // 255
	} {
		for _, in := range []string{tc.local + "@" + adomain, tc.local + "@" + domain} {
			got, fe := NormalizeEmail(in)
			switch {
			case tc.ok && (fe != nil || got != tc.local+"@"+domain):
				t.Errorf("NormalizeEmail(%d bytes with A-labels, as %+q) = %+q, %v", len(tc.local)+1+len(adomain), in, got, fe)
			case !tc.ok && (fe == nil || fe.Field != "email"):
				t.Errorf("NormalizeEmail(%+q), %d bytes with A-labels, accepted", in, len(tc.local)+1+len(adomain))
			}
		}
	}
	// The other way round, "bücher" is 7 bytes, 13 as its A-label: 248
	// bytes as typed, 428 with A-labels, accepted as it always was.
	in := "alice@" + strings.Repeat("b\u00fccher.", 30) + "de"
	if got, fe := NormalizeEmail(in); fe != nil || got != in {
		t.Errorf("NormalizeEmail(%d bytes in UTF-8) = %+q, %v", len(in), got, fe)
	}
}

// CheckNewEmail runs on sign-ups that may still be refused (a short
// password: 422), which no quota counts, so what it costs an address is what
// any client may make it cost. A character of the Common or Inherited script
// (punctuation, symbols, combining marks) belongs to none of the tables a
// letter is looked up in, and letters of many scripts make a long list of
// scripts seen.
func BenchmarkCheckNewEmail(b *testing.B) {
	var many strings.Builder
	for _, r := range "a\u03b1\u0430\u0561\u05d0\u0627\u0710\u0780\u07ca\u0800\u0905\u0985\u0a05\u0a85\u0b05\u0b85\u0c05\u0c85\u0d05\u0d85\u0e01\u0e81\u0f40\u1000\u10d0\u1200\u13a0\u1401\u1681\u16a0\u1700\u1720\u1740\u1760\u1780\u1820\u1900\u1950\u1980\u1a00\u1a20\u1b05\u1b83\u1bc0\u1c00\u1c5a\u2c00\u2d30\u2d80\ua000\ua4d0\ua500\ua6a0\ua800\ua840\ua882\ua90a\ua930\ua984\uaa00\uaa80\uab01\uabc0" {
		many.WriteRune(r)
	}
	for name, email := range map[string]string{
		"plain":           "alice.smith@example.com",
		"common symbols":  strings.Repeat("\u00a7", 120) + "@example.com",
		"combining marks": strings.Repeat("a"+strings.Repeat("\u0300", 24), 5) + "@example.com", // NFKC's stream-safe form puts an invisible CGJ after 30
		"many scripts":    many.String() + "@example.com",
	} {
		email, fe := NormalizeEmail(email)
		if fe != nil {
			b.Fatalf("%s: %v", name, fe)
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				CheckNewEmail(email)
			}
		})
	}
}

// NFC composes most letters but decomposes a few: the Devanagari "क़" (qa,
// U+0958) and its kin, and Hebrew presentation forms such as "שׁ" (U+FB2A),
// are composition exclusions, two code points composed. Counted composed
// only, a name of 60 of them, 60 characters as sent and within the API
// schema's maxLength of 100, was a 422 "at most 100 characters", where it
// was accepted before names were composed. A name within the bound as sent
// or composed is accepted, and stored composed.
func TestNormalizeNameCountsTheShorterForm(t *testing.T) {
	for _, typed := range []string{strings.Repeat("\u0958", 60), strings.Repeat("\ufb2a", 100)} {
		got, fe := NormalizeName(typed)
		if fe != nil || got != norm.NFC.String(typed) {
			t.Errorf("NormalizeName(%d code points that NFC makes %d) = %+q, %v", utf8.RuneCountInString(typed),
				utf8.RuneCountInString(norm.NFC.String(typed)), got, fe)
		}
	}
	if _, fe := NormalizeName(strings.Repeat("\u0958", 101)); fe == nil {
		t.Error("101 characters accepted")
	}
}

// TestCommonPasswordsAreRefused: passwords long enough for the length rule
// but among the most common are refused, in any case, from the whole list
// (its first, middle and last entries, common_passwords.txt) and not only
// the 15 it held; a passphrase of the same length is not.
func TestCommonPasswordsAreRefused(t *testing.T) {
	for _, pw := range []string{"q1w2e3r4t5", "4815162342", "12345qwert", "1029384756", "superpuper", "wonderwoman",
		"WonderWoman", "password123", "changeme123"} {
		if fe := CheckPassword(pw, "someone@example.com"); fe == nil || fe.Detail != "is too common" {
			t.Errorf("%q: %v; want it refused as too common", pw, fe)
		}
	}
	if n := len(commonPasswords()); n < 1000 {
		t.Errorf("%d common passwords; want the whole list", n)
	}
	if fe := CheckPassword("wonder woman of teacups", "someone@example.com"); fe != nil {
		t.Errorf("a passphrase was refused: %v", fe)
	}
}

// A combining mark NFC leaves on a Latin, Greek or Cyrillic letter (one with
// no precomposed form) is refused at sign-up: "i" with U+0307 reads as "i"
// and "o" with U+0338 as "ø", and each signed up beside the address it looks
// like (NFKC does not make them one). Marks that compose stay, as do marks in
// scripts written with them (Devanagari, Hebrew points, Thai).
func TestCheckNewEmailRefusesStackedMarksOnLatinGreekCyrillic(t *testing.T) {
	for _, in := range []string{"i\u0307nfo@example.com", "o\u0338le@example.com", "info@exam\u0338ple.com",
		"\u03bf\u0338@example.com", "\u0438\u0307@example.com", "a\u0301\u0301@example.com",
		// A mark on a digit or punctuation, or on nothing: "_" with U+0332
		// (low line) and "-" with U+0335 (short stroke overlay) draw the
		// same line twice, and each signed up beside the plain address.
		"a_\u0332b@example.com", "a-\u0335b@example.com", "user1\u0307@example.com", "\u0307info@example.com"} {
		n, fe := NormalizeEmail(in)
		if fe == nil {
			fe = CheckNewEmail(n)
		}
		if fe == nil || fe.Field != "email" {
			t.Errorf("sign-up with %+q accepted", in)
		}
	}
	for _, in := range []string{"e\u0301lise@example.com", "\u00f8le@example.com", "a\u0308b@example.com",
		"\u0928\u092e\u0938\u094d\u0924\u0947@example.com", "\u05e9\u05c1\u05dc\u05d5\u05dd@example.com",
		"\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35@example.com", "\u0439@example.com"} {
		n, fe := NormalizeEmail(in)
		if fe == nil {
			fe = CheckNewEmail(n)
		}
		if fe != nil {
			t.Errorf("sign-up with %+q: %v", in, fe)
		}
	}
}
