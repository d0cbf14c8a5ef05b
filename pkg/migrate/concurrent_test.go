package migrate_test

import (
	"context"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/pressly/goose/v3/lock"
	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/migrate"
	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
)

// An index built CONCURRENTLY (a NO TRANSACTION file) by the replica holding the migration lock, while another
// replica waits for that lock: the build waits for every transaction with an older snapshot, the waiting replica's
// included, which waited for the lock the build's session holds. PostgreSQL found the cycle ("deadlock detected")
// and failed the waiting replica's start.
func TestUpWaitsBesideAConcurrentIndexBuild(t *testing.T) {
	upBesideIndexBuild(t, dbtest.PostgresURL(t))
}

// The same with a deadlock_timeout below the 200 ms each wait for the lock used to last, set for the database as an
// operator would: both sides' deadlock checks then ran within one wait, found the cycle, and failed the index build
// ("deadlock detected") or the waiting replica's start. A wait now lasts half the deadlock_timeout at most.
func TestUpWaitsBesideAConcurrentIndexBuildShortDeadlockTimeout(t *testing.T) {
	url := dbtest.PostgresURL(t)
	db := pools(t, url, 1)[0]
	var name string
	if err := db.Raw("SELECT current_database()").Scan(&name).Error; err != nil {
		t.Fatal(err)
	}
	if err := db.Exec(`ALTER DATABASE "` + name + `" SET deadlock_timeout = '50ms'`).Error; err != nil {
		t.Fatal(err) // a setting a superuser gives; testenv's role is one
	}
	upBesideIndexBuild(t, url)
}

// upBesideIndexBuild builds an index CONCURRENTLY while holding the migration lock that a replica's Up waits for.
func upBesideIndexBuild(t *testing.T, url string) {
	t.Helper()
	ctx := context.Background()
	conn := holdMigrationLock(t, url) // the replica migrating
	if _, err := conn.ExecContext(ctx, "CREATE TABLE big (n BIGINT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	errs := upEach(ctx, pools(t, url, 1), serviceSet)
	runtest.Eventually(t, 10*time.Second, "the replica waiting for the lock", func() bool {
		return waitingForLock(t, conn) == 1
	})
	if _, err := conn.ExecContext(ctx, "CREATE INDEX CONCURRENTLY big_n ON big (n)"); err != nil {
		t.Fatalf("the index build beside a waiting replica: %v", err)
	}
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_unlock($1)", lock.DefaultLockID); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		if err != nil {
			t.Fatalf("the replica waiting beside the index build: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Up still waits 30 s after the lock was released")
	}
}

// The shape docs/conventions.md gives an index added to a live table: a NO TRANSACTION file per dialect, the
// PostgreSQL one dropping what a failed build left before building again. A failed CREATE INDEX CONCURRENTLY
// leaves an INVALID index (here a unique one over duplicates), which the planner never uses but every write still
// maintains, and "IF NOT EXISTS" would keep it and record the version. The file is recorded like any other: its
// version once it succeeded, and its checksum.
func TestConcurrentIndexBuildRetried(t *testing.T) {
	ctx := context.Background()
	db := dbtest.Postgres(t)
	set := fstest.MapFS{
		"0001_items.sql": {Data: []byte("-- +goose Up\nCREATE TABLE items (k TEXT NOT NULL);\n")},
	}
	if err := migrate.Up(ctx, db, set); err != nil {
		t.Fatal(err)
	}
	if err := db.Exec("INSERT INTO items VALUES ('a'), ('a')").Error; err != nil {
		t.Fatal(err)
	}
	set["0002_items_k.postgres.sql"] = &fstest.MapFile{Data: []byte(`-- +goose NO TRANSACTION
-- +goose Up
DROP INDEX CONCURRENTLY IF EXISTS items_k;
CREATE UNIQUE INDEX CONCURRENTLY items_k ON items (k);
`)}
	set["0002_items_k.sqlite.sql"] = &fstest.MapFile{Data: []byte("-- +goose Up\nCREATE UNIQUE INDEX items_k ON items (k);\n")}
	if err := migrate.Up(ctx, db, set); err == nil || !strings.Contains(err.Error(), "0002_items_k.postgres.sql") {
		t.Fatalf("err %v: want the build over duplicates failed, naming its file", err)
	}
	if got := indexValid(t, db); got != "false" {
		t.Fatalf("index after the failed build: valid %q, want an INVALID one left (what this test is about)", got)
	}
	if got := versions(t, db, "schema_migrations"); got != "0,1" {
		t.Fatalf("versions %s after the failed build, want 0002 not recorded", got)
	}
	if err := db.Exec("DELETE FROM items").Error; err != nil {
		t.Fatal(err)
	}
	if err := migrate.Up(ctx, db, set); err != nil {
		t.Fatal(err)
	}
	if got := indexValid(t, db); got != "true" {
		t.Fatalf("index after the retry: valid %q, want the INVALID one replaced", got)
	}
	if got := versions(t, db, "schema_migrations"); got != "0,1,2" {
		t.Fatalf("versions %s, want 0002 recorded once", got)
	}
	if n := sums(t, db); n != 2 {
		t.Fatalf("%d checksums recorded, want both files'", n)
	}
}

// indexValid is pg_index.indisvalid of items_k, "" when there is no such index.
func indexValid(t *testing.T, db *gorm.DB) string {
	t.Helper()
	var valid []bool
	if err := db.Raw("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('items_k')").Scan(&valid).Error; err != nil {
		t.Fatal(err)
	}
	if len(valid) == 0 {
		return ""
	}
	if valid[0] {
		return "true"
	}
	return "false"
}
