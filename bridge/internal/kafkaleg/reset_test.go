package kafkaleg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/segmentio/kafka-go"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/shanhai-dev/shanhai/pkg/testenv"

	"github.com/shanhai-dev/shanhai/bridge/internal/commit"
	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
	"github.com/shanhai-dev/shanhai/bridge/internal/mapping"
	"github.com/shanhai-dev/shanhai/bridge/internal/metrics"
)

// TestAResetPositionsLagIsFromThePartitionsEnd: a reset within a generation (the topic recreated while leg A read it)
// left the high watermark the old topic's last record came with, so while the new session waited for a record,
// bridge_consumer_lag was that watermark minus the reset position: 1000 here, for a partition with nothing to carry,
// until a record of the new topic arrived. The check's own answer says where the partition ends.
func TestAResetPositionsLagIsFromThePartitionsEnd(t *testing.T) {
	t.Parallel()
	ctx, brokers, topic := emptyTopic(t)
	m, reader := harness.Metrics(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	l := New(Options{Brokers: brokers, Metrics: m, Logger: log, Group: "g"})
	p := &partition{leg: l, route: mapping.Route{Topic: topic}, id: 0, fetch: newFetchLog(log, topic, 0)}
	p.hwm.Store(1000) // the old topic's last record's

	pos, reset := p.inRange(ctx, 1000)
	if pos != 0 || !reset {
		t.Fatalf("inRange(1000) on an empty partition = %d, %v; want 0, true", pos, reset)
	}
	p.tracker.Store(commit.New(pos))
	p.fetching.Store(true) // the new session waits for a record
	l.refreshLag(ctx, []*partition{p})
	if v, ok, err := harness.Int64Metric(reader, "bridge.consumer.lag", "topic", topic); err != nil || !ok || v != 0 {
		t.Errorf("bridge_consumer_lag after a reset to 0 of an empty partition = %d (set %v, %v), want 0", v, ok, err)
	}
}

// TestOutOfRangeLogsAreKafkaGos: leg A tells a position out of range met mid-read by the text of kafka-go's error log
// lines (outOfRangeLogs); a kafka-go that words them otherwise would leave such a partition retrying for ever, counted
// as failed fetches, with no reset. The texts must be in the reader of the kafka-go this module builds with.
func TestOutOfRangeLogsAreKafkaGos(t *testing.T) {
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/segmentio/kafka-go").Output()
	if err != nil {
		t.Fatalf("locating kafka-go's source: %v", err)
	}
	src, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(dir)), "reader.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, prefix := range outOfRangeLogs {
		if !strings.Contains(string(src), `log.Printf("`+prefix) {
			t.Errorf("kafka-go's reader.go logs no line starting %q: update outOfRangeLogs (reset.go)", prefix)
		}
	}
}

// fetchAfterOutOfRange is a reader that meets a position before the partition's first offset mid-read, as kafka-go
// does: it logs it (which ends the session's reading), moves to the first offset and queues that record, which
// FetchMessage may return although the session's context has ended.
type fetchAfterOutOfRange struct {
	p     *partition
	m     kafka.Message
	calls int
}

func (f *fetchAfterOutOfRange) FetchMessage(ctx context.Context) (kafka.Message, error) {
	if f.calls++; f.calls == 1 {
		f.p.fetchFailed(fmt.Errorf("%w: %w", kafka.OffsetOutOfRange, errors.New("the kafka reader is reading before the first offset for partition 0 of t, skipping from offset 30 to 40 (10 messages)")))
		return f.m, nil
	}
	return kafka.Message{}, ctx.Err()
}

// TestFeedTakesNoRecordAfterItsReadingEnded: a session whose reader met a position before the first offset (retention
// removed records leg A had not carried) ends so that the next session's check resets and counts the position. But
// kafka-go had moved the reader on by itself, and the feed carried the record it returned after the end: the position
// moved past the gap, the next check found it in range, and the records lost to retention were neither logged nor
// counted in bridge_offset_resets_total. A record fetched after the session's reading ended must be left to the next
// session.
// memoryStream connects to the test NATS and creates a stream in memory for a topic of its own
// (bridgetest.<id>.orders), which it returns; the stream goes at the end of the test.
func memoryStream(ctx context.Context, t *testing.T) (*nats.Conn, jetstream.JetStream, string) {
	t.Helper()
	nc, err := nats.Connect(testenv.NATS(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	id := harness.ID()
	topic := "bridgetest." + id + ".orders"
	name := "BRIDGETEST_" + id
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{topic + ".>"}, Storage: jetstream.MemoryStorage, Duplicates: 2 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), name) })
	return nc, js, topic
}

func TestFeedTakesNoRecordAfterItsReadingEnded(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc, js, topic := memoryStream(ctx, t)
	m, err := metrics.New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())).Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	l := New(Options{Metrics: m, Logger: log, Group: "g", NATS: nc, JetStream: js, MaxBytes: 1 << 20})
	route := mapping.Route{Topic: topic, Subject: topic}
	p := &partition{leg: l, route: route, id: 0, subject: route.PartitionSubject(0), fetch: newFetchLog(log, topic, 0)}

	readCtx, end := context.WithCancelCause(ctx)
	defer end(nil)
	s := &session{p: p, tracker: commit.New(30), inflight: make(chan *pending, 8), settled: make(chan struct{}),
		failed: make(chan struct{}), abort: func() { end(nil) }, outOfRange: end}
	p.tracker.Store(s.tracker)
	p.session.Store(s)
	go s.settle(ctx)
	err = s.feed(readCtx, &fetchAfterOutOfRange{p: p, m: kafka.Message{Topic: topic, Offset: 40, HighWaterMark: 50, Value: []byte("{}"), Time: time.Now()}})
	close(s.inflight)
	<-s.settled
	if !errors.Is(err, kafka.OffsetOutOfRange) {
		t.Errorf("the session's reading ended by %v, want the position out of range", err)
	}
	if pos := s.tracker.Position(); pos != 30 {
		t.Errorf("position %d after the session's end, want 30: the next session's check must see it before the first offset", pos)
	}
}

// TestAResetPastTheEndForgetsTheOldRecordsVerdicts: the sink's verdicts on a partition's offsets (dead-lettered,
// refused by JetStream, overtaken) outlived a reset past the end within a generation, though the offsets now name
// another topic's records: the new record at an offset the old topic had dead-lettered (its commit not yet through,
// as while the topic was being deleted) was skipped as lettered, neither carried nor dead-lettered; one at an old
// overtaken offset was dead-lettered as overtaken.
func TestAResetPastTheEndForgetsTheOldRecordsVerdicts(t *testing.T) {
	t.Parallel()
	ctx, brokers, topic := emptyTopic(t)
	m, _ := harness.Metrics(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	l := New(Options{Brokers: brokers, Metrics: m, Logger: log, Group: "g", MaxBytes: 1 << 20, SinkRetries: 2})
	p := &partition{leg: l, route: mapping.Route{Topic: topic}, id: 0, fetch: newFetchLog(log, topic, 0)}
	p.letter(3)
	p.rejects[4] = rejection{n: 1, overtakenBy: 5, refusal: errors.New("stream full")}

	if pos, reset := p.inRange(ctx, 1000); pos != 0 || !reset {
		t.Fatalf("inRange(1000) on an empty partition = %d, %v; want 0, true", pos, reset)
	}
	if p.lettered(3) {
		t.Error("offset 3 of the recreated partition is taken for dead-lettered: its record would be skipped")
	}
	if letter, bad := p.poison(kafka.Message{Topic: topic, Offset: 4, Value: []byte("{}")}); bad {
		t.Errorf("offset 4 of the recreated partition dead-lettered: %s (%s)", letter.Reason, letter.Detail)
	}
}

// TestARecreatedTopicIsReadFromWhereItStartsOnceItsIDIsKnown: a session checks its position (ListOffsets) before it
// reads the topic id, and recreated reset the position to the first offset that check read. A topic deleted and
// created again between the two gave the old incarnation's first offset: the reset went there, or nowhere when that
// was the position, and the new records below it were skipped. The partition's start here moves between the check
// and recreated (records deleted up to offset 5, as sarama can on the shared broker): recreated must read from where
// the partition starts once the new id is known, not from what the check saw.
func TestARecreatedTopicIsReadFromWhereItStartsOnceItsIDIsKnown(t *testing.T) {
	t.Parallel()
	ctx, brokers, topic := emptyTopic(t)
	w := harness.Writer(brokers, topic)
	defer w.Close()
	var msgs []kafka.Message
	for i := range 10 {
		msgs = append(msgs, harness.Event(i, 1, 100))
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	m, reader := harness.Metrics(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	l := New(Options{Brokers: brokers, Metrics: m, Logger: log, Group: "g"})
	p := &partition{leg: l, route: mapping.Route{Topic: topic}, id: 0, fetch: newFetchLog(log, topic, 0), topicID: "old"}
	if pos, reset := p.inRange(ctx, 0); pos != 0 || reset {
		t.Fatalf("inRange(0) on offsets 0..10 = %d, %v; want 0, false", pos, reset)
	}
	deleteRecords(t, brokers, topic, 5)

	pos, err := p.recreated(ctx, 0, "new")
	if err != nil || pos != 5 {
		t.Fatalf("recreated(0) on a partition starting at 5 = %d, %v; want 5", pos, err)
	}
	if v, _, err := harness.Int64Metric(reader, "bridge.offset.resets", "side", metrics.Recreated); err != nil || v != 1 {
		t.Errorf("bridge_offset_resets_total{side=recreated} = %d (%v), want 1", v, err)
	}
}

// deleteRecords deletes partition 0's records of topic below offset before (Kafka's DeleteRecords, which kafka-go
// does not send).
func deleteRecords(t *testing.T, brokers []string, topic string, before int64) {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	admin, err := sarama.NewClusterAdmin(brokers, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.DeleteRecords(topic, map[int32]int64{0: before}); err != nil {
		t.Fatalf("delete records of %s below %d: %v", topic, before, err)
	}
}

// TestAPendingResetCountsOnce: a reset position is committed only once records past it are carried, so each generation
// that follows (a rebalance) finds the old committed offset outside the partition again. It is one event:
// bridge_offset_resets_total and the WARN line counted it at every generation, and the critical BridgeOffsetReset
// fired again for it. Another from-offset is another event.
func TestAPendingResetCountsOnce(t *testing.T) {
	t.Parallel()
	ctx, brokers, topic := emptyTopic(t)
	m, reader := harness.Metrics(t)
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	l := New(Options{Brokers: brokers, Metrics: m, Logger: log, Group: "g"})
	check := func(from int64) {
		t.Helper()
		p := &partition{leg: l, route: mapping.Route{Topic: topic}, id: 0, fetch: newFetchLog(log, topic, 0)} // a generation's
		if pos, reset := p.inRange(ctx, from); pos != 0 || !reset {
			t.Fatalf("inRange(%d) on an empty partition = %d, %v; want 0, true (the rewind holds the commit back)", from, pos, reset)
		}
	}
	resets := func() int64 {
		v, _, err := harness.Int64Metric(reader, "bridge.offset.resets", "side", "past_end")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	check(1000)
	check(1000) // the next generation, the reset still uncommitted
	if v, warns := resets(), strings.Count(logs.String(), "level=WARN"); v != 1 || warns != 1 {
		t.Errorf("one pending reset seen by two generations: bridge_offset_resets_total = %d, %d WARN lines; want 1, 1\n%s", v, warns, logs.String())
	}
	check(2000)
	if v := resets(); v != 2 {
		t.Errorf("a reset from another offset: bridge_offset_resets_total = %d, want 2", v)
	}
}

// emptyTopic creates a topic of one partition on the shared Kafka, for a test whose context it returns (a minute).
func emptyTopic(t *testing.T) (context.Context, []string, string) {
	t.Helper()
	brokers := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	topic := "bridgetest." + harness.ID() + ".orders"
	if err := harness.CreateTopic(ctx, brokers, topic, 1); err != nil {
		t.Fatal(err)
	}
	return ctx, brokers, topic
}
