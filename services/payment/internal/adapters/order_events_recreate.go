package adapters

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shanhai-dev/shanhai/pkg/stream"
)

// ackFloor is the last ack floor a replica saw of its durable consumer: the
// stream sequence up to which every message the consumer takes was settled
// (acked, terminated, or out of deliveries). It lies behind the
// consumer's real floor, and what lies at or below it is settled for good
// (but for a reset of the consumer to an earlier sequence, until the next
// look: see FloorGorm.save), so a consumer recreated to start just above
// it skips nothing the deleted one still owed: at least once, as before, with
// what was acked after the look delivered again (found final, acked as
// duplicate). Before, a recreated consumer replayed the whole stream
// (DeliverAll: 7 days of orders, new ones waiting behind them).
//
// Read from the server, not from this replica's own messages: another
// replica's unsettled ones lie below what this one holds.
//
// A floor holds only for the stream it was read on: a stream deleted and
// created again under the same name numbers its messages from 1, and a
// consumer started above the old floor skipped them. The consumer read
// cannot be older than its stream, so a stream created after it is
// another (recreate).
type ackFloor struct{ seen atomic.Pointer[floorSeen] }

type floorSeen struct {
	seq     uint64    // AckFloor.Stream
	created time.Time // the consumer it was read of was created (server time)
	// stream is when the stream it was read on was created, as that
	// stream's record says; zero when unknown (a floor saved before
	// migration 0007).
	stream time.Time
}

// floorEvery is how often the floor is looked at: each look is one JetStream
// API request per replica, and what was acked since the last look is
// delivered again by a recreated consumer.
func floorEvery(cfg jetstream.ConsumerConfig) time.Duration { return 5 * stream.FirstAckWait(cfg) }

// look reads the consumer's ack floor and returns it; a failed look (the
// consumer deleted, NATS down) keeps the last one and returns nil, and so
// does a look that finds the durable made push based by hand: its floor
// says what its own start skipped and its own subscribers acked, not what
// this service settled (replacePush).
//
// The floor carries the creation time of its stream (streamCreated reads
// it), read when a consumer is seen for the first time: the stream read
// before and after the consumer's info, the same both times, is the one the
// consumer lived in (a consumer dies with its stream, and a stream made
// again has a creation time of its own). Two more requests for the first
// consumer seen, three for each later one (its info is read again, after
// the first stream read); a later look of the same consumer keeps what was
// read.
func (f *ackFloor) look(ctx context.Context, cons jetstream.Consumer, streamCreated func(context.Context) (time.Time, error)) *floorSeen {
	ctx, cancel := context.WithTimeout(ctx, ensureTimeout)
	defer cancel()
	last := f.seen.Load()
	var before time.Time
	known := last != nil && !last.stream.IsZero()
	if !known {
		var err error
		if before, err = streamCreated(ctx); err != nil {
			return nil
		}
	}
	info, err := cons.Info(ctx)
	if err != nil || info.Config.DeliverSubject != "" {
		return nil
	}
	seen := &floorSeen{seq: info.AckFloor.Stream, created: info.Created}
	if known && last.created.Equal(info.Created) {
		seen.stream = last.stream
	} else {
		if known {
			// Another consumer than the one last seen: its stream is read
			// around a second read of its info.
			if before, err = streamCreated(ctx); err != nil {
				return nil
			}
			if again, err := cons.Info(ctx); err != nil || !again.Created.Equal(info.Created) || again.Config.DeliverSubject != "" {
				return nil
			}
		}
		after, err := streamCreated(ctx)
		if err != nil || !after.Equal(before) {
			return nil
		}
		seen.stream = before
	}
	f.seen.Store(seen)
	return seen
}

// startOn returns where a consumer recreated on stream on starts: just
// above the floor last seen if it was read on that stream, else 0 (from
// the stream's start).
func (f *ackFloor) startOn(on *jetstream.StreamInfo) uint64 {
	return f.seen.Load().startOn(on)
}

// startOn is where a consumer created on stream on starts: just above s
// if s was read on that stream, else 0 (from the stream's start). s may
// be nil (no floor known).
//
// A floor read on a stream created at another time than on was read on
// another stream of the name: the stream's own record of its creation is
// compared with itself, so no clock enters. A floor saved before that
// record was kept (migration 0007) has only its consumer's creation time:
// a stream created after that consumer is another. Before, that was the
// only check, and it compared the clocks of the servers that created
// stream and consumer: a stream made again on one whose clock was behind,
// already longer than the floor, was taken for the old one and its
// messages up to the floor skipped.
//
// A floor above the stream's last sequence was read on another stream
// whatever the times say: a stream's sequences never go back (a purge
// keeps them). Taken, it skipped every message of the new stream up to
// that floor, those published later too.
func (s *floorSeen) startOn(on *jetstream.StreamInfo) uint64 {
	if s == nil || s.seq == 0 || s.seq > on.State.LastSeq {
		return 0
	}
	if s.stream.IsZero() {
		if on.Created.After(s.created) {
			return 0
		}
	} else if !on.Created.Equal(s.stream) {
		return 0
	}
	return s.seq + 1
}

// watchFloor looks at the floor every floorEvery until ctx ends, and saves
// each new one to the floor store if c has one (RemembersFloor).
func (c *OrderEvents) watchFloor(ctx context.Context) {
	t := time.NewTicker(floorEvery(c.cfg))
	defer t.Stop()
	var saved floorSeen
	failing := false
	for {
		if seen := c.floor.look(ctx, c.cons, c.streamCreated); seen != nil && c.floors != nil && *seen != saved {
			err := c.floors.save(ctx, c.names.Durable, c.names.Stream, *seen)
			switch {
			case err == nil:
				saved, failing = *seen, false
			case !failing && ctx.Err() == nil:
				// Once per run of failures: the database check says the
				// rest, and a start meanwhile only replays more.
				failing = true
				c.log.Warn("ack floor not saved: a start that finds the consumer gone replays from an older one", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// streamCreated is when c's stream was created, by its own record.
func (c *OrderEvents) streamCreated(ctx context.Context) (time.Time, error) {
	str, err := c.js.Stream(ctx, c.names.Stream)
	if err != nil {
		return time.Time{}, fmt.Errorf("look up stream %s: %w", c.names.Stream, err)
	}
	return str.CachedInfo().Created, nil
}

// recreate returns the durable consumer for a pull that stopped on its
// own. A consumer that is gone is created again starting just above the
// last ack floor seen (ackFloor) if it was seen on this very stream, with the digest of the service's own
// config (which says DeliverAll) so that the next EnsureConsumer, at a
// start or on another replica, finds it made from that config and leaves
// it, rather than update a deliver policy the server cannot change. When
// another replica created it first, that one is used: its start lies at or
// below its own floor, as safe as this one's.
//
// repair puts the service's config back over the server's copy, keeping
// only where the consumer starts: the server refused a pull (a lowered
// MaxRequestBatch ...), and a digest an operator kept makes EnsureConsumer
// leave the consumer as it is.
//
// A durable made push based (deleted and created again so by hand: the
// server updates neither kind into the other) is no consumer a pull can
// use. One no subscriber is bound to (PushBound) is replaced by the
// service's pull consumer just above its own ack floor (replacePush), one
// replica at a time (FloorGorm.replacing, when c remembers its floor); one
// a subscriber reads fails the restart, logged, until a person deletes it.
func (c *OrderEvents) recreate(ctx context.Context, repair bool) (jetstream.Consumer, error) {
	ctx, cancel := context.WithTimeout(ctx, ensureTimeout)
	defer cancel()
	cons, err := c.js.Consumer(ctx, c.names.Stream, c.names.Durable)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		str, err := c.js.Stream(ctx, c.names.Stream)
		if err != nil {
			return nil, fmt.Errorf("look up stream %s: %w", c.names.Stream, err)
		}
		return createFrom(ctx, c.js, c.names, c.cfg, c.floor.startOn(str.CachedInfo()))
	case errors.Is(err, jetstream.ErrNotPullConsumer):
		return c.floors.replacing(ctx, c.names.Durable, c.names.Stream, func(*floorSeen) (jetstream.Consumer, error) {
			return replacePush(ctx, c.js, c.names, c.cfg, c.floor.startOn, c.log)
		})
	case err == nil && repair:
		cfg, err := stream.WithDigest(c.cfg)
		if err != nil {
			return nil, err
		}
		on := cons.CachedInfo().Config
		cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = on.DeliverPolicy, on.OptStartSeq, on.OptStartTime
		cons, err := c.js.UpdateConsumer(ctx, c.names.Stream, cfg)
		if err != nil {
			return nil, fmt.Errorf("put back the config of consumer %s: %w", cfg.Durable, err)
		}
		return cons, nil
	default:
		// There and not refusing, or the stream itself gone (created
		// again empty: nothing to skip), or NATS not answering.
		return stream.EnsureConsumer(ctx, c.js, c.names, c.cfg)
	}
}

// createFrom creates the durable consumer cfg describes, with its digest,
// starting at stream sequence start (DeliverAll for 0). When another
// replica created it first, that one is used: its start lies at or below
// its own floor, as safe as this one's.
func createFrom(ctx context.Context, js jetstream.JetStream, names Names, cfg jetstream.ConsumerConfig, start uint64) (jetstream.Consumer, error) {
	withDigest, err := stream.WithDigest(cfg)
	if err != nil {
		return nil, err
	}
	if start > 0 {
		withDigest.DeliverPolicy, withDigest.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start
	}
	cons, err := js.CreateConsumer(ctx, names.Stream, withDigest)
	if errors.Is(err, jetstream.ErrConsumerExists) {
		return stream.EnsureConsumer(ctx, js, names, cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("create consumer %s from stream sequence %d: %w", cfg.Durable, withDigest.OptStartSeq, err)
	}
	return cons, nil
}

// replacePush turns the durable, made push based by hand (the server
// refuses to update it back to pull), into the service's pull consumer
// again: deleted, and created just above the lower of two floors, the
// push consumer's, just read, and the last one seen of the service's pull
// consumer on this stream (pullStart: a running replica's own look, or at
// a start the floor saved in the database; 0, none seen: from the
// stream's start). The
// push consumer's alone is no floor of this service: it lies above what
// the push consumer's own start skipped (DeliverNew, a start sequence, a
// filter taking only some subjects) and what a subscriber of it acked
// before it went, while the pull consumer it replaced may still have owed
// them. Only when no subscriber is bound to it: none reads it, so none
// loses its deliveries or acks. A subscriber binding between the read and
// the delete loses the consumer (its next acks fail), but no message: what
// it had not acked lies above the floor and is delivered again, and what
// it acked since is delivered again and found final (duplicate).
//
// The caller holds the replacement lock (FloorGorm.replacing), so the
// durable is read here, under it: another replica may have replaced it
// while this one waited, and its pull consumer is then used as it is,
// never deleted. One gone (a replica that died between its delete and its
// create) is created as a recreate creates it.
func replacePush(ctx context.Context, js jetstream.JetStream, names Names, cfg jetstream.ConsumerConfig,
	pullStart func(*jetstream.StreamInfo) uint64, log *slog.Logger) (jetstream.Consumer, error) {
	push, err := js.PushConsumer(ctx, names.Stream, names.Durable)
	switch {
	case errors.Is(err, jetstream.ErrNotPushConsumer):
		return stream.EnsureConsumer(ctx, js, names, cfg)
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		push = nil
	case err != nil:
		return nil, fmt.Errorf("look up push consumer %s: %w", names.Durable, err)
	}
	var info *jetstream.ConsumerInfo
	if push != nil {
		info = push.CachedInfo()
		if info.PushBound {
			return nil, fmt.Errorf("consumer %s is push based (deliver subject %q) and a subscriber reads it: delete it to have it created again as a pull consumer",
				names.Durable, info.Config.DeliverSubject)
		}
	}
	str, err := js.Stream(ctx, names.Stream)
	if err != nil {
		return nil, fmt.Errorf("look up stream %s: %w", names.Stream, err)
	}
	start := pullStart(str.CachedInfo()) // 0: from the stream's start
	if info != nil {
		if start > 0 {
			start = min(start, info.AckFloor.Stream+1)
		}
		err = js.DeleteConsumer(ctx, names.Stream, names.Durable)
		if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("delete push consumer %s: %w", names.Durable, err)
		}
		log.Warn("push consumer with no subscriber replaced by the service's pull consumer", "consumer", names.Durable,
			"deliver_subject", info.Config.DeliverSubject, "push_ack_floor", info.AckFloor.Stream, "start", start)
	}
	return createFrom(ctx, js, names, cfg, start)
}
