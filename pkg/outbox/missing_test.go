package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"testing"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/createtopics"
	"github.com/segmentio/kafka-go/protocol/produce"

	"github.com/shanhai-dev/shanhai/pkg/kafkatopic"
)

// creating is a transport that answers every CreateTopics as done and counts the topics asked.
type creating map[string]int

func (c creating) RoundTrip(_ context.Context, _ net.Addr, req kafka.Request) (kafka.Response, error) {
	res := &createtopics.Response{}
	for _, t := range req.(*createtopics.Request).Topics {
		c[t.Name]++
		res.Topics = append(res.Topics, createtopics.ResponseTopic{Name: t.Name})
	}
	return res, nil
}

// noTopic is a writer that fails every write as kafka-go does when its transport's metadata no longer lists the
// topic: "topic not found" inside a produce error, one entry of a kafka.WriteErrors per message.
type noTopic struct{}

func (noTopic) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	werrs := make(kafka.WriteErrors, len(msgs))
	for i, m := range msgs {
		werrs[i] = fmt.Errorf("kafka.(*Client).Produce: %w", produce.NewError(protocol.NewErrNoTopic(m.Topic)))
	}
	return werrs
}

// TestWriteForgetsATopicNotFound: a publish that kafka-go fails with "topic not found" (the topic deleted since the
// relay created it, seen by the writer's metadata before the broker answers UNKNOWN_TOPIC_OR_PARTITION) has the next
// round ask Kafka to create the topic again. The relay knew only the broker's code, so it asked one failed round late,
// or never while the metadata kept answering first.
func TestWriteForgetsATopicNotFound(t *testing.T) {
	asked := creating{}
	kw := &kafka.Writer{Addr: kafka.TCP("127.0.0.1:1"), Transport: asked}
	r := &Relay{w: noTopic{}, topics: kafkatopic.New(kw, slog.New(slog.DiscardHandler))}
	msgs := []kafka.Message{{Topic: "gone", Value: []byte("1")}}
	for range 2 {
		if errs := r.write(t.Context(), msgs); !kafkatopic.Missing(errs[0]) {
			t.Fatalf("write: %v, want the topic not found", errs[0])
		}
	}
	if asked["gone"] != 2 {
		t.Errorf("CreateTopics asked for the topic %d times in two failed rounds, want 2", asked["gone"])
	}
}
