package adapters

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/shanhai-dev/shanhai/pkg/carrier"
	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/stream"
	"github.com/shanhai-dev/shanhai/services/payment/internal/app"
	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

// What this consumer reads.
const (
	OrdersSubject = "shanhai.orders"
	OrderCreated  = "order.created"
	// OrderCancelled is the compensation: refund the order's charge, or make
	// sure none is ever made.
	OrderCancelled = "order.cancelled"
	ConsumerName   = "payment"
)

// Workers is how many order.created messages are handled at once. A charge
// spends most of its time waiting (the provider, a few database round
// trips), so the pool is sized for the waits, not the cores: at 500 orders/s
// and ~40 ms per charge about 20 are busy on average, and the provider's
// tail needs headroom above that. It stays below the consumer's
// MaxAckPending (256), which bounds what JetStream hands out at once: the
// rest wait, kept alive, in Start's queue.
const Workers = 64

// OrderCreatedData is the part of the order.created payload payment needs.
type OrderCreatedData struct {
	OrderID    string `json:"order_id"`
	UserID     string `json:"user_id"`
	TotalCents int64  `json:"total_cents"`
	Currency   string `json:"currency"`
}

// OrderCancelledData is the order.cancelled payload.
type OrderCancelledData = OrderCreatedData

// OrderEvents consumes order.created and order.cancelled from JetStream
// (durable "payment", explicit ack) and charges each order through the
// ChargeOrder use case, or refunds or forestalls the charge through
// CancelOrder. Both types share one durable consumer and one pool, so a
// cancel may be handled before, after or while its order's create is: the
// use cases, not delivery order, keep the two consistent.
//
// Settling a message:
//   - done, duplicate or another event type: ack;
//   - provider fault (a charge cut off by a stop is one) or database
//     error: left unsettled, redelivered on the consumer's BackOff, so the
//     order completes once the fault clears;
//   - can never succeed (not a CloudEvent, bad payload, invalid order), or
//     still failing on the last allowed delivery: record a dead letter with
//     the reason, count it, and TermWithReason.
type OrderEvents struct {
	cons       jetstream.Consumer
	names      Names
	app        app.Application
	maxDeliver int
	workers    int
	log        *slog.Logger
	tracer     trace.Tracer
	handled    metric.Int64Counter
	dead       metric.Int64Counter
	unrecorded metric.Int64Counter
	pullStops  metric.Int64Counter
	givenUp    metric.Int64Counter
	js         jetstream.JetStream // recreates the consumer (Recreates); may be nil
	queue      int                 // what waits for a worker: the consumer's MaxAckPending, so the callback never waits (see Start)
	cfg        jetstream.ConsumerConfig
	// keep holds a message a worker handles, for at most AckWait from when
	// the worker took it (Start).
	keep *stream.Keeper
	// floor is where a consumer recreated after a deletion starts
	// (recreate); looked at only when c recreates (js set).
	floor ackFloor
	// floors keeps the floor for a later start (RemembersFloor); may be nil.
	floors *FloorGorm
}

// DefaultNames are the platform's: stream SHANHAI, durable "payment" on
// shanhai.orders.> and shanhai.orders (stream.Filters).
var DefaultNames = Names{Stream: Stream, StreamSubjects: StreamSubjects, Subject: OrdersSubject, Durable: ConsumerName}

// EnsureConsumer returns the durable consumer ConsumerConfig describes,
// creating the stream or the consumer only when missing or changed
// (stream.EnsureConsumer). The service calls it while wiring, beside its
// database connection, so that starting to consume later is no round trip.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, names Names, maxDeliver int) (jetstream.Consumer, error) {
	cfg := ConsumerConfig(names, maxDeliver)
	cons, err := stream.EnsureConsumer(ctx, js, names.Or(DefaultNames), cfg)
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", cfg.Durable, err)
	}
	return cons, nil
}

// NewOrderEvents builds the handler of cons (from EnsureConsumer with the same
// names and maxDeliver); zero fields of names take DefaultNames.
func NewOrderEvents(cons jetstream.Consumer, names Names, a app.Application, maxDeliver int, log *slog.Logger) *OrderEvents {
	if log == nil {
		log = slog.Default()
	}
	m := otel.Meter("shanhai/payment")
	handled, _ := m.Int64Counter("shanhai.payment.order_events", metric.WithDescription("order messages handled, by outcome"))
	dead, _ := m.Int64Counter("shanhai.payment.dead_letters", metric.WithDescription("messages terminated and recorded as dead, by cause"))
	unrecorded, _ := m.Int64Counter("shanhai.payment.dead_letters.unrecorded",
		metric.WithDescription("messages given up on at their last delivery whose dead letter could not be recorded (only the stream holds them), by cause"))
	pullStops, _ := m.Int64Counter("shanhai.payment.consumer.pull_stops",
		metric.WithDescription("pulls of the order consumer that stopped on their own (the consumer deleted on the server, the connection closed for good) or were refused by the server (its config put back), each started again with back-off"))
	givenUp, _ := m.Int64Counter("shanhai.payment.consumer.given_up",
		metric.WithDescription("order messages a replica whose workers were all stuck stopped keeping from redelivery, queued or arriving meanwhile (delivered again, maybe to another replica)"))
	// At 0 from the start: an alert reads them with increase(), which a
	// series born at 1 by a process's first stop never shows.
	pullStops.Add(context.Background(), 0)
	givenUp.Add(context.Background(), 0)
	cfg := ConsumerConfig(names, maxDeliver)
	return &OrderEvents{cons: cons, names: names.Or(DefaultNames), app: a, maxDeliver: maxDeliver, workers: Workers, log: log, tracer: otel.Tracer("shanhai/payment"), handled: handled, dead: dead, unrecorded: unrecorded,
		pullStops: pullStops, givenUp: givenUp, queue: cfg.MaxAckPending, cfg: cfg, keep: stream.NewKeeper(cfg, log)}
}

// Recreates makes c create its durable consumer again through js, with the
// config c reads, before it restarts a pull that stopped on its own: the
// server ends the pulls of a deleted consumer, and a new pull of it is
// answered by nobody. Without it the pull is restarted on the consumer c
// has, which serves a pull the server ended for another reason.
func (c *OrderEvents) Recreates(js jetstream.JetStream) *OrderEvents {
	c.js = js
	return c
}

// RemembersFloor makes c save each new ack floor it reads of its consumer
// (every five first ack waits, when it recreates: Recreates) to floors,
// where a process that starts and finds the consumer gone reads where to
// create it (CreateConsumer).
func (c *OrderEvents) RemembersFloor(floors *FloorGorm) *OrderEvents {
	c.floors = floors
	return c
}

// ConsumerConfig is the durable consumer this service owns; zero fields of
// names take DefaultNames. BackOff alone spaces redeliveries, 1 s, 2 s, 4 s,
// 8 s, then 16 s (stream.BackOff): of a message whose charge failed (retry
// leaves it unsettled) as of a crashed worker's.
func ConsumerConfig(names Names, maxDeliver int) jetstream.ConsumerConfig {
	names = names.Or(DefaultNames)
	return jetstream.ConsumerConfig{
		Durable:        names.Durable,
		FilterSubjects: stream.Filters(names.Subject),
		AckPolicy:      jetstream.AckExplicitPolicy,
		// With BackOff set, nats-server takes its steps as the ack waits,
		// not this: a message unsettled 1 s after its first delivery is
		// delivered again (then after 2 s, 4 s ...). The short first step
		// brings a crashed worker's message back fast; Start keeps a
		// message it holds from coming back meanwhile (stream.Keeper):
		// being charged (a slow or faulted provider), for at most this
		// AckWait, a handler held longer (stuck) losing its message to the
		// back-off, as a crashed one's is; and before that while it waits
		// for a worker, for at most this AckWait per round of workers
		// ahead of it in the queue (queueHold).
		AckWait:       30 * time.Second,
		MaxDeliver:    maxDeliver,
		BackOff:       stream.BackOff(time.Second, maxDeliver),
		MaxAckPending: 256,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// Start begins consuming. The returned stop function stops delivery and
// waits until every message received is handled, or until its ctx ends:
// then the handlers' context is cancelled, so a charge waiting on a slow
// provider is cut off (a provider fault: left unsettled, and charged on
// redelivery under the same payment id, which the provider answers at most
// once) and what is still queued fails fast the same way, but for a message
// on its last allowed delivery, which is still tried (see lastChance). It
// waits for the workers either way.
func (c *OrderEvents) Start() (stop func(context.Context), err error) {
	// Charges wait on the provider (tens of milliseconds), so messages are
	// handled by a bounded pool of workers rather than one at a time.
	// Concurrency is safe per order: the claim and the PENDING guard on
	// completion make two deliveries of one order converge on a single
	// charge.
	//
	// A message is kept alive from the moment it is received (unless the
	// workers are stuck: pool): the server's ack timer runs while it waits
	// for a worker as much as while it is charged. The callback never waits either, so messages do not wait
	// unkept in the client's buffer behind it: the server hands out at most
	// MaxAckPending messages at once, and the queue holds that many. (Only
	// redeliveries of messages held past their bound, whose first copies
	// are still queued, can fill it; the callback then waits, as it did
	// before.)
	//
	// The wait in the queue and the handling are held apart, each for as
	// long as it may rightly take: a message is handled for at most AckWait
	// (keep, from when a worker takes it), and waits behind at most
	// queue/workers rounds of such handlers (waiting). Held for AckWait from
	// its reception, as before, a message at the back of a full queue of
	// charges at the provider's latency limit (config.MaxLatency, 10 s: four
	// rounds of 64 workers for 256 messages) was delivered again while a
	// worker charged it: on another replica, to a simulated provider that
	// did not know its key, charged twice.
	waiting := stream.NewKeeper(c.queueHold(), c.log)
	jobs := make(chan *held, c.queue)
	pool := newPool(c.workers, c.cfg.AckWait, c.lastDelivery, func(n int) { c.givenUp.Add(context.Background(), int64(n)) })
	handling, cutOff := context.WithCancel(context.Background())
	// What is still queued at the cut-off fails fast, to be delivered again
	// to the next replica, except a message on its last allowed delivery:
	// none follows, and failing fast gave it up untried, dead-lettered
	// retries_exhausted with its order never charged (every cut-off it
	// waited through had cost it a delivery). It is handled on lastChance
	// instead, which ends deadLetterGrace after the cut-off, so all of them
	// together hold the stop that long at most (their dead letters, if
	// they fail, get their own grace after it). A charge already running at
	// the cut-off was tried: it is cut off as before.
	lastChance, endLastChance := app.Outlive(handling, deadLetterGrace)
	var wg sync.WaitGroup
	for range c.workers {
		wg.Go(func() {
			for h := range jobs {
				if !pool.take(h) {
					// Given up while it waited behind stuck workers: no
					// longer kept, so the server has delivered it again or
					// will, maybe to another replica. Handled here too, it
					// would be charged twice at once.
					continue
				}
				// Held for the handling from now. The queue's hold goes on
				// for one first ack wait more: the handling's hold ticks
				// first half an ack wait from now, and the queue's last
				// tick may have been nearly as long ago, so ending the
				// queue's hold here left the server up to a whole ack
				// wait without a word, and it delivered the message again.
				release := c.keep.Hold(h.m)
				overlap := time.AfterFunc(stream.FirstAckWait(c.cfg), h.release)
				ctx := handling
				if handling.Err() != nil && c.lastDelivery(h.m) {
					ctx = lastChance
				}
				c.Handle(ctx, h.m)
				overlap.Stop()
				h.release()
				release()
				pool.done()
			}
		})
	}
	// The watch gives up the queue while the workers are stuck (pool), and
	// stops pulling meanwhile (puller): a check every first ack wait, as
	// often as the Keeper ticks twice, and whenever a worker moves.
	pull := &puller{cons: c.cons, handler: func(m jetstream.Msg) { jobs <- pool.queue(m, waiting) }, closeQueue: func() { close(jobs) },
		first: stream.FirstAckWait(c.cfg), most: c.cfg.AckWait}
	if c.js != nil {
		pull.ensure = c.recreate
	}
	if _, err := pull.resume(context.Background()); err != nil {
		cutOff()
		pull.drain()
		wg.Wait()
		endLastChance()
		return nil, fmt.Errorf("consume %s: %w", c.names.Subject, err)
	}
	watching, endWatch := context.WithCancel(context.Background())
	var watch sync.WaitGroup
	if c.js != nil {
		watch.Go(func() { c.watchFloor(watching) })
	}
	watch.Go(func() {
		t := time.NewTicker(stream.FirstAckWait(c.cfg))
		defer t.Stop()
		for {
			select {
			case <-watching.Done():
				return
			case <-t.C:
			case <-pool.moved:
			}
			c.watch(watching, pool, pull)
		}
	})
	return func(ctx context.Context) {
		defer endLastChance()
		defer cutOff()
		// The watch ends first: from here the stop alone starts and stops
		// the pull, so none is resumed behind the drain.
		endWatch()
		watch.Wait()
		// The workers handle what is left in the queue once it is closed.
		stream.DrainWithin(ctx, func() { pull.drain(); wg.Wait() }, cutOff)
	}, nil
}

// watch pauses the pull and gives up the queue while the workers are stuck,
// and resumes the pull once they move. Only Start's watch calls it.
//
// The pull stops first: what is given up after it is delivered again to a
// replica that pulls, if any, and not to this one, which would only queue
// it unkept behind its stuck workers. When every replica is stuck (a
// database all of them reach hanging), they all stop pulling, so the
// orders' delivery counts stop growing: pulling on, each given-up order
// came back on every back-off step, spent its deliveries untried and was
// dead-lettered retries_exhausted on the first failure after the stall.
//
// It also starts again a pull that stopped on its own (puller), whatever
// the workers do: paused, it resumes below once they move. Readiness is
// not failed for it: the API still answers, and the restart, not a
// readiness probe that sends no traffic to the consumer, is what brings
// the orders back.
func (c *OrderEvents) watch(ctx context.Context, pool *pool, pull *puller) {
	if stopped, err := pull.stoppedItself(); stopped {
		c.pullStops.Add(ctx, 1)
		c.log.Error("order pull stopped on its own: restarting it", "subject", c.names.Subject,
			"recreate_consumer", pull.ensure != nil, "repair_config", pull.repair, "err", err)
	}
	if !pool.stuckNow() {
		if pull.paused() && pull.due(time.Now()) {
			restart := pull.broken
			if retryIn, err := pull.resume(ctx); err != nil {
				// Until then the replica takes nothing new, as while it
				// was stuck.
				c.log.Error("pull not resumed", "subject", c.names.Subject, "retry_in", retryIn, "err", err)
				return
			}
			if restart {
				c.log.Info("order pull restarted", "subject", c.names.Subject)
			} else {
				c.log.Info("workers moving again: pull resumed", "subject", c.names.Subject)
			}
		}
		return
	}
	if !pull.paused() {
		pull.pause()
		c.log.Warn("workers stuck: pull paused until a worker moves", "workers", c.workers, "stuck_for", c.cfg.AckWait)
	}
	if n := pool.giveUpIfStuck(); n > 0 {
		c.log.Warn("workers stuck: queued messages no longer kept from redelivery",
			"workers", c.workers, "stuck_for", c.cfg.AckWait, "queued", n)
	}
}

// queueHold is the consumer's config as the Keeper of the queue reads it:
// AckWait once per round of workers a message may wait behind when the
// queue is full, each of which is held for at most AckWait itself. Only
// the Keeper reads it; the consumer on the server keeps its own.
//
// The Keeper ticks every half of the first ack wait it reads, which is the
// BackOff's first step when there is one and AckWait otherwise. So the
// server's first ack wait is carried as a one-step BackOff when the
// consumer has none: the multiplied AckWait read in its place would tick
// every minute against the server's 30 s, and the server would deliver
// again every message that waited in the queue longer than that.
func (c *OrderEvents) queueHold() jetstream.ConsumerConfig {
	cfg := c.cfg
	if len(cfg.BackOff) == 0 {
		cfg.BackOff = []time.Duration{stream.FirstAckWait(c.cfg)}
	}
	rounds := (c.queue + c.workers - 1) / max(c.workers, 1)
	cfg.AckWait = time.Duration(max(rounds, 1)) * cfg.AckWait
	return cfg
}

// lastDelivery reports whether m is on its last allowed delivery: left
// unsettled, it would not be delivered again.
func (c *OrderEvents) lastDelivery(m jetstream.Msg) bool {
	md, err := m.Metadata()
	return err == nil && int(md.NumDelivered) >= c.maxDeliver
}

// held is a message received and kept alive until release is called.
type held struct {
	m       jetstream.Msg
	release func()
}

// pool tracks the workers of one Start and what waits for them, so that a
// queue is kept from redelivery only while the workers get through it.
//
// The queue's hold is long (queueHold: AckWait per round of workers, 2
// minutes at the production figures) so a backlog of slow charges is not
// delivered twice. But a replica whose workers are stuck (a provider or
// database connection hanging) kept its whole queue that long: the
// consumer's MaxAckPending is shared by every replica, so the stuck one
// held back up to 256 orders the others could have charged. A worker's own
// message is given up after AckWait (the handling's Keeper); once every
// worker has been busy that long without taking or finishing a message,
// the queue is given up too (giveUpIfStuck), and so is whatever arrives
// while they stay stuck: the server delivers it again on its back-off,
// maybe to a replica that moves. A message on its last allowed delivery
// is kept as before: none follows, and JetStream would drop it unrecorded.
// Meanwhile the replica does not pull (OrderEvents.watch): pulling on,
// when no replica moves, what is given up came back every back-off step
// and spent its deliveries untried.
type pool struct {
	workers int
	stuck   time.Duration // AckWait
	last    func(jetstream.Msg) bool
	gaveUp  func(n int) // counts the messages given up (the metric)

	// moved is signalled when a worker takes or finishes a message, so
	// that the watch resumes a paused pull at once. Never closed: a worker
	// may signal it until it ends.
	moved chan struct{}

	mu       sync.Mutex
	busy     int       // workers handling a message
	lastMove time.Time // a worker last took or finished a message
	queued   map[*held]struct{}
}

func newPool(workers int, stuck time.Duration, last func(jetstream.Msg) bool, gaveUp func(n int)) *pool {
	return &pool{workers: workers, stuck: stuck, last: last, gaveUp: gaveUp, lastMove: time.Now(), moved: make(chan struct{}, 1), queued: make(map[*held]struct{})}
}

// isStuck reports whether every worker has been busy for the stuck
// duration without taking or finishing a message. Call with mu held.
func (p *pool) isStuck(now time.Time) bool {
	return p.busy >= p.workers && now.Sub(p.lastMove) >= p.stuck
}

// queue returns m to be queued, kept by waiting unless the workers are
// stuck.
func (p *pool) queue(m jetstream.Msg, waiting *stream.Keeper) *held {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.isStuck(time.Now()) && !p.last(m) {
		p.gaveUp(1)
		return &held{m: m, release: func() {}}
	}
	h := &held{m: m, release: waiting.Hold(m)}
	p.queued[h] = struct{}{}
	return h
}

// take reports whether a worker may handle h: false when h was given up
// while it waited (or arrived while the workers were stuck).
func (p *pool) take(h *held) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.queued[h]; !ok {
		return false
	}
	delete(p.queued, h)
	p.busy++
	p.move()
	return true
}

// move records that a worker moved and tells the watch. Call with mu held.
func (p *pool) move() {
	p.lastMove = time.Now()
	select {
	case p.moved <- struct{}{}:
	default: // the watch has yet to take the last signal
	}
}

// stuckNow reports whether every worker has been busy for the stuck
// duration without taking or finishing a message.
func (p *pool) stuckNow() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.isStuck(time.Now())
}

// done is a worker finishing the message it took.
func (p *pool) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.busy--
	p.move()
}

// giveUpIfStuck stops keeping every queued message when the workers are
// stuck and reports how many it gave up.
func (p *pool) giveUpIfStuck() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.isStuck(time.Now()) {
		return 0
	}
	n := 0
	for h := range p.queued {
		if p.last(h.m) {
			continue
		}
		h.release()
		delete(p.queued, h)
		n++
	}
	if n > 0 {
		p.gaveUp(n)
	}
	return n
}

// Handle processes and settles one message inside a consumer span that
// continues the producer's trace from the NATS headers; ctx ending cuts the
// charge off (a provider fault, retried). It does not keep m from being
// redelivered meanwhile: Start does, from the moment m is received until
// Handle returns.
func (c *OrderEvents) Handle(ctx context.Context, m jetstream.Msg) {
	ctx = carrier.Extract(ctx, carrier.NATS(m.Headers()))
	ctx, span := c.tracer.Start(ctx, c.names.Subject+" process", trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", m.Subject()),
			attribute.String("messaging.consumer.group.name", c.names.Durable),
		))
	defer span.End()
	outcome, err := c.process(ctx, m)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.SetAttributes(attribute.String("shanhai.outcome", outcome))
	c.handled.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome)))
}

func (c *OrderEvents) process(ctx context.Context, m jetstream.Msg) (string, error) {
	h := stream.Headers(m.Headers())
	env, err := event.FromHeaders(h, m.Data())
	if err != nil {
		return c.deadLetter(ctx, m, h, event.Envelope{}, "invalid_event", fmt.Errorf("not a CloudEvent: %w", err))
	}
	switch env.Type {
	case OrderCreated:
	case OrderCancelled:
		return c.cancel(ctx, m, h, env)
	default:
		return "ignored", ack(m)
	}
	d, err := decodeOrder(env)
	if err != nil {
		return c.deadLetter(ctx, m, h, env, "invalid_payload", fmt.Errorf("decode %s: %w", env.ID, err))
	}
	if err := checkOrderID(d.OrderID); err != nil {
		return c.deadLetter(ctx, m, h, env, "invalid_order", fmt.Errorf("charge order: %w", err))
	}
	res, err := c.app.ChargeOrder.Handle(ctx, app.ChargeOrder{OrderID: d.OrderID, UserID: d.UserID, TotalCents: d.TotalCents, Currency: d.Currency})
	switch {
	case errors.Is(err, payment.ErrInvalid):
		return c.deadLetter(ctx, m, h, env, "invalid_order", err)
	case err != nil:
		return c.retry(ctx, m, h, env, err)
	}
	// Debug, not info: one line per order is the busiest log of the service
	// under load; the outcome counter and the consumer span carry the same facts.
	c.log.DebugContext(ctx, "order charged", "event_id", env.ID, "order_id", d.OrderID, "payment_id", res.PaymentID,
		"status", string(res.Status), "reason", res.Reason, "duplicate", res.Duplicate, "voided", res.Voided, "refunded", res.Refunded)
	switch {
	case res.Duplicate:
		return "duplicate", ack(m)
	case res.Voided:
		// This delivery charged nothing: counted as "charged", the void of a
		// cancelled order would read as a charge.
		return "voided", ack(m)
	case res.Refunded:
		// It stored a cancelled order's refund; a redelivery that found the
		// charge made and only refunded it, counted as "charged", read as
		// one more charge.
		return "refunded", ack(m)
	}
	return "charged", ack(m)
}

func (c *OrderEvents) cancel(ctx context.Context, m jetstream.Msg, h map[string]string, env event.Envelope) (string, error) {
	d, err := decodeOrder(env)
	if err != nil {
		return c.deadLetter(ctx, m, h, env, "invalid_payload", fmt.Errorf("decode %s: %w", env.ID, err))
	}
	if err := checkOrderID(d.OrderID); err != nil {
		return c.deadLetter(ctx, m, h, env, "invalid_order", fmt.Errorf("cancel order: %w", err))
	}
	res, err := c.app.CancelOrder.Handle(ctx, app.CancelOrder{OrderID: d.OrderID, UserID: d.UserID, TotalCents: d.TotalCents, Currency: d.Currency})
	switch {
	case errors.Is(err, payment.ErrInvalid):
		return c.deadLetter(ctx, m, h, env, "invalid_order", err)
	case err != nil:
		return c.retry(ctx, m, h, env, err)
	}
	c.log.DebugContext(ctx, "order cancellation handled", "event_id", env.ID, "order_id", d.OrderID, "payment_id", res.PaymentID,
		"status", string(res.Status), "duplicate", res.Duplicate)
	if res.Duplicate {
		return "duplicate", ack(m)
	}
	return "cancelled", ack(m)
}

// checkOrderID refuses an order id the order service never makes. Its ids
// are lower-case canonical UUIDs (uuid.NewV7's String), and it drops a
// payment result naming anything else without applying it: a charge for
// such an id took the customer's money for an order that does not exist,
// with nothing on the order side to give it back. Only the canonical form:
// the API finds a payment by order id in that form alone, so one stored
// under an upper-case or braced spelling could not be looked up. An empty
// id is left to the domain, whose reason says so.
func checkOrderID(id string) error {
	if id == "" {
		return nil
	}
	if u, err := uuid.Parse(id); err != nil || u.String() != id {
		// Quoted at most 80 bytes: the id may be a megabyte.
		return fmt.Errorf("%w: order_id %.80q is not an order id (a lower-case canonical UUID)", payment.ErrInvalid, id)
	}
	return nil
}

// retry leaves m unsettled, for the consumer's BackOff to deliver it again,
// or gives up on the last allowed delivery: at that point JetStream would
// drop the message silently, so we record it first. It does not nak: a nak
// is redelivered at once, and one with a delay is redelivered after its
// delay plus the back-off step less the first (stream.BackOff).
func (c *OrderEvents) retry(ctx context.Context, m jetstream.Msg, h map[string]string, env event.Envelope, cause error) (string, error) {
	var delivered uint64 = 1
	if md, err := m.Metadata(); err == nil {
		delivered = md.NumDelivered
	}
	if int(delivered) >= c.maxDeliver {
		return c.deadLetter(ctx, m, h, env, "retries_exhausted",
			fmt.Errorf("still failing after %d deliveries: %w", delivered, cause))
	}
	c.log.WarnContext(ctx, "order event will be retried", "event_id", env.ID, "type", env.Type, "delivered", delivered, "err", cause)
	return "retry", cause
}

func (c *OrderEvents) deadLetter(ctx context.Context, m jetstream.Msg, h map[string]string, env event.Envelope, cause string, reason error) (string, error) {
	reason = stream.ClipReason(reason) // it quotes what the message carried
	msgID := h["Nats-Msg-Id"]
	var key string
	if md, err := m.Metadata(); err == nil {
		if msgID == "" {
			msgID = fmt.Sprintf("%s/%d", md.Stream, md.Sequence.Stream)
		}
		// Every delivery of one stored message has this key, so one whose
		// termination was lost is recorded once (payment.DeadLetter).
		key = fmt.Sprintf("%s %s %d %d", c.names.Durable, md.Stream, md.Sequence.Stream, md.Timestamp.UnixNano())
	}
	d := payment.DeadLetter{Consumer: c.names.Durable, Subject: m.Subject(), MsgID: msgID, EventID: env.ID, EventType: env.Type,
		Reason: reason.Error(), MessageKey: key, Payload: m.Data(), Headers: h}
	// A charge given up on names its order, so that a cancel of the order
	// voids the charge's key itself (no delivery is left to): see
	// app.CancelOrderHandler. A cancel given up on (its refund kept
	// faulting) names it too, so that the settle round (app.SettleHandler)
	// refunds it: the cancel does not flag a SUCCEEDED row, and nothing else
	// records that the order is owed a refund. Only these: a message
	// refused as invalid neither charged nor cancelled the order's payment.
	if cause == "retries_exhausted" && (env.Type == OrderCreated || env.Type == OrderCancelled) {
		var od OrderCreatedData
		if env.Decode(&od) == nil {
			d.OrderID = od.OrderID
		}
	}
	// Recorded even when a stop cut the handler off (the database closes
	// only after the workers end): a charge cut off on the message's last
	// delivery is given up on here, and unrecorded it would be lost. But
	// for at most deadLetterGrace after the cut-off: the stop waits for the
	// workers, and a database that hangs held it for ever.
	rctx, cancel := app.Outlive(ctx, deadLetterGrace)
	defer cancel()
	err := c.app.RecordDeadLetter.Handle(rctx, d)
	// A redelivery of a message already recorded, whose termination was
	// lost: it is terminated again below, but it is no new dead letter.
	recordedBefore := errors.Is(err, payment.ErrDeadLetterRecorded)
	if err != nil && !recordedBefore {
		// Without a record, terminating would lose the message: leave it
		// unsettled, to be redelivered on the back-off and tried again.
		// Unless this was its last allowed delivery: then JetStream delivers
		// it no more (left unsettled it would only hold an ack-pending slot),
		// and the stream's copy is all that is left: the stream keeps
		// messages by limits, not by acks, so terminating does not remove
		// it. Say so loudly, with where to find it (its stream sequence),
		// instead of losing it without a word.
		if md, mdErr := m.Metadata(); mdErr == nil && int(md.NumDelivered) >= c.maxDeliver {
			c.unrecorded.Add(ctx, 1, metric.WithAttributes(attribute.String("cause", cause)))
			c.log.ErrorContext(ctx, "message given up on and not recorded as dead: recover it from the stream",
				"stream", md.Stream, "stream_seq", md.Sequence.Stream, "msg_id", msgID, "event_id", env.ID,
				"cause", cause, "reason", reason, "err", err)
			err = fmt.Errorf("dead letter not recorded on the last delivery: %w (cause: %w)", err, reason)
			if termErr := m.TermWithReason(cause + ": " + reason.Error()); termErr != nil {
				err = errors.Join(err, fmt.Errorf("term: %w", termErr))
			}
			return "unrecorded", err
		}
		// Said on every such delivery, with the record's error: counted
		// only as outcome="retry", the message would go round its back-off
		// with no word of why until its last delivery.
		c.log.WarnContext(ctx, "dead letter not recorded: the message will be delivered again",
			"msg_id", msgID, "event_id", env.ID, "cause", cause, "reason", reason, "err", err)
		return "retry", fmt.Errorf("dead letter not recorded: %w (cause: %w)", err, reason)
	}
	if recordedBefore {
		// Counted or logged as a dead letter, an alert on either would see
		// two of one message.
		c.log.WarnContext(ctx, "message already dead-lettered: terminated again", "msg_id", msgID, "event_id", env.ID, "cause", cause)
	} else {
		c.dead.Add(ctx, 1, metric.WithAttributes(attribute.String("cause", cause)))
		c.log.ErrorContext(ctx, "message dead-lettered", "msg_id", msgID, "event_id", env.ID, "cause", cause, "reason", reason)
	}
	// Not for a dead cancel: its order.created may still be delivered, and
	// GiveUp would void a flagged row whose charge is in flight.
	if d.OrderID != "" && env.Type == OrderCreated {
		c.giveUp(rctx, env, d.OrderID)
	}
	if err := m.TermWithReason(cause + ": " + reason.Error()); err != nil {
		return "dead", fmt.Errorf("term: %w (cause: %w)", err, reason)
	}
	return "dead", reason
}

// giveUp voids the charge of an order.created just dead-lettered if a
// cancel flagged it meanwhile, or refunds it if it was taken and its refund
// is what kept faulting (app.ChargeOrderHandler.GiveUp): the cancel, which
// found the row PENDING and no dead letter yet, left the void or refund to a
// delivery that will not come. The message is terminated either way and
// counted dead; a void or refund that fails is logged, the row staying
// flagged until the next settle round (app.SettleHandler) settles it.
func (c *OrderEvents) giveUp(ctx context.Context, env event.Envelope, orderID string) {
	res, err := c.app.ChargeOrder.GiveUp(ctx, orderID)
	switch {
	case err != nil:
		c.log.ErrorContext(ctx, "cancelled order's dead-lettered charge not voided or refunded: left to the settle round", "event_id", env.ID, "order_id", orderID, "err", err)
	case res.Voided:
		c.log.InfoContext(ctx, "cancelled order's dead-lettered charge voided", "event_id", env.ID, "order_id", orderID,
			"payment_id", res.PaymentID, "status", string(res.Status))
	case res.Refunded:
		c.log.InfoContext(ctx, "cancelled order's dead-lettered charge refunded", "event_id", env.ID, "order_id", orderID,
			"payment_id", res.PaymentID, "status", string(res.Status))
	}
}

// deadLetterGrace is how long recording a dead letter may go on once the
// handler's context has ended (a stop's cut-off): a healthy database stores
// the row in milliseconds.
const deadLetterGrace = 5 * time.Second

// ensureTimeout bounds one attempt to recreate the consumer: the watch,
// and so the stop that ends it, waits for it.
const ensureTimeout = 5 * time.Second

func ack(m jetstream.Msg) error {
	if err := m.Ack(); err != nil {
		return fmt.Errorf("ack: %w", err)
	}
	return nil
}
