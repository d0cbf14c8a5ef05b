//go:build !nosqlite

package database

import (
	"github.com/glebarez/sqlite"
	"gorm.io/gorm"
)

// sqliteDialector is gorm's dialector for the pure-Go SQLite driver, linked in every build but -tags nosqlite.
func sqliteDialector(dsn string) (gorm.Dialector, error) { return sqlite.Open(dsn), nil }
