package migrations

import (
	"context"
	"database/sql"
	"log/slog"
)

// emailIDNA is version 0008: user.NormalizeEmail writes a domain's A-labels
// ("xn--bcher-kva") and ideographic full stops in Unicode since it ("bücher",
// "."), as IDNA reads them, where each spelling of one mailbox had been an
// account of its own. Each stored address is moved to that form, where its
// owner's logins now look it up, by the step 0003 runs (renormalise: a form
// another account holds is kept and logged with both ids, for an operator),
// and email_visible is recomputed (markInvisibleEmails), as it follows the
// address. Rows old replicas store during the rollout: a later version
// calling the same step.
func emailIDNA(log *slog.Logger) func(context.Context, *sql.Tx) error {
	return renormaliseStep(log, "stored emails with their domain in Unicode")
}
