//go:build !unix || aix || solaris

package migrate

import "context"

// lockFile locks nothing where package syscall has no flock: processes migrating one SQLite file at once then rely on
// onceStore and up's skip, which keep a migration in a transaction from applying twice, but not a file marked
// "-- +goose NO TRANSACTION".
func lockFile(context.Context, string) (func(), error) { return func() {}, nil }
