package stream

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// FirstAckWait is how long the server waits for the first delivery of a
// message of a consumer configured by cfg to be settled before it delivers
// the message again: BackOff[0] when BackOff is set (nats-server then ignores
// AckWait for the timing of redeliveries), else AckWait, else the server's
// default of 30 s.
func FirstAckWait(cfg jetstream.ConsumerConfig) time.Duration {
	switch {
	case len(cfg.BackOff) > 0:
		return cfg.BackOff[0]
	case cfg.AckWait > 0:
		return cfg.AckWait
	}
	return 30 * time.Second
}

// KeepAlive keeps m from being redelivered while its handler is still
// working on it, for at most atMost: every half of ackWait (FirstAckWait of
// the consumer) it sends InProgress, which restarts the server's ack timer.
// Call it before handling and the returned stop once m is settled (or the
// handler gave up on it); after stop returns nothing more is sent.
//
// A short first ack wait is wanted (a crashed worker's message comes back
// fast), but without this a handler slower than it, e.g. one waiting on a
// slow payment provider, sees its message delivered again while it works:
// harmless with idempotent handlers, but double the work exactly when the
// system is slow. A crashed process stops ticking with its timers, so its
// messages are still redelivered one ack wait after its last tick. A
// handler stuck past atMost (a hung connection) is treated the same way:
// the ticks stop with a warning, so another worker or replica gets the
// message instead of it waiting on this one for good.
//
// A handler that settles m before the first tick costs one timer and sends
// nothing; the ticks run on a time.AfterFunc chain, not a goroutine per
// message. An InProgress that fails is logged at debug and retried on the
// next tick: at worst the message is redelivered, as it would be without
// KeepAlive, so it is no reason to fail handling.
func KeepAlive(m jetstream.Msg, ackWait, atMost time.Duration, log *slog.Logger) (stop func()) {
	if log == nil {
		log = slog.Default()
	}
	every := max(ackWait/2, time.Millisecond)
	k := &keepAlive{m: m, every: every, until: time.Now().Add(atMost), atMost: atMost, log: log}
	// Held while the timer is created, so a tick that fires at once finds k.t set.
	k.mu.Lock()
	k.t = time.AfterFunc(every, k.tick)
	k.mu.Unlock()
	return k.stop
}

type keepAlive struct {
	m      jetstream.Msg
	every  time.Duration
	until  time.Time
	atMost time.Duration
	log    *slog.Logger

	mu      sync.Mutex // a tick runs whole or not at all against stop
	t       *time.Timer
	stopped bool
}

func (k *keepAlive) tick() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped {
		return
	}
	if !time.Now().Before(k.until) {
		k.log.Warn("message handler still working; no longer keeping its message from redelivery",
			"subject", k.m.Subject(), "after", k.atMost)
		return
	}
	err := k.m.InProgress()
	if errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
		// Settled already (stop is about to be called): nothing left to keep alive.
		return
	}
	if err != nil {
		k.log.Debug("message in progress not signalled", "subject", k.m.Subject(), "err", err)
	}
	k.t.Reset(k.every)
}

func (k *keepAlive) stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopped = true
	k.t.Stop()
}
