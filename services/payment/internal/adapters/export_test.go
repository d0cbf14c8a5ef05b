package adapters

// WithWorkers sets how many workers c's Start runs, so a test can fill the
// queue as the service's MaxAckPending fills Workers without publishing
// hundreds of orders.
func WithWorkers(c *OrderEvents, n int) *OrderEvents {
	c.workers = n
	return c
}
