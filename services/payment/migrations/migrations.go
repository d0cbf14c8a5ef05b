// Package migrations embeds the payment service's versioned SQL, applied
// with pkg/migrate on PostgreSQL and SQLite alike.
package migrations

import "embed"

//go:embed *.sql
var FS embed.FS
