package stream

import (
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shanhai-dev/shanhai/pkg/redact"
)

// Connect connects to NATS as name for a JetStream consumer, reconnecting for
// ever (a consumer must outlive a server restart), and returns what closes the
// connection (nil when Connect fails before connecting).
//
// For ever includes authorization errors: by default nats.go closes the
// connection for good once a reconnect meets the same one twice, so a
// credentials change or a server briefly restarted with the wrong auth would
// leave the service disconnected until someone restarts it, even after the
// credentials are right again. Retrying costs one refused attempt per
// reconnect wait. Disconnects, refusals and any close not made through the
// returned close are logged to log (nil: slog.Default) with their reason, so
// a stuck consumer says why. The caller's logger, not the default: in
// cmd/shanhai five binaries share one process and its default logger is the
// host's, so the order and payment parts' connection logs went out under
// neither part.
func Connect(url, name string, log *slog.Logger) (nc *nats.Conn, js jetstream.JetStream, close func() error, err error) {
	if log == nil {
		log = slog.Default()
	}
	var closing atomic.Bool
	nc, err = nats.Connect(url, append([]nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.IgnoreAuthErrorAbort()},
		LogEvents(log.With("nats_name", name), &closing)...)...)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("connect: %w", redact.Error("nats", url, err))
	}
	close = func() error { closing.Store(true); nc.Close(); return nil }
	if js, err = jetstream.New(nc); err != nil {
		return nc, nil, close, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, close, nil
}

// LogEvents returns the options that log a connection's life to log:
// disconnects with their reason, reconnects, asynchronous errors (refused
// reconnects, slow consumers, permission violations; nats.go would print them
// to stderr, outside the structured log) and a close the caller did not ask
// for, which is NATS giving up on the connection. The caller sets closing
// before its own Close; LastError cannot tell the two apart, since it still
// holds any earlier transient error of a connection that went on working.
func LogEvents(log *slog.Logger, closing *atomic.Bool) []nats.Option {
	return []nats.Option{
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: the connection is being closed
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				log.Warn("nats async error", "err", err, "subject", sub.Subject)
				return
			}
			log.Warn("nats async error", "err", err)
		}),
		nats.ClosedHandler(func(c *nats.Conn) {
			if !closing.Load() {
				log.Error("nats connection closed for good", "err", c.LastError())
			}
		}),
	}
}
