package pulsarleg

import (
	"log/slog"
	"time"
)

// CloseClient closes the bridge's Pulsar client, waiting for it at most within, and logs a warning past that. The
// client's Close closes every producer it still holds, and the client closes a producer only once: a second Close waits
// for the first. A producer whose Close leg B stopped waiting for (closeProducer: a broker that keeps the connection
// open and does not answer CLOSE_PRODUCER) thus held the client's Close, at the bridge's exit, up to the client's
// operation timeout (30 s), past SHUTDOWN_TIMEOUT. Past within the Close goes on in the background; the process exits
// next, which closes the connections, and the broker drops their producers.
func CloseClient(c interface{ Close() }, within time.Duration, log *slog.Logger) {
	if !closeWithin(c, within) {
		log.Warn("stopped waiting for the Pulsar client to close: a producer's Close the broker has not answered holds it; it goes on in the background",
			"waited", within)
	}
}

// closeWithin calls c.Close and waits for it at most within; it reports whether the Close returned. Past within the
// Close goes on in a goroutine of its own, which ends with it (the client bounds its requests by its operation timeout).
func closeWithin(c interface{ Close() }, within time.Duration) bool {
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		c.Close()
	}()
	t := time.NewTimer(max(within, 0))
	defer t.Stop()
	select {
	case <-closed:
		return true
	case <-t.C:
		return false
	}
}
