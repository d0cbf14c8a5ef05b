package kafkaleg_test

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/shanhai-dev/shanhai/pkg/testenv"

	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
)

// TestLegAResumesAPositionPastThePartitionsEndFromItsStart: a group's committed offset past its partition's end (the
// topic deleted and created again, or truncated) made kafka-go's reader retry for ever, and once the new records
// reached that offset leg A carried from there: the records below it were skipped without a word. Leg A must carry
// every record the partition has from its earliest offset, log the reset once with both offsets, count it in
// bridge_offset_resets_total{side="past_end"} (not as failed fetches), and commit the new position only once records
// past it are carried.
func TestLegAResumesAPositionPastThePartitionsEndFromItsStart(t *testing.T) {
	t.Parallel()
	e := setup(t, 1)
	e.reader = sdkmetric.NewManualReader()
	logs := &testenv.LogBuffer{}
	e.log = slog.New(slog.NewJSONHandler(logs, nil))
	group := "bridgetest-" + harness.ID()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := &kafka.Client{Addr: kafka.TCP(e.brokers...), Timeout: 10 * time.Second}
	res, err := c.OffsetCommit(ctx, &kafka.OffsetCommitRequest{GroupID: group, GenerationID: -1,
		Topics: map[string][]kafka.OffsetCommit{e.topic: {{Partition: 0, Offset: 1000}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Topics[e.topic] {
		if p.Error != nil {
			t.Fatalf("committing offset 1000 of the empty partition: %v", p.Error)
		}
	}

	running(t, e, group)
	resets := func() int64 {
		v, _, err := harness.Int64Metric(e.reader, "bridge.offset.resets", "side", "past_end")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	waitFor(t, "the reset counted", func() bool { return resets() > 0 })
	// Nothing is carried yet: the reset position must not replace the committed offset. Five commit intervals.
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if got := committed(t, e, group, 1)[0]; got != 1000 {
			t.Fatalf("committed %d before any record past the reset was carried, want 1000 still", got)
		}
	}

	const n = 5
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = harness.Event(i, 3, 100)
	}
	produce(t, e, msgs)
	got := waitStream(t, e, n)
	for i, m := range got {
		if off := m.Headers().Get(kafkaleg.HeaderOffset); off != strconv.Itoa(i) {
			t.Errorf("stream message %d carries offset %s, want %d", i, off, i)
		}
	}
	waitCommittedEnds(t, e, group, 1)
	if v := resets(); v != 1 {
		t.Errorf("bridge_offset_resets_total{side=past_end} = %d, want 1", v)
	}
	if v, _, err := harness.Int64Metric(e.reader, "bridge.fetch.errors", "topic", e.topic); err != nil || v != 0 {
		t.Errorf("bridge_fetch_errors_total = %d (%v), want 0: a position out of range is reset, not a failing partition", v, err)
	}
	if n := strings.Count(logs.String(), "position outside the partition"); n != 1 || !strings.Contains(logs.String(), `"from":1000,"to":0`) {
		t.Errorf("the reset logged %d times, want once with from 1000 and to 0: %s", n, logs.String())
	}
}
