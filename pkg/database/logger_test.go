package database_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
)

// A statement that fails is an ERROR; one ended by its own context (a caller that gave up) is not logged at all.
func TestStatementsEndedByTheirContextAreNotErrors(t *testing.T) {
	for name, tc := range map[string]struct{ url, slow string }{
		"postgres": {dbtest.PostgresURL(t), "SELECT pg_sleep(5)"},
		"sqlite":   {"sqlite://:memory:", "SELECT 1"},
	} {
		t.Run(name, func(t *testing.T) {
			var logs records
			db, err := database.OpenWith(tc.url, database.Options{Logger: slog.New(&logs)})
			if err != nil {
				t.Fatal(err)
			}
			defer closeDB(db)

			if err := db.Exec("SELECT * FROM no_such_table").Error; err == nil {
				t.Fatal("a query of a missing table succeeded")
			}
			if got := logs.take(); len(got) != 1 || !strings.HasPrefix(got[0], "ERROR") {
				t.Fatalf("failed statement: logged %v, want one ERROR", got)
			}

			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			if tc.slow == "SELECT 1" {
				cancel() // SQLite has no sleep: the context is over before the statement starts
			}
			if err := db.WithContext(ctx).Exec(tc.slow).Error; err == nil {
				t.Fatal("a statement past its deadline succeeded")
			}
			if got := logs.take(); len(got) != 0 {
				t.Fatalf("statement ended by its context: logged %v, want nothing", got)
			}
			// Debug mode (db.Debug()) keeps the wrapper.
			if err := db.Debug().WithContext(ctx).Exec("SELECT 1").Error; err == nil {
				t.Fatal("a statement with a finished context succeeded")
			}
			if got := logs.take(); len(got) != 0 {
				t.Fatalf("debug mode, statement ended by its context: logged %v, want nothing", got)
			}
		})
	}
}

// records is a slog.Handler that keeps every record.
type records struct {
	mu   sync.Mutex
	list []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *records) WithGroup(string) slog.Handler            { return r }

func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, rec)
	return nil
}

func (r *records) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.list {
		out = append(out, rec.Level.String()+" "+rec.Message)
	}
	r.list = nil
	return out
}

// A statement its context ends fails with that context's error on both dialects, so callers tell a deadline from a
// database failure with errors.Is (deadline.Abort answers 504/503, not 500). SQLite's driver interrupts a running
// statement when its context ends and reported only "interrupted (9)".
func TestStatementEndedByItsDeadlineFailsWithIt(t *testing.T) {
	for name, tc := range map[string]struct{ url, slow string }{
		"postgres": {dbtest.PostgresURL(t), "SELECT pg_sleep(5)"},
		// Runs until interrupted: a hundred million rows take SQLite a minute or more.
		"sqlite": {"sqlite://:memory:", "CREATE TABLE counted AS WITH RECURSIVE c(x) AS " +
			"(SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 100000000) SELECT x FROM c"},
	} {
		t.Run(name, func(t *testing.T) {
			db, err := database.Open(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			defer closeDB(db)
			for how, run := range map[string]func(context.Context) error{
				"alone": func(ctx context.Context) error { return db.WithContext(ctx).Exec(tc.slow).Error },
				"in a transaction": func(ctx context.Context) error {
					return db.WithContext(ctx).Transaction(func(tx *gorm.DB) error { return tx.Exec(tc.slow).Error })
				},
			} {
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				err := run(ctx)
				cancel()
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("%s: statement past its deadline: error %v, want one that is context.DeadlineExceeded", how, err)
				}
			}
		})
	}
}
