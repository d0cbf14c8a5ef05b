package periodic

import (
	"context"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// rounds records when each round began, since start.
type rounds struct {
	mu    sync.Mutex
	start time.Time
	at    []time.Duration
}

func newRounds() *rounds { return &rounds{start: time.Now()} }

// round records one round and returns how many there have been.
func (r *rounds) round(context.Context) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.at = append(r.at, time.Since(r.start))
	return len(r.at)
}

func (r *rounds) times() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.at)
}

// start runs Run in the background; stop ends its context and waits for it
// to return.
func start(ctx context.Context, first, every time.Duration, fn func(context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, first, every, fn)
	}()
	return func() {
		cancel()
		<-done
	}
}

// The rounds come first after the delay, then every interval after it: on
// synctest's fake clock, so the times are exact and nothing waits.
func TestRoundsComeAfterTheFirstDelayThenEveryInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRounds()
		stop := start(t.Context(), time.Minute, time.Hour, func(ctx context.Context) { r.round(ctx) })
		time.Sleep(59 * time.Second)
		synctest.Wait()
		if got := r.times(); len(got) != 0 {
			t.Fatalf("a round before the first delay: %v", got)
		}
		time.Sleep(3*time.Hour + time.Second)
		synctest.Wait()
		want := []time.Duration{time.Minute, time.Hour + time.Minute, 2*time.Hour + time.Minute, 3*time.Hour + time.Minute}
		if got := r.times(); !slices.Equal(got, want) {
			t.Fatalf("rounds at %v, want %v", got, want)
		}
		stop()
	})
}

// A first delay of 0 runs a round at once (the services' tests do so).
func TestZeroFirstDelayRunsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRounds()
		ran := make(chan struct{}, 1)
		stop := start(t.Context(), 0, time.Hour, func(ctx context.Context) { r.round(ctx); ran <- struct{}{} })
		<-ran
		stop()
		if got := r.times(); !slices.Equal(got, []time.Duration{0}) {
			t.Fatalf("rounds at %v, want one at once", got)
		}
	})
}

// Ending the context stops Run: a round in progress gets the ended context
// and Run returns after it, with no round after it.
func TestEndingTheContextStopsIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRounds()
		inRound := make(chan struct{})
		stop := start(t.Context(), time.Minute, time.Second, func(ctx context.Context) {
			if r.round(ctx) == 1 {
				close(inRound)
			}
			<-ctx.Done() // a round that runs until it is stopped
		})
		<-inRound
		stop()
		time.Sleep(time.Hour)
		if got := r.times(); len(got) != 1 {
			t.Fatalf("rounds at %v, want 1: none after the stop", got)
		}
	})
}

// A round longer than the interval is followed by the next at once, not by
// a burst of the rounds it overran.
func TestAnOverrunIsNotCaughtUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRounds()
		stop := start(t.Context(), 0, time.Minute, func(ctx context.Context) {
			if r.round(ctx) == 1 {
				time.Sleep(5 * time.Minute)
			}
		})
		time.Sleep(6*time.Minute + time.Second)
		synctest.Wait()
		stop()
		if got, want := r.times(), []time.Duration{0, 5 * time.Minute, 6 * time.Minute}; !slices.Equal(got, want) {
			t.Fatalf("rounds at %v, want %v", got, want)
		}
	})
}

// A context that has ended by the time the timer fires starts no round,
// though select may pick either of the two ready cases.
func TestNoRoundAfterTheContextEnded(t *testing.T) {
	for range 100 { // select's choice is random: each run would pick the timer half the time
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		ran := false
		Run(ctx, 0, time.Hour, func(context.Context) { ran = true })
		if ran {
			t.Fatal("a round ran after the context ended")
		}
	}
}
