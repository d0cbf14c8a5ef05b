package app_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shanhai-dev/shanhai/pkg/testenv"

	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
)

// TestBridgeShowsAPartitionHeldByTheDLQ: a dead letter the DLQ topic does not take (its max.message.bytes of 64 refuses
// even the letter without the record's key, value and headers, while the broker answers everything else; Kafka caps
// min.insync.replicas at the replication factor, so a one-broker Kafka cannot refuse it for replicas) holds its
// partition at the poison: nothing after it is carried or committed. The bridge shows it on /metrics
// (bridge_dlq_waiting{leg="kafka-nats"}) besides its warnings; once the topic takes writes again the letter is written,
// the gauge returns to 0 and the partition goes on.
func TestBridgeShowsAPartitionHeldByTheDLQ(t *testing.T) {
	t.Parallel()
	harness.LockPulsar(t, false) // before its time limits: under CI it waits for the fault tests
	brokers := testenv.Kafka(t)
	dead := "bridgeout." + harness.ID() + ".dlqdown"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := harness.CreateTopic(ctx, brokers, dead, 1, kafka.ConfigEntry{ConfigName: "max.message.bytes", ConfigValue: "64"}); err != nil {
		t.Fatal(err)
	}
	b := startBridge(t, map[string]string{"BRIDGE_DLQ_TOPIC": dead})
	// One partition's worth is enough: the poison, then a record behind it.
	w := harness.Writer(b.brokers, b.topic)
	defer w.Close()
	if err := w.WriteMessages(ctx, kafka.Message{Key: []byte("k0"), Value: []byte(`{"seq":-1}`)}, harness.Event(0, 1, 200)); err != nil {
		t.Fatal(err)
	}
	const waiting = `bridge_dlq_waiting{`
	deadline := time.Now().Add(time.Minute)
	for b.metric(t, waiting) < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v a minute after a dead letter the DLQ topic refuses, want the partition held by it; log: %s",
				waiting, b.metric(t, waiting), b.log.String())
		}
		time.Sleep(250 * time.Millisecond)
	}
	if !strings.Contains(b.log.String(), "dead letter not written; retrying") {
		t.Errorf("no warning for the dead letter the DLQ topic refuses: %s", b.log.String())
	}
	if v := b.metric(t, "bridge_messages_total{"); v != 0 {
		t.Errorf("bridge_messages_total = %v while the partition is held at the poison, want nothing carried past it", v)
	}

	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	res, err := client.IncrementalAlterConfigs(ctx, &kafka.IncrementalAlterConfigsRequest{Resources: []kafka.IncrementalAlterConfigsRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: dead,
		Configs: []kafka.IncrementalAlterConfigsRequestConfig{{Name: "max.message.bytes", Value: "1048588", ConfigOperation: kafka.ConfigOperationSet}},
	}}})
	if err == nil && len(res.Resources) == 1 {
		err = res.Resources[0].Error
	}
	if err != nil {
		t.Fatalf("set max.message.bytes on %s: %v", dead, err)
	}
	b.waitCarried(t, 1)
	if v := b.metric(t, `bridge_dlq_total{`); v != 1 {
		t.Errorf("bridge_dlq_total = %v once the DLQ took the letter, want 1", v)
	}
	if v := b.metric(t, waiting); v != 0 {
		t.Errorf("%s = %v once the DLQ took the letter, want 0", waiting, v)
	}
}
