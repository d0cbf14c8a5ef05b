package kafkaleg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shanhai-dev/shanhai/pkg/testenv"

	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
	"github.com/shanhai-dev/shanhai/bridge/internal/mapping"
	"github.com/shanhai-dev/shanhai/bridge/internal/metrics"
)

// A partition whose fetches fail (its leader away) showed only as a rising bridge_consumer_lag. Each failure is
// counted per partition, the run is logged once when it starts and once when it ends, and readiness names the
// partition once its failures span the grace, not before (a leader election passes within it) and not for one burst
// of them. An idle partition has no record to show it recovered: a quiet spell of fetchQuiet does.
func TestAPartitionThatCannotFetchIsCountedLoggedAndNotReady(t *testing.T) {
	m, reader := harness.Metrics(t)
	var logs testenv.LogBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	l := New(Options{Metrics: m, Logger: log, Group: "g"})
	p := &partition{leg: l, route: mapping.Route{Topic: "shanhai.orders"}, id: 2, fetch: newFetchLog(log, "shanhai.orders", 2)}
	parts := []*partition{p, {leg: l, route: mapping.Route{Topic: "shanhai.orders"}, id: 0, fetch: newFetchLog(log, "shanhai.orders", 0)}}

	start := time.Now()
	gone := errors.New("[6] Not Leader For Partition")
	for range 3 {
		p.fetchFailed(gone)
	}
	if v, _, err := harness.Int64Metric(reader, "bridge.fetch.errors", "partition", "2"); err != nil || v != 3 {
		t.Errorf("bridge_fetch_errors_total{partition=2} = %d (%v), want 3", v, err)
	}
	if err := unfetched(parts, 20*time.Second, start.Add(25*time.Second)); err != nil {
		t.Errorf("25 s after one burst of failures, their span within a 20 s grace: %v", err)
	}
	p.fetch.FailAt(start.Add(10*time.Second), gone)
	if err := unfetched(parts, 20*time.Second, start.Add(11*time.Second)); err != nil {
		t.Errorf("failures over 10 s, within a 20 s grace: %v", err)
	}
	p.fetch.FailAt(start.Add(21*time.Second), gone)
	err := unfetched(parts, 20*time.Second, start.Add(22*time.Second))
	if err == nil || !strings.Contains(err.Error(), "shanhai.orders partition 2") || !strings.Contains(err.Error(), gone.Error()) ||
		strings.Contains(err.Error(), "partition 0") {
		t.Errorf("failures over 21 s, past a 20 s grace: %v, want an error naming partition 2 alone and its error", err)
	}
	if n := strings.Count(logs.String(), "cannot fetch"); n != 1 {
		t.Errorf("five failures logged %d times, want once: %s", n, logs.String())
	}

	last := p.fetch.Current().Last
	p.fetchSettled(last.Add(fetchQuiet - time.Second))
	if p.fetch.Current().Attempts == 0 || strings.Contains(logs.String(), "fetches the partition again") {
		t.Fatalf("a partition %v after its last failure counted as fetching again: %s", fetchQuiet-time.Second, logs.String())
	}
	p.fetchSettled(last.Add(fetchQuiet))
	if n := strings.Count(logs.String(), "fetches the partition again"); n != 1 {
		t.Errorf("the end of the failures logged %d times, want once: %s", n, logs.String())
	}
	if err := unfetched(parts, 20*time.Second, last.Add(time.Hour)); err != nil {
		t.Errorf("after the failures ended: %v", err)
	}
}

// TestASessionThatCannotAskKafkaCountsAsAFailedFetch: a session reads the cluster id (its generation's first) and the
// topic id (every one, TopicID) before its reader fetches. When those requests failed, the session ended and the next
// tried again, with a WARN line and a retry counted only: the partition carried nothing and readiness and
// BridgePartitionUnfetchable saw nothing, as the position check's failures (inRange) are seen. A Kafka older than 2.8
// failed TopicID on every session that way until 51e65dc4. Each such failure is a failed fetch of the partition now.
func TestASessionThatCannotAskKafkaCountsAsAFailedFetch(t *testing.T) {
	m, reader := harness.Metrics(t)
	var logs testenv.LogBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	l := New(Options{Metrics: m, Logger: log, Group: "g", Brokers: []string{testenv.ClosedPort(t)}})
	p := &partition{leg: l, route: mapping.Route{Topic: "shanhai.orders"}, id: 2, subject: "shanhai.orders.p2",
		fetch: newFetchLog(log, "shanhai.orders", 2)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, what := range []string{"kafka cluster id", "kafka topic id"} {
		if _, err := p.pump(ctx, ctx, -1); err == nil || !strings.Contains(err.Error(), what) {
			t.Fatalf("session %d with Kafka unreachable ended with %v, want the %s's failure", i+1, err, what)
		}
		if got := p.fetch.Current().Attempts; got != i+1 {
			t.Errorf("after the %s failed: %d failed fetches recorded, want %d", what, got, i+1)
		}
		p.clusterRead = true // the next session skips the cluster id and asks for the topic id
	}
	if v, _, err := harness.Int64Metric(reader, "bridge.fetch.errors", "partition", "2"); err != nil || v != 2 {
		t.Errorf("bridge_fetch_errors_total{partition=2} = %d (%v), want 2", v, err)
	}
	if !strings.Contains(logs.String(), "cannot fetch") {
		t.Errorf("the failures were not logged: %s", logs.String())
	}
}

// A position outside the partition's offsets is moved to its earliest offset, whichever side it lies on: past the
// end (a recreated or truncated topic; reading on would skip the records below it) or before the start (retention
// removed records; those gone cannot be carried). Inside it, it stays, the end included (the next record's offset).
func TestResumeAt(t *testing.T) {
	for _, c := range []struct {
		pos, first, end, want int64
		side                  string
	}{
		{pos: 1000, first: 0, end: 0, want: 0, side: metrics.PastEnd},
		{pos: 1000, first: 40, end: 60, want: 40, side: metrics.PastEnd},
		{pos: 3, first: 40, end: 60, want: 40, side: metrics.BeforeStart},
		{pos: 40, first: 40, end: 60, want: 40},
		{pos: 50, first: 40, end: 60, want: 50},
		{pos: 60, first: 40, end: 60, want: 60},
	} {
		if got, side := resumeAt(c.pos, c.first, c.end); got != c.want || side != c.side {
			t.Errorf("resumeAt(%d, %d, %d) = %d, %q; want %d, %q", c.pos, c.first, c.end, got, side, c.want, c.side)
		}
	}
}

// The reader is built with no lag polling (leg A reads its lag elsewhere; kafka-go would dial the leader every minute
// for it) and with a position past the end as an error rather than retried for ever (reset.go).
func TestPartitionReaderConfig(t *testing.T) {
	r := NewPartitionReader([]string{"127.0.0.1:1"}, "t", 0, nil)
	defer r.Close()
	if c := r.Config(); c.ReadLagInterval >= 0 || !c.OffsetOutOfRangeError {
		t.Errorf("ReadLagInterval %v, OffsetOutOfRangeError %v; want negative (off) and true", c.ReadLagInterval, c.OffsetOutOfRangeError)
	}
}

// kafka-go's log of a position out of range met while reading ends the session (the next one checks and resets it),
// and is not counted as a failed fetch.
func TestOutOfRangeLogEndsTheSession(t *testing.T) {
	m, reader := harness.Metrics(t)
	l := New(Options{Metrics: m, Group: "g"})
	p := &partition{leg: l, route: mapping.Route{Topic: "shanhai.orders"}, id: 1, fetch: newFetchLog(l.o.Logger, "shanhai.orders", 1)}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	p.session.Store(&session{outOfRange: cancel})
	p.fetchFailed(fmt.Errorf("%w: %w", kafka.OffsetOutOfRange, errors.New("the kafka reader is reading passed the last offset")))
	if !errors.Is(context.Cause(ctx), kafka.OffsetOutOfRange) {
		t.Errorf("the session's reading ended by %v, want the position out of range", context.Cause(ctx))
	}
	if v, _, _ := harness.Int64Metric(reader, "bridge.fetch.errors", "partition", "1"); v != 0 {
		t.Errorf("bridge_fetch_errors_total = %d, want 0", v)
	}
	for _, msg := range []string{"the kafka reader is reading passed the last offset for partition %d of %s at offset %d",
		"the kafka reader is reading before the first offset for partition %d of %s, skipping from offset %d to %d (%d messages)"} {
		if !outOfRangeLog(msg) {
			t.Errorf("%q not taken for a position out of range", msg)
		}
	}
	if outOfRangeLog("failed to read from current broker for partition %d of %s at offset %d: %v") {
		t.Error("a leader change taken for a position out of range")
	}
}

// TestUnfetchableIsTheReadinessRule: BridgePartitionUnfetchable fired on any failed fetch in each of 10 minutes, so a
// sporadic failure every few minutes (a leader moved, a broker's restart) paged. bridge_partition_unfetchable is 1
// only while the partition fails readiness: failures spanning two session timeouts without a quiet fetchQuiet between.
func TestUnfetchableIsTheReadinessRule(t *testing.T) {
	m, reader := harness.Metrics(t)
	log := slog.New(slog.DiscardHandler)
	l := New(Options{Metrics: m, Logger: log, Group: "g", SessionTimeout: 10 * time.Second})
	p := &partition{leg: l, route: mapping.Route{Topic: "shanhai.orders"}, id: 2, fetch: newFetchLog(log, "shanhai.orders", 2)}
	parts := []*partition{p}
	gauge := func(at string) int64 {
		t.Helper()
		v, ok, err := harness.Int64Metric(reader, "bridge.partition.unfetchable", "partition", "2")
		if err != nil || !ok {
			t.Fatalf("%s: bridge_partition_unfetchable{partition=2} not exported (%v)", at, err)
		}
		return v
	}
	gone := errors.New("[6] Not Leader For Partition")

	start := time.Now()
	for i := range 5 { // one failure every 3 minutes
		at := start.Add(time.Duration(i) * 3 * time.Minute)
		p.fetch.FailAt(at, gone)
		for s := time.Duration(0); s < 3*time.Minute; s += time.Second {
			l.refreshFetch(parts, at.Add(s))
			if v := gauge("sporadic"); v != 0 {
				t.Fatalf("one failure every 3 minutes: bridge_partition_unfetchable = %d %v after failure %d, want 0", v, s, i+1)
			}
		}
	}

	start = start.Add(time.Hour)
	for s := time.Duration(0); s <= 25*time.Second; s += time.Second { // a failure each second
		p.fetch.FailAt(start.Add(s), gone)
		l.refreshFetch(parts, start.Add(s))
		want := int64(0)
		if s >= 20*time.Second { // two session timeouts
			want = 1
		}
		if v := gauge("continuous"); v != want {
			t.Fatalf("failing each second for %v: bridge_partition_unfetchable = %d, want %d", s, v, want)
		}
	}
	l.refreshFetch(parts, start.Add(25*time.Second+fetchQuiet))
	if v := gauge("settled"); v != 0 {
		t.Errorf("%v after the last failure: bridge_partition_unfetchable = %d, want 0", fetchQuiet, v)
	}
	l.o.Metrics.Forget("shanhai.orders", 2)
	if _, ok, _ := harness.Int64Metric(reader, "bridge.partition.unfetchable", "partition", "2"); ok {
		t.Error("bridge_partition_unfetchable of a partition no longer owned is still exported")
	}
}
