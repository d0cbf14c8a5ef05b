package migrate_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/migrate"
)

// widgetFiles surround a Go step at version 2: 0001 makes the table the step writes to, 0003 needs the step's row.
var widgetFiles = fstest.MapFS{
	"0001_widgets.sql": serviceSet["migrations/0001_widgets.sql"],
	"0003_widgets_named.sql": {Data: []byte(`-- +goose Up
UPDATE widgets SET name = name || ' (checked by 0003)';
`)},
}

// seedStep is a Go step at version 2 that counts its runs and adds widget w1, or fails after adding it when fail says.
func seedStep(name string, runs *atomic.Int32, fail error) migrate.GoStep {
	return migrate.GoStep{Version: 2, Name: name, Up: func(ctx context.Context, tx *sql.Tx) error {
		runs.Add(1)
		if _, err := tx.ExecContext(ctx, "INSERT INTO widgets (id, name, created_at) VALUES ($1, $2, CURRENT_TIMESTAMP)",
			"w1", "from Go"); err != nil {
			return err
		}
		return fail
	}}
}

func widgetName(t *testing.T, db *gorm.DB) string {
	t.Helper()
	var names []string
	if err := db.Raw("SELECT name FROM widgets ORDER BY id").Scan(&names).Error; err != nil {
		t.Fatal(err)
	}
	return strings.Join(names, ",")
}

// A Go step runs once, between the files before and after its version, with its version and checksum recorded like
// theirs; starting again runs nothing.
func TestGoStepRunsOnceInVersionOrder(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		var runs atomic.Int32
		set := migrate.WithGo(widgetFiles, seedStep("seed_widget", &runs, nil))
		for range 2 {
			if err := migrate.UpAll(ctx, db, set); err != nil {
				t.Fatal(err)
			}
		}
		if n := runs.Load(); n != 1 {
			t.Fatalf("the step ran %d times, want once", n)
		}
		if got := widgetName(t, db); got != "from Go (checked by 0003)" {
			t.Fatalf("widgets %q: want the step's row, then 0003 applied to it", got)
		}
		if got := versions(t, db, "schema_migrations"); got != "0,1,2,3" {
			t.Fatalf("versions %s", got)
		}
		if got := sums(t, db); got != 3 {
			t.Fatalf("%d checksums recorded, want 3 (the step's too)", got)
		}
	})
}

// A step that fails leaves neither its change nor its version (one transaction holds both), stops what follows it,
// and runs again at the next start.
func TestGoStepFailureLeavesNothing(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		var runs atomic.Int32
		boom := errors.New("boom")
		err := migrate.UpAll(ctx, db, migrate.WithGo(widgetFiles, seedStep("seed_widget", &runs, boom)))
		if !errors.Is(err, boom) || !strings.Contains(err.Error(), "Go step seed_widget (version 2)") {
			t.Fatalf("err %v: want the step's error, naming the step", err)
		}
		if got := widgetName(t, db); got != "" {
			t.Fatalf("widgets %q after the failed step, want none", got)
		}
		if got := versions(t, db, "schema_migrations"); got != "0,1" {
			t.Fatalf("versions %s after the failed step, want 0,1", got)
		}
		if err := migrate.UpAll(ctx, db, migrate.WithGo(widgetFiles, seedStep("seed_widget", &runs, nil))); err != nil {
			t.Fatal(err)
		}
		if got := versions(t, db, "schema_migrations"); got != "0,1,2,3" || runs.Load() != 2 {
			t.Fatalf("versions %s after %d runs: want the step run again and 0003 after it", got, runs.Load())
		}
	})
}

// A step renamed after it was applied is refused like an edited file; on the usual restart too.
func TestGoStepRenamedIsRefused(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		var runs atomic.Int32
		if err := migrate.UpAll(ctx, db, migrate.WithGo(widgetFiles, seedStep("seed_widget", &runs, nil))); err != nil {
			t.Fatal(err)
		}
		err := migrate.UpAll(ctx, db, migrate.WithGo(widgetFiles, seedStep("seed_gadget", &runs, nil)))
		if err == nil || !strings.Contains(err.Error(), "Go step seed_gadget (version 2) was changed after it was applied") {
			t.Fatalf("err %v: want the renamed step refused", err)
		}
	})
}

// Sets that cannot be meant are refused at start, before anything is applied.
func TestGoStepBadSets(t *testing.T) {
	db := dbtest.SQLite(t)
	up := func(context.Context, *sql.Tx) error { return nil }
	for _, tc := range []struct {
		steps []migrate.GoStep
		want  string
	}{
		{[]migrate.GoStep{{Version: 3, Name: "x", Up: up}}, "Go step x (version 3) has the version of 0003_widgets_named.sql"},
		{[]migrate.GoStep{{Version: 2, Name: "x", Up: up}, {Version: 2, Name: "y", Up: up}}, "Go step y (version 2) has the version of Go step x (version 2)"},
		{[]migrate.GoStep{{Version: 2, Up: up}}, "a Go step needs a Name"},
		{[]migrate.GoStep{{Version: 2, Name: "x"}}, "a Go step needs a Name, an Up"},
		{[]migrate.GoStep{{Name: "x", Up: up}}, "Version above 0"},
	} {
		err := migrate.UpAll(context.Background(), db, migrate.WithGo(widgetFiles, tc.steps...))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err %v, want %q", tc.steps, err, tc.want)
		}
	}
	if db.Migrator().HasTable("widgets") {
		t.Fatal("a refused set applied its files")
	}
}

// Named and WithGo compose either way round: the step lands in the named set's table.
func TestGoStepInNamedSet(t *testing.T) {
	db := dbtest.SQLite(t)
	var runs atomic.Int32
	set := migrate.WithGo(migrate.Named("widgets", widgetFiles), seedStep("seed_widget", &runs, nil))
	if err := migrate.UpAll(context.Background(), db, set); err != nil {
		t.Fatal(err)
	}
	if got := versions(t, db, "schema_migrations_widgets"); got != "0,1,2,3" {
		t.Fatalf("versions %s", got)
	}
}

// Replicas starting together on PostgreSQL run the step once between them: the advisory lock serialises them.
func TestGoStepRunsOnceAcrossReplicas(t *testing.T) {
	var runs atomic.Int32
	db := upAtOnce(t, dbtest.PostgresURL(t), migrate.WithGo(widgetFiles, seedStep("seed_widget", &runs, nil)))
	if n := runs.Load(); n != 1 {
		t.Fatalf("the step ran %d times, want once", n)
	}
	if got := versions(t, db, "schema_migrations"); got != "0,1,2,3" {
		t.Fatalf("versions %s, want each applied once", got)
	}
}

// Processes migrating one fresh SQLite file at once apply each version once: the Go step that all of them plan first,
// and the file after it, which only changes rows. The process whose transaction waited for another's that applied
// the version used to apply it again and record it twice. Ten rounds, since the race needs the plans to overlap.
func TestGoStepRunsOnceAcrossSQLiteProcesses(t *testing.T) {
	for round := range 10 {
		var runs atomic.Int32
		set := migrate.WithGo(fstest.MapFS{"0002_count.sql": {Data: []byte("-- +goose Up\nUPDATE counted SET n = n + 1;\n")}},
			migrate.GoStep{Version: 1, Name: "create_counted", Up: func(ctx context.Context, tx *sql.Tx) error {
				runs.Add(1)
				_, err := tx.ExecContext(ctx, "CREATE TABLE counted (n INTEGER NOT NULL); INSERT INTO counted VALUES (0)")
				return err
			}})
		db := upAtOnce(t, dbtest.SQLiteURL(t), set)
		var n int
		if err := db.Raw("SELECT n FROM counted").Scan(&n).Error; err != nil {
			t.Fatal(err)
		}
		if got := versions(t, db, "schema_migrations"); got != "0,1,2" || runs.Load() != 1 || n != 1 {
			t.Fatalf("round %d: versions %s, the step run %d times, 0002 applied %d times: want each once", round, got, runs.Load(), n)
		}
	}
}
