package kafkatopic_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/produce"

	"github.com/shanhai-dev/shanhai/pkg/kafkatopic"
)

// Missing is told every shape kafka-go v0.4.51 gives a write to a deleted topic, as a failed Send logged them (the
// broker's code 3 alone or in WriteErrors; the client's "topic not found" from its metadata, wrapped three times), and
// no other refusal. The deleted-topic tests of the outbox relay and the bridge's DLQ meet whichever comes first; this
// one pins each.
func TestMissingKnowsEachShapeOfADeletedTopic(t *testing.T) {
	noTopic := fmt.Errorf("kafka.(*Client).Produce: %w",
		produce.NewError(protocol.NewErrNoTopic("dlq")))
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"broker's code", kafka.UnknownTopicOrPartition, true},
		{"broker's code in WriteErrors", kafka.WriteErrors{kafka.UnknownTopicOrPartition}, true},
		{"client's metadata", noTopic, true},
		{"client's metadata in WriteErrors", kafka.WriteErrors{noTopic}, true},
		{"one of several in WriteErrors", kafka.WriteErrors{nil, kafka.LeaderNotAvailable, noTopic}, true},
		{"too large", kafka.WriteErrors{kafka.MessageSizeTooLarge}, false},
		{"no partition", fmt.Errorf("kafka.(*Client).Produce: %w", protocol.ErrNoPartition), false},
		{"broker away", errors.New("dial tcp: connection refused"), false},
		{"none", nil, false},
	} {
		if got := kafkatopic.Missing(c.err); got != c.want {
			t.Errorf("%s: Missing(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
