package database_test

import (
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
)

func TestOpenPostgres(t *testing.T) {
	db, err := database.Open(dbtest.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer closeDB(db)
	if d := database.Dialect(db); d != database.Postgres {
		t.Fatalf("dialect %q", d)
	}
	var one int
	if err := db.Raw("SELECT 1").Scan(&one).Error; err != nil || one != 1 {
		t.Fatalf("select 1: %d %v", one, err)
	}
	sqlDB, _ := db.DB()
	if got := sqlDB.Stats().MaxOpenConnections; got != 10 {
		t.Fatalf("pool size %d, want 10", got)
	}
	checkTranslatedErrors(t, db)
}

func TestOpenSQLiteFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.db")
	db, err := database.Open("sqlite://" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer closeDB(db)
	if d := database.Dialect(db); d != database.SQLite {
		t.Fatalf("dialect %q", d)
	}
	pragma := func(name string) string {
		var v string
		if err := db.Raw("PRAGMA " + name).Scan(&v).Error; err != nil {
			t.Fatalf("pragma %s: %v", name, err)
		}
		return v
	}
	if v := pragma("journal_mode"); v != "wal" {
		t.Fatalf("journal_mode %q", v)
	}
	if v := pragma("foreign_keys"); v != "1" {
		t.Fatalf("foreign_keys %q", v)
	}
	if v := pragma("busy_timeout"); v != "10000" {
		t.Fatalf("busy_timeout %q", v)
	}
	checkTranslatedErrors(t, db)

	// A second handle on the same file sees committed data: it is a file, not a private database.
	db.Exec("CREATE TABLE kv (k TEXT PRIMARY KEY)")
	db.Exec("INSERT INTO kv VALUES ('x')")
	other, err := database.Open("sqlite://" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer closeDB(other)
	var n int64
	other.Raw("SELECT count(*) FROM kv").Scan(&n)
	if n != 1 {
		t.Fatalf("other handle sees %d rows", n)
	}
}

// Processes opening one fresh file together while one of them writes: an open met SQLITE_BUSY at once (about one
// in thirty here), which the busy timeout did not cover, and a service failed to start. Now each open waits as a
// writer would.
func TestOpenSQLiteFileTogether(t *testing.T) {
	for round := range 100 {
		url := "sqlite://" + filepath.Join(t.TempDir(), "a.db")
		errs := make(chan error, 3)
		for range 3 {
			go func() {
				db, err := database.Open(url)
				if err != nil {
					errs <- err
					return
				}
				defer closeDB(db)
				errs <- db.Transaction(func(tx *gorm.DB) error {
					return tx.Exec("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY)").Error
				})
			}()
		}
		for range 3 {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
}

// :memory: is one database per connection; the single-connection pool keeps it one database for every goroutine.
func TestOpenSQLiteMemoryIsOneDatabase(t *testing.T) {
	db, err := database.Open("sqlite://:memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer closeDB(db)
	if err := db.Exec("CREATE TABLE n (v INTEGER)").Error; err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- db.Transaction(func(tx *gorm.DB) error { return tx.Exec("INSERT INTO n VALUES (?)", i).Error })
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var n int64
	db.Raw("SELECT count(*) FROM n").Scan(&n)
	if n != 20 {
		t.Fatalf("%d rows, want 20", n)
	}
}

func TestOpenRejectsBadURLs(t *testing.T) {
	for _, u := range []string{"", "mysql://x", "just-a-path.db", "sqlite://", "postgres://user:secret@127.0.0.1:1/db?connect_timeout=1"} {
		db, err := database.Open(u)
		if err == nil {
			closeDB(db)
			// pgx connects lazily on some versions; a ping must fail then.
			t.Fatalf("%q accepted", u)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Fatalf("error leaks the password: %v", err)
		}
	}
}

func checkTranslatedErrors(t *testing.T, db *gorm.DB) {
	t.Helper()
	if err := db.Exec("CREATE TABLE uniq (k TEXT PRIMARY KEY)").Error; err != nil {
		t.Fatal(err)
	}
	type uniq struct{ K string }
	if err := db.Table("uniq").Create(&uniq{K: "a"}).Error; err != nil {
		t.Fatal(err)
	}
	err := db.Table("uniq").Create(&uniq{K: "a"}).Error
	if !errors.Is(err, gorm.ErrDuplicatedKey) {
		t.Fatalf("duplicate insert: %v, want gorm.ErrDuplicatedKey", err)
	}
}

func closeDB(db *gorm.DB) {
	if sqlDB, err := db.DB(); err == nil {
		_ = sqlDB.Close()
	}
}

// A single write outside a transaction is sent as one statement, not wrapped in BEGIN ... COMMIT (three round trips):
// the statement reaches the connection pool itself, not a *sql.Tx. Explicit transactions still get one.
func TestSingleWritesAreNotWrappedInATransaction(t *testing.T) {
	for name, url := range map[string]string{"postgres": dbtest.PostgresURL(t), "sqlite": "sqlite://:memory:"} {
		t.Run(name, func(t *testing.T) {
			db, err := database.Open(url)
			if err != nil {
				t.Fatal(err)
			}
			defer closeDB(db)
			if err := db.Exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)").Error; err != nil {
				t.Fatal(err)
			}
			var inTx []bool
			err = db.Callback().Create().Before("gorm:create").Register("test:observe", func(tx *gorm.DB) {
				_, isTx := tx.Statement.ConnPool.(*sql.Tx)
				inTx = append(inTx, isTx)
			})
			if err != nil {
				t.Fatal(err)
			}
			type note struct {
				ID   int
				Body string
			}
			if err := db.Table("notes").Create(&note{ID: 1, Body: "alone"}).Error; err != nil {
				t.Fatal(err)
			}
			err = db.Transaction(func(tx *gorm.DB) error { return tx.Table("notes").Create(&note{ID: 2, Body: "in tx"}).Error })
			if err != nil {
				t.Fatal(err)
			}
			if len(inTx) != 2 || inTx[0] || !inTx[1] {
				t.Fatalf("ran in a transaction: %v, want [false true]", inTx)
			}
		})
	}
}

// A URL missing its "//" (a typo) parses as a path, user info and all, so the
// error repeated the password; only a URL whose user info url.Parse found was
// redacted.
func TestMalformedURLErrorHidesThePassword(t *testing.T) {
	for _, u := range []string{"postgres:/user:secret@127.0.0.1/db", "postgres//user:secret@127.0.0.1/db", "user:secret@127.0.0.1/db",
		// Found by review: a password in the query (pgx reads one there), one with an unencoded '#' or '@'
		// that url.Parse reads as a fragment or as the host, and a key=value DSN were shown whole.
		"postgres://127.0.0.1:1/db?connect_timeout=1&password=secret",
		"postgres://bob:pw#secret@127.0.0.1:1/db?connect_timeout=1",
		"postgres://bob:pw@x#secret@127.0.0.1:1/db?connect_timeout=1",
		"postgres://bob:pw@secret@127.0.0.1:1/db?connect_timeout=1",
		"host=127.0.0.1 port=1 password=secret",
		// pgx reads the password of an encrypted client key (sslpassword) from the query too.
		"postgres://127.0.0.1:1/db?connect_timeout=1&sslpassword=secret",
		// An unencoded '/' in the password: url.Parse and pgx read host bob, port 12, and the rest of the
		// password, up to its '@', as the database, which pgx's connect error names (and gorm logs).
		"postgres://bob:12/secret@127.0.0.1:1/db?connect_timeout=1",
		"postgres://bob:12?secret@127.0.0.1:1/db",
		"postgres://bob:12?x=secret@127.0.0.1:1/db",
	} {
		db, err := database.Open(u)
		if err == nil {
			closeDB(db)
			t.Fatalf("%q accepted", u)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("%q: error leaks the password: %v", u, err)
		}
	}
}
