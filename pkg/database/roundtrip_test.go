package database_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/migrate"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// wireCounter sits between pgx and PostgreSQL and reads the frontend
// protocol the client sends: each simple Query ('Q') and each Sync ('S') is
// one round trip the client waits for, and a ping is a Query of "-- ping".
type wireCounter struct {
	ln       net.Listener
	upstream string
	mu       sync.Mutex
	trips    int
	pings    int
	conns    int
}

func newWireCounter(t *testing.T, upstream string) *wireCounter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := &wireCounter{ln: ln, upstream: upstream}
	t.Cleanup(func() { ln.Close() })
	go w.accept()
	return w
}

func (w *wireCounter) accept() {
	for {
		c, err := w.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", w.upstream)
		if err != nil {
			c.Close()
			continue
		}
		w.mu.Lock()
		w.conns++
		w.mu.Unlock()
		go func() { _, _ = io.Copy(c, up); c.Close() }()
		go func() { w.read(io.TeeReader(c, up)); up.Close() }()
	}
}

// read parses the client's messages: the start-up message has no type byte,
// every later one is a type byte and a length that counts itself.
func (w *wireCounter) read(r io.Reader) {
	var n uint32
	if binary.Read(r, binary.BigEndian, &n) != nil || n < 4 {
		return
	}
	if _, err := io.CopyN(io.Discard, r, int64(n-4)); err != nil {
		return
	}
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[1:])-4)
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		w.mu.Lock()
		switch hdr[0] {
		case 'Q':
			w.trips++
			if bytes.HasPrefix(body, []byte("-- ping")) {
				w.pings++
			}
		case 'S':
			w.trips++
		}
		w.mu.Unlock()
	}
}

func (w *wireCounter) counts() (trips, pings, conns int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.trips, w.pings, w.conns
}

// through rewrites a PostgreSQL URL to go through the counter.
func (w *wireCounter) through(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = w.ln.Addr().String()
	return u.String()
}

var oneTable = fstest.MapFS{"0001_t.sql": {Data: []byte("-- +goose Up\nCREATE TABLE t (id TEXT PRIMARY KEY);\n")}}

func migrateOneTable(ctx context.Context, db *gorm.DB) error { return migrate.UpAll(ctx, db, oneTable) }

// A service's usual restart, OpenMigrated on a database whose migrations are
// all applied, waited for four round trips after connecting: gorm's ping,
// pgx's ping of the same connection when the pool handed it out again (it
// counts a connection never reused as idle for ever), and the migration
// check prepared and then executed. The connection is proof enough that the
// server is there, and the check needs no prepared statement: one round
// trip. The readiness check's first ping, just after, is one more, not two.
func TestOpenMigratedRestartIsOneRoundTrip(t *testing.T) {
	ctx := context.Background()
	raw := dbtest.PostgresURL(t)
	db, err := database.OpenMigrated(ctx, raw, database.Options{}, migrateOneTable)
	if err != nil {
		t.Fatal(err)
	}
	closeDB(db)

	w := newWireCounter(t, must(url.Parse(raw)).Host)
	db, err = database.OpenMigrated(ctx, w.through(t, raw), database.Options{}, migrateOneTable)
	if err != nil {
		t.Fatal(err)
	}
	defer closeDB(db)
	if trips, pings, conns := w.counts(); trips != 1 || conns != 1 {
		t.Errorf("the restart took %d round trips (%d of them pings) on %d connections, want 1 on 1", trips, pings, conns)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	trips, pings, _ := w.counts()
	if err := sqlDB.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	if t2, p2, _ := w.counts(); t2-trips != 1 || p2-pings != 1 {
		t.Errorf("the readiness check's ping after the restart took %d round trips, %d pings; want 1", t2-trips, p2-pings)
	}
}

// OpenMigrated no longer pings before migrating, so a server that is not
// there must still be named, the password hidden, by the first query's failure.
func TestOpenMigratedNamesAServerThatIsNotThere(t *testing.T) {
	raw := "postgres://u:secret@" + testenv.ClosedPort(t) + "/db?sslmode=disable"
	db, err := database.OpenMigrated(context.Background(), raw, database.Options{}, migrateOneTable)
	if err == nil {
		closeDB(db)
		t.Fatal("opened a database nobody listens for")
	}
	if msg := err.Error(); !strings.Contains(msg, must(url.Parse(raw)).Host) || strings.Contains(msg, "secret") {
		t.Errorf("the error should name the server and hide the password: %s", msg)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
