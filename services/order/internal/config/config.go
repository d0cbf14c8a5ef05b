// Package config is the order service's environment configuration.
package config

import (
	"errors"
	"log/slog"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/config"
)

// Config is read once at start by config.Load; docs/conventions.md lists the
// shared variables, the rest are specific to this service.
type Config struct {
	Addr            string        `env:"HTTP_ADDR" envDefault:":8082" desc:"HTTP listen address"`
	AdminAddr       string        `env:"ADMIN_ADDR" envDefault:"127.0.0.1:9082" desc:"pprof listener; empty disables"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"10s" desc:"drain deadline"`
	ReadTimeout     time.Duration `env:"READ_TIMEOUT" envDefault:"30s" desc:"time from a request's first byte by which its body must be in; a body still coming then gets 408 (headers have a fixed 10s)"`
	LogLevel        slog.Level    `env:"LOG_LEVEL" envDefault:"info" desc:"lowest level logged"`
	Version         string        `env:"SERVICE_VERSION" envDefault:"dev" desc:"version registered in discovery (canary routing)"`
	Zone            string        `env:"ZONE" desc:"zone registered in discovery"`

	DatabaseURL string `env:"DATABASE_URL,required,notEmpty" desc:"postgres://... or sqlite://path"`
	// Most database time is spent waiting for round trips, so the pool is sized for the concurrent handlers
	// (HTTP requests, consumer workers, the outbox relay), not for the cores: with 10 the workers queued for a
	// connection whenever PostgreSQL answered slowly.
	DatabaseMaxConns int    `env:"DATABASE_MAX_CONNS" envDefault:"20" desc:"PostgreSQL connections kept at most (SQLite always uses one)"`
	RedisURL         string `env:"REDIS_URL" envDefault:"redis://127.0.0.1:16379/0" desc:"catalogue cache"`
	NATSURL          string `env:"NATS_URL" envDefault:"nats://127.0.0.1:14222" desc:"JetStream, for payment results"`
	// NATS_STREAM and NATS_SUBJECT_PREFIX let a second environment (a
	// benchmark, a demo) share one NATS server without joining this one's
	// stream and durable consumers.
	NATSStream        string `env:"NATS_STREAM" envDefault:"SHANHAI" desc:"JetStream stream holding the platform's subjects"`
	NATSSubjectPrefix string `env:"NATS_SUBJECT_PREFIX" desc:"prefix before every subject (e.g. dev1.); empty in normal runs"`
	JWKSURL           string `env:"JWKS_URL" envDefault:"http://127.0.0.1:8081/.well-known/jwks.json" desc:"public keys that verify access tokens"`

	KafkaBrokers    []string `env:"KAFKA_BROKERS" envDefault:"127.0.0.1:19092" envSeparator:"," desc:"outbox relay target"`
	EtcdEndpoints   []string `env:"ETCD_ENDPOINTS" envDefault:"127.0.0.1:12379" envSeparator:"," desc:"discovery registry; empty uses DISCOVERY_STATIC"`
	DiscoveryStatic string   `env:"DISCOVERY_STATIC" desc:"service=addr,... when etcd is not used"`
	AdvertiseAddr   string   `env:"ADVERTISE_ADDR" desc:"host:port registered in discovery; default 127.0.0.1 and the HTTP_ADDR port"`

	CatalogCacheTTL time.Duration `env:"CATALOG_CACHE_TTL" envDefault:"5m" desc:"how long the catalogue stays in Redis"`

	// PendingTimeout ends the saga for an order payment never answers: it
	// sends no payment.failed when it gives up on an order.created (its last
	// delivery, or a dead letter). The default is five times payment's whole
	// retry window at its defaults (MinPendingTimeout says what that is).
	PendingTimeout time.Duration `env:"ORDER_PENDING_TIMEOUT" envDefault:"10m" desc:"an order still PENDING this long after it was placed is cancelled (order.cancelled, cancel_reason payment_timeout) by a round every minute; at least 5m, above payment's retries"`
}

// MinPendingTimeout is the shortest ORDER_PENDING_TIMEOUT accepted. Payment
// retries a faulting charge for 95 s at its defaults (CONSUMER_MAX_DELIVER
// 10 on the 1, 2, 4, 8, 16 s back-off), and each delivery may first wait up
// to 2 minutes in its consumer's queue and is then handled for up to 30 s
// (services/payment README, "Consumer"): about 4 minutes from the first
// delivery until payment has given up. A shorter timeout would cancel
// orders that payment was still about to charge: payment then voids the
// charge, so no money is lost, but a customer loses an order to a fault
// that healed on its own. A larger CONSUMER_MAX_DELIVER needs a larger
// timeout than this floor (the default leaves room for about 30 deliveries).
const MinPendingTimeout = 5 * time.Minute

// Validate checks what types alone cannot.
func (c *Config) Validate() error {
	var errs []error
	// A server's address set empty is refused by name (config.NotEmpty says why): none of them is optional.
	errs = append(errs, config.NotEmpty("REDIS_URL", c.RedisURL), config.NotEmpty("NATS_URL", c.NATSURL),
		config.NotEmpty("JWKS_URL", c.JWKSURL), config.NotEmpty("HTTP_ADDR", c.Addr))
	if c.DatabaseMaxConns < 1 {
		errs = append(errs, config.Invalid("DATABASE_MAX_CONNS", "must be at least 1"))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, config.Invalid("SHUTDOWN_TIMEOUT", "must be positive"))
	}
	if c.ReadTimeout <= 0 {
		errs = append(errs, config.Invalid("READ_TIMEOUT", "must be positive"))
	}
	if c.CatalogCacheTTL <= 0 {
		errs = append(errs, config.Invalid("CATALOG_CACHE_TTL", "must be positive"))
	}
	switch {
	case c.PendingTimeout <= 0:
		errs = append(errs, config.Invalid("ORDER_PENDING_TIMEOUT", "must be positive"))
	case c.PendingTimeout < MinPendingTimeout:
		errs = append(errs, config.Invalid("ORDER_PENDING_TIMEOUT",
			"must be at least "+MinPendingTimeout.String()+": payment may still be retrying the charge until then"))
	}
	if len(c.KafkaBrokers) == 0 {
		errs = append(errs, config.Invalid("KAFKA_BROKERS", "must list at least one broker"))
	}
	return errors.Join(errs...)
}
