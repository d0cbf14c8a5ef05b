package database

import (
	"net"
	"strings"
	"testing"
	"time"
)

// A PostgreSQL address that accepts connections and never answers (a
// firewall or proxy with nothing behind it) made a service's start wait for
// ever without a word: pgx has no connect timeout of its own, and gorm's
// first ping has no deadline. The open now fails, naming the database.
func TestOpenGivesUpOnAServerThatNeverAnswers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	done := make(chan error, 1)
	go func() {
		db, err := Open("postgres://u:secret@" + ln.Addr().String() + "/db?sslmode=disable")
		if err == nil {
			Close(db)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("opened a database that never answered")
		}
		if msg := err.Error(); !strings.Contains(msg, ln.Addr().String()) || strings.Contains(msg, "secret") {
			t.Errorf("the error should name the server and hide the password: %s", msg)
		}
	case <-time.After(ConnectTimeout + 10*time.Second):
		t.Fatalf("still waiting %v after the open began", ConnectTimeout+10*time.Second)
	}
}
