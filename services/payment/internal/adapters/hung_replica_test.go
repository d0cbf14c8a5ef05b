package adapters_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
	"github.com/shanhai-dev/shanhai/services/payment/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/payment/internal/app"
	"github.com/shanhai-dev/shanhai/services/payment/internal/config"
	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

// hungProvider never answers a charge until the test ends: a replica whose
// provider connection (or database) hangs, its workers stuck.
type hungProvider struct {
	payment.Provider
	calls   atomic.Int32
	release chan struct{}
}

func (p *hungProvider) Charge(ctx context.Context, _ payment.Charge) (payment.Answer, error) {
	p.calls.Add(1)
	select {
	case <-p.release:
	case <-ctx.Done():
	}
	return payment.Answer{}, payment.ErrProviderFault
}

// TestHungReplicaDoesNotHoldItsQueue: a replica whose workers hang kept the
// messages waiting in its queue from redelivery for AckWait per round of
// workers the queue holds (2 minutes at the production figures, while
// every worker is stuck), and the consumer's MaxAckPending is shared by
// every replica, so a hung one held back orders the healthy ones could have
// charged. A worker's own message is given up after AckWait (30 s); the
// queue behind a pool that has not moved for that long is given up with it.
// Here replica A has one worker, stuck on the first order, and the second
// waits in its queue (held 256 × 30 s before); replica B is healthy, and
// must charge both while A is still stuck.
func TestHungReplicaDoesNotHoldItsQueue(t *testing.T) {
	db := stores(t)[database.Postgres]
	ctx := context.Background()
	const maxDeliver = 10
	oc := newOrderConsumer(t, "PAYHUNG", maxDeliver, nil)
	s, names, cons := oc.s, oc.names, oc.cons

	hung := &hungProvider{release: make(chan struct{})}
	a := app.New(app.Deps{Payments: adapters.NewPaymentGorm(db), Provider: hung, NewID: uuid.NewString})
	stopA, err := adapters.WithWorkers(adapters.NewOrderEvents(cons, names, a, maxDeliver, nil), 1).Start()
	if err != nil {
		t.Fatal(err)
	}
	// Released before A stops, so its stuck worker ends.
	defer stopA(context.Background())
	defer close(hung.release)

	publishOrder(t, s, names.Subject)
	publishOrder(t, s, names.Subject)
	runtest.Eventually(t, 10*time.Second, "replica A to hold both orders, one charging, one queued", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && hung.calls.Load() == 1 && info.NumAckPending == 2
	})

	healthy := adapters.NewSimulatedProvider(func() config.Dynamic {
		return config.Dynamic{LatencyMedianMs: 1, LatencyP99Ms: 1, DeclineAboveCents: 100000}
	})
	b := app.New(app.Deps{Payments: adapters.NewPaymentGorm(db), Provider: healthy, NewID: uuid.NewString})
	stopB, err := adapters.NewOrderEvents(cons, names, b, maxDeliver, nil).Start()
	if err != nil {
		t.Fatal(err)
	}
	defer stopB(context.Background())

	// AckWait (30 s) for the stuck worker's hold, then the back-off; well
	// short of what the queue was held before (256 × 30 s here, 2 minutes
	// with the production's 64 workers).
	runtest.Eventually(t, 75*time.Second, "the healthy replica to charge both orders while replica A is stuck", func() bool {
		return healthy.Charges() == 2
	})
}
