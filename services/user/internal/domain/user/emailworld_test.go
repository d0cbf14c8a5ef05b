package user

import (
	"testing"

	"golang.org/x/text/unicode/norm"
)

// TestCheckNewEmailAcceptsOrdinaryInternationalAddresses: the combining-mark
// rules (strayMark) refuse a mark NFC leaves on a Latin, Greek or Cyrillic
// letter, a digit, punctuation or nothing; the addresses people write every
// day must still sign up, typed composed or decomposed (NFD, as some
// keyboards send): accents that compose, Vietnamese's stacked ones, and the
// scripts whose letters carry marks as a rule (Devanagari's vowel signs and
// virama, Bengali, Tamil, Thai, Myanmar, Hebrew points, Arabic harakat),
// with plus-addressing, dots and IDN domains.
func TestCheckNewEmailAcceptsOrdinaryInternationalAddresses(t *testing.T) {
	for _, in := range []string{
		"a.b+newsletter@example.com",
		"first.last+tag.sub@mail.example.co.uk",
		"jürgen.müller@beispiel.de",
		"straße@bücher.de",
		"françois.lefèvre@exemple.fr",
		"zoë.hélène+noël@société.fr",
		"nguyễn.văn.an@vídụ.vn",
		"trần.thị.ngọc+ưu@bưuđiện.vn",
		"用户@例子.广告",
		"张伟.2024@邮件.中国",
		"हिन्दी@डाटामेल.भारत",
		"प्रियंका.शर्मा@उदाहरण.भारत",
		"ज़िंदगी@उदाहरण.भारत", // nukta, which NFC leaves apart
		"অনুপম@উদাহরণ.ভারত",
		"தமிழ்@எடுத்துக்காட்டு.இந்தியா",
		"สมชาย@ตัวอย่าง.ไทย",
		"น้ำ@example.com", // NFKC splits sara am into a mark and aa
		"ນ້ຳ@example.la",
		"ｶﾞｷﾞ@example.jp", // half-width kana, their voiced marks made combining by NFKC
		"မြန်မာ@example.com",
		"שָׁלוֹם@example.co.il",
		"مُحَمَّد@example.com",
		"δοκιμή@παράδειγμα.ελ",
		"иван.петров@пример.рф",
		"ёлка@пример.рф",
		"ガギグ@例え.jp",
		"홍길동@예시.한국",
	} {
		for _, form := range []norm.Form{norm.NFC, norm.NFD} {
			typed := form.String(in)
			n, fe := NormalizeEmail(typed)
			if fe == nil {
				fe = CheckNewEmail(n)
			}
			if fe != nil {
				t.Errorf("sign-up with %s (%+q): %v", in, typed, fe)
			}
		}
	}
}
