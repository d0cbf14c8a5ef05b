// Package config is the payment service's environment configuration and the
// shape of its dynamic settings in etcd.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/config"
	"github.com/shanhai-dev/shanhai/pkg/jsonkey"
	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

// DynamicKey is the default etcd key of the settings that change without a
// restart.
const DynamicKey = "/shanhai/config/payment"

// Config is read once at start by config.Load. The Provider* and Decline*
// values are only the initial settings: the JSON at DynamicKey replaces them
// at run time (fault injection).
type Config struct {
	Addr            string        `env:"HTTP_ADDR" envDefault:":8083" desc:"HTTP listen address"`
	AdminAddr       string        `env:"ADMIN_ADDR" envDefault:"127.0.0.1:9083" desc:"pprof listener; empty disables"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"10s" desc:"drain deadline"`
	ReadTimeout     time.Duration `env:"READ_TIMEOUT" envDefault:"30s" desc:"time from a request's first byte by which its body must be in; a body still coming then gets 408 (headers have a fixed 10s)"`
	LogLevel        slog.Level    `env:"LOG_LEVEL" envDefault:"info" desc:"lowest level logged"`
	Version         string        `env:"SERVICE_VERSION" envDefault:"dev" desc:"version registered in discovery"`
	Zone            string        `env:"ZONE" desc:"zone registered in discovery"`

	DatabaseURL string `env:"DATABASE_URL,required,notEmpty" desc:"postgres://... or sqlite://path"`
	// Most database time is spent waiting for round trips, so the pool is sized for the concurrent handlers
	// (HTTP requests, consumer workers, the outbox relay), not for the cores: with 10 the workers queued for a
	// connection whenever PostgreSQL answered slowly.
	DatabaseMaxConns int    `env:"DATABASE_MAX_CONNS" envDefault:"20" desc:"PostgreSQL connections kept at most (SQLite always uses one)"`
	NATSURL          string `env:"NATS_URL" envDefault:"nats://127.0.0.1:14222" desc:"JetStream, for order.created"`
	// NATS_STREAM and NATS_SUBJECT_PREFIX let a second environment (a
	// benchmark, a demo) share one NATS server without joining this one's
	// stream and durable consumers.
	NATSStream        string `env:"NATS_STREAM" envDefault:"SHANHAI" desc:"JetStream stream holding the platform's subjects"`
	NATSSubjectPrefix string `env:"NATS_SUBJECT_PREFIX" desc:"prefix before every subject (e.g. dev1.); empty in normal runs"`
	JWKSURL           string `env:"JWKS_URL" envDefault:"http://127.0.0.1:8081/.well-known/jwks.json" desc:"public keys that verify access tokens"`

	KafkaBrokers    []string `env:"KAFKA_BROKERS" envDefault:"127.0.0.1:19092" envSeparator:"," desc:"outbox relay target"`
	EtcdEndpoints   []string `env:"ETCD_ENDPOINTS" envDefault:"127.0.0.1:12379" envSeparator:"," desc:"discovery and dynamic settings; empty uses DISCOVERY_STATIC and the initial settings"`
	DiscoveryStatic string   `env:"DISCOVERY_STATIC" desc:"service=addr,... when etcd is not used"`
	AdvertiseAddr   string   `env:"ADVERTISE_ADDR" desc:"host:port registered in discovery; default 127.0.0.1 and the HTTP_ADDR port"`

	SettingsKey string `env:"PAYMENT_SETTINGS_KEY" envDefault:"/shanhai/config/payment" desc:"etcd key of the dynamic provider and decline settings (JSON)"`

	MaxDeliver int `env:"CONSUMER_MAX_DELIVER" envDefault:"10" desc:"deliveries of one order.created before it is dead-lettered"`
	// A cancelled order whose void or refund was still faulting when its message was dead-lettered stays charged
	// (or its key unvoided) until a round: a minute keeps that short, and a round with nothing to do is one
	// indexed query.
	SettleInterval time.Duration `env:"SETTLE_INTERVAL" envDefault:"1m" desc:"how often the settle round voids or refunds cancelled orders whose dead-lettered message left them charged"`
	// A dead letter is the operator's record of a message given up on, so it outlives its settlement by weeks;
	// but each settle round reads every one that names an order, so the settled ones cannot stay for ever.
	DeadLetterRetention time.Duration `env:"DEAD_LETTER_RETENTION" envDefault:"720h" desc:"age after which the settle round deletes a dead letter whose order's payment is final (failed, refunded or cancelled); others are kept"`

	// The defaults stand for a card processor's sandbox on the local network of a demo (median 5 ms, p99 25 ms).
	// They used to be 20/120 ms, an internet round trip: the saga's p99 then measured the simulation's own tail
	// (120 ms), not the platform. Set them higher to rehearse a slow processor; the load runs in e2e/README.md
	// say which values they used.
	ProviderLatencyMedian time.Duration `env:"PROVIDER_LATENCY_MEDIAN" envDefault:"5ms" desc:"initial simulated provider median latency"`
	ProviderLatencyP99    time.Duration `env:"PROVIDER_LATENCY_P99" envDefault:"25ms" desc:"initial simulated provider p99 latency"`
	ProviderFailureRate   float64       `env:"PROVIDER_FAILURE_RATE" envDefault:"0" desc:"initial share of charges that fault (0..1)"`
	DeclineAboveCents     int64         `env:"DECLINE_ABOVE_CENTS" envDefault:"100000" desc:"initial decline rule: totals above this are declined; 0 disables"`
}

// Dynamic is the JSON at DynamicKey. Every field may be changed at run time.
type Dynamic struct {
	LatencyMedianMs   float64  `json:"latency_median_ms"`
	LatencyP99Ms      float64  `json:"latency_p99_ms"`
	FailureRate       float64  `json:"failure_rate"`
	DeclineAboveCents int64    `json:"decline_above_cents"`
	Currencies        []string `json:"currencies,omitempty"`
}

// UnmarshalJSON refuses a name Dynamic does not have and a name given twice
// in the document (jsonkey.Decode). encoding/json ignores the first and
// keeps the last of the second, and a field a document does not set takes
// its zero value (the document is the whole setting, pkg/dynconfig):
// "decline_above_cent" for "decline_above_cents" turned the decline rule off
// (any total went to the provider), and "currency" the currency rule, while
// the log said the document was applied. Refused, the document is bad:
// pkg/dynconfig logs and counts it and keeps the last good one (a replica
// starting then has none: it runs the environment's settings). The cost: a
// document naming a field a later release adds is refused by replicas not
// yet upgraded until they are; a setting that moves money is not one to
// drop unread.
//
// b is one JSON value (encoding/json checks the whole input before calling
// this); a null leaves d unchanged, as encoding/json's own decoding does.
func (d *Dynamic) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	type fields Dynamic // Dynamic's fields without this method
	var f fields
	if err := jsonkey.Decode(b, &f); err != nil {
		return err
	}
	*d = Dynamic(f)
	return nil
}

// MaxLatency bounds the simulated provider's latency: no p99 above it is
// accepted (environment or etcd) and no single call sleeps longer. It is a
// third of the consumer's AckWait (30 s), for which a worker's handling of
// a message is held, so a slow charge (and its refund) is answered before
// its order.created would be delivered again to another worker. A message
// waiting for a worker behind a queue of such charges is held apart
// (adapters.OrderEvents.Start).
const MaxLatency = 10 * time.Second

// Validate refuses what the environment refuses (Config.Validate, same
// rules), so pkg/dynconfig keeps the last good document instead of applying
// a typo: a negative failure rate or limit, a p99 below the median, a
// currency that is not an ISO 4217 code.
func (d Dynamic) Validate() error {
	var errs []error
	if d.LatencyMedianMs < 0 || d.LatencyP99Ms < d.LatencyMedianMs {
		errs = append(errs, errors.New("latency_p99_ms must be at least latency_median_ms, both non-negative"))
	}
	if d.LatencyP99Ms > float64(MaxLatency.Milliseconds()) {
		errs = append(errs, fmt.Errorf("latency_p99_ms must be at most %d", MaxLatency.Milliseconds()))
	}
	if !(d.FailureRate >= 0 && d.FailureRate <= 1) {
		errs = append(errs, errors.New("failure_rate must be between 0 and 1"))
	}
	if d.DeclineAboveCents < 0 {
		errs = append(errs, errors.New("decline_above_cents must not be negative"))
	}
	// The rule compares codes exactly and an order's currency is always in
	// ISO form, so a list with "eur" or a stray space would decline every
	// order as currency_not_supported.
	for _, c := range d.Currencies {
		if !payment.ISOCurrency(c) {
			errs = append(errs, fmt.Errorf("currencies must be ISO 4217 codes (three upper-case letters), got %q", c))
			break
		}
	}
	return errors.Join(errs...)
}

// Initial is the dynamic settings before etcd says otherwise.
func (c *Config) Initial() Dynamic {
	return Dynamic{
		LatencyMedianMs:   float64(c.ProviderLatencyMedian) / float64(time.Millisecond),
		LatencyP99Ms:      float64(c.ProviderLatencyP99) / float64(time.Millisecond),
		FailureRate:       c.ProviderFailureRate,
		DeclineAboveCents: c.DeclineAboveCents,
	}
}

// Validate checks what types alone cannot.
func (c *Config) Validate() error {
	var errs []error
	// A server's address set empty is refused by name (config.NotEmpty says why): none of them is optional. An
	// empty PAYMENT_SETTINGS_KEY is not "no dynamic settings": the watch took the whole prefix /shanhai/config/.
	errs = append(errs, config.NotEmpty("NATS_URL", c.NATSURL), config.NotEmpty("JWKS_URL", c.JWKSURL),
		config.NotEmpty("HTTP_ADDR", c.Addr), config.NotEmpty("PAYMENT_SETTINGS_KEY", c.SettingsKey))
	if c.DatabaseMaxConns < 1 {
		errs = append(errs, config.Invalid("DATABASE_MAX_CONNS", "must be at least 1"))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, config.Invalid("SHUTDOWN_TIMEOUT", "must be positive"))
	}
	if c.ReadTimeout <= 0 {
		errs = append(errs, config.Invalid("READ_TIMEOUT", "must be positive"))
	}
	if c.MaxDeliver < 2 {
		errs = append(errs, config.Invalid("CONSUMER_MAX_DELIVER", "must be at least 2 so a fault can be retried"))
	}
	if c.SettleInterval <= 0 {
		errs = append(errs, config.Invalid("SETTLE_INTERVAL", "must be positive"))
	}
	if c.DeadLetterRetention <= 0 {
		errs = append(errs, config.Invalid("DEAD_LETTER_RETENTION", "must be positive"))
	}
	if c.ProviderLatencyMedian < 0 || c.ProviderLatencyP99 < c.ProviderLatencyMedian {
		errs = append(errs, config.Invalid("PROVIDER_LATENCY_P99", "must be at least PROVIDER_LATENCY_MEDIAN, both non-negative"))
	}
	if c.ProviderLatencyP99 > MaxLatency {
		errs = append(errs, config.Invalid("PROVIDER_LATENCY_P99", "must be at most "+MaxLatency.String()))
	}
	if c.ProviderFailureRate < 0 || c.ProviderFailureRate > 1 {
		errs = append(errs, config.Invalid("PROVIDER_FAILURE_RATE", "must be between 0 and 1"))
	}
	if c.DeclineAboveCents < 0 {
		errs = append(errs, config.Invalid("DECLINE_ABOVE_CENTS", "must not be negative"))
	}
	if len(c.KafkaBrokers) == 0 {
		errs = append(errs, config.Invalid("KAFKA_BROKERS", "must list at least one broker"))
	}
	return errors.Join(errs...)
}
