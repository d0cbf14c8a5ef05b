package outbox_test

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"

	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
)

// Insert's rows go in only where its condition holds, inside the caller's
// statement, and are the rows Add would have stored: the relay publishes them
// with the writer's trace context.
func TestInsertInsideAStatement(t *testing.T) {
	db := migrated(t, dbtest.Postgres(t))
	if err := db.Exec("CREATE TABLE things (id TEXT PRIMARY KEY, state TEXT NOT NULL)").Error; err != nil {
		t.Fatal(err)
	}
	if err := db.Exec("INSERT INTO things VALUES ('a', 'new')").Error; err != nil {
		t.Fatal(err)
	}
	ctx, span := otel.Tracer("test").Start(context.Background(), "change")
	defer span.End()
	move := func(from string) int {
		t.Helper()
		e1, _ := event.New("thing.moved", "/test", "a", map[string]string{"id": "a", "n": "1"})
		e2, _ := event.New("thing.moved", "/test", "a", map[string]string{"id": "a", "n": "2"})
		ins, args, err := outbox.Insert(ctx, "EXISTS (SELECT 1 FROM u)", "t", "a", e1, e2)
		if err != nil {
			t.Fatal(err)
		}
		var moved []string
		q := "WITH u AS (UPDATE things SET state = 'moved' WHERE id = ? AND state = ? RETURNING id), e AS (" + ins + ") SELECT id FROM u"
		if err := db.Raw(q, append([]any{"a", from}, args...)...).Scan(&moved).Error; err != nil {
			t.Fatal(err)
		}
		return len(moved)
	}
	if n := move("new"); n != 1 {
		t.Fatalf("first move changed %d rows, want 1", n)
	}
	if n := move("new"); n != 0 {
		t.Fatalf("second move changed %d rows, want 0", n)
	}
	if got := rows(t, db); len(got) != 2 {
		t.Fatalf("%d outbox rows, want the first move's 2", len(got))
	}
	w := &fakeWriter{}
	if n, err := outbox.NewRelay(db, w, outbox.RelayOptions{}).RunOnce(ctx); err != nil || n != 1 {
		t.Fatalf("RunOnce = %d, %v; want 1 (one row per key per round)", n, err)
	}
	m := w.sent()[0]
	if string(m.Value) != `{"id":"a","n":"1"}` || header(m, "ce_type") != "thing.moved" ||
		!strings.Contains(header(m, "traceparent"), span.SpanContext().TraceID().String()) {
		t.Fatalf("published %s %v", m.Value, m.Headers)
	}
	if _, _, err := outbox.Insert(ctx, "true", "", "a", event.Envelope{}); err == nil {
		t.Fatal("Insert took an empty topic")
	}
}
