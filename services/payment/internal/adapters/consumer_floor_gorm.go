package adapters

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
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
//
// A floor read on another stream than the saved one's (another stream
// creation time, or none saved: before migration 0007) replaces it
// whatever the consumers' creation times say. Those come from the clocks
// of the servers that made each consumer, and the consumer of a stream
// made again on a server whose clock is behind looks older than the one
// before: the newest-consumer rule alone kept the old stream's floor, which
// no start takes on the new stream, and every start finding the consumer
// gone replayed the whole stream until a consumer looked newer. A late
// save of the old stream's floor can take the row back; the next look
// saves the new stream's again.
func (f *FloorGorm) save(ctx context.Context, consumer, stream string, seen floorSeen) error {
	var streamNs int64 // 0: unknown
	if !seen.stream.IsZero() {
		streamNs = seen.stream.UnixNano()
	}
	err := f.db.WithContext(ctx).Exec(`INSERT INTO consumer_floors (consumer, stream, ack_floor, consumer_created_ns, stream_created_ns)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (consumer, stream) DO UPDATE SET ack_floor = excluded.ack_floor, consumer_created_ns = excluded.consumer_created_ns,
stream_created_ns = excluded.stream_created_ns
WHERE excluded.consumer_created_ns >= consumer_floors.consumer_created_ns
OR excluded.stream_created_ns <> consumer_floors.stream_created_ns`,
		consumer, stream, int64(seen.seq), seen.created.UnixNano(), streamNs).Error
	if err != nil {
		return fmt.Errorf("save the ack floor of consumer %s: %w", consumer, err)
	}
	return nil
}

// load returns the floor last saved of consumer on stream, or nil.
func (f *FloorGorm) load(ctx context.Context, consumer, stream string) (*floorSeen, error) {
	var rows []floorRow
	err := f.db.WithContext(ctx).Raw(`SELECT ack_floor, consumer_created_ns, stream_created_ns FROM consumer_floors WHERE consumer = ? AND stream = ?`,
		consumer, stream).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("load the ack floor of consumer %s: %w", consumer, err)
	}
	if len(rows) == 0 {
		return nil, nil
	}
	return rows[0].seen(), nil
}

// floorRow is a row of consumer_floors as read.
type floorRow struct {
	AckFloor          int64
	ConsumerCreatedNs int64
	StreamCreatedNs   int64 // 0: saved before migration 0007
}

func (r floorRow) seen() *floorSeen {
	seen := &floorSeen{seq: uint64(r.AckFloor), created: time.Unix(0, r.ConsumerCreatedNs)}
	if r.StreamCreatedNs != 0 {
		seen.stream = time.Unix(0, r.StreamCreatedNs)
	}
	return seen
}

// replacing runs replace while it holds the saved floor row of consumer on
// stream locked (created at floor 0, no floor, when none was saved), and
// passes it that floor (nil: none). Replicas replace a push durable under
// it one at a time, so each reads the durable with none other between its
// read and its delete.
//
// Why a lock: JetStream deletes a consumer by name, with no condition on
// its config or creation, and a replica that read the push consumer and
// deleted it a moment later deleted whatever held the name by then,
// another replica's new pull consumer among them: that replica's pull
// ended and its unsettled messages were delivered again (before,
// TestRacingReplacementsCreateOneConsumer: two pull consumers created, the
// first deleted under its replica). The database is the one thing every
// replica shares besides NATS, and a row lock is released with its
// transaction, by a commit, a rollback or a connection that dies, so a
// replica that crashes mid-replacement holds nobody up. The caller's
// deadline bounds the wait; the floor watch's saves wait meanwhile.
func (f *FloorGorm) replacing(ctx context.Context, consumer, stream string, replace func(saved *floorSeen) (jetstream.Consumer, error)) (jetstream.Consumer, error) {
	if f == nil {
		return replace(nil)
	}
	var cons jetstream.Consumer
	err := f.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var rows []floorRow
		// A no-op update locks the row (a write lock on SQLite); the first
		// of two inserting waits for the other's commit, then updates.
		err := tx.Raw(`INSERT INTO consumer_floors (consumer, stream, ack_floor, consumer_created_ns) VALUES (?, ?, 0, 0)
ON CONFLICT (consumer, stream) DO UPDATE SET ack_floor = consumer_floors.ack_floor
RETURNING ack_floor, consumer_created_ns, stream_created_ns`, consumer, stream).Scan(&rows).Error
		if err != nil {
			return fmt.Errorf("lock the ack floor of consumer %s: %w", consumer, err)
		}
		var saved *floorSeen
		if len(rows) == 1 && rows[0].AckFloor > 0 {
			saved = rows[0].seen()
		}
		cons, err = replace(saved)
		return err
	})
	return cons, err
}
