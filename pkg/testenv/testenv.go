// Package testenv connects integration tests to the real servers that
// scripts/deps.sh runs (PostgreSQL, Redis, etcd, ...), reading the variables
// `scripts/deps.sh env` prints and falling back to the documented test ports.
// A missing server fails the test with the command that starts it: it never
// skips, so a green run always means the real thing was exercised.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

const hint = `run ./scripts/deps.sh up and eval "$(./scripts/deps.sh env)"`

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func reachable(t testing.TB, what, hostport string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", hostport, 2*time.Second)
	if err != nil {
		t.Fatalf("testenv: %s not reachable at %s (%v): %s", what, hostport, err, hint)
	}
	_ = c.Close()
}

// Postgres creates a fresh, empty database on the test server for this test
// and returns its URL; the database is dropped when the test ends. Tests
// therefore never see each other's rows or schema.
func Postgres(t testing.TB) string {
	t.Helper()
	base := env("DATABASE_URL", "postgres://shanhai@127.0.0.1:15432/shanhai?sslmode=disable")
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("testenv: DATABASE_URL %q: %v", base, err)
	}
	reachable(t, "PostgreSQL", u.Host)
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("testenv: open PostgreSQL %s: %v", u.Redacted(), err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "test_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		_ = admin.Close()
		t.Fatalf("testenv: create database on %s (%v): %s", u.Redacted(), err, hint)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// FORCE ends connections a test forgot to close.
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("testenv: drop database %s: %v", name, err)
		}
		_ = admin.Close()
	})
	u.Path = "/" + name
	return u.String()
}

// Redis returns the test Redis URL after checking that it answers. The
// server is shared: tests must namespace their keys.
func Redis(t testing.TB) string {
	t.Helper()
	raw := env("REDIS_URL", "redis://127.0.0.1:16379/0")
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("testenv: REDIS_URL %q: %v", raw, err)
	}
	reachable(t, "Redis", u.Host)
	return raw
}

// Etcd returns the test etcd endpoints after checking that the first answers.
func Etcd(t testing.TB) []string {
	t.Helper()
	eps := strings.Split(env("ETCD_ENDPOINTS", "127.0.0.1:12379"), ",")
	host := strings.TrimPrefix(strings.TrimPrefix(eps[0], "http://"), "https://")
	reachable(t, "etcd", host)
	return eps
}

