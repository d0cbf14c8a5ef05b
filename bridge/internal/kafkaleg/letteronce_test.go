package kafkaleg_test

import (
	"context"
	"sync"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/shanhai-dev/shanhai/bridge/internal/dlq"
	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
)

// letters is a DLQ that keeps what it is sent, in order.
type letters struct {
	mu   sync.Mutex
	sent []dlq.Letter
}

func (l *letters) Send(_ context.Context, letter dlq.Letter) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent = append(l.sent, letter)
	return nil
}

func (l *letters) byOffset() map[int64][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[int64][]string{}
	for _, s := range l.sent {
		out[s.Offset] = append(out[s.Offset], s.Reason)
	}
	return out
}

// TestLegADeadLettersARecordOnce: a poison record is dead-lettered as soon as it is fetched, while earlier offsets may
// still wait for JetStream. When one of those fails, the partition restarts from it and met the poison record again:
// it was written to the DLQ a second time (and counted twice in bridge_dlq_total), once for every session that failed
// behind it. Here offset 1 is over the stream's max message size (JetStream rejects it, 400) and offset 2 has no
// CloudEvents headers: offset 1 fails three sessions before it goes to the DLQ itself, and offset 2 must be one
// letter.
func TestLegADeadLettersARecordOnce(t *testing.T) {
	t.Parallel()
	e := setup(t, 1)
	ctx := context.Background()
	cfg := e.streamCf
	cfg.MaxMsgSize = 2048
	if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	produce(t, e, []kafka.Message{
		harness.Event(0, 1, 200),                       // carried: the session leaves one-at-a-time mode
		harness.Event(1, 1, 4000),                      // under the leg's limit, over the stream's: rejected by JetStream
		{Key: []byte("k"), Value: []byte(`{"seq":2}`)}, // no envelope: dead-lettered at once, behind offset 1
		harness.Event(3, 1, 200),
	})
	dead := &letters{}
	group := "bridgetest-" + harness.ID()
	stop := start(e.legWith(t, group, 1<<20, dead))
	waitCommittedEnds(t, e, group, 1)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := dead.byOffset()
	if len(got[1]) != 1 || got[1][0] != "rejected" {
		t.Errorf("letters for offset 1: %v, want one, rejected", got[1])
	}
	if len(got[2]) != 1 || got[2][0] != "envelope" {
		t.Errorf("letters for offset 2: %v, want one, envelope", got[2])
	}
	if info, err := e.stream.Info(ctx); err != nil || info.State.Msgs != 2 {
		t.Errorf("stream info %v (%v), want offsets 0 and 3", info, err)
	}
}
