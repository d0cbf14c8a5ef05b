package kafkaleg_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shanhai-dev/shanhai/bridge/internal/dlq"
	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
)

// TestLegALetterKeepsTheRecordsTimestamp: a leg A dead letter is written at the time it is dead-lettered, and it
// carried the record's key, value, headers and coordinates but not its timestamp, which JetStream and Pulsar get
// (kafka_timestamp_ms, the Pulsar event time) and a leg B letter keeps (dlq_bridge_kafka_timestamp_ms): once the source
// topic's retention took the record, a replay could not give it its time back. It is kept as leg B's letters keep it,
// with the Kafka cluster the record came from.
func TestLegALetterKeepsTheRecordsTimestamp(t *testing.T) {
	t.Parallel()
	e := setup(t, 1)
	at := time.UnixMilli(time.Now().Add(-time.Hour).UnixMilli())                             // not the time it is dead-lettered
	produce(t, e, []kafka.Message{{Key: []byte("k"), Value: []byte(`{"seq":0}`), Time: at}}) // no envelope
	group := "bridgetest-" + harness.ID()
	stop := start(e.leg(t, group, 4096))
	h := deadLetters(t, e, 1)[0]
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got, want := h[dlq.HeaderBridgePrefix+kafkaleg.HeaderTimestamp], strconv.FormatInt(at.UnixMilli(), 10); got != want {
		t.Errorf("letter's %s%s = %q, want the record's %q (letter headers %v)", dlq.HeaderBridgePrefix, kafkaleg.HeaderTimestamp, got, want, h)
	}
	if h[dlq.HeaderBridgePrefix+kafkaleg.HeaderCluster] == "" {
		t.Errorf("letter without %s%s: %v", dlq.HeaderBridgePrefix, kafkaleg.HeaderCluster, h)
	}
}
