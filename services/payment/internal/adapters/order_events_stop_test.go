package adapters_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/database"
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
	const maxDeliver = 2
	payments := adapters.NewPaymentGorm(stores(t)[database.Postgres])
	provider := &faultThenHang{charging: make(chan struct{})}
	f, stop := consumeWith(t, "PAYSTOPLAST", payments, provider, maxDeliver)
	env := publishOrder(t, f.s, f.names.Subject)
	select {
	case <-provider.charging:
	case <-time.After(30 * time.Second):
		t.Fatal("the second delivery was not charged within 30 s")
	}
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	stop(expired)

	dl, err := payments.DeadLetters(context.Background(), 10)
	if err != nil || len(dl) != 1 || dl[0].EventID != env.ID || !strings.Contains(dl[0].Reason, "context canceled") {
		t.Fatalf("dead letters = %+v, %v; want %s's, cut off by the stop", dl, err, env.ID)
	}
}
