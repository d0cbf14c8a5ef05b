package outbox_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// TestRelayLogsARowKafkaKeepsRefusingLessOften: a row Kafka refuses for a reason no retry mends by itself (here the
// topic's ACL: TopicAuthorizationFailed; a compacted topic refusing a keyless record is another) is retried on its
// backoff until the broker's configuration changes, and must be: setting it aside would need a replay by hand for
// every row of a topic an operator then fixes. But each attempt logged a WARN, for ever: one line a minute per row at
// the backoff's cap, thousands a minute for a topic with that many rows waiting. A failing row is now logged at its
// 1st, 2nd, 4th, 8th... attempt (a refusal no retry mends at ERROR, naming itself so), every attempt still counted in
// outbox.messages.failed; the row stays unsent and goes out once Kafka takes it.
func TestRelayLogsARowKafkaKeepsRefusingLessOften(t *testing.T) {
	db := migrated(t, dbtest.SQLite(t))
	ctx := context.Background()
	topic := fmt.Sprintf("refused-%d", time.Now().UnixNano())
	e := add(t, ctx, db, topic, "ko", 1)
	logs := &testenv.LogBuffer{}
	w := &fakeWriter{fail: map[string]error{"ko": kafka.TopicAuthorizationFailed}}
	r := outbox.NewRelay(db, w, outbox.RelayOptions{MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	const attempts = 20
	for n := 0; n < attempts; {
		claimed, err := r.RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n += claimed
		if claimed == 0 {
			time.Sleep(time.Millisecond) // the row's 1 ms backoff
		}
	}
	if ms := rows(t, db); ms[0].SentAt != nil || ms[0].Attempts != attempts {
		t.Fatalf("refused row: sent_at %v, attempts %d; want unsent after %d attempts", ms[0].SentAt, ms[0].Attempts, attempts)
	}
	var lines []string
	for l := range strings.Lines(logs.String()) {
		if strings.Contains(l, e.ID) {
			lines = append(lines, l)
		}
	}
	// Attempts 1, 2, 4, 8 and 16.
	if len(lines) != 5 {
		t.Fatalf("%d log lines for one row refused %d times, want 5 (attempts 1, 2, 4, 8, 16):\n%s", len(lines), attempts, strings.Join(lines, ""))
	}
	for _, l := range lines {
		if !strings.Contains(l, "level=ERROR") {
			t.Errorf("a refusal no retry mends logged below ERROR: %s", l)
		}
	}
	if got := counts(t, topic)["outbox.messages.failed"]; got != attempts {
		t.Errorf("outbox.messages.failed %d, want every attempt (%d)", got, attempts)
	}

	w.mu.Lock()
	w.fail = nil // the operator fixed the ACL
	w.mu.Unlock()
	drain(t, r)
	if ms := rows(t, db); ms[0].SentAt == nil || ms[0].LastError != "" {
		t.Fatalf("row once Kafka takes it: sent_at %v, last_error %q; want published", ms[0].SentAt, ms[0].LastError)
	}
	if sent := w.sent(); len(sent) != 1 || header(sent[0], "ce_id") != e.ID {
		t.Fatalf("Kafka took %d messages, want the refused row once", len(sent))
	}
}
