package outbox_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
)

// stoppingOptions are a stopped relay's options in these tests: a lease and a retry back-off long enough that a row a
// stop left leased or backed off could not be claimed again within a test, so a next relay claiming it at once shows
// that the stop handed it back.
var stoppingOptions = outbox.RelayOptions{Lease: 10 * time.Minute, MinBackoff: 10 * time.Minute, MaxBackoff: 10 * time.Minute}

// stopFixture is an outbox for a fresh Kafka topic, and what a test needs to stop a relay on it.
type stopFixture struct {
	bs    []string
	topic string
	url   string
	db    *gorm.DB
	ids   []string // the rows' event ids
}

func newStopFixture(t *testing.T, dialect string) *stopFixture {
	t.Helper()
	bs := brokers(t)
	f := &stopFixture{bs: bs, topic: newTopic(t, bs), url: dbtest.SQLiteURL(t)}
	if dialect == database.Postgres {
		f.url = dbtest.PostgresURL(t)
	}
	f.db = migrated(t, open(t, f.url))
	return f
}

// eachDialect runs test once per database, as subtests named after the dialect.
func eachDialect(t *testing.T, test func(t *testing.T, dialect string)) {
	for _, dialect := range []string{database.Postgres, database.SQLite} {
		t.Run(dialect, func(t *testing.T) { test(t, dialect) })
	}
}

// relay returns a relay with w on a connection pool of its own (a replica of its own), after a round on the empty
// table: its claim is then prepared on its connection, as in a relay that has been running. A first claim waits for a
// lock while PostgreSQL parses it, before it is sent to run, and a stop there leaves nothing claimed.
func (f *stopFixture) relay(t *testing.T, w outbox.Writer) *outbox.Relay {
	t.Helper()
	r := outbox.NewRelay(open(t, f.url), w, stoppingOptions)
	if n, err := r.RunOnce(context.Background()); err != nil || n != 0 {
		t.Fatalf("a round on the empty outbox claimed %d rows (%v)", n, err)
	}
	return r
}

// fill adds n rows, each of a key of its own.
func (f *stopFixture) fill(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		f.ids = append(f.ids, add(t, context.Background(), f.db, f.topic, fmt.Sprintf("order-%d", i), i).ID)
	}
}

// run runs r and returns its stop and its end.
func run(t *testing.T, r *outbox.Relay) (stop context.CancelFunc, done <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch := make(chan error, 1)
	go func() { ch <- r.Run(ctx) }()
	return cancel, ch
}

// stopWriter is a relay's writer that sends its first call to Kafka and then stops the relay, whatever the call's
// outcome; later calls are counted and refused. Stopped only after a call Kafka took, a relay outlived a failed one
// (its rows backed off, its rounds on the idle schedule) and its test waited for its end until go test's timeout:
// TestRelayStoppedBetweenCallsMakesNoMore hung so twice under -race at load 25.
type stopWriter struct {
	kw       *kafka.Writer
	stop     context.CancelFunc // set by run before it closes start
	start    chan struct{}
	calls    atomic.Int32
	firstErr chan error
}

func (f *stopFixture) firstCallThenStop(t *testing.T) *stopWriter {
	kw := outbox.NewWriter(f.bs...)
	t.Cleanup(func() { _ = kw.Close() })
	return &stopWriter{kw: kw, start: make(chan struct{}), firstErr: make(chan error, 1)}
}

func (w *stopWriter) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	<-w.start
	if n := w.calls.Add(1); n > 1 {
		return fmt.Errorf("call %d made after the stop", n)
	}
	defer w.stop()
	err := w.kw.WriteMessages(ctx, msgs...)
	w.firstErr <- err
	return err
}

// run runs r, whose writer w is, until w stops it, and fails the test if Kafka did not take the first call.
func (w *stopWriter) run(t *testing.T, r *outbox.Relay) {
	t.Helper()
	stop, done := run(t, r)
	w.stop = stop
	close(w.start)
	if err := <-done; err != nil {
		t.Fatalf("the stopped relay returned %v", err)
	}
	if err := <-w.firstErr; err != nil {
		t.Fatalf("Kafka did not take the relay's first call, so the stop came after no publish: %v", err)
	}
}

// leftBehind wants the stopped relay to have left every row either sent or due now, never leased or backed off, and
// sent rows' attempts counted; it returns how many it left unsent.
func (f *stopFixture) leftBehind(t *testing.T) int {
	t.Helper()
	unsent := 0
	for _, m := range rows(t, f.db) {
		switch {
		case m.SentAt != nil:
			if m.Attempts != 1 || m.LastError != "" {
				t.Fatalf("row %d marked sent with %d attempts, last error %q", m.ID, m.Attempts, m.LastError)
			}
		case m.NextAttemptAt > time.Now().UnixMilli():
			t.Fatalf("row %d unsent and not due for %v after the stop (attempts %d, last error %q)", m.ID,
				time.Until(time.UnixMilli(m.NextAttemptAt)).Round(time.Second), m.Attempts, m.LastError)
		case m.Attempts != 0:
			t.Fatalf("row %d unsent with %d attempts counted (last error %q): a stop is no failed publish", m.ID,
				m.Attempts, m.LastError)
		default:
			unsent++
		}
	}
	return unsent
}

// nextRelaySendsAll runs another relay on the table at once and wants it to send the unsent rows, and every row's
// event on Kafka (duplicates allowed: delivery is at least once).
func (f *stopFixture) nextRelaySendsAll(t *testing.T, unsent int) {
	t.Helper()
	kw := outbox.NewWriter(f.bs...)
	defer kw.Close()
	next := outbox.NewRelay(open(t, f.url), kw, stoppingOptions)
	if n, err := next.RunOnce(context.Background()); err != nil || n != unsent {
		t.Fatalf("the next relay claimed %d rows (%v), want the %d the stopped one left", n, err, unsent)
	}
	for _, m := range rows(t, f.db) {
		if m.SentAt == nil {
			t.Fatalf("row %d unsent after the next relay's round: attempts %d, last error %q", m.ID, m.Attempts, m.LastError)
		}
	}
	seen := map[string]bool{}
	for _, m := range readAll(t, f.bs, f.topic) {
		seen[headerMap(m)["ce_id"]] = true
	}
	for _, id := range f.ids {
		if !seen[id] {
			t.Fatalf("event %s is not on Kafka (%d of %d events seen)", id, len(seen), len(f.ids))
		}
	}
}

// TestRelayStoppedMidClaimLeavesNoLease stops a relay while its claim UPDATE is in flight, held on a lock of the
// outbox table so that PostgreSQL commits the claim only after the stop. A relay whose claim was cut by the stop
// lost its answer, so it never learned it had leased the rows: they waited out the whole lease before any relay sent
// them. Now the stopped relay learns its claim and hands the rows back, and the next relay sends them at once.
func TestRelayStoppedMidClaimLeavesNoLease(t *testing.T) {
	const n = 5
	f := newStopFixture(t, database.Postgres)
	r := f.relay(t, newWriter(t, f.bs))
	f.fill(t, n)
	lock := f.db.Begin()
	if err := lock.Exec("LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE").Error; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lock.Rollback().Error })
	stop, done := run(t, r)
	waitForLockWaiter(t, f.db, "outbox")
	stop()
	// Only now may the claim go on: PostgreSQL commits it after the stop.
	if err := lock.Rollback().Error; err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the stopped relay returned %v", err)
	}
	// Stopped before its claim returned, the relay publishes nothing and releases what it claimed.
	unsent := f.leftBehind(t)
	if unsent != n {
		t.Errorf("the relay stopped mid-claim left %d of %d rows unsent, want all", unsent, n)
	}
	f.nextRelaySendsAll(t, unsent)
}

// TestRelayStoppedMidPublishLeavesNoBackoff stops a relay while Kafka has its publish and has not answered: the rows
// must be due again at once, not pushed back as if Kafka had refused them.
func TestRelayStoppedMidPublishLeavesNoBackoff(t *testing.T) {
	eachDialect(t, func(t *testing.T, dialect string) {
		const n = 5
		f := newStopFixture(t, dialect)
		inWrite := make(chan struct{})
		// A broker that takes the publish and never answers: the write ends with the relay's context.
		r := f.relay(t, writerFunc(func(ctx context.Context, _ ...kafka.Message) error {
			close(inWrite)
			<-ctx.Done()
			return ctx.Err()
		}))
		f.fill(t, n)
		stop, done := run(t, r)
		<-inWrite
		stop()
		if err := <-done; err != nil {
			t.Fatalf("the stopped relay returned %v", err)
		}
		if unsent := f.leftBehind(t); unsent != n {
			t.Fatalf("%d of %d rows unsent after a publish Kafka never answered", unsent, n)
		}
		// No attempt is recorded for them, so none is counted as failed either.
		if got := counts(t, f.topic); got["outbox.messages.failed"] != 0 {
			t.Fatalf("a publish cut by the stop counted as failed: %v", got)
		}
		f.nextRelaySendsAll(t, n)
	})
}

// TestRelayStoppedAfterKafkaAcceptedMarksSent stops a relay after Kafka acknowledged its publish and before it
// marked the rows sent: it still marks them, so they are not sent again (after the lease on PostgreSQL, by the next
// round on SQLite, where the stop used to roll the round's transaction back).
func TestRelayStoppedAfterKafkaAcceptedMarksSent(t *testing.T) {
	eachDialect(t, func(t *testing.T, dialect string) {
		const n = 5
		f := newStopFixture(t, dialect)
		w := f.firstCallThenStop(t)
		r := f.relay(t, w)
		f.fill(t, n)
		w.run(t, r)
		if unsent := f.leftBehind(t); unsent != 0 {
			t.Fatalf("%d of %d rows unsent after Kafka acknowledged them", unsent, n)
		}
		f.nextRelaySendsAll(t, 0)
	})
}

// waitForLockWaiter waits until a statement waits for a lock on table in db's database.
func waitForLockWaiter(t *testing.T, db *gorm.DB, table string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int64
		err := db.Raw(`SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = ?::regclass
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`, table).Scan(&waiting).Error
		if err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no statement waits for the lock on %s after 10 s", table)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRelayStoppedBetweenCallsMakesNoMore stops a relay after the first of the calls its round is split into (rows of
// 400 KB, two to a call of at most 1 MB): the later calls are not made, as their outcome after the stop would be
// unknown, and their rows are due again at once with no attempt counted.
func TestRelayStoppedBetweenCallsMakesNoMore(t *testing.T) {
	eachDialect(t, func(t *testing.T, dialect string) {
		f := newStopFixture(t, dialect)
		w := f.firstCallThenStop(t)
		r := f.relay(t, w)
		for i := range 5 {
			f.ids = append(f.ids, addSized(t, f.db, f.topic, fmt.Sprintf("order-%d", i), 400_000).ID)
		}
		w.run(t, r)
		if n := w.calls.Load(); n != 1 {
			t.Fatalf("%d WriteMessages calls, want the one before the stop", n)
		}
		if unsent := f.leftBehind(t); unsent != 3 {
			t.Fatalf("%d of 5 rows unsent, want the 3 of the calls after the stop", unsent)
		}
		f.nextRelaySendsAll(t, 3)
	})
}
