package database

import (
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// A PostgreSQL address that accepts connections and never answers (a
// firewall or proxy with nothing behind it) made a service's start wait for
// ever without a word: pgx has no connect timeout of its own, and gorm's
// first ping has no deadline. The open now fails, naming the database.
func TestOpenGivesUpOnAServerThatNeverAnswers(t *testing.T) {
	addr := testenv.Hung(t)
	done := make(chan error, 1)
	go func() {
		db, err := Open("postgres://u:secret@" + addr + "/db?sslmode=disable")
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
		if msg := err.Error(); !strings.Contains(msg, addr) || strings.Contains(msg, "secret") {
			t.Errorf("the error should name the server and hide the password: %s", msg)
		}
	case <-time.After(ConnectTimeout + 10*time.Second):
		t.Fatalf("still waiting %v after the open began", ConnectTimeout+10*time.Second)
	}
}
