// Package kafkasize tells a Kafka refusal for a message's size from other write failures. Retrying such a message
// cannot succeed, so a writer that sees one must set the message aside (the outbox relay) or send less (the bridge's
// dead letters) instead of retrying it forever and holding back everything behind it.
package kafkasize

import (
	"errors"
	"slices"

	"github.com/segmentio/kafka-go"
)

// TooLarge reports whether err, or one of the per-message errors of a kafka.WriteErrors in it, is Kafka's "message
// too large": the broker's max.message.bytes (or message.max.bytes), or kafka-go's own check against the writer's
// BatchBytes before sending (kafka.MessageTooLargeError unwraps to the same kafka.MessageSizeTooLarge).
func TooLarge(err error) bool {
	var werrs kafka.WriteErrors
	if errors.As(err, &werrs) {
		return slices.ContainsFunc(werrs, TooLarge)
	}
	return errors.Is(err, kafka.MessageSizeTooLarge)
}
