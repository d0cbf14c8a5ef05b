package server

import "errors"

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
