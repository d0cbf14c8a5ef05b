package kafkaleg_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shanhai-dev/shanhai/bridge/internal/dlq"
	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
)

// TestLegADeadLettersARecordWithTheBridgesHeaderNames: a record that brings a header of a name the bridge writes itself
// (leg A's kafka_* metadata, leg B's __kafka_* Pulsar properties) goes to the DLQ, which keeps it as produced, and the
// partition goes on. It used to be carried with the producer's value replaced by the bridge's (or, for
// kafka_key_encoding and kafka_cluster_id, removed), so the header was lost without a word.
func TestLegADeadLettersARecordWithTheBridgesHeaderNames(t *testing.T) {
	t.Parallel()
	e := setup(t, 1)
	names := []string{kafkaleg.HeaderOffset, kafkaleg.HeaderKeyEncoding, "__kafka_offset"}
	var msgs []kafka.Message
	for i, name := range names {
		m := harness.Event(-1-i, 1, 100) // offsets 0, 1, 2
		m.Headers = append(m.Headers, kafka.Header{Key: name, Value: []byte("the producer's")})
		msgs = append(msgs, m)
	}
	msgs = append(msgs, harness.Event(0, 1, 100)) // offset 3
	produce(t, e, msgs)
	group := "bridgetest-" + harness.ID()
	stop := start(e.leg(t, group, 1<<20))
	defer stop()
	waitCommittedEnds(t, e, group, 1)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := e.stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range waitStream(t, e, int(info.State.Msgs)) {
		h := m.Headers()
		off, _ := strconv.Atoi(h.Get(kafkaleg.HeaderOffset))
		if off < len(names) {
			t.Errorf("offset %d, produced with %s: %q, reached the stream with %s: %q instead of the DLQ", off, names[off], "the producer's", names[off], h.Values(names[off]))
		}
	}
	if t.Failed() {
		return
	}
	for i, h := range deadLetters(t, e, len(names)) {
		if h[dlq.HeaderOffset] != strconv.Itoa(i) || h[dlq.HeaderReason] != "header" || h[names[i]] != "the producer's" {
			t.Errorf("dead letter %d: %v, want offset %d, reason header, and %s as produced", i, h, i, names[i])
		}
	}
}
