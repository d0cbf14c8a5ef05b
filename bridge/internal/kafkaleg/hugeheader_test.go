package kafkaleg_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/segmentio/kafka-go"

	"github.com/shanhai-dev/shanhai/bridge/internal/dlq"
	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
)

// TestLegADeadLettersAHeaderSectionJetStreamRefuses: JetStream refuses a message whose header section is over 64 KiB
// (error 10097), however far under max_payload and BRIDGE_MAX_MESSAGE_BYTES the whole message is. Leg A published
// such a record, failed the session at the refusal and restarted the partition, republishing everything after it,
// until the record had been refused BRIDGE_SINK_RETRIES times or the records behind it had overtaken it; it then went
// to the DLQ as "rejected" or "overtaken". JetStream's answer is known before the publish: the record goes to the DLQ
// at once as too_large, and the partition carries on without a restart. The records around it are carried in order;
// one whose header section is just under the limit is carried.
func TestLegADeadLettersAHeaderSectionJetStreamRefuses(t *testing.T) {
	t.Parallel()
	e := setup(t, 1)
	r := sdkmetric.NewManualReader()
	e.reader = r
	withHeader := func(seq, n int) kafka.Message {
		m := harness.Event(seq, 1, 100)
		m.Headers = append(m.Headers, kafka.Header{Key: "x-big", Value: []byte(strings.Repeat("b", n))})
		return m
	}
	// Offsets 0 and 1 are carried (a session sends one message at a time until its first confirmation: 1 goes out
	// with others in flight behind it), 2 is over the limit, 3 to 9 follow it, 10 is just under the limit.
	msgs := []kafka.Message{harness.Event(0, 1, 100), harness.Event(1, 1, 100), withHeader(2, 70_000)}
	for i := 3; i < 10; i++ {
		msgs = append(msgs, harness.Event(i, 1, 100))
	}
	msgs = append(msgs, withHeader(10, 64_000))
	produce(t, e, msgs)
	group := "bridgetest-" + harness.ID()
	stop := start(e.leg(t, group, 1<<20))
	defer stop()
	waitCommittedEnds(t, e, group, 1)

	got := waitStream(t, e, len(msgs)-1)
	for i, m := range got {
		want := i
		if i >= 2 {
			want = i + 1
		}
		if off := m.Headers().Get(kafkaleg.HeaderOffset); off != strconv.Itoa(want) {
			t.Errorf("stream message %d is offset %s, want %d", i, off, want)
		}
	}
	letters := deadLetters(t, e, 1)
	if h := letters[0]; h[dlq.HeaderOffset] != "2" || h[dlq.HeaderReason] != "too_large" {
		t.Errorf("dead letter of offset %s with reason %s (%s), want offset 2 with reason too_large", h[dlq.HeaderOffset], h[dlq.HeaderReason], h[dlq.HeaderDetail])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if info, err := e.stream.Info(ctx); err != nil || info.State.Msgs != uint64(len(msgs)-1) {
		t.Errorf("stream info %v (%v), want %d messages", info, err, len(msgs)-1)
	}
	if n, _, err := harness.Int64Metric(r, "bridge.messages", "result", "retry"); err != nil || n != 0 {
		t.Errorf("leg A restarted the partition %d times (%v), want none: the refusal was known before the publish", n, err)
	}
}
