package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/testenv/proctest"
	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"
	"github.com/shanhai-dev/shanhai/services/payment/internal/config"
)

// The tests in this file run the payment binary as a process and stop it with SIGTERM, as every rolling update and
// scale-in does. The binary is this test binary: with ChildEnv set, TestMain runs main instead of the tests (see
// proctest), so the process is main's own wiring, environment and signal handling, without a separate build.
var binary = proctest.Binary{Name: "payment", ChildEnv: "PAYMENT_TEST_RUN_MAIN"}

func TestMain(m *testing.M) { binary.Main(m, main) }

// newPaymentEnv adds payment's own variables: a settings key of the test's own (until written, the initial settings
// apply: a provider fast enough for a long stream), which it returns.
func newPaymentEnv(t *testing.T) (*proctest.Env, string) {
	key := "/shanhai/test/payment/" + svctest.Random(4)
	e := proctest.NewEnv(t, binary, "PAYMENT_SETTINGS_KEY="+key,
		"PROVIDER_LATENCY_MEDIAN=2ms", "PROVIDER_LATENCY_P99=10ms", "PROVIDER_FAILURE_RATE=0", "CONSUMER_MAX_DELIVER=10")
	t.Cleanup(func() { _, _ = e.Etcd.Delete(context.Background(), key) })
	return e, key
}

// setLatency makes the provider take latency for every charge, through the dynamic settings.
func setLatency(t *testing.T, e *proctest.Env, key string, latency time.Duration) {
	t.Helper()
	ms := float64(latency.Milliseconds())
	b, err := json.Marshal(config.Dynamic{LatencyMedianMs: ms, LatencyP99Ms: ms, DeclineAboveCents: 100000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Etcd.Put(context.Background(), key, string(b)); err != nil {
		t.Fatal(err)
	}
}

// TestSIGTERMDrainsRequests stops the binary while clients that follow discovery read payments, with the payments
// table locked across SIGTERM (see stopUnderLoad): every request is answered 200, none is reset or left hanging.
func TestSIGTERMDrainsRequests(t *testing.T) {
	e, _ := newPaymentEnv(t)
	e.StopUnderLoad(t, "payments", http.StatusOK, listPayments)
}

// TestSIGTERMMidStreamChargesEveryOrderOnce stops the binary while its consumer is charging orders: the provider is
// made slow, so the charges are in the provider's hands when SIGTERM comes. The stopped instance must finish them
// (a payment left PENDING would be charged again by a new process's provider, whose memory of idempotency keys is
// gone); after a restart every order has one payment and one payment.succeeded event, although each order.created
// came twice, and every outbox row, the stopped relay's leftovers included, is on Kafka.
func TestSIGTERMMidStreamChargesEveryOrderOnce(t *testing.T) {
	const n, before, inHand = 120, 40, 20
	e, key := newPaymentEnv(t)
	tail := proctest.TailKafka(t, "shanhai.payments")
	first := e.Start(t)

	orders := make([]string, n)
	for i := range orders {
		orders[i] = uuid.NewString()
	}
	// Each order.created is published twice, as a Kafka redelivery through the bridge would be. The first orders are
	// charged before the stop; the next ones while the provider takes three seconds a charge, which is longer than
	// the stop needs to reach the consumer, so they are in hand when it does. They are fewer than the consumer's
	// workers, so a stop that did not wait for its workers would not be held back by the delivery either. The rest of
	// the stream comes after the stop.
	publish := func(ids []string) {
		for _, id := range ids {
			env, err := event.New("order.created", "/shanhai/order", id, map[string]any{
				"order_id": id, "user_id": "buyer", "total_cents": 1500, "currency": "EUR",
			})
			if err != nil {
				t.Fatal(err)
			}
			for range 2 {
				e.Stream.Publish(t, e.Stream.Prefix+"shanhai.orders", "shanhai.orders", id, svctest.Headers(env, nil), env.Data)
			}
		}
	}
	publish(orders[:before])
	runtest.Eventually(t, 20*time.Second, "the first orders charged", func() bool { return payments(t, e, "SUCCEEDED") == before })
	setLatency(t, e, key, 3*time.Second)
	first.WaitLog(t, "payment settings changed")
	publish(orders[before : before+inHand])
	runtest.Eventually(t, 10*time.Second, "the next orders claimed", func() bool { return payments(t, e, "PENDING") == inHand })
	first.Stop(t)
	setLatency(t, e, key, 2*time.Millisecond) // for the next instance
	publish(orders[before+inHand:])
	if pending := payments(t, e, "PENDING"); pending > 0 {
		t.Fatalf("the stopped instance left %d payments PENDING", pending)
	}
	unsent, leased := e.EndLeases(t)
	t.Logf("the stopped instance charged %d of %d orders and left %d outbox rows unsent, %d of them leased",
		payments(t, e, "SUCCEEDED"), n, unsent, leased)

	second := e.Start(t)
	e.Stream.Drained(t, "payment", 15*time.Second)
	e.AllSent(t)
	second.Stop(t)

	var byOrder []struct {
		OrderID string
		N       int
	}
	if err := e.DB.Raw("SELECT order_id, count(*) AS n FROM payments WHERE status = 'SUCCEEDED' GROUP BY order_id").
		Scan(&byOrder).Error; err != nil {
		t.Fatal(err)
	}
	if all := payments(t, e, ""); len(byOrder) != n || all != n {
		t.Fatalf("%d orders have a SUCCEEDED payment, %d payments in all; want %d each", len(byOrder), all, n)
	}
	var events []struct {
		Key string
		N   int
	}
	if err := e.DB.Raw("SELECT key, count(*) AS n FROM outbox WHERE event_type = 'payment.succeeded' GROUP BY key").
		Scan(&events).Error; err != nil {
		t.Fatal(err)
	}
	if len(events) != n {
		t.Fatalf("%d orders have a payment.succeeded event, want %d", len(events), n)
	}
	for _, ev := range events {
		if ev.N != 1 {
			t.Fatalf("order %s has %d payment.succeeded events", ev.Key, ev.N)
		}
	}
	var dead int64
	if err := e.DB.Table("dead_letters").Count(&dead).Error; err != nil {
		t.Fatal(err)
	}
	if dead != 0 {
		t.Fatalf("%d messages dead-lettered", dead)
	}
	e.EveryRowInKafka(t, tail)
}

// TestSIGTERMLeavesClaimedRowsForTheNextRelay stops the binary while its relay has claimed payment.succeeded rows and
// waits for a Kafka broker that accepts connections but never answers. The stop must still end, the claimed rows must
// stay unsent (never marked without being published) and claimable, and the next instance, with Kafka answering,
// publishes every one of them.
func TestSIGTERMLeavesClaimedRowsForTheNextRelay(t *testing.T) {
	const n = 20
	e, _ := newPaymentEnv(t)
	tail := proctest.TailKafka(t, "shanhai.payments")
	first := e.Start(t, "KAFKA_BROKERS="+proctest.SilentBroker(t))
	for range n {
		id := uuid.NewString()
		env, err := event.New("order.created", "/shanhai/order", id, map[string]any{
			"order_id": id, "user_id": "buyer", "total_cents": 1500, "currency": "EUR",
		})
		if err != nil {
			t.Fatal(err)
		}
		e.Stream.Publish(t, e.Stream.Prefix+"shanhai.orders", "shanhai.orders", id, svctest.Headers(env, nil), env.Data)
	}
	e.Stream.Drained(t, "payment", 10*time.Second)
	e.StopWhileRelayClaims(t, first, n)
	e.NextInstanceSendsAll(t, tail)
}

// payments counts payments in status ("" for all).
func payments(t *testing.T, e *proctest.Env, status string) int {
	t.Helper()
	q := e.DB.Table("payments")
	if status != "" {
		q = q.Where("status = ?", status)
	}
	var n int64
	if err := q.Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	return int(n)
}

// listPayments asks for the payments of a random order; it returns the status, or the error of a request that got
// no answer.
func listPayments(c *http.Client, addr, tok string) (int, error) {
	req, err := http.NewRequest("GET", "http://"+addr+"/api/v1/payments?order_id="+uuid.NewString(), nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
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
