package migrations

import (
	"context"
	"database/sql"
	"log/slog"
)

// emailCaseFold is version 0007: user.NormalizeEmail folds case since it
// (an address typed "σοφιας" was another account than the one signed up as
// "ΣΟΦΙΑΣ", stored "σοφιασ"), so each stored address is moved to its folded
// form, where its owner's logins now look it up, by the step 0003 runs
// (renormalise, logging "stored emails case-folded": a form another account
// holds is kept and logged with both ids, for an operator). email_visible is
// then recomputed (markInvisibleEmails), as it follows the address.
func emailCaseFold(log *slog.Logger) func(context.Context, *sql.Tx) error {
	return func(ctx context.Context, tx *sql.Tx) error {
		if err := renormalise(ctx, tx, log, "stored emails case-folded"); err != nil {
			return err
		}
		return markInvisibleEmails(ctx, tx, log)
	}
}
