package pulsarleg_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/shanhai-dev/shanhai/bridge/internal/dlq"
	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
	"github.com/shanhai-dev/shanhai/bridge/internal/metrics"
	"github.com/shanhai-dev/shanhai/bridge/internal/pulsarleg"
)

// TestLegBShowsAPartitionHeldByTheDLQ: a dead letter of leg B the DLQ does not take (nothing listens at its broker)
// holds the partition at it: the message before it is archived, the one after it is not, and bridge_dlq_waiting
// counts the partition (leg="nats-pulsar") until the leg stops.
func TestLegBShowsAPartitionHeldByTheDLQ(t *testing.T) {
	t.Parallel()
	e := setup(t)
	m, reader := harness.Metrics(t)
	holdAtALetter(t, e, m, nil)
	stop := e.run(1)
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, _, err := harness.Int64Metric(reader, "bridge.dlq.waiting", "leg", metrics.LegB)
		if err != nil {
			t.Fatal(err)
		}
		if v == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bridge_dlq_waiting{leg=%q} = %d 30 s after leg B met a letter the DLQ refuses, want 1", metrics.LegB, v)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if recs := e.read(t, 2, 5*time.Second); len(recs) != 1 || recs[0].Seq != 0 {
		t.Errorf("archived %d records while held at the letter, want only the one before it", len(recs))
	}
	stop()
	if v, _, err := harness.Int64Metric(reader, "bridge.dlq.waiting", "leg", metrics.LegB); err != nil || v != 0 {
		t.Errorf("bridge_dlq_waiting{leg=%q} = %d (%v) after the leg stopped, want 0", metrics.LegB, v, err)
	}
}

// holdAtALetter makes e's leg (its options changed by with, if given) meter into m and write dead letters to a DLQ
// nothing listens at, and publishes to partition 0 offset 0, a message without an offset (a dead letter the DLQ
// refuses) and offset 2: e.run holds the partition at the letter.
func holdAtALetter(t *testing.T, e *env, m *metrics.Bridge, with func(*pulsarleg.Options)) {
	t.Helper()
	down := dlq.NewKafka([]string{"127.0.0.1:1"}, e.dlqTopic, time.Second, slog.Default())
	down.Waiting = m.DLQWaiting
	o := e.opts
	o.DLQ, o.Metrics = down, m
	if with != nil {
		with(&o)
	}
	e.leg = pulsarleg.New(o)
	e.publish(t, 0, 0, 0, kafkaleg.MsgID(e.route.Topic, 0, 0))
	e.publishOn(t, e.route.PartitionSubject(0), 100, 0, 1, "no-offset", func(h nats.Header) { delete(h, kafkaleg.HeaderOffset) })
	e.publish(t, 2, 0, 2, kafkaleg.MsgID(e.route.Topic, 0, 2))
}
