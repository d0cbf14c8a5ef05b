package kafkasize_test

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/shanhai-dev/shanhai/pkg/outbox/kafkasize"
)

func TestTooLarge(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"broker refusal", kafka.MessageSizeTooLarge, true},
		{"wrapped broker refusal", fmt.Errorf("write: %w", kafka.MessageSizeTooLarge), true},
		{"writer's own size check", kafka.MessageTooLargeError{}, true},
		{"one message of a batch", kafka.WriteErrors{nil, kafka.MessageSizeTooLarge, nil}, true},
		{"wrapped batch", fmt.Errorf("publish: %w", kafka.WriteErrors{io.EOF, kafka.MessageTooLargeError{}}), true},
		{"batch of other failures", kafka.WriteErrors{nil, io.EOF, kafka.LeaderNotAvailable}, false},
		{"other broker error", kafka.NotEnoughReplicas, false},
		{"plain error", errors.New("message too large"), false},
	}
	for _, c := range cases {
		if got := kafkasize.TooLarge(c.err); got != c.want {
			t.Errorf("%s: TooLarge(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
