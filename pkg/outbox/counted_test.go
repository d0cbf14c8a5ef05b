package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// TestRelayCountsEachRowOnceWhenItIsSentAgain: Kafka took a round's rows, but marking them sent failed (the database
// gone for longer than the lease on PostgreSQL; the transaction rolled back on SQLite), so a later round sends them
// again, as at-least-once delivery allows. outbox.messages.published, described as rows "published to Kafka and marked
// sent", counted such a row on every send (2 for 1 row), and so did outbox.messages.set_aside and outbox.lag: the
// counters were of sends, not of rows. They count a row when the round's outcome is stored now, once.
func TestRelayCountsEachRowOnceWhenItIsSentAgain(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		migrated(t, db)
		ctx := context.Background()
		topic := fmt.Sprintf("counted-%s-%d", db.Dialector.Name(), time.Now().UnixNano())
		add(t, ctx, db, topic, "ok", 1)
		add(t, ctx, db, topic, "big", 2)
		var failMarks atomic.Bool
		failMarks.Store(true)
		err := db.Callback().Raw().Before("gorm:raw").Register("test:fail_marks", func(tx *gorm.DB) {
			if failMarks.Load() && strings.Contains(tx.Statement.SQL.String(), "SET sent_at") {
				_ = tx.AddError(errors.New("test: marking the round's outcome failed"))
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		w := &fakeWriter{fail: map[string]error{"big": kafka.MessageSizeTooLarge}}
		r := outbox.NewRelay(db, w, outbox.RelayOptions{PublishTimeout: 100 * time.Millisecond, Lease: 300 * time.Millisecond})
		if _, err := r.RunOnce(ctx); err == nil {
			t.Fatal("the round whose marks all failed reported no error")
		}
		failMarks.Store(false)
		// The rows come due again when the lease ends (PostgreSQL) or at once (SQLite, rolled back).
		deadline := time.Now().Add(10 * time.Second)
		for {
			n, err := r.RunOnce(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the rows whose mark failed never came due again")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if sends := len(w.sent()); sends != 2 {
			t.Fatalf("Kafka took the row %d times, want twice (the test needs a re-send)", sends)
		}
		for _, m := range rows(t, db) {
			if m.SentAt == nil {
				t.Fatalf("row %d (%s) not marked sent", m.ID, m.Key)
			}
		}
		got := counts(t, topic)
		want := map[string]int64{"outbox.messages.published": 1, "outbox.messages.set_aside": 1, "outbox.lag": 1}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("metrics %v, want %v: one row published, one set aside", got, want)
			}
		}
	})
}

// TestRelayReportsARowSetAsideEvenWhenTheRoundsMarkFails: on PostgreSQL a round's outcome is stored in autocommit
// statements, a row set aside (too large for Kafka) by one of its own before the rows Kafka took are marked sent. When
// that mark then failed (the database away past the lease), the round returned its error and counted nothing, though
// the set-aside row was stored: it is never claimed again, so no later round counted it either. Kafka never got that
// event, and neither outbox.messages.set_aside nor the set-aside ERROR line, the only signs of it, ever appeared. On
// SQLite the round is one transaction, rolled back, and a later round sets the row aside and reports it.
func TestRelayReportsARowSetAsideEvenWhenTheRoundsMarkFails(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		migrated(t, db)
		ctx := context.Background()
		topic := fmt.Sprintf("aside-%s-%d", db.Dialector.Name(), time.Now().UnixNano())
		add(t, ctx, db, topic, "ok", 1)
		big := add(t, ctx, db, topic, "big", 2)
		var failMarks atomic.Bool
		failMarks.Store(true)
		// Only the mark of the rows Kafka took; the set-aside statement (last_error = ?) goes through.
		err := db.Callback().Raw().Before("gorm:raw").Register("test:fail_sent_mark", func(tx *gorm.DB) {
			if failMarks.Load() && strings.Contains(tx.Statement.SQL.String(), "last_error = ''") {
				_ = tx.AddError(errors.New("test: marking the rows Kafka took failed"))
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		logs := &testenv.LogBuffer{}
		w := &fakeWriter{fail: map[string]error{"big": kafka.MessageSizeTooLarge}}
		r := outbox.NewRelay(db, w, outbox.RelayOptions{PublishTimeout: 100 * time.Millisecond, Lease: 300 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(logs, nil))})
		if _, err := r.RunOnce(ctx); err == nil {
			t.Fatal("the round whose mark failed reported no error")
		}
		failMarks.Store(false)
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := r.RunOnce(ctx); err != nil {
				t.Fatal(err)
			}
			unsent := 0
			for _, m := range rows(t, db) {
				if m.SentAt == nil {
					unsent++
				}
			}
			if unsent == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the row whose mark failed was never marked sent")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if got := counts(t, topic)["outbox.messages.set_aside"]; got != 1 {
			t.Errorf("outbox.messages.set_aside %d, want 1: the row set aside went unreported", got)
		}
		if n := strings.Count(logs.String(), "set aside unpublished"); n != 1 || !strings.Contains(logs.String(), big.ID) {
			t.Errorf("%d set-aside ERROR lines, want 1 naming event %s:\n%s", n, big.ID, logs)
		}
	})
}
