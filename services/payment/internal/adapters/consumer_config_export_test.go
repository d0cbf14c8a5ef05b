package adapters

import (
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shanhai-dev/shanhai/pkg/stream"
)

// WithConsumerConfig makes c read cfg as its consumer's config (the one the
// server holds for it), so a test can stall the workers for a few short
// AckWaits rather than 30 s ones.
func WithConsumerConfig(c *OrderEvents, cfg jetstream.ConsumerConfig) *OrderEvents {
	c.cfg = cfg
	c.queue = cfg.MaxAckPending
	c.keep = stream.NewKeeper(cfg, c.log)
	return c
}
