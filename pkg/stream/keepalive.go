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

// Keeper keeps the messages of one consumer from being redelivered while
// the consumer holds them: from the moment its Consume callback receives
// one, through the wait for a free worker, until a worker has settled it.
// Every half of the consumer's first ack wait (FirstAckWait) it sends
// InProgress, which restarts the server's ack timer, for at most the
// consumer's AckWait.
//
// A short first ack wait is wanted (a crashed worker's message comes back
// fast), but without this a message that takes longer than it, waiting in
// a queue behind a slow one or handled by a slow payment provider, is
// delivered again meanwhile: harmless with idempotent handlers, but double
// the work exactly when the system is slow. A crashed process stops ticking
// with its timers, so its messages are still redelivered one ack wait after
// its last tick. A message held past AckWait (a handler hung on a dead
// connection, or one it waits behind) is treated the same way: the ticks
// stop with a warning, so another worker or replica gets the message
// instead of it waiting on this one for good.
type Keeper struct {
	every  time.Duration
	atMost time.Duration
	log    *slog.Logger
}

// NewKeeper returns the Keeper of the consumer configured by cfg; log (nil:
// slog.Default) takes the warning of a message held too long.
func NewKeeper(cfg jetstream.ConsumerConfig, log *slog.Logger) *Keeper {
	if log == nil {
		log = slog.Default()
	}
	atMost := cfg.AckWait
	if atMost <= 0 {
		atMost = 30 * time.Second // the server's default AckWait
	}
	return &Keeper{every: max(FirstAckWait(cfg)/2, time.Millisecond), atMost: atMost, log: log}
}

// Hold starts keeping m alive; call release once m is settled (or its
// handler gave up on it, so it is left for redelivery). After release
// returns nothing more is sent for m. Call Hold as soon as the Consume
// callback receives m, before queueing it: the server's ack timer started
// when it delivered m, not when a worker takes it.
//
// A message settled before the first tick costs one timer and sends
// nothing; the ticks run on a time.AfterFunc chain, not a goroutine per
// message. An InProgress that fails is logged at debug and retried on the
// next tick: at worst the message is redelivered, as it would be without
// the Keeper, so it is no reason to fail handling.
func (k *Keeper) Hold(m jetstream.Msg) (release func()) {
	h := &hold{m: m, every: k.every, until: time.Now().Add(k.atMost), atMost: k.atMost, log: k.log}
	// Held while the timer is created, so a tick that fires at once finds h.t set.
	h.mu.Lock()
	h.t = time.AfterFunc(h.every, h.tick)
	h.mu.Unlock()
	return h.release
}

type hold struct {
	m      jetstream.Msg
	every  time.Duration
	until  time.Time
	atMost time.Duration
	log    *slog.Logger

	mu      sync.Mutex // a tick runs whole or not at all against release
	t       *time.Timer
	stopped bool
}

func (h *hold) tick() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return
	}
	if !time.Now().Before(h.until) {
		h.log.Warn("message still held; no longer keeping it from redelivery",
			"subject", h.m.Subject(), "after", h.atMost)
		return
	}
	err := h.m.InProgress()
	if errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
		// Settled already (release is about to be called): nothing left to keep alive.
		return
	}
	if err != nil {
		h.log.Debug("message in progress not signalled", "subject", h.m.Subject(), "err", err)
	}
	h.t.Reset(h.every)
}

func (h *hold) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopped = true
	h.t.Stop()
}
