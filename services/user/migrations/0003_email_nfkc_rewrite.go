package migrations

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"

	"github.com/shanhai-dev/shanhai/services/user/internal/domain/user"
)

// emailNFKCRewrite is version 0003: the rewrite 0002 queued, then the end of that queue. A database whose service
// ran the queued rewrite already (adapters.RunDataMigrations, gone since) runs it again here; that moves only what
// was stored since and keeps, and logs again, what it kept then. The queue is emptied, not dropped: binaries from
// before 0003 read it at start, and one rolled back to must still start (it then finds nothing queued). A later
// version can drop it once no such binary can return.
func emailNFKCRewrite(log *slog.Logger) func(context.Context, *sql.Tx) error {
	return func(ctx context.Context, tx *sql.Tx) error {
		if err := renormaliseEmails(ctx, tx, log); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM pending_data_migrations"); err != nil {
			return fmt.Errorf("empty pending_data_migrations: %w", err)
		}
		return nil
	}
}

// renormaliseEmails stores each address in the form user.NormalizeEmail
// gives now (NFKC before and after lower-casing), for accounts stored when it
// only trimmed and lower-cased: login looks the new form up, so their owners
// could not log in. Rewriting them, rather than a login that also tries the
// stored form, also keeps sign-up from creating a look-alike beside them:
// the unique index sees one form.
//
// An account keeps its stored form, and is logged with the id of the account
// holding the address, when its new form is taken: by an account already
// stored under it (the one logging in with that address today; moving the
// other there would lock its owner out instead), or by an older account
// (created_at, then id) that two forms collapse to and that this step moved
// first. Two accounts under one address is what normalising forbids, so an
// operator settles those. An address the current rules refuse (NFKC turns
// a no-break space into a space) is kept and logged likewise. updated_at is
// left alone: the address reads the same to its owner.
//
// It is idempotent: run again (by a later version, for rows old replicas
// stored during a rollout), it moves what is new and keeps the rest.
func renormaliseEmails(ctx context.Context, tx *sql.Tx, log *slog.Logger) error {
	return renormalise(ctx, tx, log, "stored emails normalised")
}

// renormalise is renormaliseEmails, logging its counts under done: a
// version that runs it for another change of NormalizeEmail (0007) says
// which it carried out.
func renormalise(ctx context.Context, tx *sql.Tx, log *slog.Logger, done string) error {
	type stored struct{ ID, Email string }
	// The moves are listed first: the transaction's one connection cannot
	// query while it streams rows.
	var moves []stored
	rows, err := tx.QueryContext(ctx, "SELECT id, email FROM users ORDER BY created_at, id")
	if err != nil {
		return fmt.Errorf("read emails: %w", err)
	}
	for rows.Next() {
		var s stored
		if err := rows.Scan(&s.ID, &s.Email); err != nil {
			rows.Close()
			return fmt.Errorf("read emails: %w", err)
		}
		if n, fe := user.NormalizeEmail(s.Email); fe != nil || n != s.Email {
			moves = append(moves, s)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read emails: %w", err)
	}

	moved, kept := 0, 0
	for _, s := range moves {
		n, fe := user.NormalizeEmail(s.Email)
		if fe != nil {
			log.WarnContext(ctx, "email kept as stored: refused by the current rules", "user_id", s.ID, "problem", fe.Detail)
			kept++
			continue
		}
		holder, err := emailHolder(ctx, tx, n)
		if err != nil {
			return fmt.Errorf("user %s: %w", s.ID, err)
		}
		if holder == "" {
			err := moveEmail(ctx, tx, s.ID, n)
			if err == nil {
				moved++
				continue
			}
			// A sign-up on a running replica may take the address between the look-up and the write, which the
			// unique index then refuses, whatever the driver calls that; any other failure leaves the address
			// free, and fails the step.
			if holder, _ = emailHolder(ctx, tx, n); holder == "" {
				return fmt.Errorf("user %s: store its new email: %w", s.ID, err)
			}
		}
		log.WarnContext(ctx, "email kept as stored: its normalised form belongs to another account",
			"user_id", s.ID, "holder_id", holder)
		kept++
	}
	log.InfoContext(ctx, done, "moved", moved, "kept", kept)
	return nil
}

// moveEmail stores email as id's in a savepoint, so that a write refused
// (see renormaliseEmails) leaves the transaction usable: PostgreSQL aborts
// the whole transaction on a failed statement otherwise.
func moveEmail(ctx context.Context, tx *sql.Tx, id, email string) error {
	if _, err := tx.ExecContext(ctx, "SAVEPOINT email_move"); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, "UPDATE users SET email = $1 WHERE id = $2", email, id)
	if err != nil {
		_, rbErr := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT email_move")
		return errors.Join(err, rbErr)
	}
	_, err = tx.ExecContext(ctx, "RELEASE SAVEPOINT email_move")
	return err
}

// emailHolder is the id of the account stored under email, or "".
func emailHolder(ctx context.Context, tx *sql.Tx, email string) (string, error) {
	var id string
	err := tx.QueryRowContext(ctx, "SELECT id FROM users WHERE email = $1 LIMIT 1", email).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("look up who holds an email: %w", err)
	}
	return id, nil
}
