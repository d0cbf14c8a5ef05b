package server

import (
	"errors"
	"sync"
)

// Cleanup closes what a binary opened while wiring itself (database pools,
// broker clients, etcd), last opened first, because later parts use earlier
// ones: the Kafka writer flushes before the database it was fed from closes.
// The zero value is ready; it is not safe for concurrent use, since wiring and
// shutdown each run on one goroutine.
type Cleanup struct{ fns []func() error }

// Add registers close to run at Close.
func (c *Cleanup) Add(close func() error) { c.fns = append(c.fns, close) }

// Close runs every registered function in reverse order, even after one
// fails, and returns their errors joined. A second Close does nothing.
func (c *Cleanup) Close() error {
	var errs []error
	for i := len(c.fns) - 1; i >= 0; i-- {
		errs = append(errs, c.fns[i]())
	}
	c.fns = nil
	return errors.Join(errs...)
}

// Opening is one dependency a binary connects to while wiring itself: Open
// connects and returns what closes it again (nil if nothing to close).
type Opening struct {
	Name string
	Open func() (close func() error, err error)
}

// OpenAll runs the openings concurrently, since a binary's dependencies do
// not need each other: start-up then waits for the slowest, not the sum. It
// records each as a phase in p (if not nil) when it ends, and adds the
// closers to c in the order the openings are given, whatever finished first
// and whether or not another failed, so Close still runs last opened first
// as if they had been opened one after another. It returns the openings'
// errors joined.
func (c *Cleanup) OpenAll(p *Phases, openings ...Opening) error {
	closers := make([]func() error, len(openings))
	errs := make([]error, len(openings))
	var wg sync.WaitGroup
	for i, o := range openings {
		wg.Go(func() {
			closers[i], errs[i] = o.Open()
			if p != nil {
				p.Done(o.Name)
			}
		})
	}
	wg.Wait()
	for _, close := range closers {
		if close != nil {
			c.Add(close)
		}
	}
	return errors.Join(errs...)
}
