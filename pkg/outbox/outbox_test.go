package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/migrate"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
)

var (
	spans   = tracetest.NewSpanRecorder()
	metrics = sdkmetric.NewManualReader()
)

// TestMain installs what telemetry.Setup installs in a binary: W3C propagators and SDK providers, here recording.
func TestMain(m *testing.M) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)))
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(metrics)))
	if helperMain() {
		return
	}
	os.Exit(m.Run())
}

// fakeWriter is the unit tests' Kafka: it records messages and fails keys on demand.
type fakeWriter struct {
	mu   sync.Mutex
	msgs []kafka.Message
	fail map[string]error // key -> error returned for it
}

func (w *fakeWriter) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	errs := make(kafka.WriteErrors, len(msgs))
	failed := false
	for i, m := range msgs {
		if err := w.fail[string(m.Key)]; err != nil {
			errs[i], failed = err, true
			continue
		}
		w.msgs = append(w.msgs, m)
	}
	if failed {
		return errs
	}
	return nil
}

func (w *fakeWriter) sent() []kafka.Message {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.msgs)
}

func migrated(t *testing.T, db *gorm.DB) *gorm.DB {
	t.Helper()
	if err := migrate.Up(context.Background(), db, outbox.Migrations); err != nil {
		t.Fatal(err)
	}
	return db
}

// add commits one event for key in its own transaction and returns it.
func add(t testing.TB, ctx context.Context, db *gorm.DB, topic, key string, n int) event.Envelope {
	t.Helper()
	e, err := event.New("order.created", "/services/order", key, map[string]any{"order_id": key, "n": n})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Transaction(func(tx *gorm.DB) error { return outbox.Add(ctx, tx, topic, key, e) }); err != nil {
		t.Fatal(err)
	}
	return e
}

func header(m kafka.Message, k string) string {
	for _, h := range m.Headers {
		if h.Key == k {
			return string(h.Value)
		}
	}
	return ""
}

func rows(t *testing.T, db *gorm.DB) []outbox.Message {
	t.Helper()
	var ms []outbox.Message
	if err := db.Order("id").Find(&ms).Error; err != nil {
		t.Fatal(err)
	}
	return ms
}

func TestAddStoresEventAndTraceContext(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		migrated(t, db)
		ctx, span := otel.Tracer("test").Start(context.Background(), "POST /api/v1/orders")
		e := add(t, ctx, db, "shanhai.orders", "o-1", 1)
		span.End()

		ms := rows(t, db)
		if len(ms) != 1 {
			t.Fatalf("%d rows", len(ms))
		}
		m := ms[0]
		if m.Topic != "shanhai.orders" || m.Key != "o-1" || m.EventID != e.ID || m.EventType != e.Type ||
			string(m.Payload) != string(e.Data) || m.SentAt != nil || m.Attempts != 0 {
			t.Fatalf("row %+v", m)
		}
		var h map[string]string
		if err := json.Unmarshal([]byte(m.Headers), &h); err != nil {
			t.Fatal(err)
		}
		if h["ce_id"] != e.ID || h["ce_type"] != "order.created" || h["ce_specversion"] != "1.0" {
			t.Fatalf("headers %v", h)
		}
		want := span.SpanContext().TraceID().String()
		if !strings.Contains(h["traceparent"], want) {
			t.Fatalf("traceparent %q does not carry trace %s", h["traceparent"], want)
		}
	})
}

func TestAddRejectsInvalid(t *testing.T) {
	db := migrated(t, dbtest.SQLite(t))
	e, _ := event.New("t", "/s", "", 1)
	if err := outbox.Add(context.Background(), db, "", "k", e); err == nil {
		t.Fatal("empty topic accepted")
	}
	if err := outbox.Add(context.Background(), db, "topic", "k", event.Envelope{Type: "t"}); !errors.Is(err, event.ErrInvalid) {
		t.Fatalf("envelope without id: %v", err)
	}
	// A topic Kafka never takes: stored, the row was retried for good and its key's later rows waited behind it.
	for _, topic := range []string{"not a topic!", "shanhai/orders", ".", "..", strings.Repeat("t", 250)} {
		if err := outbox.Add(context.Background(), db, topic, "k", e); err == nil {
			t.Errorf("topic %q accepted", topic)
		}
	}
	for _, topic := range []string{"shanhai.orders", "a_b-C.9", strings.Repeat("t", 249)} {
		if err := outbox.Add(context.Background(), db, topic, "k", e); err != nil {
			t.Errorf("topic %q refused: %v", topic, err)
		}
	}
}

// Rows become visible to the relay only when the writer's transaction commits; a rolled-back state change
// publishes nothing.
func TestRelaySeesOnlyCommittedRows(t *testing.T) {
	db := migrated(t, dbtest.Postgres(t))
	w := &fakeWriter{}
	r := outbox.NewRelay(db, w, outbox.RelayOptions{})
	e, _ := event.New("order.created", "/services/order", "o", 1)
	tx := db.Begin()
	if err := outbox.Add(context.Background(), tx, "t", "o", e); err != nil {
		t.Fatal(err)
	}
	if n, err := r.RunOnce(context.Background()); err != nil || n != 0 {
		t.Fatalf("relay claimed %d uncommitted rows (%v)", n, err)
	}
	tx.Rollback()
	if n, err := r.RunOnce(context.Background()); err != nil || n != 0 {
		t.Fatalf("relay claimed %d rolled-back rows (%v)", n, err)
	}
	if len(w.sent()) != 0 {
		t.Fatal("published a rolled-back event")
	}
}

func TestRelayPublishesInKeyOrderAndMarksSent(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		migrated(t, db)
		ctx := context.Background()
		var want []string
		for i := range 9 {
			want = append(want, add(t, ctx, db, "shanhai.orders", fmt.Sprintf("k%d", i%3), i).ID)
		}
		w := &fakeWriter{}
		r := outbox.NewRelay(db, w, outbox.RelayOptions{})
		rounds := 0
		for {
			n, err := r.RunOnce(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
			rounds++
		}
		// One row per key per round: three keys with three rows each take three rounds.
		if rounds != 3 {
			t.Fatalf("%d rounds, want 3", rounds)
		}
		got := w.sent()
		if len(got) != 9 {
			t.Fatalf("%d messages, want 9", len(got))
		}
		perKey := map[string][]string{}
		for _, m := range got {
			perKey[string(m.Key)] = append(perKey[string(m.Key)], header(m, "ce_id"))
			if m.Topic != "shanhai.orders" || header(m, "ce_specversion") != "1.0" || header(m, "content-type") != "application/json" {
				t.Fatalf("message %s headers %v", m.Topic, m.Headers)
			}
			if _, err := event.FromHeaders(map[string]string{
				"ce_specversion": header(m, "ce_specversion"), "ce_id": header(m, "ce_id"), "ce_type": header(m, "ce_type"),
				"ce_source": header(m, "ce_source"), "ce_time": header(m, "ce_time"),
			}, m.Value); err != nil {
				t.Fatal(err)
			}
		}
		for k := range 3 {
			wantKey := []string{want[k], want[k+3], want[k+6]}
			if !slices.Equal(perKey[fmt.Sprintf("k%d", k)], wantKey) {
				t.Fatalf("key k%d order %v, want %v", k, perKey[fmt.Sprintf("k%d", k)], wantKey)
			}
		}
		for _, m := range rows(t, db) {
			if m.SentAt == nil || m.Attempts != 1 {
				t.Fatalf("row %d not marked sent: %+v", m.ID, m)
			}
		}
	})
}

// A failing row is retried with backoff, records the error, and holds back later rows of its key only.
func TestRelayRetriesFailedRowsInOrder(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		migrated(t, db)
		ctx := context.Background()
		bad1 := add(t, ctx, db, "t", "bad", 1)
		good := add(t, ctx, db, "t", "good", 2)
		bad2 := add(t, ctx, db, "t", "bad", 3)
		w := &fakeWriter{fail: map[string]error{"bad": errors.New("broker said no")}}
		r := outbox.NewRelay(db, w, outbox.RelayOptions{MinBackoff: time.Hour, MaxBackoff: 2 * time.Hour})
		n, err := r.RunOnce(ctx)
		if err != nil || n != 2 {
			t.Fatalf("claimed %d (%v), want bad#1 and good", n, err)
		}
		if n, _ := r.RunOnce(ctx); n != 0 {
			t.Fatalf("claimed %d during backoff", n)
		}
		if got := w.sent(); len(got) != 1 || header(got[0], "ce_id") != good.ID {
			t.Fatalf("sent %v, want only the good key", got)
		}
		ms := rows(t, db)
		now := time.Now()
		if ms[0].Attempts != 1 || ms[0].LastError != "broker said no" || ms[0].SentAt != nil {
			t.Fatalf("failed row %+v", ms[0])
		}
		if next := time.UnixMilli(ms[0].NextAttemptAt); next.Before(now.Add(29*time.Minute)) || next.After(now.Add(time.Hour)) {
			t.Fatalf("next attempt at %v: want within [30m, 1h] (equal jitter of 1h)", next)
		}
		if ms[2].Attempts != 0 {
			t.Fatal("the later row of the failing key was tried")
		}

		// The broker recovers and the backoff has passed: both rows of the key go out, in order.
		w.mu.Lock()
		w.fail = nil
		w.mu.Unlock()
		db.Exec("UPDATE outbox SET next_attempt_at = 0")
		for {
			if n, err := r.RunOnce(ctx); err != nil {
				t.Fatal(err)
			} else if n == 0 {
				break
			}
		}
		var ids []string
		for _, m := range w.sent() {
			ids = append(ids, header(m, "ce_id"))
		}
		if !slices.Equal(ids, []string{good.ID, bad1.ID, bad2.ID}) {
			t.Fatalf("publish order %v", ids)
		}
		if ms := rows(t, db); ms[0].Attempts != 2 || ms[0].LastError != "" || ms[0].SentAt == nil {
			t.Fatalf("retried row %+v", ms[0])
		}
	})
}

// A write error that is not per message fails the whole batch.
func TestRelayWholeBatchFailure(t *testing.T) {
	db := migrated(t, dbtest.SQLite(t))
	ctx := context.Background()
	add(t, ctx, db, "t", "a", 1)
	add(t, ctx, db, "t", "b", 2)
	r := outbox.NewRelay(db, writerFunc(func(context.Context, ...kafka.Message) error {
		return kafka.LeaderNotAvailable
	}), outbox.RelayOptions{})
	if n, err := r.RunOnce(ctx); err != nil || n != 2 {
		t.Fatalf("claimed %d, %v", n, err)
	}
	for _, m := range rows(t, db) {
		if m.SentAt != nil || m.Attempts != 1 || !strings.Contains(m.LastError, "Leader Not Available") {
			t.Fatalf("row %+v", m)
		}
	}
}

type writerFunc func(ctx context.Context, msgs ...kafka.Message) error

func (f writerFunc) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	return f(ctx, msgs...)
}

// The producer span continues the trace stored by Add, and the message carries the producer span's context.
func TestRelayProducerSpan(t *testing.T) {
	db := migrated(t, dbtest.SQLite(t))
	ctx, req := otel.Tracer("test").Start(context.Background(), "POST /api/v1/orders")
	e := add(t, ctx, db, "shanhai.orders", "o-1", 1)
	req.End()
	w := &fakeWriter{}
	if _, err := outbox.NewRelay(db, w, outbox.RelayOptions{}).RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	var producer sdktrace.ReadOnlySpan
	for _, s := range spans.Ended() {
		for _, a := range s.Attributes() {
			if a.Key == "messaging.message.id" && a.Value.AsString() == e.ID {
				producer = s
			}
		}
	}
	if producer == nil {
		t.Fatal("no producer span for the event")
	}
	if producer.SpanKind() != trace.SpanKindProducer || producer.Name() != "shanhai.orders publish" {
		t.Fatalf("span %q kind %v", producer.Name(), producer.SpanKind())
	}
	if producer.Parent().SpanID() != req.SpanContext().SpanID() || producer.SpanContext().TraceID() != req.SpanContext().TraceID() {
		t.Fatal("producer span is not a child of the request span")
	}
	tp := header(w.sent()[0], "traceparent")
	if want := fmt.Sprintf("00-%s-%s-01", producer.SpanContext().TraceID(), producer.SpanContext().SpanID()); tp != want {
		t.Fatalf("traceparent %q, want %q", tp, want)
	}
}

func TestRelayMetrics(t *testing.T) {
	db := migrated(t, dbtest.SQLite(t))
	ctx := context.Background()
	topic := "metrics-" + fmt.Sprint(time.Now().UnixNano())
	add(t, ctx, db, topic, "ok", 1)
	add(t, ctx, db, topic, "ko", 2)
	w := &fakeWriter{fail: map[string]error{"ko": errors.New("no")}}
	if _, err := outbox.NewRelay(db, w, outbox.RelayOptions{}).RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	got := counts(t, topic)
	want := map[string]int64{"outbox.messages.published": 1, "outbox.messages.failed": 1, "outbox.lag": 1}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("metrics %v, want %v", got, want)
		}
	}
}

// counts returns the relay's counters and histogram counts for topic, by metric name.
func counts(t *testing.T, topic string) map[string]int64 {
	t.Helper()
	got, hists := points(t, topic)
	for name, h := range hists {
		got[name] += int64(h.Count)
	}
	return got
}

// points returns the relay's counters' values and its histograms' counts and sums for topic, by metric name.
func points(t *testing.T, topic string) (sums map[string]int64, hists map[string]metricdata.HistogramDataPoint[float64]) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := metrics.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	sums, hists = map[string]int64{}, map[string]metricdata.HistogramDataPoint[float64]{}
	of := func(attrs attribute.Set) bool {
		v, _ := attrs.Value(attribute.Key("messaging.destination.name"))
		return v.AsString() == topic
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					if of(p.Attributes) {
						sums[m.Name] += p.Value
					}
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					if of(p.Attributes) {
						h := hists[m.Name]
						h.Count += p.Count
						h.Sum += p.Sum
						hists[m.Name] = h
					}
				}
			}
		}
	}
	return sums, hists
}

func TestCleanupDeletesOnlyOldSentRows(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		migrated(t, db)
		ctx := context.Background()
		add(t, ctx, db, "t", "a", 1)
		add(t, ctx, db, "t", "b", 2)
		add(t, ctx, db, "t", "c", 3)
		db.Exec("UPDATE outbox SET sent_at = ? WHERE key = 'a'", time.Now().UTC().Add(-100*time.Hour))
		db.Exec("UPDATE outbox SET sent_at = ? WHERE key = 'b'", time.Now().UTC())
		r := outbox.NewRelay(db, &fakeWriter{}, outbox.RelayOptions{})
		n, err := r.Cleanup(ctx, time.Now().Add(-72*time.Hour))
		if err != nil || n != 1 {
			t.Fatalf("deleted %d (%v), want 1", n, err)
		}
		var keys []string
		db.Raw("SELECT key FROM outbox ORDER BY id").Scan(&keys)
		if !slices.Equal(keys, []string{"b", "c"}) {
			t.Fatalf("left %v", keys)
		}
	})
}

// Run publishes without waiting for its poll when nudged, and returns when its context ends. Its first poll finds
// nothing, so it has backed off to a doubled wait (two hours) when the nudge comes: nothing but the nudge can make it
// poll again while the test waits.
func TestRunNudge(t *testing.T) {
	db := migrated(t, dbtest.SQLite(t))
	// Learn when Run's first round has looked at the (empty) table, so the row below can only go out by a nudge.
	polled := make(chan struct{}, 100)
	err := db.Callback().Row().After("gorm:row").Register("test:polled", func(*gorm.DB) {
		select {
		case polled <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	w := &fakeWriter{}
	r := outbox.NewRelay(db, w, outbox.RelayOptions{Interval: time.Hour, MaxIdleInterval: 2 * time.Hour, Retention: -1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	<-polled
	add(t, context.Background(), db, "t", "k", 1)
	r.Nudge()
	waitSent(t, w)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run returned %v", err)
	}
}

// Rows nudged one after another share rounds: a round that claims rows starts no sooner than Linger after the last one
// that did, where each nudge started one at once before (a round per row under steady load: two statements and a
// produce request per partition each). Timers never fire early, so however slow the machine, the rounds that published
// between the first row's commit and the last row's publish are at most that span divided by Linger, plus one.
func TestRunLingersBetweenRoundsUnderLoad(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		db = migrated(t, db)
		const linger = 200 * time.Millisecond
		var calls, sent atomic.Int32
		w := writerFunc(func(_ context.Context, msgs ...kafka.Message) error {
			calls.Add(1)
			sent.Add(int32(len(msgs)))
			return nil
		})
		r := outbox.NewRelay(db, w, outbox.RelayOptions{Interval: time.Hour, MaxIdleInterval: time.Hour, Retention: -1,
			Linger: linger})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		const rows = 20
		start := time.Now()
		for i := range rows {
			add(t, context.Background(), db, "t", fmt.Sprint("k", i), i)
			r.Nudge()
			time.Sleep(linger / 10)
		}
		deadline := time.After(30 * time.Second)
		for sent.Load() < rows {
			select {
			case <-deadline:
				t.Fatalf("%d of %d rows published", sent.Load(), rows)
			case <-time.After(5 * time.Millisecond):
			}
		}
		took := time.Since(start)
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run returned %v", err)
		}
		if n, most := calls.Load(), int32(took/linger)+1; n > most {
			t.Fatalf("%d rows in %d rounds within %v; with rounds %v apart at least, want at most %d", rows, n, took, linger, most)
		}
	})
}

// An idle relay polls less and less often: polling every Interval while idle cost each service two database
// transactions a second. Timers never fire early, so seven polls take at least the six doubled waits (120 ms without
// the back-off); only a lower bound, which no slowness breaks. That a nudge cuts the backed-off wait is TestRunNudge.
func TestRunBacksOffWhileIdle(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		db = migrated(t, db)
		polls := make(chan time.Time, 100)
		err := db.Callback().Row().After("gorm:row").Register("test:polls", func(*gorm.DB) { polls <- time.Now() })
		if err != nil {
			t.Fatal(err)
		}
		const interval = 20 * time.Millisecond
		w := &fakeWriter{}
		r := outbox.NewRelay(db, w, outbox.RelayOptions{Interval: interval, MaxIdleInterval: time.Hour, Retention: -1})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- r.Run(ctx) }()
		var last time.Time
		for range 7 {
			select {
			case last = <-polls:
			case <-time.After(30 * time.Second):
				t.Fatal("the idle relay stopped polling")
			}
		}
		// 40+80+...+1280 ms: the wait after the first poll is already doubled.
		if took, least := last.Sub(start), 63*interval*2; took < least {
			t.Fatalf("7 idle polls took %v, want at least %v: the wait does not double while idle", took, least)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run returned %v", err)
		}
	})
}

// Rows whose publish failed are retried when their own backoffs end, though the relay's poll interval is an hour: it
// polls when the earliest retry it set comes due, and then the next. Row a fails for the first time (retry in 25-50
// ms), row b for the eleventh (0.5-1 s, MaxBackoff): b is not forgotten once a is retried. Decided by polls, not by
// time: every poll after the failure sends a row (without the retries' own waits the next poll would come an hour
// later; one before a retry came due would find nothing), whether a and b go out apart or, on a slow machine, together.
func TestRunRetriesOnTheirBackoff(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		db = migrated(t, db)
		var polls atomic.Int32
		err := db.Callback().Row().After("gorm:row").Register("test:polls", func(*gorm.DB) { polls.Add(1) })
		if err != nil {
			t.Fatal(err)
		}
		add(t, context.Background(), db, "t", "a", 1)
		add(t, context.Background(), db, "t", "b", 2)
		db.Exec("UPDATE outbox SET attempts = 10 WHERE key = 'b'")
		var writes atomic.Int32
		w := writerFunc(func(context.Context, ...kafka.Message) error {
			if writes.Add(1) == 1 {
				return kafka.LeaderNotAvailable
			}
			return nil
		})
		r := outbox.NewRelay(db, w, outbox.RelayOptions{Interval: time.Hour, MaxIdleInterval: time.Hour,
			MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second, Retention: -1})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		// Waits for the rows to be marked sent, not only published, so the stop below cannot cut the round recording it.
		deadline := time.After(10 * time.Second)
		for m := rows(t, db); m[0].SentAt == nil || m[1].SentAt == nil; m = rows(t, db) {
			select {
			case <-deadline:
				t.Fatalf("failed rows not retried: a %d attempts, sent %v; b %d attempts, sent %v",
					m[0].Attempts, m[0].SentAt != nil, m[1].Attempts, m[1].SentAt != nil)
			case <-time.After(5 * time.Millisecond):
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run returned %v", err)
		}
		if p, w := polls.Load(), writes.Load(); p != w {
			t.Fatalf("%d polls for %d writes: a poll found nothing due", p, w)
		}
		if m := rows(t, db); m[0].Attempts != 2 || m[1].Attempts != 12 {
			t.Fatalf("attempts after the retries: a %d, b %d; want 2, 12", m[0].Attempts, m[1].Attempts)
		}
	})
}

// A relay told to delay its first poll claims nothing when it is stopped before its first tick (here an hour away),
// though a row is due, and publishes that row as soon as it is nudged.
func TestRunDelayFirstPoll(t *testing.T) {
	db := migrated(t, dbtest.SQLite(t))
	add(t, context.Background(), db, "t", "k", 1)
	var running sync.WaitGroup
	var polled atomic.Int32
	err := db.Callback().Row().After("gorm:row").Register("test:polled", func(*gorm.DB) { polled.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	w := &fakeWriter{}
	opts := outbox.RelayOptions{Interval: time.Hour, Retention: -1, DelayFirstPoll: true}

	stopped, cancel := context.WithCancel(context.Background())
	cancel()
	if err := outbox.NewRelay(db, w, opts).Run(stopped); err != nil {
		t.Fatalf("Run returned %v", err)
	}
	if n := polled.Load(); n != 0 || len(w.sent()) != 0 {
		t.Fatalf("a relay stopped before its delayed first poll polled %d times and sent %d rows", n, len(w.sent()))
	}

	ctx, cancel := context.WithCancel(context.Background())
	r := outbox.NewRelay(db, w, opts)
	running.Go(func() { _ = r.Run(ctx) })
	r.Nudge()
	waitSent(t, w)
	cancel()
	running.Wait()
}

// waitSent waits until a nudged relay has published through w.
func waitSent(t *testing.T, w *fakeWriter) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for len(w.sent()) == 0 {
		select {
		case <-deadline:
			t.Fatal("nudged relay did not publish")
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// While Run is active, the backlog gauges read the table: a relay whose publishes fail shows a growing backlog.
func TestRunReportsBacklog(t *testing.T) {
	db := migrated(t, dbtest.SQLite(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	add(t, ctx, db, "t", "a", 1)
	add(t, ctx, db, "t", "b", 2)
	db.Exec("UPDATE outbox SET created_at = ?", time.Now().UTC().Add(-time.Minute))
	w := writerFunc(func(context.Context, ...kafka.Message) error { return errors.New("down") })
	r := outbox.NewRelay(db, w, outbox.RelayOptions{Interval: time.Hour, MinBackoff: time.Hour, Retention: -1})
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var rm metricdata.ResourceMetrics
		if err := metrics.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		pending, age := int64(-1), -1.0
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				switch d := m.Data.(type) {
				case metricdata.Gauge[int64]:
					if m.Name == "outbox.pending" && len(d.DataPoints) == 1 {
						pending = d.DataPoints[0].Value
					}
				case metricdata.Gauge[float64]:
					if m.Name == "outbox.pending.age" && len(d.DataPoints) == 1 {
						age = d.DataPoints[0].Value
					}
				}
			}
		}
		if pending == 2 && age >= 60 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pending %d age %.1fs, want 2 and >= 60s", pending, age)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// On PostgreSQL a claim leases its rows without holding a transaction open: while one relay is still publishing, a
// second claims none of them, and none of the first relay's database connections is busy meanwhile.
func TestLeasedRowsStayWithTheirRelay(t *testing.T) {
	db := migrated(t, dbtest.Postgres(t))
	ctx := context.Background()
	add(t, ctx, db, "t", "a", 1)
	add(t, ctx, db, "t", "b", 2)
	inWrite, release := make(chan struct{}), make(chan struct{})
	first := outbox.NewRelay(db, writerFunc(func(context.Context, ...kafka.Message) error {
		close(inWrite)
		<-release
		return nil
	}), outbox.RelayOptions{})
	done := make(chan error, 1)
	go func() {
		n, err := first.RunOnce(ctx)
		if err == nil && n != 2 {
			err = fmt.Errorf("first relay claimed %d, want 2", n)
		}
		done <- err
	}()
	<-inWrite
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	if inUse := sqlDB.Stats().InUse; inUse != 0 {
		t.Fatalf("%d connections in use while publishing, want 0", inUse)
	}
	second := &fakeWriter{}
	if n, err := outbox.NewRelay(db, second, outbox.RelayOptions{}).RunOnce(ctx); err != nil || n != 0 {
		t.Fatalf("second relay claimed %d leased rows (%v)", n, err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, m := range rows(t, db) {
		if m.SentAt == nil || m.Attempts != 1 {
			t.Fatalf("row %d after the leased round: %+v", m.ID, m)
		}
	}
	if n, err := outbox.NewRelay(db, second, outbox.RelayOptions{}).RunOnce(ctx); err != nil || n != 0 || len(second.sent()) != 0 {
		t.Fatalf("second relay claimed %d sent rows (%v)", n, err)
	}
}
