package migrate_test

import (
	"context"
	"database/sql"
	"testing"
	"testing/fstest"
	"time"

	"github.com/pressly/goose/v3/lock"
	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/migrate"
)

// A start whose later migration fails still records the sums of the ones it
// applied before it: they are applied, and editing one of them along with the
// fix of the failed one must be refused at the next start, not taken as what
// was applied.
func TestEditBesideAFailedMigrationIsRefused(t *testing.T) {
	const broken = "-- +goose Up\nINSERT INTO no_such_table (id) VALUES (1);\n"
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		set := fstest.MapFS{
			"0001_widgets.sql": {Data: []byte(widgetsV1)},
			"0002_gadgets.sql": {Data: []byte(broken)},
		}
		if err := migrate.Up(ctx, db, set); err == nil {
			t.Fatal("a broken 0002 was applied")
		}
		if err := db.Exec("SELECT id FROM widgets").Error; err != nil {
			t.Fatalf("0001 not applied before the failure: %v", err)
		}
		fixed := fstest.MapFS{
			"0001_widgets.sql": {Data: []byte(widgetsEdited)},
			"0002_gadgets.sql": {Data: []byte(gadgets)},
		}
		wantRefused(t, migrate.Up(ctx, db, fixed))
	})
}

// A start cut short (its context ended: a SIGTERM or a start-up deadline while a long migration ran) after some
// migrations were applied records their sums all the same: the sums were written with that ended context, which
// failed at once, so the next start took the files as they were then for what had run.
func TestEditBesideAnInterruptedMigrationIsRefused(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		interrupted := migrate.GoStep{Version: 2, Name: "slow", Up: func(ctx context.Context, _ *sql.Tx) error {
			cancel() // the start is stopped while this step runs
			<-ctx.Done()
			return ctx.Err()
		}}
		files := fstest.MapFS{"0001_widgets.sql": {Data: []byte(widgetsV1)}}
		if err := migrate.Up(ctx, db, migrate.WithGo(files, interrupted)); err == nil {
			t.Fatal("a start whose context ended reported success")
		}
		if err := db.Exec("SELECT id FROM widgets").Error; err != nil {
			t.Fatalf("0001 not applied before the interruption: %v", err)
		}
		done := migrate.GoStep{Version: 2, Name: "slow", Up: func(context.Context, *sql.Tx) error { return nil }}
		edited := fstest.MapFS{"0001_widgets.sql": {Data: []byte(widgetsEdited)}}
		wantRefused(t, migrate.Up(context.Background(), db, migrate.WithGo(edited, done)))
	})
}

// A start whose migrations went through waits for goose's lock to record their sums (record asks goose for the
// status, which takes it) as patiently as it waited to migrate: another replica holding the lock for a migration of
// a few seconds must not fail this one's start. The bound put on recording for a stopped start (5 s) was at first
// put on every start's, so this start failed with "context deadline exceeded".
func TestRecordWaitsForAnotherReplicasMigration(t *testing.T) {
	db := dbtest.Postgres(t)
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	other, err := sqlDB.Conn(context.Background()) // the other replica's session
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	otherDone := make(chan error, 1)
	queue := migrate.GoStep{Version: 2, Name: "queue_other_replica", Up: func(ctx context.Context, tx *sql.Tx) error {
		// The other replica asks for the lock while this start holds it, so it has it as soon as goose lets go,
		// before this start's record asks. It then migrates for longer than the bound (a sleep stands for that).
		go func() {
			bg := context.Background()
			_, err := other.ExecContext(bg, "SELECT pg_advisory_lock($1)", lock.DefaultLockID)
			if err == nil {
				time.Sleep(6 * time.Second)
				_, err = other.ExecContext(bg, "SELECT pg_advisory_unlock($1)", lock.DefaultLockID)
			}
			otherDone <- err
		}()
		for {
			var waiting int
			err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").
				Scan(&waiting)
			if err != nil || waiting > 0 {
				return err
			}
			time.Sleep(5 * time.Millisecond)
		}
	}}
	files := fstest.MapFS{"0001_widgets.sql": {Data: []byte(widgetsV1)}}
	if err := migrate.Up(context.Background(), db, migrate.WithGo(files, queue)); err != nil {
		t.Fatalf("a start that waited for another replica's migration to record its sums: %v", err)
	}
	if err := <-otherDone; err != nil {
		t.Fatal(err)
	}
}
