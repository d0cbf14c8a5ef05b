package adapters

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

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
	"github.com/shanhai-dev/shanhai/services/order/internal/app"
	"github.com/shanhai-dev/shanhai/services/order/internal/domain/order"
)

// Payment result subject and event types this consumer acts on.
const (
	PaymentsSubject  = "shanhai.payments"
	PaymentSucceeded = "payment.succeeded"
	PaymentFailed    = "payment.failed"
	// PaymentRefunded follows payment.succeeded when an order was cancelled
	// after (or while) it was charged. It is informational here: the order is
	// already CANCELLED (a cancel is what causes a refund) and no order state
	// follows from it, so it is acked without being applied (a refund of
	// an order not CANCELLED is an alarm: PaymentEvents.refunded).
	PaymentRefunded = "payment.refunded"
)

// PaymentResultData is the payment.succeeded / payment.failed payload.
// Currency is absent (empty) from results written before payment sent it.
type PaymentResultData struct {
	PaymentID   string `json:"payment_id"`
	OrderID     string `json:"order_id"`
	UserID      string `json:"user_id"`
	AmountCents int64  `json:"amount_cents"`
	Currency    string `json:"currency"`
	Reason      string `json:"reason"`
}

// PaymentEvents consumes payment results from JetStream (durable "order",
// explicit acks) and applies them through the ApplyPayment use case.
type PaymentEvents struct {
	cons       jetstream.Consumer
	names      Names
	apply      app.ApplyPaymentHandler
	maxDeliver int
	log        *slog.Logger
	tracer     trace.Tracer
	handled    metric.Int64Counter
	workers    int
	queue      int // what a lane holds: the consumer's MaxAckPending, so the callback never waits (see Start)
	keep       *stream.Keeper
}

// Workers is how many payment results are applied at once (lanes, see Start).
const Workers = 16

// DefaultNames are the platform's: stream SHANHAI, durable "order" on
// shanhai.payments.> and shanhai.payments (stream.Filters).
var DefaultNames = Names{Stream: Stream, StreamSubjects: StreamSubjects, Subject: PaymentsSubject, Durable: app.ConsumerName}

// MaxDeliver is how many times a result is delivered by default.
const MaxDeliver = 20

// ConsumerConfig is the durable consumer this service owns; zero fields of
// names take DefaultNames, and maxDeliver ≤ 0 takes MaxDeliver. maxDeliver
// bounds redelivery of a message whose processing keeps failing (e.g. the
// database is down for longer than the backoff covers). BackOff alone spaces
// redeliveries, 1 s, 2 s, 4 s, 8 s, then 16 s (stream.BackOff): of a result
// whose handling failed (retry leaves it unsettled) as of a crashed worker's.
func ConsumerConfig(names Names, maxDeliver int) jetstream.ConsumerConfig {
	names = names.Or(DefaultNames)
	if maxDeliver <= 0 {
		maxDeliver = MaxDeliver
	}
	return jetstream.ConsumerConfig{
		Durable:        names.Durable,
		FilterSubjects: stream.Filters(names.Subject),
		AckPolicy:      jetstream.AckExplicitPolicy,
		// With BackOff set, nats-server takes its steps as the ack waits,
		// not this: a message unsettled 1 s after its first delivery is
		// delivered again (then after 2 s, 4 s ...). The short first step
		// brings a crashed worker's message back fast; Start keeps a
		// message it holds, queued or being handled, from coming back
		// meanwhile (stream.Keeper), for at most this AckWait: a message
		// held longer (a stuck handler) is lost to the back-off, as a
		// crashed one's is.
		AckWait:       30 * time.Second,
		MaxDeliver:    maxDeliver,
		BackOff:       stream.BackOff(time.Second, maxDeliver),
		MaxAckPending: 256,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

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

// NewPaymentEvents builds the handler of cons (from EnsureConsumer with the
// same names and maxDeliver); zero fields of names take DefaultNames.
func NewPaymentEvents(cons jetstream.Consumer, names Names, apply app.ApplyPaymentHandler, maxDeliver int, log *slog.Logger) *PaymentEvents {
	if log == nil {
		log = slog.Default()
	}
	handled, _ := otel.Meter("shanhai/order").Int64Counter("shanhai.order.payment_events",
		metric.WithDescription("payment result messages handled, by outcome: applied, unchanged, contradicts, duplicate, informational, ignored, retry, terminated (README)"))
	if maxDeliver <= 0 {
		maxDeliver = MaxDeliver
	}
	cfg := ConsumerConfig(names, maxDeliver)
	return &PaymentEvents{cons: cons, names: names.Or(DefaultNames), apply: apply, maxDeliver: maxDeliver, log: log,
		tracer: otel.Tracer("shanhai/order"), handled: handled, workers: Workers,
		queue: cfg.MaxAckPending, keep: stream.NewKeeper(cfg, log)}
}

// Start begins consuming. The returned stop function stops delivery and
// waits until every message received is handled, or until its ctx ends:
// then the handlers' context is cancelled, so a result waiting on the
// database (a locked order row, a slow disk) is cut off, left unsettled and
// applied on redelivery, and what is still queued fails fast the same way.
// It waits for the workers either way.
func (c *PaymentEvents) Start() (stop func(context.Context), err error) {
	// Each result waits on a few database round trips, so one message at a
	// time caps the consumer at a few hundred per second and queues the rest
	// behind the slowest commit. Results are spread over lanes by order id
	// (the Kafka key the bridge carries): orders are applied concurrently,
	// while one order's results still apply one at a time in stream order, so
	// the first result for an order wins as it did with a single consumer.
	//
	// A message is kept alive from the moment it is received: the server's
	// ack timer runs while it waits in its lane as much as while it is
	// handled. The callback never waits either, so messages do not wait
	// unkept in the client's buffer behind it: the server hands out at most
	// MaxAckPending messages at once, and a lane holds that many, so all of
	// them fit even when they share one order's lane. (Only a redelivery of
	// a message held past AckWait, whose first copy is still queued, can
	// fill a lane; the callback then waits for that lane, as it did before.)
	lanes := make([]chan held, c.workers)
	handling, cutOff := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range lanes {
		lane := make(chan held, c.queue)
		lanes[i] = lane
		wg.Go(func() {
			for h := range lane {
				c.Handle(handling, h.m)
				h.release()
			}
		})
	}
	stopLanes := func() {
		for _, l := range lanes {
			close(l)
		}
		wg.Wait()
	}
	seed := maphash.MakeSeed()
	cc, err := c.cons.Consume(func(m jetstream.Msg) {
		lanes[maphash.String(seed, laneKey(m))%uint64(len(lanes))] <- held{m, c.keep.Hold(m)}
	})
	if err != nil {
		cutOff()
		stopLanes()
		return nil, fmt.Errorf("consume %s: %w", c.names.Subject, err)
	}
	return func(ctx context.Context) {
		defer cutOff()
		// Closed is signalled once no callback is running, so no send races
		// the closing of the lanes.
		stream.DrainWithin(ctx, func() { cc.Drain(); <-cc.Closed(); stopLanes() }, cutOff)
	}, nil
}

// held is a message received and kept alive until release is called.
type held struct {
	m       jetstream.Msg
	release func()
}

// laneKey is what orders the results of one aggregate: the Kafka key (the
// order id) the bridge copies into kafka_key, else the event's subject (also
// the order id). A message with neither goes to the first lane.
func laneKey(m jetstream.Msg) string {
	h := m.Headers()
	if k := h.Get("kafka_key"); k != "" {
		return k
	}
	return h.Get(event.HeaderSubject)
}

// Handle processes one message and settles it: ack when done or irrelevant,
// left unsettled on a transient failure (redelivered on the consumer's
// BackOff; ctx ending is one), term when it can never succeed. It does not
// keep m from being redelivered meanwhile: Start does, from the moment m is
// received until Handle returns.
func (c *PaymentEvents) Handle(ctx context.Context, m jetstream.Msg) {
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

func (c *PaymentEvents) process(ctx context.Context, m jetstream.Msg) (string, error) {
	env, err := event.FromHeaders(stream.Headers(m.Headers()), m.Data())
	if err != nil {
		return c.term(ctx, m, fmt.Errorf("not a CloudEvent: %w", err))
	}
	switch env.Type {
	case PaymentSucceeded, PaymentFailed:
	case PaymentRefunded:
		return c.refunded(ctx, m, env)
	default:
		return "ignored", c.ack(m)
	}
	var d PaymentResultData
	if err := env.Decode(&d); err != nil {
		return c.term(ctx, m, fmt.Errorf("decode %s %s: %w", env.Type, env.ID, err))
	}
	if err := checkResult(env, d); err != nil {
		return c.term(ctx, m, err)
	}
	res, err := c.apply.Handle(ctx, app.ApplyPayment{
		EventID: env.ID, OrderID: d.OrderID, UserID: d.UserID, AmountCents: d.AmountCents, Currency: d.Currency,
		Outcome: order.PaymentOutcome{PaymentID: d.PaymentID, Succeeded: env.Type == PaymentSucceeded, Reason: d.Reason},
	})
	switch {
	case errors.Is(err, order.ErrNotFound), errors.Is(err, order.ErrResultMismatch):
		// Payment only answers orders this service created, with their user
		// and total, so an unknown order id or another user or amount is
		// corrupt input, not a race worth retrying.
		return c.term(ctx, m, err)
	case err != nil:
		return c.retry(ctx, m, err)
	}
	// Debug, not info: one line per event is the busiest log of the service
	// under load; the outcome counter and the consumer span carry the same facts.
	c.log.DebugContext(ctx, "payment result handled", "event_id", env.ID, "type", env.Type, "order_id", d.OrderID,
		"duplicate", res.Duplicate, "changed", res.Changed)
	switch {
	case res.Duplicate:
		return "duplicate", c.ack(m)
	case res.Contradicts:
		// Not a replay: payment never sends the opposite of a result it
		// sent for an order (services/payment README, "Never a success
		// after a failure"), nor a second payment's success, so money may
		// be taken for an order this service calls FAILED, or twice for a
		// PAID one, or an order is PAID on a charge payment disowns.
		// Nothing here can compensate it; an operator must look.
		// Recorded and acked like any result: a redelivery would change
		// nothing and is counted "duplicate" without a second alarm.
		paymentStatus := "FAILED"
		if env.Type == PaymentSucceeded {
			paymentStatus = "SUCCEEDED"
		}
		c.log.ErrorContext(ctx, "payment result contradicts the order's final state",
			"order_id", d.OrderID, "order_status", string(res.Status), "order_payment_id", res.PaymentID,
			"payment_id", d.PaymentID, "payment_status", paymentStatus, "event_id", env.ID, "type", env.Type)
		return "contradicts", c.ack(m)
	case !res.Changed:
		// Recorded, but the order had already left PENDING: a replay of
		// the settling result under another event id, or a result for a
		// cancelled order (payment voids or refunds its charge).
		// Counted apart so that "applied" is the orders this consumer moved.
		return "unchanged", c.ack(m)
	}
	return "applied", c.ack(m)
}

// refunded acks a payment.refunded, which changes no order: informational
// when its order is CANCELLED, as every refund the saga makes is (a cancel
// is what causes one). A refund of an order in another state (PAID: shown
// paid, and shipped, with its money given back) is logged at ERROR and
// counted "contradicts", for an operator, and recorded as processed
// (app.ApplyPaymentHandler.Refunded), so its redelivery is counted
// "duplicate" and alarms no more (before, it was only read, and each
// delivery alarmed again). A refund that names no order this service can
// read (malformed, unknown, another user's) stays informational, as every
// refund was; a database error leaves it for redelivery.
func (c *PaymentEvents) refunded(ctx context.Context, m jetstream.Msg, env event.Envelope) (string, error) {
	var d PaymentResultData
	if env.Decode(&d) != nil || checkResult(env, d) != nil {
		return "informational", c.ack(m)
	}
	res, err := c.apply.Refunded(ctx, app.ApplyPayment{EventID: env.ID, OrderID: d.OrderID, UserID: d.UserID, AmountCents: d.AmountCents})
	switch {
	case errors.Is(err, order.ErrNotFound):
		return "informational", c.ack(m)
	case err != nil:
		return c.retry(ctx, m, err)
	case res.Duplicate:
		return "duplicate", c.ack(m)
	case !res.Contradicts:
		return "informational", c.ack(m)
	}
	c.log.ErrorContext(ctx, "payment result contradicts the order's final state",
		"order_id", d.OrderID, "order_status", string(res.Status), "order_payment_id", res.PaymentID,
		"payment_id", d.PaymentID, "payment_status", "REFUNDED", "event_id", env.ID, "type", env.Type)
	return "contradicts", c.ack(m)
}

// checkResult rejects a result that can never apply correctly, so it is
// terminated at once: retried, it would fail the same way on every delivery
// until JetStream dropped it unrecorded; applied, it would mark an order
// paid by nobody. Order ids are this service's UUIDs, a result names its
// payment, and the event id and the stored fields must be text PostgreSQL
// can hold (no NUL, valid UTF-8). ApplyPayment checks the user and amount.
func checkResult(env event.Envelope, d PaymentResultData) error {
	if !storable(env.ID) {
		return fmt.Errorf("%s has an event id that cannot be stored: %q", env.Type, env.ID)
	}
	switch {
	case d.OrderID == "":
		return fmt.Errorf("%s %s has no order_id", env.Type, env.ID)
	case uuid.Validate(d.OrderID) != nil:
		return fmt.Errorf("%s %s: order_id %q is not an order id", env.Type, env.ID, d.OrderID)
	case d.PaymentID == "":
		return fmt.Errorf("%s %s has no payment_id", env.Type, env.ID)
	case !storable(d.PaymentID) || !storable(d.Reason):
		return fmt.Errorf("%s %s: payment_id %q or reason %q cannot be stored", env.Type, env.ID, d.PaymentID, d.Reason)
	}
	return nil
}

func storable(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

func (c *PaymentEvents) ack(m jetstream.Msg) error {
	if err := m.Ack(); err != nil {
		return fmt.Errorf("ack: %w", err)
	}
	return nil
}

func (c *PaymentEvents) term(ctx context.Context, m jetstream.Msg, cause error) (string, error) {
	cause = stream.ClipReason(cause) // the cause quotes fields a hostile publisher sizes
	c.log.ErrorContext(ctx, "payment result dropped", "subject", m.Subject(), "err", cause)
	if err := m.TermWithReason(cause.Error()); err != nil {
		return "terminated", fmt.Errorf("term: %w (cause: %w)", err, cause)
	}
	return "terminated", cause
}

// retry leaves m unsettled, for the consumer's BackOff to deliver it again,
// or terminates on the last allowed delivery: at that point JetStream would
// drop the result silently, and the order would stay PENDING with no word of
// why. It does not nak: a nak is redelivered at once, and one with a delay
// after its delay plus the back-off step less the first (stream.BackOff).
func (c *PaymentEvents) retry(ctx context.Context, m jetstream.Msg, cause error) (string, error) {
	var delivered uint64 = 1
	if md, err := m.Metadata(); err == nil {
		delivered = md.NumDelivered
	}
	if int(delivered) >= c.maxDeliver {
		return c.term(ctx, m, fmt.Errorf("still failing after %d deliveries: %w", delivered, cause))
	}
	c.log.WarnContext(ctx, "payment result will be retried", "delivered", delivered, "err", cause)
	return "retry", cause
}
