package kafkaleg_test

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
	"github.com/shanhai-dev/shanhai/bridge/internal/mapping"
)

// TestLegAStampsTheKafkaClusterID: each message carries the id of the Kafka cluster it was read from, so that leg B
// names its Pulsar producer by the record's own cluster without asking Kafka (it could not archive while Kafka was
// unreachable, and named an older cluster's records still in the stream by the cluster Kafka reported later), and
// the id of the topic's incarnation (kafkaleg.TopicID), which leg B names it by too.
func TestLegAStampsTheKafkaClusterID(t *testing.T) {
	t.Parallel()
	e := setup(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := kafkaleg.ClusterID(ctx, e.brokers)
	if err != nil || id == "" {
		t.Fatalf("the test Kafka's cluster id: %q, %v", id, err)
	}
	// As producer names carry it: an id may hold what a NATS header value cannot (the test servers' has a line break).
	cluster := mapping.ClusterToken(id)
	topicID, err := kafkaleg.TopicID(ctx, e.brokers, e.topic, 0)
	if err != nil || topicID == "" {
		t.Fatalf("the test topic's id: %q, %v", topicID, err)
	}
	var msgs []kafka.Message
	for i := range 6 {
		msgs = append(msgs, harness.Event(i, 50, 200))
	}
	produce(t, e, msgs)
	stop := start(e.leg(t, "bridgetest-"+harness.ID(), 4096))
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	for _, m := range waitStream(t, e, len(msgs)) {
		if got := m.Headers().Values(kafkaleg.HeaderCluster); len(got) != 1 || got[0] != cluster {
			t.Fatalf("%s = %q on %s offset %s, want [%q]", kafkaleg.HeaderCluster, got, m.Subject(),
				m.Headers().Get(kafkaleg.HeaderOffset), cluster)
		}
		if got := m.Headers().Values(kafkaleg.HeaderTopicID); len(got) != 1 || got[0] != topicID {
			t.Fatalf("%s = %q on %s offset %s, want [%q]", kafkaleg.HeaderTopicID, got, m.Subject(),
				m.Headers().Get(kafkaleg.HeaderOffset), topicID)
		}
	}
}
