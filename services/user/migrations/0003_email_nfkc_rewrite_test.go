package migrations

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/migrate"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
	"github.com/shanhai-dev/shanhai/pkg/testenv/storetest"
)

// newLog returns a JSON logger writing to logs. Its handler serialises the
// writes, so goroutines may share it.
func newLog(logs *bytes.Buffer) *slog.Logger { return slog.New(slog.NewJSONHandler(logs, nil)) }

// upTo returns a storetest setup that migrates a database as the release
// whose last version was last did: the outbox, then the SQL files and Go
// steps numbered up to last (today's code of each, as the step a release
// ran is not kept).
func upTo(last int64) func(context.Context, *gorm.DB) error {
	return func(ctx context.Context, db *gorm.DB) error {
		names, err := fs.Glob(FS, "*.sql")
		if err != nil {
			return err
		}
		files := fstest.MapFS{}
		for _, name := range names {
			v, err := strconv.ParseInt(name[:strings.IndexByte(name, '_')], 10, 64)
			if err != nil {
				return fmt.Errorf("version of %s: %w", name, err)
			}
			if v > last {
				continue
			}
			b, err := fs.ReadFile(FS, name)
			if err != nil {
				return err
			}
			files[name] = &fstest.MapFile{Data: b}
		}
		var steps []migrate.GoStep
		for _, st := range goSteps(newLog(&bytes.Buffer{})) {
			if st.Version <= last {
				steps = append(steps, st)
			}
		}
		return migrate.UpAll(ctx, db, outbox.Migrations, migrate.WithGo(files, steps...))
	}
}

// addStored stores accounts under the emails given, as the service did before
// NFKC normalisation (the repository stored what it was given, in the columns
// of its time), each created a minute after the one before.
func addStored(t *testing.T, db *gorm.DB, idEmails ...string) {
	t.Helper()
	at := time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)
	for i := 0; i+1 < len(idEmails); i += 2 {
		created := at.Add(time.Duration(i) * time.Minute)
		if err := db.Exec("INSERT INTO users (id, email, name, password_hash, created_at, updated_at) VALUES (?, ?, 'Alice', '$argon2id$stored', ?, ?)",
			idEmails[i], idEmails[i+1], created, created).Error; err != nil {
			t.Fatalf("store %s: %v", idEmails[i], err)
		}
	}
}

// emails maps each account's id to its stored email.
func emails(t *testing.T, db *gorm.DB) map[string]string {
	t.Helper()
	var rows []struct{ ID, Email string }
	if err := db.Table("users").Select("id", "email").Find(&rows).Error; err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, r := range rows {
		m[r.ID] = r.Email
	}
	return m
}

func TestEmailNFKCRewrite(t *testing.T) {
	for dialect, db := range storetest.Databases(t, upTo(2)) {
		t.Run(dialect, func(t *testing.T) {
			addStored(t, db,
				"fullwidth", "\uff41lice@example.com", // the oldest, but its form is stored already (below)
				"decomposed", "e\u0301@example.com", // "é" as "e" plus a combining accent
				"alice", "alice@example.com",
				"lookalike", "\uff45\u0301@example.com", // full-width "e" plus accent: also "é", and later
				"nbsp", "a\u00a0b@example.com", // NFKC makes the no-break space a space, which no address has
				"composed", "\u00f6@example.com", // already in the new form
			)
			before := map[string]time.Time{}
			var stamps []struct {
				ID        string
				UpdatedAt time.Time
			}
			db.Table("users").Select("id", "updated_at").Find(&stamps)
			for _, s := range stamps {
				before[s.ID] = s.UpdatedAt
			}

			logs := &bytes.Buffer{}
			if err := migrate.UpAll(t.Context(), db, outbox.Migrations, Set(newLog(logs))); err != nil {
				t.Fatal(err)
			}
			want := map[string]string{
				"fullwidth":  "\uff41lice@example.com", // alice holds "alice@example.com" and keeps it
				"decomposed": "\u00e9@example.com",
				"alice":      "alice@example.com",
				"lookalike":  "\uff45\u0301@example.com", // decomposed, older, took "é@example.com"
				"nbsp":       "a\u00a0b@example.com",
				"composed":   "\u00f6@example.com",
			}
			got := emails(t, db)
			for id, e := range want {
				if got[id] != e {
					t.Errorf("%s: email %+q, want %+q", id, got[id], e)
				}
			}
			for _, line := range []string{
				`"msg":"email kept as stored: its normalised form belongs to another account","user_id":"fullwidth","holder_id":"alice"`,
				`"msg":"email kept as stored: its normalised form belongs to another account","user_id":"lookalike","holder_id":"decomposed"`,
				`"msg":"email kept as stored: refused by the current rules","user_id":"nbsp"`,
				`"msg":"stored emails normalised","moved":1,"kept":3`,
			} {
				if !strings.Contains(logs.String(), line) {
					t.Errorf("log lacks %s:\n%s", line, logs)
				}
			}
			for _, e := range append(slices.Collect(maps.Values(want)), slices.Collect(maps.Values(got))...) {
				if strings.Contains(logs.String(), e) {
					t.Errorf("email %+q reached the log:\n%s", e, logs)
				}
			}
			db.Table("users").Select("id", "updated_at").Find(&stamps)
			for _, s := range stamps {
				if !s.UpdatedAt.Equal(before[s.ID]) {
					t.Errorf("%s: updated_at %v, was %v", s.ID, s.UpdatedAt, before[s.ID])
				}
			}
			// Emptied, not dropped: a binary from before 0003 reads it at start.
			var queued int64
			if err := db.Table("pending_data_migrations").Count(&queued).Error; err != nil || queued != 0 {
				t.Errorf("0002's queue: %d rows, err %v; want an empty table", queued, err)
			}

			// Done once: the next start runs nothing.
			logs.Reset()
			if err := migrate.UpAll(t.Context(), db, outbox.Migrations, Set(newLog(logs))); err != nil {
				t.Fatal(err)
			}
			if logs.String() != "" {
				t.Errorf("second start did something:\n%s", logs)
			}
			// A later version calling the same rewrite (after a rollout in
			// which old replicas stored more) moves what is new and leaves the
			// rest as they are.
			addStored(t, db, "late", "o\u0308@example.org")
			log := newLog(logs)
			again := migrate.WithGo(Set(log), migrate.GoStep{Version: 100, Name: "email_nfkc_rewrite_again",
				Up: func(ctx context.Context, tx *sql.Tx) error { return renormaliseEmails(ctx, tx, log) }})
			if err := migrate.UpAll(t.Context(), db, outbox.Migrations, again); err != nil {
				t.Fatal(err)
			}
			want["late"] = "\u00f6@example.org"
			got = emails(t, db)
			for id, e := range want {
				if got[id] != e {
					t.Errorf("after version 100, %s: email %+q, want %+q", id, got[id], e)
				}
			}
			if !strings.Contains(logs.String(), `"moved":1,"kept":3`) {
				t.Errorf("version 100:\n%s", logs)
			}
		})
	}
}

// Replicas starting together, each with its own pool, run the rewrite once
// between them.
func TestEmailNFKCRewriteRunsOnceAcrossReplicas(t *testing.T) {
	for dialect, url := range storetest.URLs(t) {
		t.Run(dialect, func(t *testing.T) {
			dbs := make([]*gorm.DB, 4)
			for i := range dbs {
				db, err := database.Open(url)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = database.Close(db) })
				dbs[i] = db
			}
			if err := upTo(2)(t.Context(), dbs[0]); err != nil {
				t.Fatal(err)
			}
			addStored(t, dbs[0], "decomposed", "e\u0301@example.com")
			logs := &bytes.Buffer{}
			log := newLog(logs)
			errs := make(chan error, len(dbs))
			for _, db := range dbs {
				go func() { errs <- migrate.UpAll(t.Context(), db, outbox.Migrations, Set(log)) }()
			}
			for range dbs {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
			if n := strings.Count(logs.String(), `"msg":"stored emails normalised"`); n != 1 {
				t.Errorf("the step ran %d times:\n%s", n, logs)
			}
			if got := emails(t, dbs[0])["decomposed"]; got != "\u00e9@example.com" {
				t.Errorf("email %+q", got)
			}
		})
	}
}

// A sign-up on a running replica that takes an address after the rewrite
// looked it up and before it wrote it: the write waits for the sign-up, is
// refused by the unique index, and the account keeps its stored form, logged
// with the new holder, while the rest of the transaction goes on (PostgreSQL
// would abort all of it without the savepoint).
func TestEmailNFKCRewriteYieldsToASignUp(t *testing.T) {
	url := testenv.Postgres(t)
	open := func() *gorm.DB {
		db, err := database.Open(url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = database.Close(db) })
		return db
	}
	db, replica := open(), open()
	if err := upTo(2)(t.Context(), db); err != nil {
		t.Fatal(err)
	}
	addStored(t, db, "decomposed", "e\u0301@example.com", "nbsp", "a\u00a0b@example.com")
	signUp := replica.Begin()
	t.Cleanup(func() { signUp.Rollback() }) // after Commit, a no-op; before, it lets the database be dropped
	if err := signUp.Exec("INSERT INTO users VALUES ('signup', ?, 'New', 'hash', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
		"\u00e9@example.com").Error; err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	done := make(chan error, 1)
	go func() { done <- migrate.UpAll(context.Background(), db, outbox.Migrations, Set(newLog(logs))) }()
	runtest.Eventually(t, 10*time.Second, "the rewrite's write waiting for the sign-up", func() bool {
		var waiting int
		replica.Raw(`SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()
			AND wait_event_type = 'Lock' AND query LIKE 'UPDATE users SET email%'`).Scan(&waiting)
		return waiting == 1
	})
	if err := signUp.Commit().Error; err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := emails(t, db); got["decomposed"] != "e\u0301@example.com" || got["signup"] != "\u00e9@example.com" {
		t.Errorf("emails %+q: want the sign-up's kept and the older account's as stored", got)
	}
	for _, line := range []string{
		`"user_id":"decomposed","holder_id":"signup"`,
		`"stored emails normalised","moved":0,"kept":2`,
	} {
		if !strings.Contains(logs.String(), line) {
			t.Errorf("log lacks %s:\n%s", line, logs)
		}
	}
}
