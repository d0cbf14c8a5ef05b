package kafkatopic_test

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol/createtopics"

	"github.com/shanhai-dev/shanhai/pkg/kafkatopic"
)

// answering is a transport that answers every CreateTopics with code for each topic asked, and counts the topics asked.
type answering struct {
	mu    sync.Mutex
	code  kafka.Error
	asked map[string]int
}

func (a *answering) RoundTrip(_ context.Context, _ net.Addr, req kafka.Request) (kafka.Response, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	res := &createtopics.Response{}
	for _, t := range req.(*createtopics.Request).Topics {
		a.asked[t.Name]++
		res.Topics = append(res.Topics, createtopics.ResponseTopic{Name: t.Name, ErrorCode: int16(a.code)})
	}
	return res, nil
}

// TestEnsureAsksAgainAfterATemporaryRefusal: Kafka answers a CreateTopics it could not finish in time, or sent to a
// broker that lost the controller, with a per-topic error it means as "try again" (REQUEST_TIMED_OUT, NOT_CONTROLLER).
// Taken as a final refusal, the topic was never asked about again, and every write to it failed for the life of the
// process, the outbox relay's rows for it round after round. A refusal that is final is not asked again.
func TestEnsureAsksAgainAfterATemporaryRefusal(t *testing.T) {
	for _, tc := range []struct {
		code kafka.Error
		want int // asks after two Ensure calls
	}{
		{kafka.RequestTimedOut, 2},
		{kafka.NotController, 2},
		{kafka.InvalidTopic, 1},
		{kafka.TopicAuthorizationFailed, 1},
	} {
		tr := &answering{code: tc.code, asked: map[string]int{}}
		c := kafkatopic.New(&kafka.Writer{Addr: kafka.TCP("127.0.0.1:1"), Transport: tr}, slog.New(slog.DiscardHandler))
		c.Ensure(t.Context(), "t")
		c.Ensure(t.Context(), "t")
		if got := tr.asked["t"]; got != tc.want {
			t.Errorf("answered %v: asked %d times in two Ensure calls, want %d", tc.code, got, tc.want)
		}
	}
}

// TestForgetAsksAgainOnlyForATopicThatWasThere: a write that found a topic missing (deleted since Ensure created or
// found it) has the next Ensure ask Kafka once more, and only the next; a topic Kafka refused to create is not asked
// about again, however often its writes fail.
func TestForgetAsksAgainOnlyForATopicThatWasThere(t *testing.T) {
	for _, tc := range []struct {
		code kafka.Error
		want int // asks after Ensure, Forget, Ensure, Ensure
	}{
		{0, 2},
		{kafka.TopicAlreadyExists, 2},
		{kafka.TopicAuthorizationFailed, 1},
	} {
		tr := &answering{code: tc.code, asked: map[string]int{}}
		c := kafkatopic.New(&kafka.Writer{Addr: kafka.TCP("127.0.0.1:1"), Transport: tr}, slog.New(slog.DiscardHandler))
		c.Ensure(t.Context(), "t")
		c.Forget("t")
		c.Ensure(t.Context(), "t")
		c.Ensure(t.Context(), "t")
		if got := tr.asked["t"]; got != tc.want {
			t.Errorf("answered %v: asked %d times, want %d", tc.code, got, tc.want)
		}
	}
}
