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

// Version 7 stores each address in its case-folded form, which sign-up and
// login use since: an address typed in lower case with a final sigma was
// stored as typed, and its owner found no account under the folded form.
// Where that form is taken, the account keeps its address and the warning
// names both ids; email_visible follows the moved address.
func TestEmailCaseFold(t *testing.T) {
	for dialect, db := range storetest.Databases(t, upTo(6)) {
		t.Run(dialect, func(t *testing.T) {
			addStored(t, db,
				"sofia", "\u03c3\u03bf\u03c6\u03b9\u03b1\u03c2@example.com", // σοφιας
				"olga", "\u1c82lga@example.com",
				"maria-upper", "\u03bc\u03b1\u03c1\u03b9\u03b1\u03c3@example.com", // μαριασ: signed up as ΜΑΡΙΑΣ
				"maria-lower", "\u03bc\u03b1\u03c1\u03b9\u03b1\u03c2@example.com", // μαριας: the same address
				"hidden", "\u03c3\u03bf\u03c6\u03b9\u03b1\u200b\u03c2@example.org",
				"plain", "alice@example.com",
			)
			logs := &bytes.Buffer{}
			if err := migrate.UpAll(t.Context(), db, outbox.Migrations, Set(newLog(logs))); err != nil {
				t.Fatal(err)
			}
			want := map[string]string{
				"sofia":       "\u03c3\u03bf\u03c6\u03b9\u03b1\u03c3@example.com",
				"olga":        "\u043elga@example.com",
				"maria-upper": "\u03bc\u03b1\u03c1\u03b9\u03b1\u03c3@example.com",
				"maria-lower": "\u03bc\u03b1\u03c1\u03b9\u03b1\u03c2@example.com", // kept: the folded form is taken
				"hidden":      "\u03c3\u03bf\u03c6\u03b9\u03b1\u200b\u03c3@example.org",
				"plain":       "alice@example.com",
			}
			if got := emails(t, db); !maps.Equal(got, want) {
				t.Errorf("emails %+q, want %+q", got, want)
			}
			if got := visibleEmails(t, db)["hidden"]; got != "\u03c3\u03bf\u03c6\u03b9\u03b1\u03c3@example.org" {
				t.Errorf("email_visible of the moved address %+q", got)
			}
			if !strings.Contains(logs.String(), `"user_id":"maria-lower","holder_id":"maria-upper"`) {
				t.Errorf("the kept address is not reported with its holder:\n%s", logs)
			}

			// Run again, as a later version does for rows old replicas
			// stored during the rollout: nothing left to move or mark.
			visible := visibleEmails(t, db)
			again := &bytes.Buffer{}
			sqlDB, err := db.DB()
			if err != nil {
				t.Fatal(err)
			}
			tx, err := sqlDB.BeginTx(t.Context(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := emailCaseFold(newLog(again))(t.Context(), tx); err != nil {
				_ = tx.Rollback()
				t.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			if got := emails(t, db); !maps.Equal(got, want) {
				t.Errorf("run again: emails %+q, want %+q", got, want)
			}
			if got := visibleEmails(t, db); !maps.Equal(got, visible) {
				t.Errorf("run again: email_visible %+q, want %+q", got, visible)
			}
			if !strings.Contains(again.String(), `"moved":0`) || !strings.Contains(again.String(), `"changed":0`) {
				t.Errorf("run again moved or marked something:\n%s", again)
			}
		})
	}
}
