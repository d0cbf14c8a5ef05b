package migrations

import (
	"bytes"
	"maps"
	"strings"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/migrate"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
	"github.com/shanhai-dev/shanhai/pkg/testenv/storetest"
)

// longALabels is a domain of 200 bytes as DNS carries it, whose labels of 57
// Cyrillic letters (63 bytes each as A-labels) are twice as long in UTF-8:
// longULabels, 349 bytes.
var (
	longALabels = strings.Repeat("xn--d1a"+strings.Repeat("a", 56)+".", 3) + "xn--p1ai"
	longULabels = strings.Repeat(strings.Repeat("\u0434", 57)+".", 3) + "\u0440\u0444"
)

// Version 8 stores each address with its domain in Unicode, which sign-up
// and login use since: an address stored with an A-label or an ideographic
// full stop was not found under the form its owner's logins now look up.
// Where that form is taken (the same mailbox signed up in both spellings),
// the account keeps its address and the warning names both ids;
// email_visible follows the moved address.
func TestEmailIDNA(t *testing.T) {
	for dialect, db := range storetest.Databases(t, upTo(7)) {
		t.Run(dialect, func(t *testing.T) {
			addStored(t, db,
				"alabel", "alice@xn--bcher-kva.example",
				"stop", "bob@mail.example\u3002org",
				"unicode", "carol@b\u00fccher.example",
				"carol-alabel", "carol@xn--bcher-kva.example", // the same mailbox as "unicode"
				"hidden", "da\u200bve@xn--bcher-kva.example",
				"not-an-alabel", "erin@xn--abc-.example",
				"long", "frank@"+longALabels, // 206 bytes, 355 decoded
			)
			logs := &bytes.Buffer{}
			if err := migrate.UpAll(t.Context(), db, outbox.Migrations, Set(newLog(logs))); err != nil {
				t.Fatal(err)
			}
			want := map[string]string{
				"alabel":        "alice@b\u00fccher.example",
				"stop":          "bob@mail.example.org",
				"unicode":       "carol@b\u00fccher.example",
				"carol-alabel":  "carol@xn--bcher-kva.example", // kept: its Unicode form is taken
				"hidden":        "da\u200bve@b\u00fccher.example",
				"not-an-alabel": "erin@xn--abc-.example",
				"long":          "frank@" + longULabels,
			}
			if got := emails(t, db); !maps.Equal(got, want) {
				t.Errorf("emails %+q, want %+q", got, want)
			}
			if got := visibleEmails(t, db)["hidden"]; got != "dave@b\u00fccher.example" {
				t.Errorf("email_visible of the moved address %+q", got)
			}
			if !strings.Contains(logs.String(), `"user_id":"carol-alabel","holder_id":"unicode"`) {
				t.Errorf("the kept address is not reported with its holder:\n%s", logs)
			}
		})
	}
}
