package adapters_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
	"github.com/shanhai-dev/shanhai/services/payment/internal/adapters"
)

// TestRacingReplacementsCreateOneConsumer: two replicas find the durable
// made push based with no subscriber and replace it at once. JetStream
// deletes a consumer by name only, so the replica that read the push
// consumer first and deleted it after the other had replaced it deleted
// the other's new pull consumer: two pull consumers were created, the
// first deleted under the replica pulling from it (a third pull stop, its
// unsettled messages delivered again). Here the first replica to delete
// the push consumer is held just before, its read made, until the other
// has created its consumer or waits for the replacement lock. Now the replacements take
// turns: one consumer is created, both replicas pull from it, and every
// order is charged once.
func TestRacingReplacementsCreateOneConsumer(t *testing.T) {
	st := newStalled(t, "PAYPUSHRACE")
	close(st.prov.release)
	ctx := context.Background()
	floors := adapters.NewFloorGorm(st.db)
	reader := sdkmetric.NewManualReader()
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	r := &race{db: st.db}
	gate := gatedJS{JetStream: st.s.JS, open: make(chan struct{})}
	logs := [2]*logSeen{{msgs: map[string]bool{}}, {msgs: map[string]bool{}}}
	var replicas [2]*adapters.OrderEvents
	for i, l := range logs {
		replicas[i] = adapters.NewOrderEvents(st.cons, st.names, st.app, st.maxDeliver, slog.New(l)).
			Recreates(racingJS{gatedJS: gate, race: r}).RemembersFloor(floors)
		defer st.startOn(t, replicas[i], 1)(ctx)
	}

	const before = 3
	st.chargedAndSaved(t, floors, before)
	runtest.Eventually(t, 10*time.Second, "both replicas to see the floor", func() bool {
		return adapters.AckFloorSeen(replicas[0]) == before && adapters.AckFloorSeen(replicas[1]) == before
	})
	st.makePush(t, "paypushrace.nobody", before+1)
	runtest.Eventually(t, 10*time.Second, "both pulls to stop", func() bool {
		return logs[0].seen(pullStopped) && logs[1].seen(pullStopped)
	})
	close(gate.open)
	runtest.Eventually(t, 30*time.Second, "both pulls to be restarted", func() bool {
		return logs[0].seen("order pull restarted") && logs[1].seen("order pull restarted")
	})

	const after = 3
	for range after {
		publishOrder(t, st.s, st.names.Subject)
	}
	runtest.Eventually(t, 30*time.Second, "the orders published after the replacement to be charged", func() bool {
		return st.prov.Charges() == before+after
	})
	if n := r.creates.Load(); n != 1 {
		t.Errorf("%d pull consumers created by the replacements, want 1: a replica deleted the other's", n)
	}
	if got := adapters.CounterBy(t, reader, "shanhai.payment.consumer.pull_stops", "")[""]; got != 2 {
		t.Errorf("shanhai.payment.consumer.pull_stops = %d, want 2 (one per replica, for the push durable)", got)
	}
	runtest.Eventually(t, 10*time.Second, "both replicas to pull from the consumer", func() bool {
		info, err := st.s.JS.Consumer(ctx, st.s.Name, st.names.Durable)
		return err == nil && info.CachedInfo().NumWaiting >= 2
	})
	cons, err := st.s.JS.Consumer(ctx, st.s.Name, st.names.Durable)
	if err != nil {
		t.Fatal(err)
	}
	if got := cons.CachedInfo().Delivered.Consumer; got != after {
		t.Errorf("the replacing consumer made %d deliveries, want %d (the new orders)", got, after)
	}
	if got := st.prov.Charges(); got != before+after {
		t.Errorf("%d charges, want %d", got, before+after)
	}
}

// race holds the first delete of a consumer (a replacement's, the
// replica's read of the push consumer made) until another replica has
// created a consumer, or waits on a lock in the payment database (the
// replacement lock held by the one held here).
type race struct {
	db      *gorm.DB
	held    atomic.Bool
	creates atomic.Int32 // pull consumers created
}

// racingJS is a replica's JetStream, its consumer lookups gated until the
// durable is made push based, its deletes and creates seen by race.
type racingJS struct {
	gatedJS
	race *race
}

func (j racingJS) DeleteConsumer(ctx context.Context, stream, consumer string) error {
	if j.race.held.CompareAndSwap(false, true) {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for j.race.creates.Load() == 0 && !j.race.lockAwaited(ctx) {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-tick.C:
			}
		}
	}
	return j.gatedJS.DeleteConsumer(ctx, stream, consumer)
}

func (j racingJS) CreateConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	cons, err := j.gatedJS.CreateConsumer(ctx, stream, cfg)
	if err == nil {
		j.race.creates.Add(1)
	}
	return cons, err
}

// lockAwaited reports whether a session of the test's database waits on a
// lock.
func (r *race) lockAwaited(ctx context.Context) bool {
	var n int64
	err := r.db.WithContext(ctx).Raw(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n).Error
	return err == nil && n > 0
}
