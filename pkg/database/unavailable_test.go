package database_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// TestUnavailableOnAClosedPort: a PostgreSQL that is down fails both the open at start and every statement of a pool
// that was opened before it went down (a database/sql pool connects lazily, as the services' does after a restart of
// the server) with errors Unavailable recognises.
func TestUnavailableOnAClosedPort(t *testing.T) {
	url := "postgres://shanhai@" + testenv.ClosedPort(t) + "/shanhai?sslmode=disable&connect_timeout=5"
	_, err := database.Open(url)
	if err == nil || !database.Unavailable(err) {
		t.Errorf("Open at a closed port: Unavailable(%v) = false, want true", err)
	}

	pool, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	err = pool.QueryRowContext(context.Background(), "SELECT 1").Scan(new(int))
	if err == nil || !database.Unavailable(err) {
		t.Errorf("SELECT on a pool at a closed port: Unavailable(%v) = false, want true", err)
	}
}

// TestUnavailableWhenTheServerEndsTheConnection: a statement whose connection the server ends (pg_terminate_backend,
// as a fast shutdown or a failover does to every session) fails with an error Unavailable recognises, and a closed
// pool (a request still running as the shutdown hook closes it) too. A throwaway database; the shared server keeps
// running.
func TestUnavailableWhenTheServerEndsTheConnection(t *testing.T) {
	url := dbtest.PostgresURL(t)
	db, err := database.OpenWith(url, database.Options{MaxOpenConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()

	var pid int
	if err := db.Raw("SELECT pg_backend_pid()").Scan(&pid).Error; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sleeping := make(chan error, 1)
	go func() { sleeping <- db.WithContext(ctx).Exec("SELECT pg_sleep(60)").Error }()
	// Terminate the session once it is running the statement, so the error is the statement's own.
	for {
		var active bool
		q := "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND query LIKE '%pg_sleep%')"
		if err := admin.QueryRowContext(ctx, q, pid).Scan(&active); err != nil {
			t.Fatal(err)
		}
		if active {
			break
		}
		select {
		case err := <-sleeping:
			t.Fatalf("pg_sleep ended before it was terminated: %v", err)
		case <-ctx.Done():
			t.Fatal("pg_sleep never showed as active")
		case <-time.After(10 * time.Millisecond):
		}
	}
	var terminated bool
	if err := admin.QueryRowContext(ctx, "SELECT pg_terminate_backend($1)", pid).Scan(&terminated); err != nil || !terminated {
		t.Fatalf("pg_terminate_backend(%d): %v %v", pid, terminated, err)
	}
	if err := <-sleeping; err == nil || !database.Unavailable(err) {
		t.Errorf("statement whose session was terminated: Unavailable(%v) = false, want true", err)
	}

	// The pool replaced the connection: the database answers again, and its ordinary errors are not outages.
	if err := db.Exec("CREATE TABLE t (id int PRIMARY KEY)").Error; err != nil {
		t.Fatalf("after the termination: %v", err)
	}
	checkNotUnavailable(t, db)

	if err := database.Close(db); err != nil {
		t.Fatal(err)
	}
	if err := db.Exec("SELECT 1").Error; err == nil || !database.Unavailable(err) {
		t.Errorf("statement on a closed pool: Unavailable(%v) = false, want true", err)
	}
}

// checkNotUnavailable: the errors of a database that answers are bugs or the client's, not outages.
func checkNotUnavailable(t *testing.T, db *gorm.DB) {
	t.Helper()
	if err := db.Exec("INSERT INTO t (id) VALUES (1)").Error; err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"syntax error":     db.Exec("SELEC 1").Error,
		"missing table":    db.Exec("SELECT * FROM missing").Error,
		"duplicate key":    db.Exec("INSERT INTO t (id) VALUES (1)").Error,
		"record not found": db.Table("t").Where("id = 2").First(&struct{ ID int }{}).Error,
		"cancelled":        fmt.Errorf("query: %w", context.Canceled),
		"deadline":         fmt.Errorf("query: %w", context.DeadlineExceeded),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		} else if database.Unavailable(err) {
			t.Errorf("%s: Unavailable(%v) = true, want false", name, err)
		}
	}
}

// TestUnavailableSQLite: the embedded mode's file that cannot be opened, or that another process keeps locked past
// the busy timeout, is unavailable; its ordinary errors are not.
func TestUnavailableSQLite(t *testing.T) {
	_, err := database.Open("sqlite://" + filepath.Join(t.TempDir(), "no-such-dir", "a.db"))
	if err == nil || !database.Unavailable(err) {
		t.Errorf("open in a missing directory: Unavailable(%v) = false, want true", err)
	}

	url := dbtest.SQLiteURL(t)
	opts := database.Options{BusyTimeout: 50 * time.Millisecond}
	holder, err := database.OpenWith(url, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer closeDB(holder)
	other, err := database.OpenWith(url, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer closeDB(other)
	if err := holder.Exec("CREATE TABLE t (id int PRIMARY KEY)").Error; err != nil {
		t.Fatal(err)
	}
	checkNotUnavailable(t, other)

	tx := holder.Begin() // BEGIN IMMEDIATE: holds the write lock until the rollback
	if tx.Error != nil {
		t.Fatal(tx.Error)
	}
	defer tx.Rollback()
	err = other.Exec("INSERT INTO t (id) VALUES (3)").Error
	if err == nil || !database.Unavailable(err) {
		t.Errorf("write while another pool holds the lock: Unavailable(%v) = false, want true", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("busy error %v reads as a deadline", err)
	}
}
