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

// TestFloorIsTakenOnlyOnItsStream pins where a consumer created on a
// stream starts from a floor seen (floorSeen.startOn): just above it on
// the stream it was read on, from the stream's start on a stream made
// again under the name (created after the consumer the floor was read of,
// or with fewer messages than the floor). One case stays misjudged, and
// is pinned so that a fix changes this test knowingly: a stream made again
// on a server whose clock is behind the one that created the old consumer
// (it looks older than that consumer) and already longer than the floor
// is taken for the old one, and its messages up to the floor are skipped
// (services/payment/README.md, "Consumer": why the single-node shared NATS
// cannot show it and what would fix it).
func TestFloorIsTakenOnlyOnItsStream(t *testing.T) {
	consumer := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	floor := &floorSeen{seq: 5, created: consumer}
	for _, c := range []struct {
		name    string
		seen    *floorSeen
		created time.Time // the stream's
		lastSeq uint64
		want    uint64
	}{
		{"no floor seen", nil, consumer.Add(-time.Hour), 9, 0},
		{"floor 0: nothing settled", &floorSeen{created: consumer}, consumer.Add(-time.Hour), 9, 0},
		{"its stream", floor, consumer.Add(-time.Hour), 9, 6},
		{"its stream, every message settled", floor, consumer.Add(-time.Hour), 5, 6},
		{"its stream, created the same instant", floor, consumer, 9, 6},
		{"made again after the consumer", floor, consumer.Add(time.Second), 9, 0},
		{"made again on a clock behind, shorter than the floor", floor, consumer.Add(-time.Second), 4, 0},
		{"made again on a clock behind, longer than the floor (misjudged)", floor, consumer.Add(-time.Second), 9, 6},
	} {
		on := &jetstream.StreamInfo{Created: c.created, State: jetstream.StreamState{LastSeq: c.lastSeq}}
		if got := c.seen.startOn(on); got != c.want {
			t.Errorf("%s: starts at %d, want %d", c.name, got, c.want)
		}
	}
}
