package migrations

import (
	"bytes"
	"context"
	"database/sql"
	"maps"
	"strings"
	"testing"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/migrate"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
	"github.com/shanhai-dev/shanhai/pkg/testenv/storetest"
)

// visibleEmails maps each account's id to its email_visible, "" for NULL.
func visibleEmails(t *testing.T, db *gorm.DB) map[string]string {
	t.Helper()
	var rows []struct {
		ID           string
		EmailVisible sql.NullString
	}
	if err := db.Table("users").Select("id", "email_visible").Find(&rows).Error; err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, r := range rows {
		m[r.ID] = r.EmailVisible.String
	}
	return m
}

// Accounts an older release stored with an invisible character in their
// email get, from versions 5 and 6, the address they read as in
// email_visible; the others none. No address is rewritten, and no address
// reaches the log. Run again by a later version, the step marks only what
// was stored since.
func TestEmailVisibleFill(t *testing.T) {
	for dialect, db := range storetest.Databases(t, upTo(4)) {
		t.Run(dialect, func(t *testing.T) {
			stored := map[string]string{
				"zwsp":      "ali\u200bce@example.com",
				"alice":     "alice@example.com",
				"bom":       "\ufeffbob@example.com",
				"split":     "e\u200b\u0301@example.com", // reads as "é@example.com"
				"plain":     "\u00e9lise@example.com",
				"softhyphn": "carol@exa\u00admple.com",
			}
			for id, e := range stored {
				addStored(t, db, id, e)
			}
			logs := &bytes.Buffer{}
			if err := migrate.UpAll(t.Context(), db, outbox.Migrations, Set(newLog(logs))); err != nil {
				t.Fatal(err)
			}
			want := map[string]string{
				"zwsp": "alice@example.com", "alice": "", "bom": "bob@example.com",
				"split": "\u00e9@example.com", "plain": "", "softhyphn": "carol@example.com",
			}
			if got := visibleEmails(t, db); !maps.Equal(got, want) {
				t.Errorf("email_visible %+q, want %+q", got, want)
			}
			if got := emails(t, db); !maps.Equal(got, stored) {
				t.Errorf("emails %+q, want them as stored %+q", got, stored)
			}
			if !strings.Contains(logs.String(), `"msg":"visible forms of stored emails recorded","changed":4`) {
				t.Errorf("log:\n%s", logs)
			}
			for _, e := range stored {
				if strings.Contains(logs.String(), strings.Split(e, "@")[0]) {
					t.Errorf("email %+q reached the log:\n%s", e, logs)
				}
			}

			addStored(t, db, "late", "dave\u2060@example.org") // an old replica's, during the rollout
			logs.Reset()
			log := newLog(logs)
			again := migrate.WithGo(Set(log), migrate.GoStep{Version: 100, Name: "email_visible_fill_again",
				Up: func(ctx context.Context, tx *sql.Tx) error { return markInvisibleEmails(ctx, tx, log) }})
			if err := migrate.UpAll(t.Context(), db, outbox.Migrations, again); err != nil {
				t.Fatal(err)
			}
			want["late"] = "dave@example.org"
			if got := visibleEmails(t, db); !maps.Equal(got, want) {
				t.Errorf("after version 100: email_visible %+q, want %+q", got, want)
			}
			if !strings.Contains(logs.String(), `"changed":1`) {
				t.Errorf("version 100:\n%s", logs)
			}
		})
	}
}
