package migrations

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"

	"github.com/shanhai-dev/shanhai/services/user/internal/domain/user"
)

// emailVisibleFill is version 0006: it fills the column 0005 added.
func emailVisibleFill(log *slog.Logger) func(context.Context, *sql.Tx) error {
	return func(ctx context.Context, tx *sql.Tx) error { return markInvisibleEmails(ctx, tx, log) }
}

// markInvisibleEmails stores in email_visible what each stored address reads
// as (user.VisibleEmail) where that differs from the address, and clears it
// where it does not. It reads every account once (an upgrade's one scan; the
// service's start and its sign-ups then use the partial index) and writes
// only the few rows it marks. Nothing a user sees changes: the address is
// not rewritten, since its owner logs in under it and only an operator can
// say which of two look-alike accounts is whose; the service reports them
// at each start (service.reportInvisibleEmails).
//
// It is idempotent: run again by a later version (for rows old replicas
// stored during a rollout), it writes only what changed.
func markInvisibleEmails(ctx context.Context, tx *sql.Tx, log *slog.Logger) error {
	type mark struct {
		id      string
		visible sql.NullString
	}
	// Listed first: the transaction's one connection cannot write while it
	// streams rows.
	var marks []mark
	rows, err := tx.QueryContext(ctx, "SELECT id, email, email_visible FROM users")
	if err != nil {
		return fmt.Errorf("read emails: %w", err)
	}
	for rows.Next() {
		var id, email string
		var stored sql.NullString
		if err := rows.Scan(&id, &email, &stored); err != nil {
			rows.Close()
			return fmt.Errorf("read emails: %w", err)
		}
		var want sql.NullString
		if v := user.VisibleEmail(email); v != email {
			want = sql.NullString{String: v, Valid: true}
		}
		if want != stored {
			marks = append(marks, mark{id, want})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read emails: %w", err)
	}
	for _, m := range marks {
		if _, err := tx.ExecContext(ctx, "UPDATE users SET email_visible = $1 WHERE id = $2", m.visible, m.id); err != nil {
			return fmt.Errorf("user %s: store its visible email: %w", m.id, err)
		}
	}
	log.InfoContext(ctx, "visible forms of stored emails recorded", "changed", len(marks))
	return nil
}
