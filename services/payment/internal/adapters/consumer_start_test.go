package adapters_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
	"github.com/shanhai-dev/shanhai/services/payment/internal/adapters"
)

// TestStartFindingTheConsumerGoneStartsAboveTheSavedFloor: a process that
// started and found the durable consumer gone (deleted while every replica
// was down) created it from the stream's start, so every order already
// charged was delivered again (here 5 of 6 deliveries; in production up
// to 7 days of orders, new ones waiting behind them). The replica now
// saves each ack floor it reads to the payment database, and the start
// creates the consumer just above it: the new order is its one delivery.
func TestStartFindingTheConsumerGoneStartsAboveTheSavedFloor(t *testing.T) {
	st := newStalled(t, "PAYSTARTFLOOR")
	close(st.prov.release)
	ctx := context.Background()
	floors := adapters.NewFloorGorm(st.db)
	first := adapters.NewOrderEvents(st.cons, st.names, st.app, st.maxDeliver, slog.New(st.logs)).Recreates(st.s.JS).RemembersFloor(floors)
	stop := st.startOn(t, first, 1)

	const before = 5
	st.chargedAndSaved(t, floors, before)
	stop(ctx)
	if err := st.s.JS.DeleteConsumer(ctx, st.s.Name, st.names.Durable); err != nil {
		t.Fatal(err)
	}

	// The start, as service.New wires it.
	cons, err := adapters.LookUpConsumer(ctx, st.s.JS, st.names, st.cfg)
	if err != nil || cons != nil {
		t.Fatalf("LookUpConsumer of a deleted consumer = %v, %v; want nil, nil", cons, err)
	}
	if cons, err = adapters.CreateConsumer(ctx, st.s.JS, st.names, st.cfg, floors, nil); err != nil {
		t.Fatal(err)
	}
	reader := sdkmetric.NewManualReader()
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	second := adapters.NewOrderEvents(cons, st.names, st.app, st.maxDeliver, slog.New(st.logs)).Recreates(st.s.JS).RemembersFloor(floors)
	defer st.startOn(t, second, 1)(ctx)
	publishOrder(t, st.s, st.names.Subject)
	runtest.Eventually(t, 10*time.Second, "the order published after the start to be charged", func() bool {
		return st.prov.Charges() == before+1
	})
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Delivered.Consumer != 1 {
		t.Errorf("the consumer the start created made %d deliveries, want 1 (the new order): it started at stream sequence %d",
			info.Delivered.Consumer, info.Config.OptStartSeq)
	}
	if dup := adapters.CounterBy(t, reader, "shanhai.payment.order_events", "outcome")["duplicate"]; dup != 0 {
		t.Errorf("%d orders charged before the deletion were delivered again", dup)
	}
}

// chargedAndSaved publishes n orders and waits until they are charged and
// their ack floor, n, is saved to floors.
func (st *stalled) chargedAndSaved(t *testing.T, floors *adapters.FloorGorm, n int) {
	t.Helper()
	for range n {
		publishOrder(t, st.s, st.names.Subject)
	}
	runtest.Eventually(t, 10*time.Second, "the earlier orders to be charged and their floor saved", func() bool {
		seq, _, err := adapters.SavedFloor(context.Background(), floors, st.names.Durable, st.s.Name)
		if err != nil {
			t.Fatal(err)
		}
		return st.prov.Charges() == n && seq == uint64(n)
	})
}

// TestSavedFloorKeepsTheNewestConsumersLast: replicas save what they read
// in any order. Of one consumer the last floor saved is kept, lower too: a
// floor goes back when the consumer is reset or restored, and one read
// before is then no floor (TestSavedFloorFollowsAConsumerReset); a lower
// one saved late only replays more, until the next look saves anew. A
// consumer created later (recreated, maybe on a stream made again)
// replaces the floor of the one before whatever its value, and one saved
// of an older consumer does not come back over it.
func TestSavedFloorKeepsTheNewestConsumersLast(t *testing.T) {
	for dialect, db := range stores(t) {
		t.Run(dialect, func(t *testing.T) {
			ctx := context.Background()
			floors := adapters.NewFloorGorm(db)
			old := time.Date(2026, 12, 7, 10, 0, 0, 123456789, time.UTC)
			recreated := old.Add(time.Hour)
			for _, s := range []struct {
				seq     uint64
				created time.Time
				want    uint64
			}{
				{7, old, 7},
				{5, old, 5},
				{9, old, 9},
				{2, recreated, 2},
				{12, old, 2},
				{3, recreated, 3},
				{1, recreated, 1},
			} {
				if err := adapters.SaveFloor(ctx, floors, "payment", "S", s.seq, s.created); err != nil {
					t.Fatal(err)
				}
				seq, created, err := adapters.SavedFloor(ctx, floors, "payment", "S")
				if err != nil {
					t.Fatal(err)
				}
				if seq != s.want {
					t.Errorf("after saving %d (consumer created %v) the floor is %d, want %d", s.seq, s.created, seq, s.want)
				}
				if s.want == s.seq && !created.Equal(s.created) {
					t.Errorf("the floor's consumer was created %v, saved %v (the stream check needs it to the ns)", created, s.created)
				}
			}
			if seq, _, err := adapters.SavedFloor(ctx, floors, "payment", "OTHER"); err != nil || seq != 0 {
				t.Errorf("the floor of another stream = %d, %v; want none", seq, err)
			}
		})
	}
}

// TestSavedFloorOfAStreamMadeAgainIsKept: a floor read on a stream made
// again under the name replaces the old stream's floor although its
// consumer looks older (made on a server whose clock is behind). Before,
// the newest-consumer rule kept the old stream's floor, which no start
// takes on the new stream (another stream creation time), so every start
// finding the consumer gone replayed the whole stream. Of one stream the
// newest consumer's floor is still kept.
func TestSavedFloorOfAStreamMadeAgainIsKept(t *testing.T) {
	for dialect, db := range stores(t) {
		t.Run(dialect, func(t *testing.T) {
			ctx := context.Background()
			floors := adapters.NewFloorGorm(db)
			consumer := time.Date(2026, 12, 7, 10, 0, 0, 123456789, time.UTC)
			oldStream := consumer.Add(-time.Hour)
			behind := consumer.Add(-time.Minute) // the new stream's consumer, by a clock behind
			newStream := behind.Add(-time.Minute)
			for _, s := range []struct {
				name            string
				seq             uint64
				created, stream time.Time
				want            uint64
			}{
				{"the old stream's floor", 7, consumer, oldStream, 7},
				{"the new stream's, its consumer older by the clocks", 2, behind, newStream, 2},
				{"the new stream's next", 3, behind, newStream, 3},
				{"the new stream's, of an older consumer", 1, behind.Add(-time.Second), newStream, 3},
				{"the old stream's, saved late", 9, consumer, oldStream, 9},
				{"the new stream's, at the next look", 4, behind, newStream, 4},
			} {
				if err := adapters.SaveFloorOn(ctx, floors, "payment", "S", s.seq, s.created, s.stream); err != nil {
					t.Fatal(err)
				}
				if seq, _, err := adapters.SavedFloor(ctx, floors, "payment", "S"); err != nil || seq != s.want {
					t.Errorf("after saving %s (%d) the floor is %d, %v; want %d", s.name, s.seq, seq, err, s.want)
				}
			}
		})
	}
}

// TestReplacementLockReadsTheSavedFloor: the lock a replacement of a push
// durable is made under (a row of consumer_floors, created when none was
// saved) passes it the floor saved, and leaves no floor where none was:
// the row it creates says floor 0, from the stream's start, and a floor
// saved later takes it over.
func TestReplacementLockReadsTheSavedFloor(t *testing.T) {
	for dialect, db := range stores(t) {
		t.Run(dialect, func(t *testing.T) {
			ctx := context.Background()
			floors := adapters.NewFloorGorm(db)
			if seq, err := adapters.FloorUnderReplacementLock(ctx, floors, "payment", "S"); err != nil || seq != 0 {
				t.Fatalf("the floor under the lock with none saved = %d, %v; want none", seq, err)
			}
			if seq, _, err := adapters.SavedFloor(ctx, floors, "payment", "S"); err != nil || seq != 0 {
				t.Fatalf("the floor saved after the lock was taken with none = %d, %v; want none", seq, err)
			}
			created := time.Date(2026, 12, 7, 10, 0, 0, 123456789, time.UTC)
			if err := adapters.SaveFloor(ctx, floors, "payment", "S", 7, created); err != nil {
				t.Fatal(err)
			}
			if seq, err := adapters.FloorUnderReplacementLock(ctx, floors, "payment", "S"); err != nil || seq != 7 {
				t.Fatalf("the floor under the lock = %d, %v; want the saved 7", seq, err)
			}
			seq, got, err := adapters.SavedFloor(ctx, floors, "payment", "S")
			if err != nil || seq != 7 || !got.Equal(created) {
				t.Errorf("the lock changed the saved floor: %d of a consumer created %v, %v; want 7 of %v", seq, got, err, created)
			}
		})
	}
}

// TestSavedFloorAboveTheStreamIsNotTaken: a floor above the stream's last
// sequence was read on another stream of the name, although its
// consumer's creation time says otherwise (a stream made again on a
// server whose clock is behind). The start took it and created the
// consumer above it: the stream's order, and every one published until
// the stream reached that sequence, were never delivered. It now starts
// from the stream's start.
func TestSavedFloorAboveTheStreamIsNotTaken(t *testing.T) {
	st := newStalled(t, "PAYFLOORAHEAD")
	publishOrder(t, st.s, st.names.Subject)
	created := st.streamCreated(t)
	if info := st.startOnSavedFloor(t, 5000, created.Add(time.Minute), time.Time{}); info.NumPending != 1 {
		t.Errorf("the consumer the start created has %d messages to deliver, want 1 (the stream's order): it starts at stream sequence %d",
			info.NumPending, info.Config.OptStartSeq)
	}
}

// TestSavedFloorOfAnotherStreamIsNotTaken: a floor is taken only on the
// stream it was read on, known by that stream's own record of its
// creation. Before, the start compared the creation times of the stream
// and of the floor's consumer, from two servers' clocks: a stream made
// again on a server whose clock is behind (it looks older than the
// consumer the floor was read of), already longer than the floor, was
// taken for the old one, and the start skipped its messages up to the
// floor (here 2 of 3 orders, never delivered). The same floor read on this
// very stream is taken.
func TestSavedFloorOfAnotherStreamIsNotTaken(t *testing.T) {
	st := newStalled(t, "PAYFLOOROTHER")
	for range 3 {
		publishOrder(t, st.s, st.names.Subject)
	}
	created := st.streamCreated(t)
	consumer := created.Add(time.Minute)
	if info := st.startOnSavedFloor(t, 2, consumer, created.Add(-time.Hour)); info.NumPending != 3 {
		t.Errorf("on a floor of another stream the consumer the start created has %d messages to deliver, want 3 (the stream's): it starts at stream sequence %d",
			info.NumPending, info.Config.OptStartSeq)
	}
	if info := st.startOnSavedFloor(t, 2, consumer, created); info.NumPending != 1 {
		t.Errorf("on a floor of its stream the consumer the start created has %d messages to deliver, want 1 (above the floor): it starts at stream sequence %d",
			info.NumPending, info.Config.OptStartSeq)
	}
}

// streamCreated is when st's stream was created, by its own record.
func (st *stalled) streamCreated(t *testing.T) time.Time {
	t.Helper()
	str, err := st.s.JS.Stream(context.Background(), st.names.Stream)
	if err != nil {
		t.Fatal(err)
	}
	return str.CachedInfo().Created
}

// startOnSavedFloor saves floor seq of a consumer created at created, read
// on a stream created at streamCreated (zero: unknown), deletes st's
// durable and starts as service.New does, which finds it gone, and returns
// the info of the consumer the start created.
func (st *stalled) startOnSavedFloor(t *testing.T, seq uint64, created, streamCreated time.Time) *jetstream.ConsumerInfo {
	t.Helper()
	ctx := context.Background()
	floors := adapters.NewFloorGorm(st.db)
	if err := adapters.SaveFloorOn(ctx, floors, st.names.Durable, st.names.Stream, seq, created, streamCreated); err != nil {
		t.Fatal(err)
	}
	if err := st.s.JS.DeleteConsumer(ctx, st.names.Stream, st.names.Durable); err != nil {
		t.Fatal(err)
	}
	cons, err := adapters.CreateConsumer(ctx, st.s.JS, st.names, st.cfg, floors, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cons.CachedInfo()
}

// TestSavedFloorFollowsAConsumerReset: an operator reset the consumer to
// an earlier sequence (nats-server 2.14, $JS.API.CONSUMER.RESET) to have
// orders handled again; its ack floor went back, its creation time did
// not. The store kept the highest floor of one consumer, the one from
// before the reset, so a start that then found the consumer gone created
// it above the orders still being handled: never charged. The last floor
// read of a consumer is now kept (one saved late is corrected by the next
// look).
func TestSavedFloorFollowsAConsumerReset(t *testing.T) {
	st := newStalled(t, "PAYFLOORRESET") // charges hang: what is replayed stays owed
	ctx := context.Background()
	const before = 3
	for range before {
		publishOrder(t, st.s, st.names.Subject)
	}
	batch, err := st.cons.Fetch(before) // settled by someone else, as far as the floor goes
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	floors := adapters.NewFloorGorm(st.db)
	events := adapters.NewOrderEvents(st.cons, st.names, st.app, st.maxDeliver, slog.New(st.logs)).Recreates(st.s.JS).RemembersFloor(floors)
	stop := st.startOn(t, events, 1)
	savedIs := func(want uint64) func() bool {
		return func() bool {
			seq, _, err := adapters.SavedFloor(ctx, floors, st.names.Durable, st.names.Stream)
			if err != nil {
				t.Fatal(err)
			}
			return seq == want
		}
	}
	runtest.Eventually(t, 10*time.Second, "the floor to be saved", savedIs(before))

	if _, err := st.s.JS.ResetConsumerToSequence(ctx, st.names.Stream, st.names.Durable, 1); err != nil {
		t.Fatal(err)
	}
	runtest.Eventually(t, 10*time.Second, "the floor after the reset to be read", func() bool {
		return adapters.AckFloorSeen(events) == 0
	})
	runtest.Eventually(t, 10*time.Second, "the floor after the reset to be saved", savedIs(0))
	cutOff, cancel := context.WithTimeout(ctx, time.Second) // the hung charges are given up, not settled
	defer cancel()
	stop(cutOff)
	if err := st.s.JS.DeleteConsumer(ctx, st.names.Stream, st.names.Durable); err != nil {
		t.Fatal(err)
	}
	cons, err := adapters.CreateConsumer(ctx, st.s.JS, st.names, st.cfg, floors, nil)
	if err != nil {
		t.Fatal(err)
	}
	if info := cons.CachedInfo(); info.NumPending != before {
		t.Errorf("the consumer the start created has %d messages to deliver, want %d (the orders replayed, never charged)", info.NumPending, before)
	}
}
