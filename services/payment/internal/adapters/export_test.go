package adapters

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// WithWorkers sets how many workers c's Start runs, so a test can fill the
// queue as the service's MaxAckPending fills Workers without publishing
// hundreds of orders.
func WithWorkers(c *OrderEvents, n int) *OrderEvents {
	c.workers = n
	return c
}

// AckFloorSeen is the ack floor c last saw of its consumer, where a
// consumer it recreates starts (just above).
func AckFloorSeen(c *OrderEvents) uint64 {
	if seen := c.floor.seen.Load(); seen != nil {
		return seen.seq
	}
	return 0
}

// SaveFloor saves seq as the ack floor of consumer on stream, read of a
// consumer created at created.
func SaveFloor(ctx context.Context, f *FloorGorm, consumer, stream string, seq uint64, created time.Time) error {
	return f.save(ctx, consumer, stream, floorSeen{seq: seq, created: created})
}

// SaveFloorOn is SaveFloor of a floor read on a stream created at
// streamCreated (zero: unknown, as saved before migration 0007).
func SaveFloorOn(ctx context.Context, f *FloorGorm, consumer, stream string, seq uint64, created, streamCreated time.Time) error {
	return f.save(ctx, consumer, stream, floorSeen{seq: seq, created: created, stream: streamCreated})
}

// SavedFloor is the ack floor f holds of consumer on stream (0: none) and
// when the consumer it was read of was created.
func SavedFloor(ctx context.Context, f *FloorGorm, consumer, stream string) (uint64, time.Time, error) {
	seen, err := f.load(ctx, consumer, stream)
	if err != nil || seen == nil {
		return 0, time.Time{}, err
	}
	return seen.seq, seen.created, nil
}

// FloorUnderReplacementLock is the floor f passes to a replacement it
// runs under its lock (FloorGorm.replacing; 0: none).
func FloorUnderReplacementLock(ctx context.Context, f *FloorGorm, consumer, stream string) (uint64, error) {
	var seq uint64
	_, err := f.replacing(ctx, consumer, stream, func(saved *floorSeen) (jetstream.Consumer, error) {
		if saved != nil {
			seq = saved.seq
		}
		return nil, nil
	})
	return seq, err
}
