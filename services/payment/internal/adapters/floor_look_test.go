package adapters

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// infoStub is a consumer whose info is info.
type infoStub struct {
	jetstream.Consumer
	info *jetstream.ConsumerInfo
}

func (c infoStub) Info(context.Context) (*jetstream.ConsumerInfo, error) { return c.info, nil }

// TestFloorOfAPushConsumerIsNotTaken: the durable made push based by hand
// has a floor of its own start and its own subscribers, above what the
// service's pull consumer may still have owed (DeliverNew: every message
// already on the stream). The look took it as the service's floor, so a
// replacement or a later start skipped those messages; it now keeps the
// floor last seen of the pull consumer.
func TestFloorOfAPushConsumerIsNotTaken(t *testing.T) {
	var f ackFloor
	created := time.Now()
	pull := infoStub{info: &jetstream.ConsumerInfo{Created: created, AckFloor: jetstream.SequenceInfo{Stream: 2}}}
	if seen := f.look(context.Background(), pull); seen == nil || seen.seq != 2 {
		t.Fatalf("the pull consumer's floor was not taken: %+v", seen)
	}
	push := infoStub{info: &jetstream.ConsumerInfo{Created: created.Add(time.Minute), AckFloor: jetstream.SequenceInfo{Stream: 9},
		Config: jetstream.ConsumerConfig{DeliverSubject: "operator.deliver"}}}
	if seen := f.look(context.Background(), push); seen != nil {
		t.Errorf("the push consumer's floor was taken: %+v (it would be saved too)", seen)
	}
	if got := f.startOn(&jetstream.StreamInfo{Created: created.Add(-time.Hour), State: jetstream.StreamState{LastSeq: 9}}); got != 3 {
		t.Errorf("a consumer recreated after the push consumer's look starts at %d, want 3 (above the pull's floor)", got)
	}
}
