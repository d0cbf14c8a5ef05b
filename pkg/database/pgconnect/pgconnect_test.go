package pgconnect_test

import (
	"strings"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/database/pgconnect"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// A pool Start began connecting comes out of Open connected, its connection
// idle for the first statement, which then opens no other; the next Open of
// the URL starts afresh.
func TestOpenTakesThePoolStartConnected(t *testing.T) {
	url := testenv.Postgres(t)
	pgconnect.Start(url)
	pool, err := pgconnect.Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if st := pool.Stats(); st.OpenConnections != 1 || st.Idle != 1 {
		t.Fatalf("Open gave a pool with %d connections, %d idle; want the one Start made, idle", st.OpenConnections, st.Idle)
	}
	var one int
	if err := pool.QueryRowContext(t.Context(), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1: %d, %v", one, err)
	}
	if n := pool.Stats().OpenConnections; n != 1 {
		t.Errorf("the first statement opened another connection: %d open", n)
	}

	again, err := pgconnect.Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if again == pool || again.Stats().OpenConnections != 0 {
		t.Errorf("a second Open reused the started pool or connected: %d open", again.Stats().OpenConnections)
	}
}

// A connect Start could not make leaves nothing behind: the pool connects
// again at its first statement, whose error names the server.
func TestStartThatFailedConnectsAgain(t *testing.T) {
	addr := testenv.ClosedPort(t)
	url := "postgres://u@" + addr + "/db?sslmode=disable"
	pgconnect.Start(url)
	pool, err := pgconnect.Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if n := pool.Stats().OpenConnections; n != 0 {
		t.Fatalf("%d connections to a closed port", n)
	}
	err = pool.PingContext(t.Context())
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("ping of a closed port: %v, want an error naming %s", err, addr)
	}
}
