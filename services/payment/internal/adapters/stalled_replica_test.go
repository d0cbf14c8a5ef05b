package adapters_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/stream"
	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"
	"github.com/shanhai-dev/shanhai/services/payment/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/payment/internal/app"
	"github.com/shanhai-dev/shanhai/services/payment/internal/config"
	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

// stallingProvider hangs every charge until release is closed, then charges
// it as a healthy provider does: a database or provider connection every
// replica reaches hangs, then recovers.
type stallingProvider struct {
	*adapters.SimulatedProvider
	release chan struct{}
}

func (p *stallingProvider) Charge(ctx context.Context, c payment.Charge) (payment.Answer, error) {
	select {
	case <-p.release:
	case <-ctx.Done():
		return payment.Answer{}, payment.ErrProviderFault
	}
	return p.SimulatedProvider.Charge(ctx, c)
}

// deliveryCounter records the highest delivery count the server gave each
// stored message it handed to the consumer's callback.
type deliveryCounter struct {
	jetstream.Consumer
	mu        sync.Mutex
	delivered map[uint64]uint64 // stream sequence: highest NumDelivered
}

func (c *deliveryCounter) Consume(handler jetstream.MessageHandler, opts ...jetstream.PullConsumeOpt) (jetstream.ConsumeContext, error) {
	return c.Consumer.Consume(func(m jetstream.Msg) {
		if md, err := m.Metadata(); err == nil {
			c.mu.Lock()
			c.delivered[md.Sequence.Stream] = max(c.delivered[md.Sequence.Stream], md.NumDelivered)
			c.mu.Unlock()
		}
		handler(m)
	}, opts...)
}

// most returns the highest delivery count of any message and how many
// messages were delivered.
func (c *deliveryCounter) most() (most uint64, messages int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.delivered {
		most = max(most, n)
	}
	return most, len(c.delivered)
}

// logSeen is a slog.Handler that tells whether a message was logged, and
// with which "err".
type logSeen struct {
	mu   sync.Mutex
	msgs map[string]bool
	errs map[string]string // message: the last "err" logged with it
}

func (l *logSeen) Enabled(context.Context, slog.Level) bool { return true }
func (l *logSeen) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logSeen) WithGroup(string) slog.Handler            { return l }

func (l *logSeen) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs[r.Message] = true
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			if l.errs == nil {
				l.errs = map[string]string{}
			}
			l.errs[r.Message] = a.Value.String()
		}
		return true
	})
	return nil
}

// errOf is the "err" last logged with msg.
func (l *logSeen) errOf(msg string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.errs[msg]
}

func (l *logSeen) seen(msg string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.msgs[msg]
}

// stalled is one replica on a consumer of a short AckWait (2 s) and
// BackOff (200 ms first), its provider hung until release.
type stalled struct {
	s          *svctest.Stream
	names      adapters.Names
	maxDeliver int
	cfg        jetstream.ConsumerConfig
	cons       jetstream.Consumer
	counted    *deliveryCounter
	prov       *stallingProvider
	logs       *logSeen
	app        app.Application
	events     *adapters.OrderEvents // startRecreating's
	db         *gorm.DB              // the payments' (PostgreSQL)
}

const stalledMaxDeliver = 10

func newStalled(t *testing.T, service string) *stalled {
	return newStalledWith(t, service, stalledMaxDeliver, stream.BackOff(200*time.Millisecond, stalledMaxDeliver))
}

// newStalledWith is newStalled with that MaxDeliver and BackOff.
func newStalledWith(t *testing.T, service string, maxDeliver int, backOff []time.Duration) *stalled {
	t.Helper()
	db := stores(t)[database.Postgres]
	oc := newOrderConsumer(t, service, maxDeliver, func(cfg *jetstream.ConsumerConfig) {
		cfg.AckWait = 2 * time.Second
		cfg.BackOff = backOff
	})
	s, names, cfg, cons := oc.s, oc.names, oc.cfg, oc.cons
	prov := &stallingProvider{
		SimulatedProvider: adapters.NewSimulatedProvider(func() config.Dynamic {
			return config.Dynamic{LatencyMedianMs: 1, LatencyP99Ms: 1, DeclineAboveCents: 100000}
		}),
		release: make(chan struct{}),
	}
	return &stalled{db: db, s: s, names: names, maxDeliver: maxDeliver, cfg: cfg, cons: cons, counted: &deliveryCounter{Consumer: cons, delivered: map[uint64]uint64{}},
		prov: prov, logs: &logSeen{msgs: map[string]bool{}},
		app: app.New(app.Deps{Payments: adapters.NewPaymentGorm(db), Provider: prov, NewID: uuid.NewString})}
}

// start starts the replica with one worker, counting deliveries.
func (st *stalled) start(t *testing.T) (stop func(context.Context)) {
	t.Helper()
	return st.startOn(t, adapters.NewOrderEvents(st.counted, st.names, st.app, st.maxDeliver, slog.New(st.logs)), 1)
}

// startOn starts c, built on st's consumer, with that many workers.
func (st *stalled) startOn(t *testing.T, c *adapters.OrderEvents, workers int) (stop func(context.Context)) {
	t.Helper()
	stop, err := adapters.WithConsumerConfig(adapters.WithWorkers(c, workers), st.cfg).Start()
	if err != nil {
		t.Fatal(err)
	}
	return stop
}

// TestStalledReplicaStopsPulling: when every replica's workers are stuck
// (here the only replica, its one worker hung), the queue a stuck replica
// gives up must not be pulled again and again: each delivery spends one of
// the order's MaxDeliver untried, and an order that reaches its last one is
// dead-lettered on the first failure after the stall. Before, the replica
// kept pulling, and the orders' delivery counts grew on every back-off
// step of the stall (4 deliveries 1.5 s into it). Run with a short AckWait
// and BackOff: the stall lasts four AckWaits, and no order may be
// delivered more than three times in it; once the worker frees, every
// order is charged.
func TestStalledReplicaStopsPulling(t *testing.T) {
	st := newStalled(t, "PAYSTALL")
	const (
		orders = 3
		bound  = 3
	)
	reader := sdkmetric.NewManualReader()
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	stop := st.start(t)
	defer stop(context.Background())
	released := false
	defer func() {
		if !released {
			close(st.prov.release)
		}
	}()

	for range orders {
		publishOrder(t, st.s, st.names.Subject)
	}
	runtest.Eventually(t, 10*time.Second, "the replica to receive every order", func() bool {
		_, n := st.counted.most()
		return n == orders
	})

	// The stall: the worker stays hung for four AckWaits, two after the
	// pool counts as stuck. Polled so that a count past the bound fails at
	// once.
	end := time.Now().Add(4 * st.cfg.AckWait)
	for time.Now().Before(end) {
		if most, _ := st.counted.most(); most > bound {
			t.Fatalf("an order was delivered %d times while the replica's only worker was stuck (bound %d): its deliveries are spent untried", most, bound)
		}
		time.Sleep(50 * time.Millisecond)
	}
	most, _ := st.counted.most()
	t.Logf("highest delivery count over the stall: %d", most)
	if !st.logs.seen("workers stuck: pull paused until a worker moves") {
		t.Error("the stuck replica did not say it paused its pull")
	}
	// The two orders queued behind the stuck worker were given up: logged,
	// and counted (before, only logged).
	if got := adapters.CounterBy(t, reader, "shanhai.payment.consumer.given_up", "")[""]; got < orders-1 {
		t.Errorf("shanhai.payment.consumer.given_up = %d over the stall, want at least %d (the queue behind the stuck worker)", got, orders-1)
	}

	close(st.prov.release)
	released = true
	runtest.Eventually(t, 30*time.Second, fmt.Sprintf("all %d orders to be charged once the worker frees", orders), func() bool {
		return st.prov.Charges() == orders
	})
	if !st.logs.seen("workers moving again: pull resumed") {
		t.Error("the replica did not say it resumed its pull")
	}
}

// TestStopOfAPausedReplica: a replica stopped while its pull is paused must
// stop (its stuck worker cut off, no send on the closed queue, no callback
// left) and lose nothing: a replica started after it charges every order.
func TestStopOfAPausedReplica(t *testing.T) {
	st := newStalled(t, "PAYSTALLSTOP")
	const orders = 3
	stop := st.start(t)
	for range orders {
		publishOrder(t, st.s, st.names.Subject)
	}
	runtest.Eventually(t, 30*time.Second, "the stuck replica to pause its pull", func() bool {
		return st.logs.seen("workers stuck: pull paused until a worker moves")
	})
	stop(expired())

	close(st.prov.release)
	stop = st.start(t)
	defer stop(context.Background())
	runtest.Eventually(t, 60*time.Second, fmt.Sprintf("all %d orders to be charged by the next replica", orders), func() bool {
		return st.prov.Charges() == orders
	})
}
