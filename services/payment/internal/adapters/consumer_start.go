package adapters

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shanhai-dev/shanhai/pkg/stream"
)

// LookUpConsumer returns the durable consumer cfg describes, updated if it
// was not made from cfg (stream.EnsureConsumer), or nil when the stream has
// no such pull consumer (none, or one made push based by hand):
// CreateConsumer then creates or replaces it, once the database that holds
// its last floor is open. A missing stream is created with the consumer (a
// new stream has nothing to skip). The service calls it while wiring,
// beside its database connection, so that starting to consume later is no
// round trip.
func LookUpConsumer(ctx context.Context, js jetstream.JetStream, names Names, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	names = names.Or(DefaultNames)
	cons, err := js.Consumer(ctx, names.Stream, cfg.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrNotPullConsumer) {
		return nil, nil
	}
	if err == nil {
		// The usual start: one lookup, as stream.EnsureConsumer's.
		want, err := stream.WithDigest(cfg)
		if err != nil {
			return nil, err
		}
		if cons.CachedInfo().Config.Metadata[stream.ConfigDigestKey] == want.Metadata[stream.ConfigDigestKey] {
			return cons, nil
		}
	}
	cons, err = stream.EnsureConsumer(ctx, js, names, cfg)
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", cfg.Durable, err)
	}
	return cons, nil
}

// CreateConsumer creates the durable consumer cfg describes, which a start
// found missing (LookUpConsumer): deleted while every replica was down. It
// starts just above the ack floor last saved in floors (OrderEvents saves
// what it reads: RemembersFloor) when that was read on this very stream,
// and from the stream's start otherwise. Before, it started from the
// stream's start whatever was saved: up to 7 days of orders delivered
// again, each found final, with new orders waiting behind them.
//
// Everything at or below any floor the consumer had is settled for good
// (acked only once its payment was stored, terminated once its dead letter
// was, or out of deliveries), so the new start skips nothing the deleted
// consumer still owed; what was settled after the last save is delivered
// again and found final (duplicate): at least once, as before.
//
// A durable made push based by hand is dealt with as a running replica
// deals with it (replacePush), with the saved floor as the pull
// consumer's: replaced when no subscriber is bound to it, one replica at a
// time (FloorGorm.replacing), an error naming it when one is. Before, the
// start failed on it whether read or not (not a pull consumer), so no
// replica that started meanwhile became ready, while a running one
// replaced it.
func CreateConsumer(ctx context.Context, js jetstream.JetStream, names Names, cfg jetstream.ConsumerConfig, floors *FloorGorm, log *slog.Logger) (jetstream.Consumer, error) {
	names = names.Or(DefaultNames)
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithTimeout(ctx, ensureTimeout)
	defer cancel()
	// Looked up again: LookUpConsumer ran beside the database, and the
	// durable may have changed since. Only a start that found no pull
	// consumer pays for it.
	if _, err := js.Consumer(ctx, names.Stream, cfg.Durable); errors.Is(err, jetstream.ErrNotPullConsumer) {
		return floors.replacing(ctx, cfg.Durable, names.Stream, func(saved *floorSeen) (jetstream.Consumer, error) {
			return replacePush(ctx, js, names, cfg, saved.startOn, log)
		})
	}
	seen, err := floors.load(ctx, cfg.Durable, names.Stream)
	if err != nil {
		return nil, err
	}
	str, err := js.Stream(ctx, names.Stream)
	if err != nil {
		return nil, fmt.Errorf("look up stream %s: %w", names.Stream, err)
	}
	return createFrom(ctx, js, names, cfg, seen.startOn(str.CachedInfo()))
}
