package breaker

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestBreakerWindowSlides(t *testing.T) {
	b, clk := newTest(t, Settings{Window: 10 * time.Second, Buckets: 10, MinRequests: 10})
	for range 9 {
		call(t, b, true)
	}
	clk.advance(11 * time.Second) // those 9 failures leave the window
	call(t, b, true)
	if b.State() != Closed {
		t.Fatal("tripped on failures older than the window")
	}
	// Within one window they add up: 1 + 9 = 10 failures of 10.
	clk.advance(5 * time.Second)
	for range 9 {
		call(t, b, true)
	}
	if b.State() != Open {
		t.Fatalf("state %v with 10/10 failures inside the window, want open", b.State())
	}
}

func TestWindowCounts(t *testing.T) {
	w := newWindow(time.Second, 4) // 250ms slots
	ms := int64(time.Millisecond)
	w.add(0, true)
	w.add(100*ms, false)
	w.add(300*ms, false)
	w.add(900*ms, true)
	if ok, fail := w.totals(999 * ms); ok != 2 || fail != 2 {
		t.Fatalf("at 999ms: ok %d fail %d, want 2/2", ok, fail)
	}
	// At 1100ms the first slot (0-250ms) has left the window.
	if ok, fail := w.totals(1100 * ms); ok != 1 || fail != 1 {
		t.Fatalf("at 1100ms: ok %d fail %d, want 1/1", ok, fail)
	}
	// Writing into a rolled-over slot resets it first.
	w.add(1100*ms, false)
	if ok, fail := w.totals(1100 * ms); ok != 2 || fail != 1 {
		t.Fatalf("after reuse: ok %d fail %d, want 2/1", ok, fail)
	}
}

func TestWindowConcurrentAddsAreNotLost(t *testing.T) {
	w := newWindow(time.Hour, 10)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				w.add(1, g%2 == 0)
			}
		}()
	}
	wg.Wait()
	if ok, fail := w.totals(1); ok != 4000 || fail != 4000 {
		t.Fatalf("ok %d fail %d, want 4000/4000", ok, fail)
	}
}

func TestHalfOpenAdmitsExactlyTheTrialsUnderConcurrency(t *testing.T) {
	b, clk := newTest(t, Settings{MinRequests: 1, OpenBase: time.Second, HalfOpenTrials: 3})
	call(t, b, true)
	clk.advance(time.Second)

	var admitted, tooMany atomic.Int32
	var wg sync.WaitGroup
	reports := make(chan func(error, int), 64)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := b.Guard(context.Background())
			switch {
			case err == nil:
				admitted.Add(1)
				reports <- r
			case errors.Is(err, ErrTooManyTrials):
				tooMany.Add(1)
			default:
				t.Errorf("unexpected %v", err)
			}
		}()
	}
	wg.Wait()
	close(reports)
	if admitted.Load() != 3 || tooMany.Load() != 61 {
		t.Fatalf("admitted %d, refused %d; want exactly 3 trials", admitted.Load(), tooMany.Load())
	}
	for r := range reports {
		r(nil, 200)
	}
	if b.State() != Closed {
		t.Fatalf("state %v after 3 good trials", b.State())
	}
}

func TestLateOutcomesFromAnEarlierStateAreIgnored(t *testing.T) {
	b, clk := newTest(t, Settings{MinRequests: 1, OpenBase: time.Second, HalfOpenTrials: 1})
	early, _ := b.Allow() // admitted while closed, still running
	call(t, b, true)      // trips
	clk.advance(time.Second)
	trial, err := b.Guard(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	early(false) // a success from before the trip must not close the breaker
	if b.State() != HalfOpen {
		t.Fatalf("late closed-state outcome moved the breaker to %v", b.State())
	}
	trial(context.Canceled, 0)
	if b.State() != HalfOpen {
		t.Fatalf("cancelled trial moved the breaker to %v", b.State())
	}
	if _, err := b.Guard(context.Background()); err != nil {
		t.Fatalf("slot of the cancelled trial not given back: %v", err)
	}
}

// TestOutcomesFromAnEarlierClosedPeriodAreIgnored: calls admitted before a
// trip that end only after the breaker closed again (they hung on the sick
// upstream until their timeout) describe the upstream as it was, not as the
// trials just found it. Counted in the fresh window, they re-opened a
// breaker whose upstream had recovered and shed its healthy traffic.
func TestOutcomesFromAnEarlierClosedPeriodAreIgnored(t *testing.T) {
	b, clk := newTest(t, Settings{MinRequests: 4, OpenBase: time.Second, HalfOpenTrials: 3})
	var hung []func(Outcome)
	for range 10 {
		done, err := b.Admit()
		if err != nil {
			t.Fatal(err)
		}
		hung = append(hung, done)
	}
	for range 4 {
		call(t, b, true)
	}
	if b.State() != Open {
		t.Fatalf("state %v after 4 failures, want open", b.State())
	}
	clk.advance(time.Second)
	for range 3 {
		call(t, b, false) // the trials find the upstream well again
	}
	if b.State() != Closed {
		t.Fatalf("state %v after 3 good trials, want closed", b.State())
	}
	call(t, b, false)
	for _, done := range hung {
		done(Failure) // their timeouts, at last
	}
	if b.State() != Closed {
		t.Fatalf("outcomes of calls admitted before the trip moved the recovered breaker to %v", b.State())
	}
	// The new period still counts its own calls: 3 failures of 4.
	for range 3 {
		call(t, b, true)
	}
	if b.State() != Open {
		t.Fatalf("state %v after 3 failures of its own in 4 calls, want open", b.State())
	}
}
