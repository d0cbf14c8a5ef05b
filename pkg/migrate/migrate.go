// Package migrate applies versioned migrations, SQL files and Go steps, to PostgreSQL or SQLite at start-up.
//
// A migration set is an fs.FS (usually an embed.FS) of goose-annotated files named NNNN_description.sql:
//
//	-- +goose Up
//	CREATE TABLE orders (...);
//	-- +goose Down
//	DROP TABLE orders;
//
// Write SQL both dialects accept (TEXT, BIGINT, BOOLEAN, TIMESTAMP, ON CONFLICT ...). Where they differ, give the
// same version twice with a dialect infix, NNNN_x.postgres.sql and NNNN_x.sqlite.sql: each database sees only its own.
//
// Each set records its applied versions in its own table (schema_migrations by default, schema_migrations_<name> for a
// set wrapped with Named), so pkg's sets (outbox.Migrations, dedup.Migrations) and a service's own set never mistake each
// other's versions. Applying an applied set is a no-op; UpAll applies a service's sets together and settles the usual
// restart, where nothing is pending, with one query. On PostgreSQL an advisory lock serialises replicas that start
// together; on SQLite a lock file beside the database (<file>-migrate.lock) serialises processes, and where there is
// no flock, SQLite's write lock serialises each migration and a process that finds its next migration applied by
// another meanwhile carries on from there.
//
// A change SQL cannot express (one that needs Go's Unicode tables, say) is a Go step, a version of the set like a file:
//
//	migrate.WithGo(migrations.FS, migrate.GoStep{Version: 3, Name: "email_nfkc_rewrite", Up: rewrite})
//
// where rewrite is a func(ctx, *sql.Tx) error. It is recorded in the set's version table, runs under the same lock and
// in a transaction of its own that also records its version, exactly once across replicas, and never again once
// applied. To run the same step again (rows written meanwhile by replicas of an older version), add a later version
// that calls the same function; keep the step idempotent. No version may belong to both a file and a step.
//
// An index on a table a live database may hold many rows of is built CONCURRENTLY, in a "-- +goose NO TRANSACTION"
// file of its own that drops a failed build's INVALID index first (docs/conventions.md). The lock is waited for so
// that such a build does not deadlock with the replicas waiting (pgLock.SessionLock).
//
// Applied migrations are immutable: each set records its files' SHA-256 beside its version table
// (<table>_checksums), and a start whose file differs from the one applied fails, naming the file (checksum.go). A Go
// step is recorded by its Name (gostep.go), so renaming an applied step fails likewise.
package migrate

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"
	"github.com/pressly/goose/v3/lock"
	"gorm.io/gorm"
)

// DefaultTable records versions of a set that is not Named.
const DefaultTable = "schema_migrations"

// Named gives a migration set its own version table, schema_migrations_<name>.
// Libraries that ship migrations (outbox, dedup) export their sets this way.
func Named(name string, fsys fs.FS) fs.FS { return named{FS: fsys, name: name} }

type named struct {
	fs.FS
	name string
}

// Up applies every pending migration of fsys to db. If fsys holds no .sql file at its root but has a "migrations"
// directory (the usual //go:embed migrations/*.sql), that directory is used.
func Up(ctx context.Context, db *gorm.DB, fsys fs.FS) error { return UpAll(ctx, db, fsys) }

// UpAll applies the pending migrations of each set in the order given (pkg's sets before the service's own, whose
// tables may refer to theirs). It first asks the database, in one query over every set's version table, whether each
// table already records exactly the versions its set holds; when so (the usual restart) it returns without taking
// the lock or asking goose, which would cost a connection and two queries per set. Any other answer, including a
// missing table, takes the full path: goose decides under the advisory lock. Reading without the lock is safe because
// goose commits each migration together with its version row, so a complete set of rows means a complete schema.
func UpAll(ctx context.Context, db *gorm.DB, sets ...fs.FS) error {
	sqlDB, err := db.DB()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	ps := make([]provider, len(sets))
	for i, set := range sets {
		if ps[i], err = newProvider(db.Dialector.Name(), sqlDB, set); err != nil {
			return err
		}
	}
	if ok, err := current(ctx, sqlDB, ps); ok || err != nil {
		return err
	}
	if db.Dialector.Name() == "sqlite" {
		unlock, err := lockSQLite(ctx, sqlDB)
		if err != nil {
			return err
		}
		defer unlock()
	}
	for _, p := range ps {
		// Refuse an edited migration before applying anything after it.
		if err := p.verify(ctx, sqlDB); err != nil {
			return err
		}
		err := p.up(ctx)
		// What goose applied before a failure is applied for good: its sums are recorded now, or an edit of one of
		// those files made along with the fix of the failed one would be recorded at the next start as what ran,
		// and never refused.
		rctx, cancel := recordContext(ctx)
		rerr := p.record(rctx, sqlDB)
		cancel()
		switch {
		case err != nil && rerr != nil:
			return errors.Join(err, rerr)
		case err != nil:
			return err
		case rerr != nil:
			return rerr
		}
	}
	return nil
}

// recordTimeout bounds the recording of a set's sums once the start's context has ended (see recordContext).
const recordTimeout = 5 * time.Second

// recordContext is the context a set's sums are recorded with: ctx, unless it has ended (a SIGTERM or a start-up
// deadline while a long migration ran), when it would fail at once and leave what goose applied without sums. Then
// the sums are written regardless, for recordTimeout at most: record waits for goose's lock (its Status takes it)
// and no longer than that once the start is stopped. While ctx lasts it is kept, with the lock's own bound
// (lockWait): a replica waiting there for another's long migration must not fail its start.
func recordContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if ctx.Err() == nil {
		return ctx, func() {}
	}
	return context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
}

// provider is one set's goose provider, the name of its version table and its versions' checksums.
type provider struct {
	table  string
	sqlite bool
	sums   map[int64]string // by version
	names  map[int64]string // by version: the file's, or the Go step's label, for messages
	*goose.Provider
}

func newProvider(dialectName string, sqlDB *sql.DB, set fs.FS) (provider, error) {
	tbl, fsys, steps := unwrap(set)
	fsys, err := root(fsys)
	if err != nil {
		return provider{}, fmt.Errorf("migrate %s: %w", tbl, err)
	}
	var d goose.Dialect
	opts := []goose.ProviderOption{goose.WithDisableGlobalRegistry(true)}
	switch dialectName {
	case "postgres":
		d = goose.DialectPostgres
		opts = append(opts, goose.WithSessionLocker(pgLock{}), goose.WithTableName(tbl))
	case "sqlite":
		store, err := database.NewStore(goose.DialectSQLite3, tbl)
		if err != nil {
			return provider{}, fmt.Errorf("migrate %s: %w", tbl, err)
		}
		ext, ok := store.(database.StoreExtender) // goose's own store is: its table check is kept
		if !ok {
			return provider{}, fmt.Errorf("migrate %s: goose's SQLite store %T has no TableExists", tbl, store)
		}
		d = goose.DialectCustom // what goose asks of a provider given its own store
		opts = append(opts, goose.WithStore(onceStore{ext}))
	default:
		return provider{}, fmt.Errorf("migrate %s: unsupported dialect %q", tbl, dialectName)
	}
	view := forDialect{FS: fsys, dialect: dialectName}
	gos, err := goMigrations(tbl, view, steps, dialectName == "sqlite")
	if err != nil {
		return provider{}, err
	}
	opts = append(opts, goose.WithGoMigrations(gos...))
	gp, err := goose.NewProvider(d, sqlDB, view, opts...)
	if err != nil {
		return provider{}, fmt.Errorf("migrate %s: %w", tbl, err)
	}
	p := provider{table: tbl, sqlite: dialectName == "sqlite", Provider: gp}
	if err := p.identify(view, steps); err != nil {
		return provider{}, err
	}
	return p, nil
}

func (p provider) up(ctx context.Context) error {
	for {
		_, err := p.Up(ctx)
		if err == nil {
			return nil
		}
		var pe *goose.PartialError
		if !errors.As(err, &pe) || pe.Failed == nil || pe.Failed.Source == nil {
			return fmt.Errorf("migrate %s: %w", p.table, err)
		}
		// Without lockSQLite's lock (see onceStore), another process migrating the same set may apply the migration
		// this one planned to, which then fails (its table exists) or gives way (onceStore, guarded). When the version
		// table now records it, go on from there; each pass skips at least that version, so this ends.
		if p.sqlite && (errors.Is(pe.Err, errAppliedMeanwhile) || p.applied(ctx, pe.Failed.Source.Version)) {
			continue
		}
		// Name the file or step: goose's own message only gives the version.
		return fmt.Errorf("migrate %s: %s: %w", p.table, p.names[pe.Failed.Source.Version], pe.Err)
	}
}

// applied reports whether the version table records version as applied.
func (p provider) applied(ctx context.Context, version int64) bool {
	statuses, err := p.Status(ctx)
	if err != nil {
		return false
	}
	for _, st := range statuses {
		if st.Source != nil && st.Source.Version == version {
			return st.State == goose.StateApplied
		}
	}
	return false
}

// pgLock is goose's session lock on PostgreSQL, waited for in the server (pg_advisory_lock) instead of polled as
// goose's own locker does (pg_try_advisory_lock every 5 s by default, and lock.WithLockTimeout takes whole seconds):
// replicas starting together each slept up to 5 s, mostly after the one migrating had finished. Waiting in the
// server wakes the next one as soon as the lock is released. The id is goose's default: all sets share one lock,
// which is harmless (migrations are short) and keeps two sets' DDL from interleaving on a fresh database.
type pgLock struct{}

// lockWait bounds the wait for a replica that holds the lock, as goose's default did (60 tries 5 s apart), so a
// replica stuck while migrating fails the others' start instead of hanging it.
const lockWait = 5 * time.Minute

// SessionLock waits in short transactions of their own, one lockAttempt each, until the lock is taken or lockWait
// ends. Each sets its own lock_timeout and lifts statement_timeout (SET LOCAL, so the migrations goose then runs on
// conn, and whoever gets conn from the pool later, keep the role's or the URL's): a session timeout would cut the
// wait short (SQLSTATE 55P03 or 57014) and fail a replica's start whenever another's migration outlasts it.
//
// Why slices and not one wait: a statement waiting for the lock holds a snapshot, and CREATE INDEX CONCURRENTLY, run
// by the replica holding the lock, waits for every transaction with an older snapshot to end. A replica waiting in
// one statement for the whole migration never ended, so PostgreSQL found the cycle ("deadlock detected") and failed
// that replica's start, or the index build, which leaves an INVALID index behind. An attempt ends within
// lockAttempt, before the deadlock check (deadlock_timeout, 1 s by default) could find it, and the next attempt's
// snapshot is newer than the build's, which does not wait for it.
func (pgLock) SessionLock(ctx context.Context, conn *sql.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, lockWait)
	defer cancel()
	for {
		taken, err := tryLock(ctx, conn)
		switch {
		case err != nil:
			return fmt.Errorf("take the migration lock: %w", err)
		case taken:
			return nil
		}
	}
}

// lockAttempt bounds one wait in the server for the migration lock (see SessionLock). A release wakes the waiting
// attempt at once, so it costs no latency; it only needs to stay below deadlock_timeout, which each side of the
// cycle checks after waiting that long. An operator may set deadlock_timeout lower than this (it is 1 s by
// default), so an attempt lasts half the server's deadlock_timeout when that is shorter. The value read is this
// session's, which is the lock holder's too when it is set for the server, the database or the role, as replicas
// of one service share those; a holder connecting with another deadlock_timeout of its own is not covered.
const lockAttempt = 200 * time.Millisecond

// lockNotAvailable is the SQLSTATE of a wait ended by lock_timeout.
const lockNotAvailable = "55P03"

// tryLock waits up to lockAttempt for the migration lock in a transaction of its own. It reports false, with no
// error, when the attempt timed out with the lock still held by another session.
func tryLock(ctx context.Context, conn *sql.Conn) (bool, error) {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer func() { _ = tx.Rollback() }() // after a failure; a no-op once committed
	// set_config(..., true) is SET LOCAL; pg_settings gives deadlock_timeout in ms, and greatest keeps a
	// deadlock_timeout of 1 ms from making lock_timeout 0, which would mean no limit.
	const set = `SELECT set_config('lock_timeout', greatest(1, least($1, setting::bigint / 2))::text, true),
		set_config('statement_timeout', '0', true) FROM pg_settings WHERE name = 'deadlock_timeout'`
	if _, err := tx.ExecContext(ctx, set, lockAttempt.Milliseconds()); err != nil {
		return false, fmt.Errorf("set the wait's timeouts: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_lock($1)", lock.DefaultLockID); err != nil {
		var state interface{ SQLState() string }
		if errors.As(err, &state) && state.SQLState() == lockNotAvailable && ctx.Err() == nil {
			return false, nil
		}
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("commit: %w", err)
	}
	return true, nil
}

func (pgLock) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	var held bool
	if err := conn.QueryRowContext(ctx, "SELECT pg_advisory_unlock($1)", lock.DefaultLockID).Scan(&held); err != nil {
		return fmt.Errorf("release the migration lock: %w", err)
	}
	if !held {
		return errors.New("release the migration lock: this session did not hold it")
	}
	return nil
}

// lockSQLite serialises the migrations of one SQLite file across processes (and pools), as the advisory lock does
// on PostgreSQL, for the whole run: it holds a lock on a file beside the database, <file>-migrate.lock, made at the
// first run and left there (removing it could let a process lock a new file while another still holds the old).
// SQLite has no lock to spare for this: a second connection holding the database's write lock would keep the pool's
// one connection from writing. Without it, processes could each plan a migration; one in a transaction is applied
// once all the same (onceStore), but a file marked "-- +goose NO TRANSACTION" ran in each. An in-memory database is
// the pool's alone and is not locked.
func lockSQLite(ctx context.Context, sqlDB *sql.DB) (unlock func(), err error) {
	var file string // the path the pool opened, absolute; empty for an in-memory database
	err = sqlDB.QueryRowContext(ctx, "SELECT file FROM pragma_database_list WHERE name = 'main'").Scan(&file)
	if err != nil {
		return nil, fmt.Errorf("migrate: the SQLite database's file: %w", err)
	}
	if file == "" {
		return func() {}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, lockWait)
	defer cancel()
	if unlock, err = lockFile(ctx, file+"-migrate.lock"); err != nil {
		return nil, fmt.Errorf("migrate: lock %s for migrating: %w", file, err)
	}
	return unlock, nil
}

// onceStore is goose's SQLite store, except that it refuses to record a version the table records already, which
// rolls back the migration's transaction. Without lockSQLite's lock (where there is no flock, or beside a process of
// an older version, which does not take it), processes migrating one file at once may each plan a version, and the
// one whose transaction (BEGIN IMMEDIATE) waited for another's that applied it would apply it again. A migration
// that creates something then fails, but one that only changes rows (UPDATE, INSERT) ran twice and was recorded
// twice. Within the transaction, after the write lock, the check is exact. (A file marked "-- +goose NO TRANSACTION"
// has run before this check: only the lock keeps it from running twice.)
type onceStore struct{ database.StoreExtender }

func (s onceStore) Insert(ctx context.Context, db database.DBTxConn, req database.InsertRequest) error {
	if done, err := recorded(ctx, db, s.Tablename(), req.Version); err != nil || done {
		return cmp.Or(err, errAppliedMeanwhile)
	}
	return s.StoreExtender.Insert(ctx, db, req)
}

// recorded reports whether the version table tbl records version as applied, read through db: a migration's
// transaction, so that it sees what the transaction's lock made final.
func recorded(ctx context.Context, db database.DBTxConn, tbl string, version int64) (bool, error) {
	var n int
	// The version is the program's, not input; the table is this package's (see current).
	q := fmt.Sprintf("SELECT COUNT(*) FROM %s WHERE version_id = %d AND is_applied", tbl, version)
	if err := db.QueryRowContext(ctx, q).Scan(&n); err != nil {
		return false, fmt.Errorf("look up version %d: %w", version, err)
	}
	return n > 0, nil
}

// current reports whether every set's version table holds exactly the set's versions (its files and Go steps), each
// with its checksum recorded. Any answer of the database's (a table not created yet) means "not known to be current",
// never a failure: the full path then decides. The errors it returns are an applied file that was changed since, and a
// query nobody answered.
func current(ctx context.Context, sqlDB *sql.DB, ps []provider) (bool, error) {
	var q strings.Builder
	for i, p := range ps {
		if i > 0 {
			q.WriteString(" UNION ALL ")
		}
		// Table names come from this package (table), not from input; goose creates them unquoted, so they are
		// referred to unquoted here too. Version 0 is the row goose writes when it creates the table.
		fmt.Fprintf(&q, "SELECT %d, m.version_id, COALESCE(c.sha256, '') FROM %s m LEFT JOIN %s c"+
			" ON c.version_id = m.version_id WHERE m.version_id > 0 AND m.is_applied", i, p.table, checksumTable(p.table))
	}
	// On PostgreSQL the query goes unprepared, in one round trip instead of a prepare and an execute: it runs once
	// per start, so a prepared statement would never be used again.
	var args []any
	if len(ps) > 0 && !ps[0].sqlite {
		args = append(args, pgx.QueryExecModeSimpleProtocol)
	}
	rows, err := sqlDB.QueryContext(ctx, q.String(), args...)
	if err != nil {
		if answered(err) {
			return false, nil
		}
		// Nobody answered (the server is not there: this is often the start's first statement, see
		// database.OpenMigrated) or ctx ended: the full path would only fail later with a murkier message.
		return false, fmt.Errorf("migrate: read the applied versions: %w", err)
	}
	defer rows.Close()
	applied := make([]map[int64]string, len(ps))
	for i := range applied {
		applied[i] = map[int64]string{}
	}
	for rows.Next() {
		var (
			set     int
			version int64
			sum     string
		)
		if err := rows.Scan(&set, &version, &sum); err != nil || set < 0 || set >= len(ps) {
			return false, nil
		}
		applied[set][version] = sum
	}
	if rows.Err() != nil {
		return false, nil
	}
	ok := true
	for i, p := range ps {
		if len(p.ListSources()) != len(applied[i]) {
			ok = false
		}
		for version, sum := range applied[i] {
			want, known := p.sums[version]
			switch {
			case !known || sum == "":
				ok = false // a version the files lack, or one recorded before checksums: the full path decides
			case sum != want:
				return false, p.changed(version, sum)
			}
		}
	}
	return ok, nil
}

// answered reports whether err is the database's answer to a statement (PostgreSQL's SQLSTATE, SQLite's result
// code), such as a version table that does not exist yet, rather than a failure to reach it.
func answered(err error) bool {
	var state interface{ SQLState() string }
	var code interface{ Code() int }
	return errors.As(err, &state) || errors.As(err, &code)
}

// root descends into "migrations" when fsys has no .sql files of its own.
func root(fsys fs.FS) (fs.FS, error) {
	sqls, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, err
	}
	if len(sqls) > 0 {
		return fsys, nil
	}
	if st, err := fs.Stat(fsys, "migrations"); err == nil && st.IsDir() {
		return fs.Sub(fsys, "migrations")
	}
	return nil, fmt.Errorf("no .sql migrations at the root or in migrations/")
}

// dialects lists the infixes that mark a file as dialect-specific.
var dialects = []string{"postgres", "sqlite"}

// forDialect hides the other dialects' files (NNNN_x.<other>.sql), so each version appears once.
type forDialect struct {
	fs.FS
	dialect string
}

func (f forDialect) ReadDir(name string) ([]fs.DirEntry, error) {
	entries, err := fs.ReadDir(f.FS, name)
	if err != nil {
		return nil, err
	}
	kept := entries[:0]
	for _, e := range entries {
		if !f.hidden(e.Name()) {
			kept = append(kept, e)
		}
	}
	return kept, nil
}

func (f forDialect) Open(name string) (fs.File, error) {
	if f.hidden(path.Base(name)) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return f.FS.Open(name)
}

// Glob is what goose uses to collect files; it must agree with ReadDir.
func (f forDialect) Glob(pattern string) ([]string, error) {
	matches, err := fs.Glob(f.FS, pattern)
	if err != nil {
		return nil, err
	}
	kept := matches[:0]
	for _, m := range matches {
		if !f.hidden(path.Base(m)) {
			kept = append(kept, m)
		}
	}
	return kept, nil
}

func (f forDialect) hidden(base string) bool {
	stem, ok := strings.CutSuffix(base, ".sql")
	if !ok {
		return false
	}
	for _, d := range dialects {
		if d != f.dialect && strings.HasSuffix(stem, "."+d) {
			return true
		}
	}
	return false
}
