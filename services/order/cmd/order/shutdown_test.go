package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/pkg/testenv/proctest"
	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"
)

// The tests in this file run the order binary as a process and stop it with SIGTERM, as every rolling update and
// scale-in does. The binary is this test binary: with ChildEnv set, TestMain runs main instead of the tests (see
// proctest), so the process is main's own wiring, environment and signal handling, without a separate build.
var binary = proctest.Binary{Name: "order", ChildEnv: "ORDER_TEST_RUN_MAIN"}

func TestMain(m *testing.M) { binary.Main(m, main) }

// TestSIGTERMDrainsRequestsAndRelaysEveryOrder stops the binary while clients that follow discovery create orders,
// with the orders table locked across SIGTERM (see stopUnderLoad): every request is answered 201, none is reset or left
// hanging. Every answered order is stored, and every order.created row the stopped relay left behind is published by
// the next instance.
func TestSIGTERMDrainsRequestsAndRelaysEveryOrder(t *testing.T) {
	e := proctest.NewEnv(t, binary, "REDIS_URL="+testenv.Redis(t))
	tail := proctest.TailKafka(t, "shanhai.orders")
	created := e.StopUnderLoad(t, "orders", http.StatusCreated, createOrder)

	var stored int64
	if err := e.DB.Table("orders").Count(&stored).Error; err != nil {
		t.Fatal(err)
	}
	if stored != int64(created) {
		t.Fatalf("%d orders stored, %d answered 201", stored, created)
	}
	unsent, leased := e.EndLeases(t)
	t.Logf("%d orders created under load; the stopped relay left %d outbox rows unsent, %d of them leased", created, unsent, leased)

	// The next instance publishes what the stopped one left; every row's event reaches Kafka.
	e.NextInstanceSendsAll(t, tail)
}

// TestSIGTERMMidStreamAppliesEveryResultOnce stops the binary while its consumer holds payment results it cannot
// finish yet (the orders table is locked across SIGTERM, so its workers wait inside their transactions), then starts it
// again. Every order ends in the one state its result says, with that result's payment, and each result event is
// recorded once: a result in hand at the stop was applied and acked or left for redelivery, never acked unapplied, and
// the duplicate of each result changed nothing.
func TestSIGTERMMidStreamAppliesEveryResultOnce(t *testing.T) {
	const n = 120
	e := proctest.NewEnv(t, binary, "REDIS_URL="+testenv.Redis(t))
	first := e.Start(t)
	createOrders(t, e, first.Addr, n)
	var orders []storedOrder
	if err := e.DB.Table("orders").Select("id, user_id, total_cents").Order("id").Find(&orders).Error; err != nil {
		t.Fatal(err)
	}
	if len(orders) != n {
		t.Fatalf("%d orders stored, want %d", len(orders), n)
	}

	// Each order gets one result, succeeded or failed, published twice as a Kafka redelivery through the bridge would
	// be. The first orders' results are applied before the stop; the next ones are published with the orders table
	// locked, so the consumer has them in hand, waiting, when SIGTERM comes. They are fewer than its lanes hold, so a
	// stop that did not wait for its lanes would not be held back by the delivery either. The rest come after the stop.
	results := map[string]result{}
	publish := func(orders []storedOrder) {
		for _, o := range orders {
			r := result{typ: "payment.succeeded", paymentID: uuid.NewString()}
			if len(results)%2 == 1 {
				r = result{typ: "payment.failed", paymentID: uuid.NewString(), reason: "card_declined"}
			}
			env, err := event.New(r.typ, "/shanhai/payment", o.ID, map[string]any{
				"payment_id": r.paymentID, "order_id": o.ID, "user_id": o.UserID, "amount_cents": o.TotalCents, "reason": r.reason,
			})
			if err != nil {
				t.Fatal(err)
			}
			r.eventID = env.ID
			results[o.ID] = r
			for range 2 {
				e.Stream.Publish(t, e.Stream.Prefix+"shanhai.payments", "shanhai.payments", o.ID, svctest.Headers(env, nil), env.Data)
			}
		}
	}
	const before, inHand = 40, 20
	publish(orders[:before])
	runtest.Eventually(t, 20*time.Second, "the first results applied", func() bool { return settled(t, e) == before })
	release := e.LockTable(t, "orders", func() { publish(orders[before : before+inHand]) })
	holdAcrossStop(t, first, release)
	publish(orders[before+inHand:]) // the rest of the stream, for the next instance
	t.Logf("the stopped instance applied %d of %d results", settled(t, e), n)

	second := e.Start(t)
	e.Stream.Drained(t, "order", 15*time.Second)
	second.Stop(t)

	var final []struct{ ID, Status, PaymentID, FailureReason string }
	if err := e.DB.Table("orders").Select("id, status, payment_id, failure_reason").Find(&final).Error; err != nil {
		t.Fatal(err)
	}
	for _, o := range final {
		r := results[o.ID]
		want := map[string]string{"payment.succeeded": "PAID", "payment.failed": "FAILED"}[r.typ]
		if o.Status != want || o.PaymentID != r.paymentID || o.FailureReason != r.reason {
			t.Fatalf("order %s is %s (payment %q, reason %q), want %s with payment %s, reason %q",
				o.ID, o.Status, o.PaymentID, o.FailureReason, want, r.paymentID, r.reason)
		}
	}
	var recorded []string
	if err := e.DB.Table("processed_events").Where("consumer = ?", "order").Pluck("event_id", &recorded).Error; err != nil {
		t.Fatal(err)
	}
	if len(recorded) != n {
		t.Fatalf("%d result events recorded as processed, want %d", len(recorded), n)
	}
	published := map[string]bool{}
	for _, r := range results {
		published[r.eventID] = true
	}
	for _, id := range recorded {
		if !published[id] {
			t.Fatalf("processed event %s was not published by this test", id)
		}
	}
}

// TestSIGTERMLeavesClaimedRowsForTheNextRelay stops the binary while its relay has claimed order.created rows and
// waits for a Kafka broker that accepts connections but never answers. The stop must still end, the claimed rows must
// stay unsent (never marked without being published) and claimable, and the next instance, with Kafka answering,
// publishes every one of them.
func TestSIGTERMLeavesClaimedRowsForTheNextRelay(t *testing.T) {
	const n = 20
	e := proctest.NewEnv(t, binary, "REDIS_URL="+testenv.Redis(t))
	tail := proctest.TailKafka(t, "shanhai.orders")
	first := e.Start(t, "KAFKA_BROKERS="+proctest.SilentBroker(t))
	createOrders(t, e, first.Addr, n)
	e.StopWhileRelayClaims(t, first, n)
	e.NextInstanceSendsAll(t, tail)
}

// holdAcrossStop stops in while release holds back the work it has in hand: release comes once in has begun to stop its
// workers (its drain step is done) and either exited or gone on for two seconds. A stop that did not wait for the work
// in hand exits meanwhile and abandons it in the middle; one that waits is released and finishes it. The process
// must then exit cleanly.
func holdAcrossStop(t *testing.T, in *proctest.Instance, release func()) {
	t.Helper()
	in.Terminate(t)
	in.WaitLog(t, `"step":"drain"`)
	select {
	case <-in.Exited():
	case <-time.After(2 * time.Second):
	}
	release()
	in.WaitExit(t)
}

type storedOrder struct {
	ID, UserID string
	TotalCents int64
}

// result is the payment result published for one order.
type result struct{ typ, eventID, paymentID, reason string }

// settled counts orders no longer PENDING.
func settled(t *testing.T, e *proctest.Env) int {
	t.Helper()
	var n int64
	if err := e.DB.Table("orders").Where("status <> ?", "PENDING").Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	return int(n)
}

// createOrders creates n orders through the API, eight at a time.
func createOrders(t *testing.T, e *proctest.Env, addr string, n int) {
	t.Helper()
	const clients = 8
	tokens := make([]string, clients)
	for i := range tokens {
		tokens[i] = e.Token(t, fmt.Sprintf("buyer-%d", i))
	}
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			for j := i; j < n; j += clients {
				status, err := createOrder(http.DefaultClient, addr, tokens[i])
				if err == nil && status != http.StatusCreated {
					err = fmt.Errorf("create order: answered %d", status)
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

const orderBody = `{"items":[{"sku":"TEA-GREEN-100G","quantity":1}]}`

// createOrder posts one order; it returns the status, or the error of a request that got no answer.
func createOrder(c *http.Client, addr, tok string) (int, error) {
	req, err := http.NewRequest("POST", "http://"+addr+"/api/v1/orders", strings.NewReader(orderBody))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Idempotency-Key", uuid.NewString())
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}
