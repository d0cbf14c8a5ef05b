package kafkatopic

import (
	"errors"
	"slices"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
)

// Missing reports whether a write failed because Kafka has no such topic (deleted since it was created or found), so
// that its caller Forgets it. kafka-go (v0.4.51) says so in two ways, alone or as an entry of a kafka.WriteErrors
// (which errors.Is does not look inside): the broker's UNKNOWN_TOPIC_OR_PARTITION, and protocol.ErrNoTopic ("topic
// not found"), wrapped in a produce error, when the writer's transport no longer lists the topic in its metadata
// before it sends anything. Which comes first depends on when that metadata was last refreshed: a check of one shape
// only forgot the topic a failed write late, or never where the other shape was the only one seen.
func Missing(err error) bool {
	var werrs kafka.WriteErrors
	if errors.As(err, &werrs) {
		return slices.ContainsFunc(werrs, Missing)
	}
	return errors.Is(err, kafka.UnknownTopicOrPartition) || errors.Is(err, protocol.ErrNoTopic)
}
