package main

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shanhai-dev/shanhai/e2e/internal/api"
)

// op is one kind of request in the mix, sent at its own constant rate.
type op struct {
	name string
	rate float64 // per second
	fn   func(context.Context) (api.Response, error)
}

// sender is the open-loop core: each op's requests are due at fixed times,
// each is sent at its time in its own goroutine whatever the earlier ones are
// doing, and its latency is taken from the time it was due.
type sender struct {
	rec         *recorder
	maxInflight int64
	inflight    atomic.Int64
	answers     sync.WaitGroup // one per request sent, done when its outcome is recorded
}

// minOpRate is the lowest rate an op is scheduled at: below it nothing would
// be due in any run, and a second divided by it would overflow time.Duration.
const minOpRate = 1e-9

// send runs every op's schedule from s.rec.start until end (exclusive). It
// returns when the last request is launched, not answered (see wait).
func (s *sender) send(ctx context.Context, ops []op, end time.Time) {
	var wg sync.WaitGroup
	for _, o := range ops {
		if !(o.rate >= minOpRate) {
			continue
		}
		wg.Go(func() {
			interval := time.Duration(float64(time.Second) / o.rate)
			// Offsets spread the schedules instead of firing them together.
			next := s.rec.start.Add(time.Duration(rand.Int64N(int64(interval))))
			for next.Before(end) {
				if d := time.Until(next); d > 0 {
					select {
					case <-ctx.Done():
						return
					case <-time.After(d):
					}
				}
				// When this goroutine is late (a busy host) the overdue
				// requests go at once, each still timed from when it was due.
				s.launch(ctx, o.name, next, o.fn)
				next = next.Add(interval)
			}
		})
	}
	wg.Wait()
}

// launch sends one request due at intended, unless -max-inflight requests are
// already in flight: then it is counted as dropped. A dropped request has no
// latency, so it is kept out of the percentiles (where the ~0 s it took to
// drop would pull them down exactly when the system is overloaded).
func (s *sender) launch(ctx context.Context, op string, intended time.Time, fn func(context.Context) (api.Response, error)) {
	s.rec.sentOne()
	// Add first, then compare: four schedules launch concurrently, and a
	// load-then-add would let them overshoot the bound together.
	if s.inflight.Add(1) > s.maxInflight {
		s.inflight.Add(-1)
		s.rec.drop(op)
		return
	}
	s.answers.Add(1)
	go func() {
		defer s.answers.Done()
		defer s.inflight.Add(-1)
		r, err := fn(ctx)
		d := time.Since(intended)
		class := classify(r.Status, err)
		s.rec.result(op, d, class)
		if class != "" {
			sample := string(r.Body)
			if err != nil {
				sample = err.Error()
			}
			s.rec.sample(op, class, sample)
		}
	}()
}

// wait returns when every request sent so far has its outcome recorded.
func (s *sender) wait() { s.answers.Wait() }
