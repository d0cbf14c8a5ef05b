package app_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/segmentio/kafka-go"

	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
)

// TestBridgeArchivesARecreatedTopicsRecords: a Kafka topic deleted and created again counts its offsets from 0, and
// both sinks' dedup was keyed by offsets alone: JetStream dropped the new records as replays of the old ones published
// within its duplicate window (Nats-Msg-Id topic/partition/offset), and Pulsar's dedup every new record up to the
// highest offset archived under the partition's producer name. The test archives 30 records, deletes the topic and
// creates it again, and produces 15 (fewer, so every new offset was used by the old topic): all 15 reach JetStream and
// the archive once, in order, under producers named by the new topic's id, and leg A logs the new id. Before the topic id went into the
// Nats-Msg-Id and the producer name, none of the 15 reached JetStream.
func TestBridgeArchivesARecreatedTopicsRecords(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b, oldID := archiveOld(ctx, t)

	newID := b.refill(ctx, t, oldID, 15)
	// What tells an operator that a reset past the end (BridgeOffsetReset) was a topic created again.
	if !strings.Contains(b.log.String(), "leg A reads another incarnation of the topic") || !strings.Contains(b.log.String(), newID) {
		t.Errorf("no log line naming the new topic id %s: %s", newID, b.log.String())
	}
	if n := streamMsgs(ctx, t, b.nats, b.stream); n != 45 {
		t.Errorf("the stream holds %d messages, want 45: each of the old topic's 30 and the new one's 15 once", n)
	}
	t.Logf("duplicates dropped: leg A %v, leg B %v",
		b.metric(t, "bridge_messages_total{", `leg="kafka-nats"`, `result="duplicate"`),
		b.metric(t, "bridge_messages_total{", `leg="nats-pulsar"`, `result="duplicate"`))
}

// archiveOld starts a bridge, archives 30 records of its topic under producers named by the topic's id, and returns
// the bridge and that id.
func archiveOld(ctx context.Context, t *testing.T) (*bridge, string) {
	t.Helper()
	b := startBridge(t, nil)
	oldID, err := kafkaleg.TopicID(ctx, b.brokers, b.topic, 0)
	if err != nil || oldID == "" {
		t.Fatalf("topic id %q: %v", oldID, err)
	}
	b.produce(t, 0, 30)
	b.archived(t, 30, 60*time.Second)
	b.namedBy(t, oldID)
	return b, oldID
}

// refill creates the bridge's topic (of id oldID) again, produces n records to it and checks that they are archived
// once, in order, under producers named by the new topic's id, which it returns. The same event numbers again: the
// verdict is the new topic's alone (its offsets start at 0 again, which it would count as out of order after the old
// records), and an old record archived again counts as a duplicate.
func (b *bridge) refill(ctx context.Context, t *testing.T, oldID string, n int) string {
	t.Helper()
	newID := recreateTopic(ctx, t, b.brokers, b.topic, oldID, 3)
	b.produceAgain(t, n)
	b.recs = nil
	b.archived(t, n, 60*time.Second)
	b.namedBy(t, newID)
	return newID
}

// produceAgain writes n events, numbered from 0, to the bridge's topic created again, through a transport of its own:
// the process's default one (shared with the bridges the tests run) may still hold the deleted topic's metadata for a
// while and refuse writes with "topic not found" (31 of 45 once, under go test -race).
func (b *bridge) produceAgain(t *testing.T, n int) {
	t.Helper()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := harness.Writer(b.brokers, b.topic)
	w.Transport = tr
	b.write(t, w, 0, n)
}

// namedBy checks that the records archived has read were archived by producers named by the topic id id.
func (b *bridge) namedBy(t *testing.T, id string) {
	t.Helper()
	for _, r := range b.recs {
		if !strings.HasSuffix(r.Producer, "."+id) {
			t.Errorf("record %d archived by producer %s, want one named by the topic id %s", r.Seq, r.Producer, id)
			return
		}
	}
}

// recreateTopic deletes topic and creates it again with partitions, and returns its new id. A broker that creates
// topics on demand may have created it again first, for a metadata request of the running bridge's (kafka-go asks
// with Metadata v1, which creates a missing topic there): that is the new topic then, with the broker's default
// partitions.
func recreateTopic(ctx context.Context, t *testing.T, brokers []string, topic, oldID string, partitions int) string {
	t.Helper()
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	res, err := c.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	if err == nil {
		err = res.Errors[topic]
	}
	if err != nil {
		t.Fatalf("delete topic %s: %v", topic, err)
	}
	for {
		id, err := kafkaleg.TopicID(ctx, brokers, topic, 0)
		switch {
		case err == nil && id != oldID:
			return id
		case errors.Is(err, sarama.ErrUnknownTopicOrPartition):
			if err := harness.CreateTopic(ctx, brokers, topic, partitions); err != nil {
				t.Fatal(err)
			}
			continue
		}
		select {
		case <-ctx.Done():
			t.Fatalf("topic %s not created again: %v", topic, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// streamMsgs is how many messages stream holds.
func streamMsgs(ctx context.Context, t *testing.T, url, stream string) uint64 {
	t.Helper()
	js, nc, err := connectJetStream(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.Msgs
}

// TestBridgeArchivesATopicRefilledWhileStopped: the topic deleted, created again and refilled past the group's
// committed offset while no bridge runs. The position must not survive the incarnation: read from the old committed
// offset (30), the new topic's records 0..29 would be skipped, in range as they are. Kafka removes a deleted topic's
// committed offsets from every group (checked on the shared Kafka 3.9: OffsetFetch answers -1 after the delete), so the
// restarted bridge starts the new incarnation from BRIDGE_START_OFFSET, first: all 45 reach the stream and the archive
// once, in order, under producers named by the new id.
func TestBridgeArchivesATopicRefilledWhileStopped(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b, oldID := archiveOld(ctx, t)
	if _, err := b.stop(); err != nil { // a graceful stop commits every offset JetStream confirmed
		t.Fatal(err)
	}

	newID := recreateTopic(ctx, t, b.brokers, b.topic, oldID, 3)
	b.produceAgain(t, 45) // past each partition's old committed offset (30 over 3 partitions)
	again := startBridge(t, map[string]string{
		"BRIDGE_TOPICS": b.topic, "BRIDGE_STREAM": b.stream, "BRIDGE_STREAM_SUBJECTS": b.topic + ".>",
		"BRIDGE_GROUP": "bridgeout-" + strings.Split(b.topic, ".")[1], "BRIDGE_DLQ_TOPIC": strings.TrimSuffix(b.topic, ".orders") + ".dlq",
	})
	again.topic = b.topic // its own topic is left unused
	again.archived(t, 45, 60*time.Second)
	again.namedBy(t, newID)
	if n := streamMsgs(ctx, t, again.nats, again.stream); n != 75 {
		t.Errorf("the stream holds %d messages, want 75: each of the old topic's 30 and the new one's 45 once", n)
	}
}

// TestBridgeArchivesATopicRefilledWhileItRuns: the topic deleted, created again and refilled past leg A's position (10
// on each partition) while the bridge runs. kafka-go's reader met the deleted topic, retried, and read on from its
// old position in the new topic: records 0..9 of each partition were skipped (30 of the 45 lost), found in range by
// no check since no session began. The reader's UNKNOWN_TOPIC_OR_PARTITION now ends the session, and the next one,
// reading another topic id, reads the new incarnation from its start: all 45 reach the archive once, in order.
func TestBridgeArchivesATopicRefilledWhileItRuns(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b, oldID := archiveOld(ctx, t)
	gens := generations(b)

	b.refill(ctx, t, oldID, 45)
	if n := streamMsgs(ctx, t, b.nats, b.stream); n != 75 {
		t.Errorf("the stream holds %d messages, want 75: each of the old topic's 30 and the new one's 45 once", n)
	}
	// Each partition's position is reset once: side recreated when the new topic held records past it at the check,
	// past_end when the check came before the refill. Unless the group began a new generation meanwhile (its
	// partition watcher saw the topic gone: under load, the delete and create took over its 5 s interval): Kafka
	// dropped the group's committed offsets with the topic, so the new generation reads each partition it had not
	// reset yet from the first offset, with nothing to reset (0 of 3 once, under -race at load 23).
	v := b.metric(t, "bridge_offset_resets_total{")
	rejoined := generations(b) > gens
	if v > 3 || v < 3 && !rejoined {
		t.Errorf("bridge_offset_resets_total = %v (a new group generation since the delete: %v), want 3, or at most 3 after a new generation: each partition's position read in the old topic once", v, rejoined)
	}
	t.Logf("resets: %v of 3, with side recreated %v; a new group generation since the delete: %v", v, b.metric(t, "bridge_offset_resets_total{", `side="recreated"`), rejoined)
}

// generations is how many Kafka group generations the bridge has logged.
func generations(b *bridge) int {
	return strings.Count(b.log.String(), `"msg":"kafka group generation"`)
}
