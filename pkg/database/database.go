// Package database opens the platform's relational store from one URL: PostgreSQL in production and native runs, SQLite
// (pure Go, no cgo) for the embedded mode and quick tests. Services get a *gorm.DB either way and write SQL that runs on both.
//
// Building with -tags nosqlite leaves the SQLite driver out (sqlite.go, nosqlite.go): production images talk to
// PostgreSQL only, and the pure-Go SQLite (a C library translated to Go, with its libc) costs every start of every
// service its package initialisation and a few MB of executable. Such a binary refuses sqlite:// URLs with a clear error.
package database

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/shanhai-dev/shanhai/pkg/database/pgconnect"
	"github.com/shanhai-dev/shanhai/pkg/redact"
)

// Dialect names, as returned by Dialect and by gorm's Dialector.Name.
const (
	Postgres = "postgres"
	SQLite   = "sqlite"
)

// Options tune Open; the zero value gives the defaults documented on each field.
type Options struct {
	// MaxOpenConns caps PostgreSQL connections per process (default 10). SQLite always uses one connection.
	MaxOpenConns int
	// MaxIdleConns keeps warm PostgreSQL connections (default MaxOpenConns).
	MaxIdleConns int
	// ConnMaxLifetime recycles connections so servers can rebalance and fail over (default 30m).
	ConnMaxLifetime time.Duration
	// ConnMaxIdleTime closes connections idle this long (default 5m).
	ConnMaxIdleTime time.Duration
	// BusyTimeout is how long an SQLite writer waits for another process's write lock (default 10s).
	BusyTimeout time.Duration
	// Logger receives gorm's warnings, failed statements (not those ended by their own context: see callerGaveUp) and
	// slow-query reports (default slog.Default()).
	Logger *slog.Logger
	// SlowQuery is the threshold above which a query is logged as slow (default 200ms).
	SlowQuery time.Duration
}

// ConnectTimeout bounds each connection's set-up to PostgreSQL when the URL sets no connect_timeout of its own (see
// pgconnect.ConnectTimeout for why).
const ConnectTimeout = pgconnect.ConnectTimeout

// Open connects to url with default Options. See OpenWith.
func Open(url string) (*gorm.DB, error) { return OpenWith(url, Options{}) }

// OpenWith connects to a store named by url:
//
//   - postgres://user:pass@host:port/db?sslmode=disable (also postgresql://) uses the pgx driver with a bounded pool.
//   - sqlite://path/to/file.db, sqlite:///abs/path.db or sqlite://:memory: uses a cgo-free SQLite with WAL journaling,
//     foreign keys on, a busy timeout, and BEGIN IMMEDIATE transactions.
//
// SQLite allows one writer at a time, so the pool holds exactly one connection: writers in this process queue on the pool
// instead of failing with SQLITE_BUSY, and ":memory:" (one database per connection) stays one database. Another process on
// the same file waits up to BusyTimeout for the write lock. The price is that reads also queue; SQLite is for the embedded
// mode and tests, not for load. A consequence callers must respect: never use the *gorm.DB outside a transaction while
// holding that transaction open, or the second query waits forever for the only connection.
//
// Errors are translated (gorm.ErrDuplicatedKey, gorm.ErrForeignKeyViolated) on both dialects, and a statement its
// context ended fails with an error that is that context's (errors.Is(err, context.DeadlineExceeded)).
//
// On SQLite a context cuts short only statements the driver executes without reading rows (Exec: an UPDATE or DELETE
// without RETURNING, BEGIN). It watches the context while it prepares a query but not while it steps through the rows,
// where all of a query's work happens, and offers no way to interrupt it from outside: a query (a SELECT, or a
// statement with RETURNING) runs to its end holding the pool's one connection, and only then fails with its context's
// error (a 3-million-row recursive count: 9.0 s against
// a 50 ms deadline, where the same statement as an Exec stopped at 69 ms). Bound SQLite reads by their shape (LIMIT,
// an index), not by a deadline. With pgx (PostgreSQL) both return at the deadline.
func OpenWith(rawURL string, o Options) (*gorm.DB, error) {
	return open(context.Background(), rawURL, o, true)
}

// open is OpenWith; without ping a PostgreSQL pool connects at its first statement, whose failure then names the
// server. ctx bounds only the wait for a connect begun at start-up (pgconnect.Open).
func open(ctx context.Context, rawURL string, o Options, ping bool) (*gorm.DB, error) {
	o = o.withDefaults()
	cfg := &gorm.Config{
		TranslateError: true,
		Logger: callerGaveUp{logger.NewSlogLogger(o.Logger, logger.Config{
			SlowThreshold:             o.SlowQuery,
			LogLevel:                  logger.Warn,
			IgnoreRecordNotFoundError: true,
			ParameterizedQueries:      true, // never log bound values: they may hold personal data
		}), logger.Warn, o.SlowQuery},
		NowFunc: func() time.Time { return time.Now().UTC() },
		// gorm wraps every single Create/Update/Delete outside a transaction in BEGIN ... COMMIT, so one INSERT
		// costs three round trips. A single statement is atomic on both PostgreSQL and SQLite anyway, and no
		// Shanhai model saves associations (the only case where gorm's Create issues several statements), so
		// the wrapper only added latency: under load the payment service's claim insert waited on it for a
		// pool connection. Code that needs several statements to commit together uses db.Transaction, as before.
		SkipDefaultTransaction: true,
		DisableAutomaticPing:   !ping,
	}
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, fmt.Errorf("open database: %q is not a URL (want postgres://... or sqlite://...)", redact.URL(rawURL))
	}
	switch scheme {
	case "postgres", "postgresql":
		// url.Parse takes the last '@' as the end of the user info and pgx
		// another, and pgx's error then names the host it read: a password
		// with an unencoded '@' reached the logs (found by review). An '@'
		// in the path or fragment with no user info before it is the mark of
		// an unencoded '/' or '#' in the password, which ended the authority
		// early: both then read the password's first part as the host and
		// the rest as the database, and pgx's connect error (logged by gorm
		// too) named that database, the rest of the password.
		if n := strings.Count(rawURL, "@"); n > 1 || n == 1 && outsideUserInfo(rawURL) {
			return nil, fmt.Errorf("open postgres %s: an '@' that does not end the user info: percent-encode any "+
				"@, /, ?, # or : in the user name or password, and an @ in parameters (%%40)", redact.URL(rawURL))
		}
		pool, err := pgconnect.Open(ctx, rawURL)
		if err != nil {
			return nil, fmt.Errorf("open postgres %s: %w", redact.URL(rawURL), err)
		}
		db, err := gorm.Open(postgres.New(postgres.Config{Conn: pool}), cfg)
		if err != nil {
			return nil, fmt.Errorf("open postgres %s: %w", redact.URL(rawURL), err)
		}
		sqlDB, err := db.DB()
		if err != nil {
			return nil, fmt.Errorf("open postgres: %w", err)
		}
		sqlDB.SetMaxOpenConns(o.MaxOpenConns)
		sqlDB.SetMaxIdleConns(o.MaxIdleConns)
		sqlDB.SetConnMaxLifetime(o.ConnMaxLifetime)
		sqlDB.SetConnMaxIdleTime(o.ConnMaxIdleTime)
		return db, nil
	case "sqlite":
		dsn, err := sqliteDSN(rest, o.BusyTimeout)
		if err != nil {
			return nil, err
		}
		dialector, err := sqliteDialector(dsn)
		if err != nil {
			return nil, err
		}
		db, err := gorm.Open(dialector, cfg)
		// A connection opening a file while another process changes its journal mode or writes to it can get
		// SQLITE_BUSY at once, outside the busy timeout's reach; wait for it as long as a writer would.
		for deadline := time.Now().Add(o.BusyTimeout); busy(err) && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
			db, err = gorm.Open(dialector, cfg)
		}
		if err != nil {
			return nil, fmt.Errorf("open sqlite %s: %w", rest, err)
		}
		if err := failWithContext(db); err != nil {
			return nil, errors.Join(fmt.Errorf("open sqlite %s: %w", rest, err), Close(db))
		}
		sqlDB, err := db.DB()
		if err != nil {
			return nil, fmt.Errorf("open sqlite: %w", err)
		}
		sqlDB.SetMaxOpenConns(1)
		sqlDB.SetMaxIdleConns(1)
		// A closed idle connection would drop a :memory: database, so keep the one connection for the pool's life.
		sqlDB.SetConnMaxLifetime(0)
		sqlDB.SetConnMaxIdleTime(0)
		return db, nil
	default:
		return nil, fmt.Errorf("open database: unsupported scheme %q (want postgres or sqlite)", scheme)
	}
}

// outsideUserInfo reports whether url.Parse reads rawURL, which has one '@', without user info and with the '@' in
// what it took for the path or fragment. One in the query is left alone: a parameter may hold it (an
// application_name), and what follows a password's '?' is not named by pgx's errors. A URL url.Parse refuses is left
// to pgx, which refuses it as well and redacts its own error.
func outsideUserInfo(rawURL string) bool {
	u, err := url.Parse(rawURL)
	return err == nil && u.User == nil && strings.Contains(u.EscapedPath()+u.EscapedFragment(), "@")
}

// OpenMigrated is OpenWith followed by migrate (usually migrate.UpAll over the binary's sets), the way each service
// starts. If migrate fails the pool is closed again, so the caller has either a ready database or nothing to close.
//
// It does not ping PostgreSQL first: migrate's first statement connects, and a server that is not there fails it
// with pgx's error naming the server (migrate.UpAll returns such a failure rather than taking it for a missing
// table). The ping was a round trip of every service's start that proved nothing the next statement did not.
func OpenMigrated(ctx context.Context, rawURL string, o Options, migrate func(context.Context, *gorm.DB) error) (*gorm.DB, error) {
	db, err := open(ctx, rawURL, o, false)
	if err != nil {
		return nil, err
	}
	if err := migrate(ctx, db); err != nil {
		return nil, errors.Join(err, Close(db))
	}
	return db, nil
}

// Close closes the connection pool behind db (gorm has no Close of its own).
func Close(db *gorm.DB) error {
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

// Closer is Close bound to db, for a binary's list of things to close; nil when db is nil (it failed to open).
func Closer(db *gorm.DB) func() error {
	if db == nil {
		return nil
	}
	return func() error { return Close(db) }
}

// Dialect returns Postgres or SQLite for a *gorm.DB from Open, so callers can pick dialect-specific SQL.
func Dialect(db *gorm.DB) string { return db.Dialector.Name() }

// failWithContext makes a statement that SQLite interrupted because its context ended fail with that context's error
// as well: the driver interrupts the running statement and reports only "interrupted (9)", so a caller could not tell
// its own deadline from a database failure (a service answered 500 where deadline.Abort answers 504 or 503). pgx
// already returns errors that wrap the context's.
func failWithContext(db *gorm.DB) error {
	wrap := func(tx *gorm.DB) {
		if tx.Error == nil || !interrupted(tx.Error) {
			return
		}
		if err := tx.Statement.Context.Err(); err != nil && !errors.Is(tx.Error, err) {
			tx.Error = fmt.Errorf("%w: %w", err, tx.Error)
		}
	}
	cb := db.Callback()
	for _, p := range []interface {
		Register(name string, fn func(*gorm.DB)) error
	}{cb.Create(), cb.Query(), cb.Update(), cb.Delete(), cb.Row(), cb.Raw()} {
		if err := p.Register("shanhai:fail_with_context", wrap); err != nil {
			return fmt.Errorf("register callback: %w", err)
		}
	}
	return nil
}

// interrupted reports whether err is SQLite's SQLITE_INTERRUPT, which only the driver's context handling causes.
func interrupted(err error) bool {
	var coded interface{ Code() int }
	return errors.As(err, &coded) && coded.Code()&0xff == 9
}

// busy reports whether err is SQLite's SQLITE_BUSY (extended codes included), from the driver's error type.
func busy(err error) bool {
	var coded interface{ Code() int }
	return errors.As(err, &coded) && coded.Code()&0xff == 5
}

// sqliteDSN turns the part after "sqlite://" into a driver DSN with the pragmas every connection needs.
// Query parameters given in the URL (e.g. _pragma=synchronous(normal)) are kept and come after the defaults.
func sqliteDSN(rest string, busy time.Duration) (string, error) {
	path, query, _ := strings.Cut(rest, "?")
	if path == "" {
		return "", fmt.Errorf("open sqlite: empty path (want sqlite://file.db or sqlite://:memory:)")
	}
	extra, err := url.ParseQuery(query)
	if err != nil {
		return "", fmt.Errorf("open sqlite: bad query %q: %w", query, err)
	}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
	q.Add("_pragma", "foreign_keys(1)")
	if path != ":memory:" {
		q.Add("_pragma", "journal_mode(WAL)")
		// WAL with synchronous=NORMAL is durable against application crashes, which is what the outbox relies on.
		q.Add("_pragma", "synchronous(NORMAL)")
	}
	// Take the write lock at BEGIN: a deferred transaction that reads and then writes can fail with SQLITE_BUSY
	// when another process wrote in between, which busy_timeout does not cover.
	q.Set("_txlock", "immediate")
	for k, vs := range extra {
		for _, v := range vs {
			q.Add(k, v)
		}
	}
	return path + "?" + q.Encode(), nil
}

func (o Options) withDefaults() Options {
	if o.MaxOpenConns <= 0 {
		o.MaxOpenConns = 10
	}
	if o.MaxIdleConns <= 0 {
		o.MaxIdleConns = o.MaxOpenConns
	}
	if o.ConnMaxLifetime <= 0 {
		o.ConnMaxLifetime = 30 * time.Minute
	}
	if o.ConnMaxIdleTime <= 0 {
		o.ConnMaxIdleTime = 5 * time.Minute
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.SlowQuery <= 0 {
		o.SlowQuery = 200 * time.Millisecond
	}
	return o
}
