package stream

import "context"

// DrainWithin stops a consumer within ctx. drain stops delivery and returns once every message received is handled;
// if ctx ends first, cutOff is called, so handlers waiting on something slow (a provider, a locked row) give up and
// leave their messages unsettled for redelivery, and DrainWithin still waits for drain to return. A service's stop is
// bounded this way by its SHUTDOWN_TIMEOUT rather than by its slowest handler.
func DrainWithin(ctx context.Context, drain, cutOff func()) {
	drained := make(chan struct{})
	go func() { drain(); close(drained) }()
	select {
	case <-drained:
	case <-ctx.Done():
		cutOff()
		<-drained
	}
}
