// Package migrations holds the user service's versioned migrations, applied
// with pkg/migrate on PostgreSQL and SQLite alike: SQL files (where the
// dialects disagree, on timestamp types, a version has a .postgres.sql and a
// .sqlite.sql twin) and Go steps for what SQL cannot express, numbered
// alike (0003_email_nfkc_rewrite.go is version 3, 0006_email_visible_fill.go version 6,
// 0007_email_case_fold.go version 7, 0008_email_idna.go version 8).
package migrations

import (
	"embed"
	"io/fs"
	"log/slog"

	"github.com/shanhai-dev/shanhai/pkg/migrate"
)

// FS holds the SQL files alone; Set is the service's whole set.
//
//go:embed *.sql
var FS embed.FS

// Set is the service's migration set: FS and the Go steps. log gets what a
// step could not do (see renormaliseEmails); nil means slog.Default().
func Set(log *slog.Logger) fs.FS {
	if log == nil {
		log = slog.Default()
	}
	return migrate.WithGo(FS, goSteps(log)...)
}

// goSteps is the service's Go steps in version order; the tests migrate a
// database as an older release did with the ones it had.
func goSteps(log *slog.Logger) []migrate.GoStep {
	return []migrate.GoStep{
		{Version: 3, Name: "email_nfkc_rewrite", Up: emailNFKCRewrite(log)},
		{Version: 6, Name: "email_visible_fill", Up: emailVisibleFill(log)},
		{Version: 7, Name: "email_case_fold", Up: emailCaseFold(log)},
		{Version: 8, Name: "email_idna", Up: emailIDNA(log)},
	}
}
