//go:build nosqlite

package database_test

import (
	"errors"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/database"
)

// go test -tags nosqlite -run NoSQLite ./database: a production build refuses SQLite with ErrNoSQLite instead of
// failing somewhere inside gorm.
func TestNoSQLiteRefusesSQLiteURL(t *testing.T) {
	for _, u := range []string{"sqlite://:memory:", "sqlite://" + t.TempDir() + "/a.db"} {
		if _, err := database.Open(u); !errors.Is(err, database.ErrNoSQLite) {
			t.Fatalf("Open(%q) = %v, want ErrNoSQLite", u, err)
		}
	}
}
