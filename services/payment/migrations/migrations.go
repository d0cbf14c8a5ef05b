// Package migrations holds the payment service's versioned migrations,
// applied with pkg/migrate on PostgreSQL and SQLite alike: SQL files and Go
// steps for what SQL cannot express, numbered alike
// (0004_dead_letter_order_fill.go is version 4).
package migrations

import (
	"embed"
	"io/fs"

	"github.com/shanhai-dev/shanhai/pkg/migrate"
)

// FS holds the SQL files alone; Set is the service's whole set.
//
//go:embed *.sql
var FS embed.FS

// Set is the service's migration set: FS and the Go steps.
func Set() fs.FS {
	return migrate.WithGo(FS,
		migrate.GoStep{Version: 4, Name: "dead_letter_order_fill", Up: deadLetterOrderFill},
	)
}
