package migrate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io/fs"
	"strings"

	"github.com/pressly/goose/v3"
)

// Why checksums: goose records which versions ran, not what they said. A migration edited after it was applied
// (a fork "fixing" 0001 in place, say) then never runs again where it already ran and runs as edited everywhere
// else: two schemas from one tree, found in production. So each set keeps the SHA-256 of every applied file in a
// table beside goose's (<version table>_checksums), and a start whose files differ from what was applied stops with
// the file's name instead of serving on a schema its code does not describe. The fix is a new migration, or, for a
// database that can be thrown away, dropping it.

// checksumTable names the table holding the sums of the set whose version table is versions.
func checksumTable(versions string) string { return versions + "_checksums" }

// identify sets p's sums and names: a file's SHA-256 and path, read through fsys (the dialect's view), or a Go step's
// stepSum and label. Carriage returns before line feeds are dropped first: a checkout with CRLF line endings is the
// same migration.
func (p *provider) identify(fsys fs.FS, steps []GoStep) error {
	p.sums, p.names = map[int64]string{}, map[int64]string{}
	for _, s := range steps {
		p.sums[s.Version], p.names[s.Version] = stepSum(s), s.label()
	}
	for _, src := range p.ListSources() {
		if src.Type != goose.TypeSQL {
			continue
		}
		b, err := fs.ReadFile(fsys, src.Path)
		if err != nil {
			return fmt.Errorf("migrate %s: %w", p.table, err)
		}
		h := sha256.Sum256(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")))
		p.sums[src.Version], p.names[src.Version] = hex.EncodeToString(h[:]), src.Path
	}
	return nil
}

// changed is the error for an applied migration whose file (or Go step's name) no longer matches.
func (p provider) changed(version int64, recorded string) error {
	return fmt.Errorf("migrate %s: %s was changed after it was applied (sha256 %s applied, %s now): "+
		"add a new migration instead of editing an applied one", p.table, p.names[version], short(recorded), short(p.sums[version]))
}

func short(sum string) string { return sum[:min(12, len(sum))] }

// verify compares the recorded sums with the files. A table not created yet (a database from before checksums, or
// a fresh one) records nothing, which is not an error; a version without a file is goose's to judge.
func (p provider) verify(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, "SELECT version_id, sha256 FROM "+checksumTable(p.table))
	if err != nil {
		return nil
	}
	defer rows.Close()
	for rows.Next() {
		var (
			version int64
			sum     string
		)
		if err := rows.Scan(&version, &sum); err != nil {
			return fmt.Errorf("migrate %s: read checksums: %w", p.table, err)
		}
		if want, ok := p.sums[version]; ok && want != sum {
			return p.changed(version, sum)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("migrate %s: read checksums: %w", p.table, err)
	}
	return nil
}

// record stores the sums of the versions goose reports applied that have none yet, in one transaction. On
// PostgreSQL that transaction first takes an advisory lock of its own, so replicas starting together do not race
// on CREATE TABLE IF NOT EXISTS (which PostgreSQL does not make atomic); SQLite's write lock does the same there.
// A sum another process recorded first is kept, and verify, run again after, compares it.
func (p provider) record(ctx context.Context, db *sql.DB) error {
	statuses, err := p.Status(ctx)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", p.table, err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate %s: record checksums: %w", p.table, err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit this is a no-op
	tbl := checksumTable(p.table)
	if !p.sqlite {
		// The key is this package's own (the bytes of "shanhaiSUM"), not goose's migration lock.
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(7523939237745316173)"); err != nil {
			return fmt.Errorf("migrate %s: record checksums: %w", p.table, err)
		}
	}
	if _, err := tx.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+tbl+
		" (version_id BIGINT PRIMARY KEY, sha256 TEXT NOT NULL)"); err != nil {
		return fmt.Errorf("migrate %s: create %s: %w", p.table, tbl, err)
	}
	var q strings.Builder
	var args []any
	for _, st := range statuses {
		if st.Source == nil || st.State != goose.StateApplied {
			continue
		}
		if q.Len() == 0 {
			q.WriteString("INSERT INTO " + tbl + " (version_id, sha256) VALUES ")
		} else {
			q.WriteString(", ")
		}
		if p.sqlite {
			q.WriteString("(?, ?)")
		} else {
			fmt.Fprintf(&q, "($%d, $%d)", len(args)+1, len(args)+2)
		}
		args = append(args, st.Source.Version, p.sums[st.Source.Version])
	}
	if q.Len() > 0 {
		q.WriteString(" ON CONFLICT (version_id) DO NOTHING")
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("migrate %s: record checksums: %w", p.table, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate %s: record checksums: %w", p.table, err)
	}
	return p.verify(ctx, db)
}
