package dlq_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/testenv"

	"github.com/shanhai-dev/shanhai/bridge/internal/dlq"
	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
)

// TestFirstLetterToATopicNotYetCreated: scripts/deps.sh, compose and kind create no DLQ topic, so the bridge's first
// dead letter finds none. It must be written on the first try: the letter's partition is held while Send retries, and
// a warning per retry (with bridge_dlq_waiting) is what an operator is told to act on. Before, the writer's
// auto-creating Metadata request was answered UNKNOWN_TOPIC_OR_PARTITION and the first write failed with it.
func TestFirstLetterToATopicNotYetCreated(t *testing.T) {
	t.Parallel() // a topic of its own; it waits on Kafka
	brokers := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dead := "bridgetest." + harness.ID() + ".dlq" // never created: the first letter is the topic's first write
	var logs testenv.LogBuffer
	var waited int64
	var mu sync.Mutex
	sink := dlq.NewKafka(brokers, dead, time.Second, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
	sink.Waiting = func(_ string, d int64) {
		mu.Lock()
		defer mu.Unlock()
		if d > 0 {
			waited += d
		}
	}
	defer sink.Close()
	if err := sink.Send(ctx, dlq.Letter{Leg: "kafka-nats", Reason: "envelope", Topic: "src", Offset: 7, Key: []byte("k1"), Value: []byte("v1")}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	w := waited
	mu.Unlock()
	if s := logs.String(); s != "" || w != 0 {
		t.Errorf("the first letter to a topic not yet created was retried (%d waits): %s", w, s)
	}
	got, err := harness.ReadDeadLetters(ctx, brokers, dead, 1)
	if err != nil {
		t.Fatal(err)
	}
	if h := harness.Headers(got[0]); string(got[0].Value) != "v1" || h[dlq.HeaderOffset] != "7" {
		t.Fatalf("letter %q headers %v", got[0].Value, h)
	}
}
