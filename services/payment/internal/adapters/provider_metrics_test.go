package adapters

import (
	"context"
	"errors"
	"maps"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/shanhai-dev/shanhai/services/payment/internal/config"
	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

// TestSimulatedProviderCountsEveryCall: shanhai.payment.provider.calls
// counts each call once, by what came of it, including the second of two
// concurrent charges of one key (answered with the first's result) and a
// charge whose caller gave up while it waited (a stop's cut-off).
func TestSimulatedProviderCountsEveryCall(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	p := NewSimulatedProvider(func() config.Dynamic { return config.Dynamic{} })
	// Both charges of k1 pass the memory check before either is answered.
	var arrived sync.WaitGroup
	arrived.Add(2)
	p.sleep = func(ctx context.Context, _ time.Duration) error {
		arrived.Done()
		arrived.Wait()
		return nil
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if a, err := p.Charge(context.Background(), payment.Charge{IdempotencyKey: "k1"}); err != nil || !a.Approved {
				t.Error(a, err)
			}
		})
	}
	wg.Wait()
	p.sleep = sleepCtx
	cut, cancel := context.WithCancel(context.Background())
	cancel()
	p.settings = func() config.Dynamic { return config.Dynamic{LatencyMedianMs: 1000, LatencyP99Ms: 1000} }
	if _, err := p.Charge(cut, payment.Charge{IdempotencyKey: "k2"}); err == nil {
		t.Fatal("a charge whose caller gave up was answered")
	}

	want := everyResultAtZero(map[string]int64{"approved": 1, "replayed": 1, "cut_off": 1})
	if got := CounterBy(t, reader, "shanhai.payment.provider.calls", "result"); !maps.Equal(got, want) {
		t.Fatalf("calls by result = %v, want %v", got, want)
	}
}

// TestSimulatedProviderCountsARepeatedVoidAsReplayed: a key is voided once;
// the voids after it (the concurrent deliveries of one flagged order each
// void it, and a void whose answer was lost is made again) are answered
// from memory, void_replayed, as a repeated void of a refunded key is, not
// counted as more voids.
func TestSimulatedProviderCountsARepeatedVoidAsReplayed(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	p := NewSimulatedProvider(func() config.Dynamic { return config.Dynamic{} })
	ctx := context.Background()
	for _, key := range []string{"never-charged", "never-charged", "charged", "charged"} {
		if key == "charged" && !p.Charged(key) {
			if _, err := p.Charge(ctx, payment.Charge{IdempotencyKey: key}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := p.Void(ctx, payment.Void{IdempotencyKey: key}); err != nil {
			t.Fatal(err)
		}
	}
	want := everyResultAtZero(map[string]int64{"approved": 1, "voided": 1, "void_refunded": 1, "void_replayed": 2})
	if got := CounterBy(t, reader, "shanhai.payment.provider.calls", "result"); !maps.Equal(got, want) {
		t.Fatalf("calls by result = %v, want %v", got, want)
	}
}

// everyResultAtZero is counts with every other result at 0: the provider
// exports each result's series from its start (providerResults).
func everyResultAtZero(counts map[string]int64) map[string]int64 {
	all := map[string]int64{}
	for _, r := range providerResults {
		all[r] = 0
	}
	maps.Copy(all, counts)
	return all
}

// TestSimulatedProviderCountsARefusedRefund: a refund of a key the provider
// declined (voided before it was charged) is refused, a business answer the
// settle round stores as refund_declined. It is a call like any other and
// is counted once, as refund_declined; before, it was the one call the
// counter never saw, so the saga dashboard showed no provider activity for
// a refund an operator must settle by hand.
func TestSimulatedProviderCountsARefusedRefund(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	p := NewSimulatedProvider(func() config.Dynamic { return config.Dynamic{} })
	ctx := context.Background()
	if _, err := p.Void(ctx, payment.Void{IdempotencyKey: "voided"}); err != nil {
		t.Fatal(err)
	}
	if err := p.Refund(ctx, payment.Refund{IdempotencyKey: "voided"}); !errors.Is(err, ErrChargeDeclined) {
		t.Fatalf("refund of a voided key: %v, want ErrChargeDeclined", err)
	}
	want := everyResultAtZero(map[string]int64{"voided": 1, "refund_declined": 1})
	if got := CounterBy(t, reader, "shanhai.payment.provider.calls", "result"); !maps.Equal(got, want) {
		t.Fatalf("calls by result = %v, want %v", got, want)
	}
}
