package adapters

// WithWorkers sets how many workers c's Start runs, so a test can fill the
// queue as the service's MaxAckPending fills Workers without publishing
// hundreds of orders.
func WithWorkers(c *OrderEvents, n int) *OrderEvents {
	c.workers = n
	return c
}

// AckFloorSeen is the ack floor c last saw of its consumer, where a
// consumer it recreates starts (just above).
func AckFloorSeen(c *OrderEvents) uint64 {
	if seen := c.floor.seen.Load(); seen != nil {
		return seen.seq
	}
	return 0
}
