// Package config is the bridge's environment: brokers, topic routes and the
// bounds that keep memory flat when a sink is down.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	pkgconfig "github.com/shanhai-dev/shanhai/pkg/config"

	"github.com/shanhai-dev/shanhai/bridge/internal/mapping"
)

// Config is read once at start by pkg/config.
type Config struct {
	HTTPAddr        string        `env:"HTTP_ADDR" envDefault:":8084" desc:"HTTP listen address (/healthz, /readyz, /metrics)"`
	AdminAddr       string        `env:"ADMIN_ADDR" envDefault:"127.0.0.1:9084" desc:"pprof listener; empty disables"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"10s" desc:"drain deadline, at least 100ms: in-flight messages settle and confirmed offsets are committed within it (each leg drains within half of it)"`
	LogLevel        slog.Level    `env:"LOG_LEVEL" envDefault:"info" desc:"lowest level logged"`

	KafkaBrokers []string `env:"KAFKA_BROKERS" envDefault:"127.0.0.1:19092" envSeparator:"," desc:"Kafka bootstrap brokers, comma list"`
	NATSURL      string   `env:"NATS_URL" envDefault:"nats://127.0.0.1:14222" desc:"NATS server URL (JetStream enabled)"`
	PulsarURL    string   `env:"PULSAR_URL" envDefault:"pulsar://127.0.0.1:16650" desc:"Pulsar service URL (namespace must have deduplication on)"`

	Legs            string        `env:"BRIDGE_LEGS" envDefault:"kafka-nats,nats-pulsar" desc:"legs to run: kafka-nats (A), nats-pulsar (B); leg B follows leg A's partition ownership, so it needs leg A"`
	Topics          string        `env:"BRIDGE_TOPICS" envDefault:"shanhai.users,shanhai.orders,shanhai.payments" desc:"Kafka topics to carry, comma list; partition N goes to subject <topic>.pN, or <subject>.pN with topic=subject"`
	Group           string        `env:"BRIDGE_GROUP" envDefault:"shanhai-bridge" desc:"Kafka consumer group; instances in one group split partitions"`
	StartOffset     string        `env:"BRIDGE_START_OFFSET" envDefault:"first" desc:"where a partition with no committed offset starts: first or last"`
	Stream          string        `env:"BRIDGE_STREAM" envDefault:"SHANHAI" desc:"JetStream stream, created if absent"`
	StreamSubjects  []string      `env:"BRIDGE_STREAM_SUBJECTS" envDefault:"shanhai.>" envSeparator:"," desc:"subjects of a stream the bridge creates"`
	DuplicateWindow time.Duration `env:"BRIDGE_DUPLICATE_WINDOW" envDefault:"2m" desc:"JetStream Nats-Msg-Id dedup window of a stream the bridge creates"`
	PulsarAdminURL  string        `env:"PULSAR_ADMIN_URL" desc:"Pulsar admin REST URL (http://host:8080); leg B reads each archive topic's max message size policy there and sends larger messages to the DLQ. Empty: unchecked, and a message over a topic-level limit is lost (README)"`
	PolicyInterval  time.Duration `env:"BRIDGE_PULSAR_POLICY_INTERVAL" envDefault:"10s" desc:"how often leg B re-reads a Pulsar topic's max message size; a lower limit restarts the partition so that a message refused meanwhile goes to the DLQ"`
	PulsarNamespace string        `env:"BRIDGE_PULSAR_NAMESPACE" envDefault:"shanhai/events" desc:"Pulsar tenant/namespace of the archive topics"`
	DLQTopic        string        `env:"BRIDGE_DLQ_TOPIC" envDefault:"shanhai.dlq" desc:"Kafka topic receiving poison messages with reason and source coordinates"`

	MaxMessageBytes int           `env:"BRIDGE_MAX_MESSAGE_BYTES" envDefault:"900000" desc:"larger messages (payload plus headers) go to the DLQ"`
	InFlight        int           `env:"BRIDGE_INFLIGHT" envDefault:"512" desc:"unconfirmed messages per partition per leg; bounds memory"`
	SinkRetries     int           `env:"BRIDGE_SINK_RETRIES" envDefault:"5" desc:"times a sink may reject one message before it goes to the DLQ"`
	CommitInterval  time.Duration `env:"BRIDGE_COMMIT_INTERVAL" envDefault:"1s" desc:"how often confirmed Kafka offsets and JetStream acks are flushed"`
	PublishTimeout  time.Duration `env:"BRIDGE_PUBLISH_TIMEOUT" envDefault:"15s" desc:"how long leg A waits for a JetStream ack before republishing (deduplicated); above in-flight / fsync rate"`
	AckWait         time.Duration `env:"BRIDGE_ACK_WAIT" envDefault:"2m" desc:"JetStream ack wait of leg B's consumers"`
	MaxBackoff      time.Duration `env:"BRIDGE_MAX_BACKOFF" envDefault:"5s" desc:"cap of the retry backoff for transient sink errors"`
}

// LegA and LegB report which legs run.
func (c *Config) LegA() bool { return strings.Contains(c.Legs, "kafka-nats") }
func (c *Config) LegB() bool { return strings.Contains(c.Legs, "nats-pulsar") }

// Routes returns the validated topic routes.
func (c *Config) Routes() ([]mapping.Route, error) {
	return mapping.Routes(c.Topics, c.StreamSubjects, c.PulsarNamespace)
}

// Validate implements pkg/config.Validator.
func (c *Config) Validate() error {
	var errs []error
	bad := func(v, p string) { errs = append(errs, pkgconfig.Invalid(v, p)) }
	errs = append(errs, pkgconfig.NotEmpty("HTTP_ADDR", c.HTTPAddr), pkgconfig.NotEmpty("NATS_URL", c.NATSURL))
	routes, err := c.Routes()
	if err != nil {
		bad("BRIDGE_TOPICS", err.Error())
	}
	if err := mapping.CheckTopic(c.DLQTopic); err != nil {
		// Accepted, the bridge started and held the partition of its first poison message for good: the DLQ writer
		// retries a write Kafka never takes.
		bad("BRIDGE_DLQ_TOPIC", err.Error())
	}
	for _, r := range routes {
		switch {
		case r.Topic == c.DLQTopic:
			bad("BRIDGE_DLQ_TOPIC", "must not be one of the carried topics")
		case strings.ReplaceAll(r.Topic, ".", "_") == strings.ReplaceAll(c.DLQTopic, ".", "_"):
			// Kafka will not create a topic that differs from an existing one only by '.' against '_' (their metric
			// names collide): the DLQ topic was never created and the first poison message held its partition for good.
			bad("BRIDGE_DLQ_TOPIC", "collides with the carried topic "+r.Topic+": Kafka takes '.' and '_' as the same in a topic name and will not create it")
		}
	}
	for _, l := range strings.Split(c.Legs, ",") {
		if l = strings.TrimSpace(l); l != "kafka-nats" && l != "nats-pulsar" {
			bad("BRIDGE_LEGS", "unknown leg "+l)
		}
	}
	if c.LegB() && !c.LegA() {
		bad("BRIDGE_LEGS", "nats-pulsar follows kafka-nats partition ownership and needs it")
	}
	if c.StartOffset != "first" && c.StartOffset != "last" {
		bad("BRIDGE_START_OFFSET", "must be first or last")
	}
	if c.Group == "" {
		bad("BRIDGE_GROUP", "must not be empty")
	}
	if c.Stream == "" || strings.ContainsAny(c.Stream, ". *>") {
		bad("BRIDGE_STREAM", "must be a name without . * > or spaces")
	}
	if c.DuplicateWindow < time.Second {
		bad("BRIDGE_DUPLICATE_WINDOW", "must be at least 1s")
	} else if republish := 2*c.PublishTimeout + c.MaxBackoff; c.PublishTimeout > 0 && c.MaxBackoff > 0 && c.DuplicateWindow <= republish {
		// Leg A publishes a message again when JetStream has not confirmed it within the timeout, after a restart
		// backoff: a message stored but confirmed late would be stored a second time once the window had passed. The
		// failed session restarts only once every publish still in flight has its outcome, and the last may have
		// been sent just before the first one's timeout: so twice the timeout, then the backoff
		// (TestLegARepublishesWithinTheSmallestWindowConfigAccepts in kafkaleg).
		bad("BRIDGE_DUPLICATE_WINDOW", fmt.Sprintf("must exceed 2 × BRIDGE_PUBLISH_TIMEOUT + BRIDGE_MAX_BACKOFF (%s): a message JetStream stored but did not confirm in time is published again up to that much later, and stored twice after the window", republish))
	}
	if c.MaxMessageBytes < 1024 {
		bad("BRIDGE_MAX_MESSAGE_BYTES", "must be at least 1024")
	}
	if c.InFlight < 1 || c.InFlight > 65536 {
		bad("BRIDGE_INFLIGHT", "must be 1..65536")
	}
	if c.SinkRetries < 0 {
		bad("BRIDGE_SINK_RETRIES", "must not be negative")
	}
	if c.CommitInterval <= 0 {
		bad("BRIDGE_COMMIT_INTERVAL", "must be positive")
	}
	if c.PublishTimeout < 100*time.Millisecond {
		bad("BRIDGE_PUBLISH_TIMEOUT", "must be at least 100ms")
	}
	if c.AckWait < time.Second {
		bad("BRIDGE_ACK_WAIT", "must be at least 1s")
	}
	if c.MaxBackoff <= 0 {
		bad("BRIDGE_MAX_BACKOFF", "must be positive")
	}
	if c.ShutdownTimeout < 100*time.Millisecond {
		// Each leg drains within half of it (app.Run), and a leg given no drain (0) takes its own default, 10 s: 0 or
		// a negative value was accepted, the server took its default 10 s as well, and the legs' drains took all of
		// it, leaving the last commit and the group's leave none; a few nanoseconds gave the server no time at all
		// and the legs 10 s, so the stop abandoned what was in flight.
		bad("SHUTDOWN_TIMEOUT", "must be at least 100ms: each leg drains its in-flight messages within half of it")
	}
	if len(c.KafkaBrokers) == 0 {
		bad("KAFKA_BROKERS", "must not be empty")
	}
	if u, err := url.Parse(c.PulsarAdminURL); c.PulsarAdminURL != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
		bad("PULSAR_ADMIN_URL", "must be an http(s) URL such as http://127.0.0.1:8080")
	}
	if c.PolicyInterval < time.Second {
		bad("BRIDGE_PULSAR_POLICY_INTERVAL", "must be at least 1s")
	}
	if c.LegB() && strings.TrimSpace(c.PulsarURL) == "" {
		bad("PULSAR_URL", "must not be empty (unset it for the default); the nats-pulsar leg needs it")
	} else if u, err := url.Parse(firstPulsarHost(c.PulsarURL)); c.LegB() && (err != nil || u.Host == "" || !pulsarScheme(u.Scheme)) {
		// Checked here because pulsar.NewClient logs url.Parse's error, which quotes the URL whole, password and all.
		bad("PULSAR_URL", "must be a pulsar://, pulsar+ssl://, http:// or https:// URL with a host; percent-encode any %, #, /, ?, @ or : in its user name or password")
	}
	return errors.Join(errs...)
}

// firstPulsarHost reduces a service URL's host list ("pulsar://h1:6650,h2:6650", "," or ";" between hosts) to its first
// host, as the Pulsar client does before it parses the URL: url.Parse takes some lists whole but refuses others the
// client connects to (HTTP hosts with ports, IPv6 literals), and the rest of the list the client checks itself.
func firstPulsarHost(s string) string {
	start := strings.Index(s, "//")
	if start < 0 {
		return s
	}
	start += 2
	end := len(s)
	if i := strings.IndexAny(s[start:], "/?#"); i >= 0 {
		end = start + i
	}
	hosts := start
	if i := strings.LastIndex(s[start:end], "@"); i >= 0 {
		hosts += i + 1
	}
	if i := strings.IndexAny(s[hosts:end], ",;"); i >= 0 {
		return s[:hosts+i] + s[end:]
	}
	return s
}

// pulsarScheme says whether the Pulsar client takes a service URL of this scheme (binary protocol or HTTP lookup).
func pulsarScheme(s string) bool {
	switch s {
	case "pulsar", "pulsar+ssl", "http", "https":
		return true
	}
	return false
}
