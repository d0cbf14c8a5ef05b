package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"github.com/shanhai-dev/shanhai/pkg/redact"
)

// DefaultPostgres is the superuser URL scripts/deps.sh sets up.
const DefaultPostgres = "postgres://shanhai@127.0.0.1:15432/shanhai?sslmode=disable"

// Postgres creates a fresh, empty database for this test on the server named by DATABASE_URL and returns its URL; the
// database is dropped (closing any connection the test left open) when the test ends. Tests therefore never see each
// other's rows or schema and can run in parallel.
func Postgres(t testing.TB) string {
	t.Helper()
	base := env("DATABASE_URL", DefaultPostgres)
	u := parseServerURL(t, "DATABASE_URL", base)
	reachable(t, "PostgreSQL", u.Host)

	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("testenv: open PostgreSQL %s: %v", redact.URL(base), err)
	}
	name := "test_" + randomHex(6)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		_ = admin.Close()
		t.Fatalf("PostgreSQL at %s cannot create a test database: %v (%s)", redact.URL(base), err, Hint)
	}
	t.Cleanup(func() {
		defer func() { _ = admin.Close() }()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// FORCE ends connections a test forgot to close, which would otherwise block the drop.
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("testenv: drop test database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand panics rather than return an error since Go 1.24)
	return hex.EncodeToString(b)
}
