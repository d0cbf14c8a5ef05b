package svctest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// KafkaTail reads one topic from the offsets it had when the tail was made, so a test sees only what was written
// after it started even though the topics are shared.
type KafkaTail struct {
	brokers    []string
	topic      string
	partitions []int
	start      map[int]int64
}

// TailKafka records the end offset of every partition of topic on the Kafka test server.
func TailKafka(t testing.TB, topic string) *KafkaTail {
	t.Helper()
	brokers := testenv.Kafka(t)
	conn, err := kafka.Dial("tcp", brokers[0])
	if err != nil {
		t.Fatalf("svctest: dial Kafka: %v", err)
	}
	defer conn.Close()
	parts, err := conn.ReadPartitions(topic)
	if err != nil || len(parts) == 0 {
		t.Fatalf("svctest: partitions of %s: %v (%d)", topic, err, len(parts))
	}
	k := &KafkaTail{brokers: brokers, topic: topic, start: map[int]int64{}}
	for _, p := range parts {
		lc, err := kafka.DialLeader(context.Background(), "tcp", brokers[0], topic, p.ID)
		if err != nil {
			t.Fatalf("svctest: leader of %s[%d]: %v", topic, p.ID, err)
		}
		last, err := lc.ReadLastOffset()
		_ = lc.Close()
		if err != nil {
			t.Fatalf("svctest: end offset of %s[%d]: %v", topic, p.ID, err)
		}
		k.partitions = append(k.partitions, p.ID)
		k.start[p.ID] = last
	}
	// The writer balances over the sorted partition list; so must Find.
	slices.Sort(k.partitions)
	return k
}

// Find returns the first message with key written since the tail started. The outbox relay partitions by murmur2 of
// the key, so only that partition is read.
func (k *KafkaTail) Find(t testing.TB, key string, within time.Duration) kafka.Message {
	t.Helper()
	p := (&kafka.Murmur2Balancer{}).Balance(kafka.Message{Key: []byte(key)}, k.partitions...)
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: k.brokers, Topic: k.topic, Partition: p, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	if err := r.SetOffset(k.start[p]); err != nil {
		t.Fatalf("svctest: seek %s[%d]: %v", k.topic, p, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("no message with key %s on %s[%d] within %v: %v", key, k.topic, p, within, err)
		}
		if string(m.Key) == key {
			return m
		}
	}
}

// HeaderMap returns a Kafka message's headers by key (the last value wins).
func HeaderMap(hs []kafka.Header) map[string]string {
	m := map[string]string{}
	for _, h := range hs {
		m[h.Key] = string(h.Value)
	}
	return m
}
