package adapters_test

import (
	"bytes"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/services/user/internal/adapters"
)

// logSink keeps what the data migrations log, for several goroutines.
type logSink struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// addStored stores accounts under the emails given, as the service did before
// NFKC normalisation (the repository stores what it is given), each created a
// minute after the one before.
func addStored(t *testing.T, db *gorm.DB, idEmails ...string) {
	t.Helper()
	repo := adapters.NewUserGorm(db)
	for i := 0; i+1 < len(idEmails); i += 2 {
		u := newUser(idEmails[i], idEmails[i+1])
		u.CreatedAt = u.CreatedAt.Add(time.Duration(i) * time.Minute)
		u.UpdatedAt = u.CreatedAt
		if err := repo.Add(t.Context(), u); err != nil {
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

func TestRenormaliseStoredEmails(t *testing.T) {
	stores(t, func(t *testing.T, db *gorm.DB) {
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

		logs := &logSink{}
		log := slog.New(slog.NewJSONHandler(logs, nil))
		if err := adapters.RunDataMigrations(t.Context(), db, log); err != nil {
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

		// Done once: the next start finds nothing queued.
		logs = &logSink{}
		log = slog.New(slog.NewJSONHandler(logs, nil))
		if err := adapters.RunDataMigrations(t.Context(), db, log); err != nil {
			t.Fatal(err)
		}
		if logs.String() != "" {
			t.Errorf("second run did something:\n%s", logs)
		}
		// Queued again (after a rollout in which old replicas stored more),
		// it moves what is new and leaves the rest as they are.
		addStored(t, db, "late", "o\u0308@example.org")
		if err := db.Exec("INSERT INTO pending_data_migrations (name) VALUES ('0002_email_nfkc')").Error; err != nil {
			t.Fatal(err)
		}
		if err := adapters.RunDataMigrations(t.Context(), db, log); err != nil {
			t.Fatal(err)
		}
		want["late"] = "\u00f6@example.org"
		got = emails(t, db)
		for id, e := range want {
			if got[id] != e {
				t.Errorf("after the second queueing, %s: email %+q, want %+q", id, got[id], e)
			}
		}
		if !strings.Contains(logs.String(), `"moved":1,"kept":3`) {
			t.Errorf("second queueing:\n%s", logs)
		}
	})
}

// Replicas starting together run each queued step once between them.
func TestDataMigrationRunsOnceAcrossReplicas(t *testing.T) {
	stores(t, func(t *testing.T, db *gorm.DB) {
		addStored(t, db, "decomposed", "e\u0301@example.com")
		logs := &logSink{}
		log := slog.New(slog.NewJSONHandler(logs, nil))
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for range 4 {
			wg.Go(func() { errs <- adapters.RunDataMigrations(t.Context(), db, log) })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		if n := strings.Count(logs.String(), `"msg":"stored emails normalised"`); n != 1 {
			t.Errorf("the step ran %d times:\n%s", n, logs)
		}
		if got := emails(t, db)["decomposed"]; got != "\u00e9@example.com" {
			t.Errorf("email %+q", got)
		}
	})
}
