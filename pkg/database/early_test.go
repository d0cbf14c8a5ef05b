package database_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/database/pgconnect"
)

// silentServer accepts connections and never answers them (a firewall or
// proxy with nothing behind it), keeping each for the test to inspect.
type silentServer struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newSilentServer(t *testing.T) *silentServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silentServer{ln: ln}
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *silentServer) accepted() []net.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]net.Conn(nil), s.conns...)
}

// waitAccepted polls until the server has accepted n connections.
func (s *silentServer) waitAccepted(t *testing.T, n int) {
	t.Helper()
	for len(s.accepted()) < n {
		if t.Context().Err() != nil {
			t.Fatal("test ended waiting for a connection")
		}
		time.Sleep(time.Millisecond)
	}
}

// open reports whether the client still holds c: a read that would block
// times out at once, where a connection the client closed reads EOF.
func open(c net.Conn) bool {
	buf := make([]byte, 4096)
	for {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		_, err := c.Read(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// A connect begun at start-up (pgconnect.Start, the mains' early import) to a
// server that never answers ended at connect_timeout, and OpenMigrated then
// connected again and waited the whole timeout a second time: a service whose
// database was unreachable took twice its connect_timeout (20 s by default)
// to fail. The connect that ran out of time is the start's answer.
func TestOpenMigratedAfterAnEarlyConnectTimedOutDoesNotWaitAgain(t *testing.T) {
	s := newSilentServer(t)
	raw := "postgres://u:secret@" + s.ln.Addr().String() + "/db?sslmode=disable&connect_timeout=1"
	pgconnect.Start(raw)
	db, err := database.OpenMigrated(t.Context(), raw, database.Options{}, migrateOneTable)
	if err == nil {
		closeDB(db)
		t.Fatal("opened a database that never answered")
	}
	if n := len(s.accepted()); n != 1 {
		t.Errorf("%d connection attempts, want the early one only", n)
	}
	if msg := err.Error(); !strings.Contains(msg, s.ln.Addr().String()) || strings.Contains(msg, "secret") {
		t.Errorf("the error should name the server and hide the password: %s", msg)
	}
}

// OpenMigrated waited for the early connect whatever its context: a service
// told to stop (SIGTERM) while its database did not answer went on waiting
// for connect_timeout. The wait ends with the context.
func TestOpenMigratedStopsWaitingForTheEarlyConnectWithItsContext(t *testing.T) {
	s := newSilentServer(t)
	raw := "postgres://u@" + s.ln.Addr().String() + "/db?sslmode=disable&connect_timeout=5"
	pgconnect.Start(raw)
	s.waitAccepted(t, 1)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	db, err := database.OpenMigrated(ctx, raw, database.Options{}, migrateOneTable)
	if err == nil {
		closeDB(db)
		t.Fatal("opened a database that never answered")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want the context's", err)
	}
	if !open(s.accepted()[0]) {
		t.Error("OpenMigrated returned only after the early connect had given up")
	}
}
