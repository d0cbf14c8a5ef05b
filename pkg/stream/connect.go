package stream

import (
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shanhai-dev/shanhai/pkg/redact"
)

// Connect connects to NATS as name for a JetStream consumer, reconnecting for
// ever (a consumer must outlive a server restart), and returns what closes the
// connection (nil when Connect fails before connecting).
func Connect(url, name string) (nc *nats.Conn, js jetstream.JetStream, close func() error, err error) {
	if nc, err = nats.Connect(url, nats.Name(name), nats.MaxReconnects(-1)); err != nil {
		return nil, nil, nil, fmt.Errorf("connect: %w", redact.Error("nats", url, err))
	}
	close = func() error { nc.Close(); return nil }
	if js, err = jetstream.New(nc); err != nil {
		return nc, nil, close, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, close, nil
}
