// Package migrations embeds the user service's versioned SQL, applied with
// pkg/migrate on PostgreSQL and SQLite alike. Where the dialects disagree
// (timestamp types) a version has a .postgres.sql and a .sqlite.sql twin.
package migrations

import "embed"

//go:embed *.sql
var FS embed.FS
