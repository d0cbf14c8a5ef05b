package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/database"
)

// TestReusedDataSaysWhichOrdersStayPending: -data keeps the SQLite
// databases and etcd, but the embedded Kafka and JetStream start empty. An
// order an earlier run left PENDING whose order.created it had already
// sent is gone from both, so nothing will ever pay or fail it; before, the
// run said nothing, and the user found orders PENDING for good. The run
// must say how many at start, and what to do. An order whose event was not
// sent yet is not one of them: this run's relay sends it.
func TestReusedDataSaysWhichOrdersStayPending(t *testing.T) {
	data := t.TempDir()
	t.Setenv("PULSAR_URL", "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // hang guard only
	defer cancel()
	p, err := Start(ctx, Options{DataDir: data})
	if err != nil {
		dumpLogs(t, filepath.Join(data, "logs"))
		t.Fatalf("first run: %v", err)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("first run's stop: %v", err)
	}

	// What the first run left: an order mid-saga (its order.created sent
	// to the Kafka that is now gone), and one whose event is still to send.
	db, err := database.Open("sqlite://" + filepath.Join(data, "order.db"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	stranded, unsent := fmt.Sprint("stranded-", now.UnixNano()), fmt.Sprint("unsent-", now.UnixNano())
	for _, o := range []struct {
		id   string
		sent any
	}{{stranded, now}, {unsent, nil}} {
		if err := db.Exec(`INSERT INTO orders (id, user_id, status, total_cents, currency, created_at, updated_at)
VALUES (?, 'ada', 'PENDING', 4800, 'EUR', ?, ?)`, o.id, now, now).Error; err != nil {
			t.Fatal(err)
		}
		if err := db.Exec(`INSERT INTO outbox (topic, key, event_id, event_type, headers, payload, created_at, sent_at)
VALUES ('shanhai.orders', ?, ?, 'order.created', '{}', '{}', ?, ?)`, o.id, "event-"+o.id, now, o.sent).Error; err != nil {
			t.Fatal(err)
		}
	}
	if sqlDB, err := db.DB(); err == nil {
		sqlDB.Close()
	}

	p, err = Start(ctx, Options{DataDir: data})
	if err != nil {
		dumpLogs(t, filepath.Join(data, "logs"))
		t.Fatalf("second run: %v", err)
	}
	defer func() {
		if err := p.Stop(); err != nil {
			t.Errorf("second run's stop: %v", err)
		}
	}()
	var out strings.Builder
	Banner(&out, p, false, Memory{}, nil)
	var warning string
	for line := range strings.Lines(out.String()) {
		if strings.Contains(line, "PENDING") && strings.Contains(line, "earlier run") {
			warning = line
		}
	}
	if !strings.Contains(warning, "1 order ") {
		t.Fatalf("banner of a run on a -data an earlier run left 1 order stranded PENDING in: warning %q, want one naming 1 order\n%s",
			warning, out.String())
	}
}
