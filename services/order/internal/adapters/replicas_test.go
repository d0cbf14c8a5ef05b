package adapters_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/testenv/storetest"
	"github.com/shanhai-dev/shanhai/services/order/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/order/internal/app"
	"github.com/shanhai-dev/shanhai/services/order/internal/domain/order"
	"github.com/shanhai-dev/shanhai/services/order/internal/service"
)

// replica is one order service instance as far as payment results and
// cancels go: its own pool, repository and use cases over the shared
// database, as two pods of the deployment are.
type replica struct {
	app app.Application
	mu  sync.Mutex
	// fallbacks counts ApplyOnce's locking transactions by event id: the
	// event's record inserted inside a transaction is that path's alone (the
	// two-round-trip path records it in its one statement, outside any).
	fallbacks map[string]int
}

func newReplica(t *testing.T, url string) *replica {
	t.Helper()
	db, err := database.OpenMigrated(context.Background(), url, database.Options{}, service.Migrate)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = database.Close(db) })
	r := &replica{fallbacks: map[string]int{}}
	err = db.Callback().Raw().Before("gorm:raw").Register("test:fallbacks", func(tx *gorm.DB) {
		// dedup.Once's arguments: consumer, event id, time.
		if _, inTx := tx.Statement.ConnPool.(*sql.Tx); inTx && strings.HasPrefix(tx.Statement.SQL.String(), "INSERT INTO processed_events") {
			r.mu.Lock()
			r.fallbacks[fmt.Sprint(tx.Statement.Vars[1])]++
			r.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	r.app = app.New(app.Deps{
		Orders:  adapters.NewOrderGorm(db),
		Catalog: adapters.NewCatalogGorm(db),
		NewID:   func() string { return uuid.Must(uuid.NewV7()).String() },
		Render:  func(s order.Snapshot) ([]byte, error) { return json.Marshal(map[string]any{"id": s.ID}) },
	})
	return r
}

// delivery is one payment result handed to one replica, and what came of it.
type delivery struct {
	replica int
	event   string
	outcome order.PaymentOutcome
	res     app.ApplyResult
	err     error
}

// A race of the kinds below, for one order.
type race int

const (
	// The same success delivered to both replicas at once (a redelivery, a
	// republish seen by both), and a copy of it under another event id.
	redelivered race = iota
	// A success and a failure for the order, each delivered to both
	// replicas: payment never sends both, but one must win and the other be
	// reported a contradiction, not applied on top.
	contradiction
	// The owner cancels (twice, a double click) while the success reaches
	// both replicas.
	cancelRace
	// The order is already CANCELLED and the owner cancels it twice more
	// while the success reaches both replicas. A repeated cancel was the one
	// update of an order that is no state change: it rewrote the row, a new
	// row version that sent 165-196 of these 400 deliveries per run to the
	// locking transaction. It writes nothing now, so none may fall back.
	repeatedCancel
	races
)

func (r race) String() string {
	return [...]string{"redelivered", "contradiction", "cancelRace", "repeatedCancel"}[r]
}

// Several replicas apply payment results to hundreds of orders at once on
// the real PostgreSQL, racing each other and the owner's cancels. Whatever
// the interleaving: each order ends in one valid state, each event id is
// recorded once and applied by exactly one delivery, each transition's
// outbox event is written once (order.created, and order.cancelled exactly
// when the order ends CANCELLED; a payment result writes none), no error
// but the documented ErrNotPending (a cancel that lost to the payment) comes
// out, and the two-round-trip path's fallback to the locking transaction is
// taken (else the race the test is about was never run), but never for an
// order that did not change.
func TestReplicasApplyEachPaymentResultOnce(t *testing.T) {
	const (
		perRace  = 100 // orders per kind of race
		inFlight = 16  // orders raced at once, as the consumer's 16 lanes
	)
	url := storetest.URLs(t)[database.Postgres]
	reps := []*replica{newReplica(t, url), newReplica(t, url), newReplica(t, url)}
	ctx := context.Background()

	type raced struct {
		kind       race
		id, user   string
		deliveries []*delivery
		cancelErrs []error
	}
	all := make([]*raced, 0, perRace*int(races))
	for i := range perRace * int(races) {
		user := fmt.Sprintf("user-%d", i%7)
		res, err := reps[i%len(reps)].app.CreateOrder.Handle(ctx, app.CreateOrder{
			UserID: user, IdempotencyKey: fmt.Sprintf("k-%d", i),
			Items: []order.Requested{{SKU: "TEA-GREEN-100G", Quantity: 1 + i%3}},
		})
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ ID string }
		if err := json.Unmarshal(res.Body, &body); err != nil {
			t.Fatal(err)
		}
		all = append(all, &raced{kind: race(i % int(races)), id: body.ID, user: user})
	}

	sem := make(chan struct{}, inFlight)
	var wg sync.WaitGroup
	for _, o := range all {
		got, err := reps[0].app.GetOrder.Handle(ctx, o.user, o.id)
		if err != nil {
			t.Fatal(err)
		}
		succeed := order.PaymentOutcome{PaymentID: "p-" + o.id, Succeeded: true}
		fail := order.PaymentOutcome{PaymentID: "p-" + o.id, Reason: "card declined"}
		var results []*delivery
		for _, rep := range []int{0, 1, 0, 1} {
			results = append(results, &delivery{replica: rep, event: "ok-" + o.id, outcome: succeed})
		}
		cancels := 0
		switch o.kind {
		case redelivered:
			results[2] = &delivery{replica: 1, event: "ok2-" + o.id, outcome: succeed}
			results[3] = &delivery{replica: 0, event: "ok2-" + o.id, outcome: succeed}
		case contradiction:
			results[2] = &delivery{replica: 1, event: "no-" + o.id, outcome: fail}
			results[3] = &delivery{replica: 0, event: "no-" + o.id, outcome: fail}
		case cancelRace:
			cancels = 2
		case repeatedCancel:
			if _, err := reps[2].app.CancelOrder.Handle(ctx, o.user, o.id); err != nil {
				t.Fatal(err)
			}
			cancels = 2
		}
		o.deliveries = results
		o.cancelErrs = make([]error, cancels)

		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			// Every delivery and cancel of the order is let go at once, so
			// they meet between one's read and its write.
			start := make(chan struct{})
			var each sync.WaitGroup
			for _, d := range o.deliveries {
				each.Add(1)
				go func() {
					defer each.Done()
					<-start
					d.res, d.err = reps[d.replica].app.ApplyPayment.Handle(ctx, app.ApplyPayment{
						EventID: d.event, OrderID: o.id, UserID: o.user, AmountCents: got.TotalCents, Outcome: d.outcome,
					})
				}()
			}
			for i := range o.cancelErrs {
				each.Add(1)
				go func() {
					defer each.Done()
					<-start
					_, o.cancelErrs[i] = reps[(2+i)%len(reps)].app.CancelOrder.Handle(ctx, o.user, o.id)
				}()
			}
			close(start)
			each.Wait()
		}()
	}
	wg.Wait()

	db, err := database.Open(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = database.Close(db) })
	recorded := map[string]int{}
	var records []struct {
		EventID string
		N       int
	}
	if err := db.Raw("SELECT event_id, count(*) AS n FROM processed_events WHERE consumer = ? GROUP BY event_id", app.ConsumerName).Scan(&records).Error; err != nil {
		t.Fatal(err)
	}
	for _, r := range records {
		recorded[r.EventID] = r.N
	}
	outboxed := map[string]int{} // "<order id> <event type>"
	var rows []struct {
		Key       string
		EventType string
		N         int
	}
	if err := db.Raw("SELECT key, event_type, count(*) AS n FROM outbox GROUP BY key, event_type").Scan(&rows).Error; err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		outboxed[r.Key+" "+r.EventType] = r.N
	}

	events := 0
	for _, o := range all {
		fail := func(format string, args ...any) {
			t.Helper()
			t.Errorf("%s order %s: %s", o.kind, o.id, fmt.Sprintf(format, args...))
		}
		final, err := reps[0].app.GetOrder.Handle(ctx, o.user, o.id)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case final.Status == order.Paid && final.PaymentID == "p-"+o.id && final.FailureReason == "":
		case final.Status == order.Failed && final.PaymentID == "p-"+o.id && final.FailureReason == "card declined":
		case final.Status == order.Cancelled && final.PaymentID == "":
		default:
			fail("ended %s, payment %q, reason %q", final.Status, final.PaymentID, final.FailureReason)
		}
		if ok := map[race][]order.Status{
			redelivered:    {order.Paid},
			contradiction:  {order.Paid, order.Failed},
			cancelRace:     {order.Paid, order.Cancelled},
			repeatedCancel: {order.Cancelled},
		}[o.kind]; !slices.Contains(ok, final.Status) {
			fail("ended %s, want one of %v", final.Status, ok)
		}

		// Each event id: recorded once, applied (not a duplicate) by one
		// of its deliveries; a change only by the result that settled the
		// order, and that result saw what is stored.
		byEvent := map[string]int{}
		for _, d := range o.deliveries {
			byEvent[d.event] = 0
		}
		changes := 0
		for _, d := range o.deliveries {
			if d.err != nil {
				fail("delivery of %s to replica %d: %v", d.event, d.replica, d.err)
				continue
			}
			if d.res.Duplicate {
				continue
			}
			byEvent[d.event]++
			if d.res.Changed {
				changes++
				if d.res.Status != final.Status || d.res.PaymentID != final.PaymentID {
					fail("%s reported %s/%q, stored %s/%q", d.event, d.res.Status, d.res.PaymentID, final.Status, final.PaymentID)
				}
			}
			wantContradicts := (final.Status == order.Paid && !d.outcome.Succeeded) || (final.Status == order.Failed && d.outcome.Succeeded)
			if d.res.Contradicts != wantContradicts {
				fail("%s reported contradicts=%v with the order %s", d.event, d.res.Contradicts, final.Status)
			}
		}
		for ev, n := range byEvent {
			events++
			if n != 1 {
				fail("%s applied by %d deliveries, want 1", ev, n)
			}
			if recorded[ev] != 1 {
				fail("%s recorded %d times, want 1", ev, recorded[ev])
			}
		}
		wantChanges, wantCancelled := 1, 0 // results that settled it; order.cancelled rows
		if final.Status == order.Cancelled {
			wantChanges, wantCancelled = 0, 1
		}
		if changes != wantChanges {
			fail("%d results changed it, want %d", changes, wantChanges)
		}

		for _, err := range o.cancelErrs {
			switch {
			case err == nil:
				if final.Status != order.Cancelled {
					fail("a cancel succeeded but the order is %s", final.Status)
				}
			case errors.Is(err, order.ErrNotPending):
				if final.Status == order.Cancelled {
					fail("a cancel of a CANCELLED order failed: %v", err)
				}
			default:
				fail("cancel: %v", err)
			}
		}
		if n := outboxed[o.id+" order.created"]; n != 1 {
			fail("order.created written %d times", n)
		}
		if n := outboxed[o.id+" order.cancelled"]; n != wantCancelled {
			fail("order.cancelled written %d times, want %d", n, wantCancelled)
		}
	}
	if len(records) != events {
		t.Errorf("%d event ids recorded, %d delivered", len(records), events)
	}
	kinds := map[string]race{}
	for _, o := range all {
		kinds[o.id] = o.kind
	}
	fallbacks, byKind := 0, make([]int, races)
	for _, r := range reps {
		for ev, n := range r.fallbacks {
			fallbacks += n
			byKind[kinds[ev[strings.IndexByte(ev, '-')+1:]]] += n
		}
	}
	t.Logf("%d orders, %d event ids, %d deliveries fell back to the locking transaction (%v: %v)",
		len(all), events, fallbacks, []race{0, 1, 2, 3}, byKind)
	if fallbacks == 0 {
		t.Error("no result fell back to the locking transaction: the race between a read and its write never happened")
	}
	if n := byKind[repeatedCancel]; n != 0 {
		t.Errorf("%d results for CANCELLED orders fell back to the locking transaction: a repeated cancel rewrote the row", n)
	}
}
