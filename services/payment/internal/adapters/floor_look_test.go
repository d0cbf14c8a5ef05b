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
	streamCreated := func(context.Context) (time.Time, error) { return created.Add(-time.Hour), nil }
	pull := infoStub{info: &jetstream.ConsumerInfo{Created: created, AckFloor: jetstream.SequenceInfo{Stream: 2}}}
	if seen := f.look(context.Background(), pull, streamCreated); seen == nil || seen.seq != 2 {
		t.Fatalf("the pull consumer's floor was not taken: %+v", seen)
	}
	push := infoStub{info: &jetstream.ConsumerInfo{Created: created.Add(time.Minute), AckFloor: jetstream.SequenceInfo{Stream: 9},
		Config: jetstream.ConsumerConfig{DeliverSubject: "operator.deliver"}}}
	if seen := f.look(context.Background(), push, streamCreated); seen != nil {
		t.Errorf("the push consumer's floor was taken: %+v (it would be saved too)", seen)
	}
	if got := f.startOn(&jetstream.StreamInfo{Created: created.Add(-time.Hour), State: jetstream.StreamState{LastSeq: 9}}); got != 3 {
		t.Errorf("a consumer recreated after the push consumer's look starts at %d, want 3 (above the pull's floor)", got)
	}
}

// TestFloorIsTakenOnlyOnItsStream pins where a consumer created on a
// stream starts from a floor seen (floorSeen.startOn): just above it on
// the stream it was read on, from the stream's start on a stream made
// again under the name. A floor knows its stream by the stream's own
// record of its creation. Before (and still for a floor saved before
// migration 0007, which has no such record), it went by the creation
// times of stream and consumer, two servers' clocks: a stream made again
// on a server whose clock is behind (it looks older than the old
// consumer) and already longer than the floor was taken for the old one,
// and its messages up to the floor were skipped.
func TestFloorIsTakenOnlyOnItsStream(t *testing.T) {
	consumer := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	old := consumer.Add(-time.Hour) // the stream the floor was read on
	untagged := &floorSeen{seq: 5, created: consumer}
	tagged := &floorSeen{seq: 5, created: consumer, stream: old}
	for _, c := range []struct {
		name    string
		seen    *floorSeen
		created time.Time // the stream's
		lastSeq uint64
		want    uint64
	}{
		{"no floor seen", nil, old, 9, 0},
		{"floor 0: nothing settled", &floorSeen{created: consumer, stream: old}, old, 9, 0},
		{"its stream", tagged, old, 9, 6},
		{"its stream, every message settled", tagged, old, 5, 6},
		{"made again after the consumer", tagged, consumer.Add(time.Second), 9, 0},
		{"made again on a clock behind, shorter than the floor", tagged, consumer.Add(-time.Second), 4, 0},
		{"made again on a clock behind, longer than the floor", tagged, consumer.Add(-time.Second), 9, 0},
		{"its stream, created after its consumer by the clocks", &floorSeen{seq: 5, created: consumer, stream: consumer.Add(time.Second)}, consumer.Add(time.Second), 9, 6},
		{"saved before 0007: its stream", untagged, old, 9, 6},
		{"saved before 0007: made again after the consumer", untagged, consumer.Add(time.Second), 9, 0},
		{"saved before 0007: made again shorter than the floor", untagged, consumer.Add(-time.Second), 4, 0},
		{"saved before 0007: made again on a clock behind, longer (misjudged, no record to tell)", untagged, consumer.Add(-time.Second), 9, 6},
	} {
		on := &jetstream.StreamInfo{Created: c.created, State: jetstream.StreamState{LastSeq: c.lastSeq}}
		if got := c.seen.startOn(on); got != c.want {
			t.Errorf("%s: starts at %d, want %d", c.name, got, c.want)
		}
	}
}

// TestLookKnowsTheFloorsStream: a floor carries the creation time of the
// stream its consumer lived in, read before and after the consumer's info
// when that consumer is first seen; a look during which the stream changed
// takes no floor, and a later look of the same consumer reads no stream.
func TestLookKnowsTheFloorsStream(t *testing.T) {
	ctx := context.Background()
	first := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	second := first.Add(time.Hour)
	var reads []time.Time // what each stream read returns, in turn
	streamCreated := func(context.Context) (time.Time, error) {
		if len(reads) == 0 {
			t.Fatal("the stream was read once more than expected")
		}
		at := reads[0]
		reads = reads[1:]
		return at, nil
	}
	cons := infoStub{info: &jetstream.ConsumerInfo{Created: first.Add(time.Minute), AckFloor: jetstream.SequenceInfo{Stream: 4}}}

	var f ackFloor
	reads = []time.Time{first, second}
	if seen := f.look(ctx, cons, streamCreated); seen != nil {
		t.Fatalf("a look while the stream was made again took floor %+v", seen)
	}
	reads = []time.Time{first, first}
	if seen := f.look(ctx, cons, streamCreated); seen == nil || seen.seq != 4 || !seen.stream.Equal(first) {
		t.Fatalf("the floor seen = %+v, want 4 on the stream created %v", seen, first)
	}
	cons.info.AckFloor.Stream = 6
	if seen := f.look(ctx, cons, streamCreated); seen == nil || seen.seq != 6 || !seen.stream.Equal(first) {
		t.Fatalf("the next look of the same consumer = %+v, want 6 on the stream created %v", seen, first)
	}
	recreated := infoStub{info: &jetstream.ConsumerInfo{Created: second.Add(time.Minute), AckFloor: jetstream.SequenceInfo{Stream: 1}}}
	reads = []time.Time{second, second}
	if seen := f.look(ctx, recreated, streamCreated); seen == nil || seen.seq != 1 || !seen.stream.Equal(second) {
		t.Fatalf("the floor of a consumer created again = %+v, want 1 on the stream created %v", seen, second)
	}
	if len(reads) != 0 {
		t.Errorf("%d stream reads left unread", len(reads))
	}
}
