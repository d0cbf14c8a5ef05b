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
	return renormaliseStep(log, "stored emails case-folded")
}

// renormaliseStep is the step of a version that follows a change of
// user.NormalizeEmail (0007, 0008): it moves stored addresses to the form the
// current rules give (renormalise, logging its counts under done), then
// recomputes email_visible (markInvisibleEmails), which follows the address.
// Like 0003's step it applies the running binary's rules, not those of its
// version: whichever of them runs first on an old database moves it to
// today's forms, and the later ones find nothing left to move.
func renormaliseStep(log *slog.Logger, done string) func(context.Context, *sql.Tx) error {
	return func(ctx context.Context, tx *sql.Tx) error {
		if err := renormalise(ctx, tx, log, done); err != nil {
			return err
		}
		return markInvisibleEmails(ctx, tx, log)
	}
}
