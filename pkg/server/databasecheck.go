package server

import (
	"context"
	"database/sql"
)

// DatabaseCheck is the readiness check "database" every service with a
// database has: a ping through the pool pool returns (gorm's DB.DB), within
// the readiness deadline. A service that cannot reach its database cannot
// answer anything but errors, so unlike Redis it is not Optional.
func DatabaseCheck(pool func() (*sql.DB, error)) Check {
	return Check{Name: "database", Probe: func(ctx context.Context) error {
		db, err := pool()
		if err != nil {
			return err
		}
		return db.PingContext(ctx)
	}}
}
