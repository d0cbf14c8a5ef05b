package adapters_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
	"github.com/shanhai-dev/shanhai/services/payment/internal/adapters"
)

// heldCallback is a consumer whose Consume holds the callback of the
// second message it receives until let is closed, so that what the server
// sends after it waits in the client's buffer; and whose pull, once
// stopped, is unsubscribed before Stop returns, as nats.go does a moment
// later on its own goroutine.
type heldCallback struct {
	jetstream.Consumer
	let  chan struct{}
	mu   sync.Mutex
	seen int
}

func (c *heldCallback) Consume(handler jetstream.MessageHandler, opts ...jetstream.PullConsumeOpt) (jetstream.ConsumeContext, error) {
	cc, err := c.Consumer.Consume(func(m jetstream.Msg) {
		c.mu.Lock()
		c.seen++
		second := c.seen == 2
		c.mu.Unlock()
		if second {
			<-c.let
		}
		handler(m)
	}, opts...)
	if err != nil {
		return nil, err
	}
	return unsubscribedOnStop{cc}, nil
}

type unsubscribedOnStop struct{ jetstream.ConsumeContext }

// Stop returns once the pull is unsubscribed. Closed is polled: a channel
// it returned while the subscription was live closes only after the
// callback returns, and here the callback is held.
func (cc unsubscribedOnStop) Stop() {
	cc.ConsumeContext.Stop()
	for {
		select {
		case <-cc.Closed():
			return
		case <-time.After(time.Millisecond):
		}
	}
}

// TestPauseKeepsWhatTheClientBufferedOnItsLastDelivery: a message the client
// had received but not yet handed to the callback when a stuck replica
// pauses its pull must still reach the queue if it is on its last allowed
// delivery: JetStream delivers it no more, so dropped there it is neither
// charged nor dead-lettered, lost without a word. Here MaxDeliver is 1, so
// every delivery is the last: one worker hangs on the first order, the
// callback of the second is held while the third waits in the client's
// buffer, and the replica pauses. Before, the pause stopped the pull and
// the third order was dropped: two charges of three.
func TestPauseKeepsWhatTheClientBufferedOnItsLastDelivery(t *testing.T) {
	// The server wants more deliveries than back-off steps: none.
	st := newStalledWith(t, "PAYSTALLBUF", 1, nil)
	s, names, cons, prov, logs := st.s, st.names, st.cons, st.prov, st.logs
	held := &heldCallback{Consumer: cons, let: make(chan struct{})}
	stop := st.startOn(t, adapters.NewOrderEvents(held, names, st.app, st.maxDeliver, slog.New(logs)), 1)
	defer stop(context.Background())
	let, released := false, false
	defer func() {
		if !let {
			close(held.let)
		}
		if !released {
			close(prov.release)
		}
	}()

	const orders = 3
	for range orders {
		publishOrder(t, s, names.Subject)
	}
	runtest.Eventually(t, 10*time.Second, "the server to deliver every order to the replica", func() bool {
		info, err := cons.Info(context.Background())
		return err == nil && info.NumAckPending == orders
	})
	runtest.Eventually(t, 30*time.Second, "the stuck replica to pause its pull", func() bool {
		return logs.seen("workers stuck: pull paused until a worker moves")
	})
	close(held.let)
	let = true
	close(prov.release)
	released = true
	runtest.Eventually(t, 30*time.Second, "the two orders handed to the callback to be charged", func() bool {
		return prov.Charges() >= orders-1
	})
	runtest.Eventually(t, 30*time.Second, "the order the client had buffered, on its last delivery, to be charged too", func() bool {
		return prov.Charges() == orders
	})
}
