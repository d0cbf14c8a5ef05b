//go:build nosqlite

package database

import (
	"errors"

	"gorm.io/gorm"
)

// ErrNoSQLite is what a sqlite:// URL gets from a binary built with -tags nosqlite.
var ErrNoSQLite = errors.New("open sqlite: this binary was built with -tags nosqlite (PostgreSQL only); use a postgres:// URL or build without the tag")

// sqliteDialector refuses: the SQLite driver is not linked.
func sqliteDialector(string) (gorm.Dialector, error) { return nil, ErrNoSQLite }
