package outbox_test

import (
	"context"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
)

// kafkaGate stands between a writer and the real Kafka: Cut closes every
// connection it dialled and refuses new ones until Restore, as a broker
// gone away and back does to its clients (metadata names the broker's own
// address, so a TCP proxy in front of the bootstrap address would be
// bypassed after the first request; the writer's dial is the one way in).
type kafkaGate struct {
	mu    sync.Mutex
	down  bool
	conns []net.Conn
	dial  func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (g *kafkaGate) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	g.mu.Lock()
	down := g.down
	g.mu.Unlock()
	if down {
		return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
	}
	c, err := g.dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.down { // cut while dialling
		_ = c.Close()
		return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
	}
	g.conns = append(g.conns, c)
	return c, nil
}

func (g *kafkaGate) Cut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.down = true
	for _, c := range g.conns {
		_ = c.Close()
	}
	g.conns = nil
}

func (g *kafkaGate) Restore() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.down = false
}

// TestRelayRidesOutAKafkaOutage: Kafka goes away while a relay runs (its
// connections closed, new ones refused) and comes back. Rows committed
// during the outage are retried on their backoff, never dropped or set
// aside, and once Kafka is back every row is on it, each key's in order.
func TestRelayRidesOutAKafkaOutage(t *testing.T) {
	bs := brokers(t)
	topic := newTopic(t, bs)
	db := migrated(t, dbtest.Postgres(t))

	w := outbox.NewWriter(bs...)
	t.Cleanup(func() { _ = w.Close() })
	tr, ok := w.Transport.(*kafka.Transport)
	if !ok {
		t.Fatalf("NewWriter's transport is a %T, not a *kafka.Transport", w.Transport)
	}
	gate := &kafkaGate{dial: (&net.Dialer{Timeout: 2 * time.Second}).DialContext}
	tr.Dial = gate.Dial
	w.MaxAttempts = 1 // each round fails fast while Kafka is away; the relay's backoff is what retries

	r := outbox.NewRelay(db, w, outbox.RelayOptions{
		Interval: 20 * time.Millisecond, MaxIdleInterval: 100 * time.Millisecond,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, PublishTimeout: 3 * time.Second,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	var want []event.Envelope
	keys := []string{"o-1", "o-2", "o-3"}
	for i := range 3 {
		want = append(want, add(t, context.Background(), db, topic, keys[i%3], i))
	}
	r.Nudge()
	waitUnsent(t, db, 0, "before the outage")

	gate.Cut()
	for i := 3; i < 12; i++ {
		want = append(want, add(t, context.Background(), db, topic, keys[i%3], i))
		r.Nudge()
	}
	// The outage is seen: the rows' first rows have failed, and been put back, more than once.
	deadline := time.Now().Add(time.Minute)
	for {
		var failed int64
		if err := db.Raw("SELECT count(*) FROM outbox WHERE sent_at IS NULL AND attempts >= 2 AND last_error <> ''").
			Scan(&failed).Error; err != nil {
			t.Fatal(err)
		}
		if failed >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d rows failed twice after a minute of outage: the relay is not retrying", failed)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var aside int64
	if err := db.Raw("SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL AND last_error <> ''").Scan(&aside).Error; err != nil {
		t.Fatal(err)
	}
	if aside != 0 {
		t.Fatalf("%d rows set aside during an outage: they are never published", aside)
	}

	gate.Restore()
	waitUnsent(t, db, 0, "after Kafka came back")

	got := readAll(t, bs, topic)
	perKey := map[string][]string{}
	seen := map[string]bool{}
	for _, m := range got {
		id := headerMap(m)["ce_id"]
		if !seen[id] { // at least once: a resend of a row Kafka took before a cut comes after its first copy
			seen[id] = true
			perKey[string(m.Key)] = append(perKey[string(m.Key)], id)
		}
	}
	for _, e := range want {
		k := e.Subject
		if len(perKey[k]) == 0 || perKey[k][0] != e.ID {
			t.Fatalf("key %s: event %s missing or out of order on Kafka (%v)", k, e.ID, perKey[k])
		}
		perKey[k] = perKey[k][1:]
	}
}

// waitUnsent waits up to a minute for the outbox to hold n unsent rows.
func waitUnsent(t *testing.T, db *gorm.DB, n int64, when string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var unsent int64
		if err := db.Raw("SELECT count(*) FROM outbox WHERE sent_at IS NULL").Scan(&unsent).Error; err != nil {
			t.Fatal(err)
		}
		if unsent == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d rows unsent after a minute, want %d", when, unsent, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
