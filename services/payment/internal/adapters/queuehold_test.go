package adapters

import (
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/stream"
	"github.com/shanhai-dev/shanhai/services/payment/internal/app"
)

// The queue's hold at the production figures: MaxAckPending (256) messages
// for Workers (64) are four rounds of handlers, each held for the ack wait
// (30 s), so a message may wait 2 minutes for a worker; the Keeper still
// ticks on the server's first ack wait (the BackOff's 1 s step), not on a
// quarter of those 2 minutes. TestBacklogAtTheLatencyLimitIsDeliveredOnce
// runs one worker, where the rounds are the whole queue.
func TestQueueHoldAtTheProductionFigures(t *testing.T) {
	c := NewOrderEvents(nil, Names{}, app.Application{}, 10, nil)
	if c.workers != 64 || c.queue != 256 || c.cfg.AckWait != 30*time.Second {
		t.Fatalf("workers %d, queue %d, ack wait %v: the production figures changed, follow them here", c.workers, c.queue, c.cfg.AckWait)
	}
	hold := c.queueHold()
	if hold.AckWait != 2*time.Minute {
		t.Errorf("queue hold %v, want 4 rounds × 30 s = 2m", hold.AckWait)
	}
	if got, want := stream.FirstAckWait(hold), stream.FirstAckWait(c.cfg); got != want || want != time.Second {
		t.Errorf("the queue's Keeper reads a first ack wait of %v, want the server's %v (1s)", got, want)
	}
	// A remainder is a round of its own: 65 workers still leave 4 rounds.
	c.workers = 65
	if got := c.queueHold().AckWait; got != 2*time.Minute {
		t.Errorf("65 workers: queue hold %v, want 2m", got)
	}
}

// Without a BackOff the server's first ack wait is AckWait itself, 30 s:
// the queue's Keeper, reading its multiplied AckWait as the first ack
// wait, ticked every 60 s (half of 2 minutes), and the server delivered
// again every message that waited in the queue over 30 s.
func TestQueueHoldWithoutBackOffTicksWithinTheAckWait(t *testing.T) {
	c := NewOrderEvents(nil, Names{}, app.Application{}, 10, nil)
	c.cfg.BackOff = nil
	hold := c.queueHold()
	if hold.AckWait != 2*time.Minute {
		t.Errorf("queue hold %v, want 2m", hold.AckWait)
	}
	if got := stream.FirstAckWait(hold); got != 30*time.Second {
		t.Errorf("the queue's Keeper reads a first ack wait of %v, want the server's 30s: it ticks every half of it", got)
	}
}
