// Package migrate applies versioned SQL migrations to PostgreSQL or SQLite at start-up.
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
// other's versions. Applying an applied set is a no-op. On PostgreSQL an advisory lock serialises replicas that start
// together; SQLite's single connection does the same within a process.
package migrate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/pressly/goose/v3"
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

// table names the version table of fsys.
func table(fsys fs.FS) string {
	if n, ok := fsys.(named); ok {
		return DefaultTable + "_" + n.name
	}
	return DefaultTable
}

// Up applies every pending migration of fsys to db. If fsys holds no .sql file at its root but has a "migrations"
// directory (the usual //go:embed migrations/*.sql), that directory is used.
func Up(ctx context.Context, db *gorm.DB, fsys fs.FS) error {
	tbl := table(fsys)
	if n, ok := fsys.(named); ok {
		fsys = n.FS
	}
	fsys, err := root(fsys)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", tbl, err)
	}
	dialectName := db.Dialector.Name()
	var d goose.Dialect
	opts := []goose.ProviderOption{goose.WithDisableGlobalRegistry(true)}
	switch dialectName {
	case "postgres":
		d = goose.DialectPostgres
		// The lock id is goose's default: all sets share one lock, which is harmless (migrations are short) and
		// avoids two sets' DDL interleaving on a fresh database.
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return fmt.Errorf("migrate %s: %w", tbl, err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	case "sqlite":
		d = goose.DialectSQLite3
	default:
		return fmt.Errorf("migrate %s: unsupported dialect %q", tbl, dialectName)
	}
	opts = append(opts, goose.WithTableName(tbl))
	sqlDB, err := db.DB()
	if err != nil {
		return fmt.Errorf("migrate %s: %w", tbl, err)
	}
	p, err := goose.NewProvider(d, sqlDB, forDialect{FS: fsys, dialect: dialectName}, opts...)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", tbl, err)
	}
	if _, err := p.Up(ctx); err != nil {
		var pe *goose.PartialError
		if errors.As(err, &pe) && pe.Failed != nil && pe.Failed.Source != nil {
			// Name the file: goose's own message only gives the version.
			return fmt.Errorf("migrate %s: %s: %w", tbl, pe.Failed.Source.Path, pe.Err)
		}
		return fmt.Errorf("migrate %s: %w", tbl, err)
	}
	return nil
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
