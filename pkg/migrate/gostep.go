package migrate

import (
	"cmp"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"

	"github.com/pressly/goose/v3"
)

// GoStep is a migration written in Go, for a change SQL cannot express (one that needs Go's Unicode tables, say).
// It is a version of its set like a file: recorded in the same table, applied in version order under the same lock,
// in a transaction of its own that also records its version, so a step that fails leaves neither its changes nor
// its version behind and runs again at the next start.
type GoStep struct {
	// Version orders the step among the set's files; no file of the set may have it.
	Version int64
	// Name says what the step does, in errors and in the step's checksum: renaming an applied step is refused like
	// editing an applied file.
	Name string
	// Up changes the database through tx only (the set's other connections may wait on the lock it holds). It may
	// run again after a failure, so it should be idempotent.
	Up func(ctx context.Context, tx *sql.Tx) error
}

// WithGo returns the set fsys with steps added to it. Named applies to the result as to a set of files alone:
// Named("x", WithGo(fsys, ...)) and WithGo(Named("x", fsys), ...) are the same set.
func WithGo(fsys fs.FS, steps ...GoStep) fs.FS { return withGo{FS: fsys, steps: steps} }

type withGo struct {
	fs.FS
	steps []GoStep
}

// unwrap takes set apart into its version table, its files and its Go steps.
func unwrap(set fs.FS) (table string, files fs.FS, steps []GoStep) {
	table = DefaultTable
	for {
		switch s := set.(type) {
		case named:
			table = DefaultTable + "_" + s.name
			set = s.FS
		case withGo:
			steps = append(steps, s.steps...)
			set = s.FS
		default:
			return table, set, steps
		}
	}
}

// errAppliedMeanwhile is how a migration's transaction gives way, on SQLite, to another process's that applied its
// version first (onceStore, guarded).
var errAppliedMeanwhile = errors.New("applied meanwhile by another process")

// label names s in messages, as a file's name names a file.
func (s GoStep) label() string { return fmt.Sprintf("Go step %s (version %d)", s.Name, s.Version) }

// goMigrations checks steps against each other and against the set's files (view), then turns them into goose's
// migrations for the version table tbl; on SQLite each is guarded.
func goMigrations(tbl string, view fs.FS, steps []GoStep, sqlite bool) ([]*goose.Migration, error) {
	taken := map[int64]string{} // what holds each version
	files, err := fs.Glob(view, "*.sql")
	if err != nil {
		return nil, fmt.Errorf("migrate %s: %w", tbl, err)
	}
	for _, f := range files {
		if v, err := goose.NumericComponent(f); err == nil {
			taken[v] = f
		}
	}
	var ms []*goose.Migration
	for _, s := range steps {
		switch {
		case s.Name == "" || s.Up == nil || s.Version < 1:
			return nil, fmt.Errorf("migrate %s: %s: a Go step needs a Name, an Up and a Version above 0", tbl, s.label())
		case taken[s.Version] != "":
			return nil, fmt.Errorf("migrate %s: %s has the version of %s: give it a version of its own",
				tbl, s.label(), taken[s.Version])
		}
		taken[s.Version] = s.label()
		up := s.Up
		if sqlite {
			up = guarded(tbl, s)
		}
		ms = append(ms, goose.NewGoMigration(s.Version, &goose.GoFunc{RunTx: up}, nil))
	}
	return ms, nil
}

// guarded runs s.Up unless its version is applied already. onceStore would roll the step back after it ran; this
// keeps it from running at all (its log lines, its time) in the process that waited for another's transaction.
func guarded(tbl string, s GoStep) func(context.Context, *sql.Tx) error {
	return func(ctx context.Context, tx *sql.Tx) error {
		if done, err := recorded(ctx, tx, tbl, s.Version); err != nil || done {
			return cmp.Or(err, errAppliedMeanwhile)
		}
		return s.Up(ctx, tx)
	}
}

// stepSum is what the checksum table records for a Go step: the SHA-256 of its name. Its code cannot be summed in a
// way that survives a rebuild, and leaving it out would keep the one-query restart (current) from ever finding the
// set current; the name still catches a step renamed, or another put in its place, after it was applied.
func stepSum(s GoStep) string {
	h := sha256.Sum256([]byte("go step " + s.Name))
	return hex.EncodeToString(h[:])
}
