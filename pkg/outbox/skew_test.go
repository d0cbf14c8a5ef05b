package outbox

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/migrate"
)

// held is a writer whose calls wait until release is closed, after saying so on entered.
type held struct{ entered, release chan struct{} }

func (h held) WriteMessages(context.Context, ...kafka.Message) error {
	h.entered <- struct{}{}
	<-h.release
	return nil
}

// counted is a writer that counts the rows it takes.
type counted struct{ n int }

func (c *counted) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	c.n += len(msgs)
	return nil
}

// Two PostgreSQL replicas whose clocks are 30 s apart, more than Lease less PublishTimeout (10 s by default): the
// lease was the claiming replica's clock plus Lease, and another replica compared it with its own clock, so a replica
// ahead found the row of one behind due while that one was still publishing it, and published it at the same time.
// The lease and the due test now both read PostgreSQL's clock.
func TestLeaseHoldsAcrossReplicaClockSkew(t *testing.T) {
	ctx := context.Background()
	url := dbtest.PostgresURL(t)
	open := func() *gorm.DB {
		t.Helper()
		db, err := database.Open(url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = database.Close(db) })
		return db
	}
	db := open()
	if err := migrate.Up(ctx, db, Migrations); err != nil {
		t.Fatal(err)
	}
	e, err := event.New("order.created", "/test", "o1", map[string]string{"order_id": "o1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := Add(ctx, db, "t", "o1", e); err != nil {
		t.Fatal(err)
	}

	w := held{entered: make(chan struct{}, 1), release: make(chan struct{})}
	behind := NewRelay(open(), w, RelayOptions{})
	behind.clock = func() time.Time { return time.Now().Add(-30 * time.Second) }
	done := make(chan error, 1)
	go func() { _, err := behind.RunOnce(ctx); done <- err }()
	select {
	case <-w.entered:
	case err := <-done:
		t.Fatalf("the replica behind ended its round before publishing: %v", err)
	}

	var ahead counted
	n, err := NewRelay(open(), &ahead, RelayOptions{}).RunOnce(ctx)
	close(w.release)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n != 0 || ahead.n != 0 {
		t.Fatalf("the replica ahead claimed %d rows and published %d while the one behind was publishing; want 0", n, ahead.n)
	}
}
