package adapters

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// FloorGorm keeps the last ack floor read of each durable consumer in the
// payment database (consumer_floors), for a process that starts and finds
// its consumer gone: see CreateConsumer.
type FloorGorm struct{ db *gorm.DB }

// NewFloorGorm is the floor store on db, migrated by the service.
func NewFloorGorm(db *gorm.DB) *FloorGorm { return &FloorGorm{db: db} }

// save records a floor read of consumer on stream. Several replicas save
// what they read, in any order: the floor of the newest consumer is kept,
// and of one consumer the last saved, lower too. A consumer's floor goes
// back when it is reset to an earlier sequence ($JS.API.CONSUMER.RESET) or
// restored from a backup, and one read before is then no floor: kept as
// the highest, a start above it skipped what the reset had delivered
// again. A lower floor saved late by a slower replica only replays more,
// and that replica's next look saves the floor anew.
func (f *FloorGorm) save(ctx context.Context, consumer, stream string, seen floorSeen) error {
	err := f.db.WithContext(ctx).Exec(`INSERT INTO consumer_floors (consumer, stream, ack_floor, consumer_created_ns)
VALUES (?, ?, ?, ?)
ON CONFLICT (consumer, stream) DO UPDATE SET ack_floor = excluded.ack_floor, consumer_created_ns = excluded.consumer_created_ns
WHERE excluded.consumer_created_ns >= consumer_floors.consumer_created_ns`,
		consumer, stream, int64(seen.seq), seen.created.UnixNano()).Error
	if err != nil {
		return fmt.Errorf("save the ack floor of consumer %s: %w", consumer, err)
	}
	return nil
}

// load returns the floor last saved of consumer on stream, or nil.
func (f *FloorGorm) load(ctx context.Context, consumer, stream string) (*floorSeen, error) {
	var rows []struct {
		AckFloor          int64
		ConsumerCreatedNs int64
	}
	err := f.db.WithContext(ctx).Raw(`SELECT ack_floor, consumer_created_ns FROM consumer_floors WHERE consumer = ? AND stream = ?`,
		consumer, stream).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("load the ack floor of consumer %s: %w", consumer, err)
	}
	if len(rows) == 0 {
		return nil, nil
	}
	row := rows[0]
	return &floorSeen{seq: uint64(row.AckFloor), created: time.Unix(0, row.ConsumerCreatedNs)}, nil
}
