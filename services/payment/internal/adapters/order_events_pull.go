package adapters

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// puller is the pull of one Start, which the watch stops while the workers
// are stuck and starts again once they move. Each start is a new Consume of
// the durable consumer: a stopped one cannot be resumed. The watch alone
// uses it until it ends, then the stop alone (drain).
//
// The client may also stop a pull on its own: the server ended it (409
// Consumer Deleted when the durable is deleted, 400 Bad Request) or the
// connection closed for good. Nothing else notices, so the watch asks
// (stoppedItself) and starts a new one, recreating the consumer first
// when it can (ensure): a new pull of a deleted consumer is answered by
// nobody and would wait for ever. Before, the replica stayed ready and
// consumed nothing, without a word.
//
// A consumer deleted while the pull is paused ends no pull of this
// replica, and neither does one deleted between the watch's look at the
// pull and its pause (the 409 of a drained pull is not reported): the pull
// resumed later is such a pull of a deleted consumer. The server answers
// its first request with 503 No Responders, and then nothing, so a pull
// the client reports that of is taken as stopped too (dead).
//
// So is a pull whose request the server refused (refused): the consumer's
// config on the server no longer takes this client's pulls (an operator
// lowered MaxRequestBatch, MaxRequestExpires or MaxRequestMaxBytes, or
// made the durable a push consumer while keeping its config digest). The
// client reports the 409 and keeps the pull, which asks again every 30 s
// and is refused again; nothing heals it but a change of the config, so
// the first one is acted on: the pull is stopped and the consumer's config
// put back (ensure with repair) before a new one, on the back-off of a
// failed start (a consumer the repair cannot change is retried and logged
// at ERROR every back-off, up to AckWait).
type puller struct {
	cons       jetstream.Consumer
	handler    jetstream.MessageHandler // sends to the queue
	closeQueue func()
	// ensure returns the durable consumer, created again if it is gone,
	// its config put back over the server's when repair is set; nil when
	// the OrderEvents has no JetStream to do it (Recreates).
	ensure  func(ctx context.Context, repair bool) (jetstream.Consumer, error)
	cur     jetstream.ConsumeContext   // nil while paused
	stopped []jetstream.ConsumeContext // paused (drained), maybe still handing on what the client had buffered
	broken  bool                       // the last pull stopped on its own: ensure the consumer before the next
	repair  bool                       // ... because the server refused its request: put the config back

	// A start that fails is tried again after wait, doubled on every
	// failure from first up to most: each failure is logged at ERROR, and
	// one a tick (every first ack wait) was a line a second while NATS
	// was down.
	first, most time.Duration
	wait        time.Duration
	retryAt     time.Time
	// since is when the current pull started. The back-off a refusal left
	// is kept through the restart (a config the repair could not change is
	// refused again at once) and dropped once the pull has gone a whole
	// most unrefused (settled): kept for good, a refusal weeks later
	// waited the longest delay an earlier run of refusals had grown to.
	since time.Time

	errMu sync.Mutex
	// What the client last reported of each pull (ConsumeErrHandler), so
	// that a stopped pull is logged with its own error, not with one a
	// drained pull reported since; forgotten with the pull.
	errs map[jetstream.ConsumeContext]error
	// The pulls that wait for ever although the client keeps them: No
	// Responders (their consumer is gone) or a refused request, with that
	// error.
	dead map[jetstream.ConsumeContext]error

	// gate keeps the queue from being closed under a callback sending to
	// it. Closed is not enough for a stopped pull: it is signalled as soon
	// as the subscription is unsubscribed, while a callback may still run.
	gate sync.RWMutex
	shut bool // the queue is closed
}

func (p *puller) paused() bool { return p.cur == nil }

// deliver hands m to the queue, unless the queue is closed: then m is left
// unsettled, delivered again on its back-off, as what the client had
// buffered at a stop always was.
func (p *puller) deliver(m jetstream.Msg) {
	p.gate.RLock()
	defer p.gate.RUnlock()
	if !p.shut {
		p.handler(m)
	}
}

// due reports whether a start may be tried now: not before the back-off
// of the last failed one has passed.
func (p *puller) due(now time.Time) bool { return !now.Before(p.retryAt) }

// resume starts pulling again, recreating the consumer first if the last
// pull stopped on its own. A failure sets the back-off before the next try
// and returns how long it is.
func (p *puller) resume(ctx context.Context) (retryIn time.Duration, err error) {
	if err := p.start(ctx); err != nil {
		p.wait = min(max(2*p.wait, p.first), p.most)
		p.retryAt = time.Now().Add(p.wait)
		return p.wait, err
	}
	if !p.repair {
		// A pull restarted after a refusal may be refused again at once
		// (a config the repair could not change): its back-off goes on.
		p.wait = 0
	}
	p.retryAt, p.broken, p.repair = time.Time{}, false, false
	return 0, nil
}

func (p *puller) start(ctx context.Context) error {
	if p.broken && p.ensure != nil {
		cons, err := p.ensure(ctx, p.repair)
		if err != nil {
			return fmt.Errorf("recreate the consumer: %w", err)
		}
		p.cons = cons
	}
	cc, err := p.cons.Consume(p.deliver, jetstream.ConsumeErrHandler(p.noteErr))
	if err != nil {
		return err
	}
	p.cur, p.since = cc, time.Now()
	return nil
}

// settled drops the back-off of refusals past once the current pull has
// run for most without one: the server answers a pull's first request at
// once, and the client asks again within two missed heartbeats (30 s), so
// a config still refusing has said so by then.
func (p *puller) settled(now time.Time) {
	if p.wait > 0 && p.cur != nil && now.Sub(p.since) >= p.most {
		p.wait = 0
	}
}

// noteErr keeps what the client reports of a pull (missed heartbeats, a
// deleted consumer ...), for the watch to log with the pull if it stopped,
// and which pull waits for ever.
func (p *puller) noteErr(cc jetstream.ConsumeContext, err error) {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	if p.errs == nil {
		p.errs = make(map[jetstream.ConsumeContext]error)
		p.dead = make(map[jetstream.ConsumeContext]error)
	}
	p.errs[cc] = err
	if errors.Is(err, nats.ErrNoResponders) || refused(err) {
		p.dead[cc] = err
	}
}

// deadErr is the error that left cc's pull waiting for ever, if any.
func (p *puller) deadErr(cc jetstream.ConsumeContext) error {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	return p.dead[cc]
}

// forget drops what was noted of cc and returns the last error the client
// reported of it.
func (p *puller) forget(cc jetstream.ConsumeContext) error {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	err := p.errs[cc]
	delete(p.errs, cc)
	delete(p.dead, cc)
	return err
}

// transient are the errors a pull reports that it outlives: the client
// pulls again on its own (a missed heartbeat, a timeout, a reconnection) or
// the server ended the pull (Consumer Deleted, Bad Request: closed, seen
// by stoppedItself). No Responders is dead, but apart: its consumer is gone.
var transient = []error{
	jetstream.ErrNoHeartbeat, jetstream.ErrConsumerLeadershipChanged, jetstream.ErrServerShutdown,
	jetstream.ErrPinIDMismatch, jetstream.ErrMaxBytesExceeded, jetstream.ErrBatchCompleted, jetstream.ErrNoMessages,
	jetstream.ErrConsumerDeleted, jetstream.ErrBadRequest, jetstream.ErrConnectionClosed,
	nats.ErrTimeout, nats.ErrNoResponders, nats.ErrConnectionClosed, nats.ErrConnectionDraining,
	nats.ErrConnectionReconnecting, nats.ErrReconnectBufExceeded, nats.ErrInvalidConnection,
}

// refused reports whether err is the server refusing a pull request in a
// way the client neither ends the pull for nor outlives: the statuses
// nats.go has no error of its own for (409 Exceeded MaxRequestBatch,
// MaxRequestExpires, MaxRequestMaxBytes, Consumer is push based; 409
// Exceeded MaxWaiting is not sent to a pull with heartbeats). The client
// reports the refusal and keeps the pull, asking again only after two
// missed heartbeats (30 s), refused again (nats-server 2.14.9: the refusal
// at 0 s, 30 s, 60 s ...). Anything not known as transient counts: an
// unknown error costs one restart of the pull, logged and counted, where a
// missed refusal stalled the replica.
//
// A network error is no refusal: nats.go reports the failed write of a
// pull request on a broken or blocked connection (NATS restarting), and
// pulls again once it has reconnected. Taken as a refusal, it drained the
// pull and put the consumer's config back, which fails while NATS is down,
// so the replica pulled again only on a back-off grown meanwhile (up to
// AckWait), not at the reconnection.
func refused(err error) bool {
	for _, t := range transient {
		if errors.Is(err, t) {
			return false
		}
	}
	var netErr net.Error
	return !errors.As(err, &netErr) && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed)
}

// stoppedItself reports whether the current pull has ended although
// neither pause nor drain stopped it, and then forgets it: the puller is
// paused, and the next resume recreates the consumer. What the client had
// buffered was dropped with it (the client stops, it does not drain): a
// deleted consumer's messages are delivered anew by the one recreated
// (unsettled, they lie above the ack floor it starts from: recreate), but
// after a 400 a buffered message on its last allowed delivery is not
// delivered again.
//
// A pull that waits for ever (dead: its consumer is gone, or the server
// refused its request) has not ended: it is drained as a paused one is,
// and counts as stopped, when the consumer can be created again or its
// config put back; without ensure a new pull would wait as well.
//
// err is what the client last reported of that very pull: a drained pull
// may report more after it, and the log showed that instead.
func (p *puller) stoppedItself() (stopped bool, err error) {
	if p.cur == nil {
		return false, nil
	}
	cc := p.cur
	switch dead := p.deadErr(cc); {
	case closed(cc):
		p.cur = nil
	case p.ensure != nil && dead != nil:
		p.pause()
		if !errors.Is(dead, nats.ErrNoResponders) {
			// Restarted on the back-off of a failed start, not at once:
			// a config the repair cannot change refuses the next pull too.
			p.repair = true
			p.wait = min(max(2*p.wait, p.first), p.most)
			p.retryAt = time.Now().Add(p.wait)
		}
	case dead == nil:
		p.settled(time.Now())
		return false, nil
	default:
		return false, nil
	}
	p.broken = true
	return true, p.forget(cc)
}

// pause stops pulling. Drain, not Stop: a stopped pull drops what the
// client has received but not yet handed to the callback, and a message
// among them on its last allowed delivery was lost unrecorded, as JetStream
// delivers it no more. Drained, each is handed on: the pool queues it kept
// if it is on its last delivery and unkept otherwise, for a worker to skip
// (pool.take) and the server to deliver again on its back-off, as a
// stopped pull's would have been. The pull request left on the server
// lapses with the subscription it answered. What was drained is kept until
// its callback has ended (drain), forgetting those already closed so a
// long stall of many pauses does not grow it.
func (p *puller) pause() {
	p.cur.Drain()
	p.stopped = slices.DeleteFunc(p.stopped, func(cc jetstream.ConsumeContext) bool {
		if closed(cc) {
			p.forget(cc)
			return true
		}
		return false
	})
	p.stopped = append(p.stopped, p.cur)
	p.cur = nil
}

// drain stops pulling for good, lets the callbacks hand on what the
// client had received, and closes the queue once none is sending to it.
func (p *puller) drain() {
	if p.cur != nil {
		p.cur.Drain()
		<-p.cur.Closed()
		p.cur = nil
	}
	for _, cc := range p.stopped {
		<-cc.Closed()
	}
	p.stopped = nil
	// A callback blocked on a full queue holds this until the workers
	// make room.
	p.gate.Lock()
	p.shut = true
	p.closeQueue()
	p.gate.Unlock()
}

// closed reports whether cc is fully stopped, its callback ended.
func closed(cc jetstream.ConsumeContext) bool {
	select {
	case <-cc.Closed():
		return true
	default:
		return false
	}
}
