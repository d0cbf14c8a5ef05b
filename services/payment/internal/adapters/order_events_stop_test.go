package adapters_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/services/payment/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

// faultThenHang faults its first charge and answers none after it: it waits
// until its context ends (a provider that stopped answering).
type faultThenHang struct {
	calls    atomic.Int32
	charging chan struct{} // closed when the second charge begins
}

func (p *faultThenHang) Charge(ctx context.Context, _ payment.Charge) (payment.Answer, error) {
	if p.calls.Add(1) == 1 {
		return payment.Answer{}, fmt.Errorf("%w: first call", payment.ErrProviderFault)
	}
	close(p.charging)
	<-ctx.Done()
	return payment.Answer{}, fmt.Errorf("%w: %w", payment.ErrProviderFault, ctx.Err())
}

func (p *faultThenHang) Refund(context.Context, payment.Refund) error { return nil }

func (p *faultThenHang) Void(context.Context, payment.Void) (bool, error) { return false, nil }

// TestStopCutsOffTheLastDeliveryAndRecordsIt: a stop whose deadline passed
// cuts off the charge in hand; on the message's last allowed delivery that
// gives it up, and its dead letter must still be recorded (the database is
// open until the workers end), or nothing but the stream would hold it.
func TestStopCutsOffTheLastDeliveryAndRecordsIt(t *testing.T) {
	payments := adapters.NewPaymentGorm(stores(t)[database.Postgres])
	env, stop := lastDeliveryCharging(t, "PAYSTOPLAST", payments)
	stop(expired())

	dl, err := payments.DeadLetters(context.Background(), 10)
	if err != nil || len(dl) != 1 || dl[0].EventID != env.ID || !strings.Contains(dl[0].Reason, "context canceled") {
		t.Fatalf("dead letters = %+v, %v; want %s's, cut off by the stop", dl, err, env.ID)
	}
}

// hangingDeadLetters is a payment store whose dead-letter writes never
// answer: they wait until their context ends (a database that hangs).
type hangingDeadLetters struct {
	payment.Repository
	saving chan struct{} // closed when the first write begins
	once   sync.Once
}

func (h *hangingDeadLetters) SaveDeadLetter(ctx context.Context, _ payment.DeadLetter) error {
	h.once.Do(func() { close(h.saving) })
	<-ctx.Done()
	return fmt.Errorf("store dead letter: %w", ctx.Err())
}

// TestStopIsNotHeldByAHangingDeadLetter: the dead letter of a delivery a
// stop cut off is recorded on a context the cut-off does not end, so that it
// is not lost; a database that hangs must still not hold the stop (which
// waits for the workers) for ever.
func TestStopIsNotHeldByAHangingDeadLetter(t *testing.T) {
	payments := &hangingDeadLetters{Repository: adapters.NewPaymentGorm(stores(t)[database.Postgres]), saving: make(chan struct{})}
	_, stop := lastDeliveryCharging(t, "PAYSTOPHANG", payments)
	stopped := make(chan struct{})
	go func() { stop(expired()); close(stopped) }()
	select {
	case <-payments.saving:
	case <-time.After(30 * time.Second):
		t.Fatal("the cut-off last delivery was not dead-lettered within 30 s")
	}
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("stop still waiting 30 s after its deadline: held by a dead-letter write that never answers")
	}
}

// lastDeliveryCharging publishes an order whose first charge faults and
// whose second, its last allowed delivery, hangs at the provider; it returns
// the order.created once that charge has begun, and the consumer's stop.
func lastDeliveryCharging(t *testing.T, prefix string, payments payment.Repository) (event.Envelope, func(context.Context)) {
	t.Helper()
	provider := &faultThenHang{charging: make(chan struct{})}
	f, stop := consumeWith(t, prefix, payments, provider, 2)
	env := publishOrder(t, f.s, f.names.Subject)
	select {
	case <-provider.charging:
	case <-time.After(30 * time.Second):
		t.Fatal("the second delivery was not charged within 30 s")
	}
	return env, stop
}

// expired is the context of a stop whose deadline has passed.
func expired() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
