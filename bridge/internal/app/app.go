// Package app wires the bridge: clients for the three brokers, the two legs,
// and the HTTP server with readiness per broker. cmd/bridge only calls Run,
// so tests and the fault test start exactly what production starts.
package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	pulsarlog "github.com/apache/pulsar-client-go/pulsar/log"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/segmentio/kafka-go"

	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/redact"
	"github.com/shanhai-dev/shanhai/pkg/server"
	"github.com/shanhai-dev/shanhai/pkg/stream"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"

	"github.com/shanhai-dev/shanhai/bridge/internal/config"
	"github.com/shanhai-dev/shanhai/bridge/internal/dlq"
	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
	"github.com/shanhai-dev/shanhai/bridge/internal/metrics"
	"github.com/shanhai-dev/shanhai/bridge/internal/pulsarleg"
)

// Version is set at build time.
var Version = "dev"

// Run starts the bridge and blocks until ctx ends or SIGINT/SIGTERM, then
// drains: in-flight messages settle, confirmed offsets are committed, nothing
// else is.
func Run(ctx context.Context, cfg config.Config) error {
	return RunWith(ctx, cfg, server.Part{})
}

// RunWith is Run as a part of a host (server.Part: cmd/shanhai, through the
// bridge package): its logger and a shared telemetry provider; zero fields
// mean a JSON logger on stdout that becomes slog's default, and telemetry of
// its own. The bridge's instruments and spans go to that provider itself,
// not to the otel globals its Setup also installs (the same provider in a
// process with one bridge or one host): several bridges in one process, as
// the tests start side by side, each meter and trace their own.
func RunWith(ctx context.Context, cfg config.Config, p server.Part) error {
	log := p.LogAt(os.Stdout, cfg.LogLevel)
	tp, err := p.SetupTelemetry(ctx, telemetry.Options{ServiceName: "bridge", ServiceVersion: Version, Logger: log})
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	m, err := metrics.New(tp.Meter.Meter("github.com/shanhai-dev/shanhai/bridge"))
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	routes, err := cfg.Routes()
	if err != nil {
		return err
	}

	var closing atomic.Bool // set by Run's own close, which is not logged as NATS giving up
	nc, err := nats.Connect(cfg.NATSURL, append([]nats.Option{
		nats.Name("shanhai-bridge"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		// No reconnect buffer: a publish while disconnected fails at once
		// instead of being replayed on the new connection behind later ones
		// (leg A's ordering argument relies on it).
		nats.ReconnectBufSize(-1),
		// Without it nats.go closes the connection for good when a reconnect
		// meets the same authorization error twice, so a credentials change
		// or a server briefly restarted with the wrong auth would leave the
		// bridge disconnected until restarted (see pkg/stream.Connect).
		nats.IgnoreAuthErrorAbort(),
	}, stream.LogEvents(log, &closing)...)...)
	if err != nil {
		return redact.Error("nats", cfg.NATSURL, err)
	}
	defer func() { closing.Store(true); nc.Close() }()
	// The per-partition windows bound what is in flight; this client-wide cap
	// only has to stay above their sum so a publish never stalls on it.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1<<20), jetstream.WithPublishAsyncTimeout(cfg.PublishTimeout))
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}

	dead := dlq.NewKafka(cfg.KafkaBrokers, cfg.DLQTopic, cfg.MaxBackoff, log)
	dead.Waiting = m.DLQWaiting
	defer dead.Close()

	streams := newStreamCheck(js, cfg, log, func(short bool) { m.StreamWindowShort(cfg.Stream, short) })
	checks := []server.Check{
		{Name: "nats", Probe: func(ctx context.Context) error {
			if !nc.IsConnected() {
				return errors.New("not connected")
			}
			return streams.probe(ctx)
		}},
	}

	var owner kafkaleg.Owner
	if cfg.LegB() {
		pc, err := pulsar.NewClient(pulsar.ClientOptions{
			URL:               cfg.PulsarURL,
			ConnectionTimeout: 5 * time.Second,
			OperationTimeout:  30 * time.Second,
			Logger:            pulsarlog.NewLoggerWithSlog(log.With("component", "pulsar")),
		})
		if err != nil {
			return redact.Error("pulsar", cfg.PulsarURL, err)
		}
		// Bounded: the client's Close waits for any producer's Close that leg B stopped waiting for (CloseClient).
		defer pulsarleg.CloseClient(pc, min(time.Second, cfg.ShutdownTimeout/4), log)
		var sizes pulsarleg.MaxMessageSize
		if cfg.PulsarAdminURL != "" {
			sizes = pulsarleg.AdminMaxMessageSize(cfg.PulsarAdminURL, &http.Client{Timeout: 10 * time.Second})
		} else {
			log.Warn("PULSAR_ADMIN_URL is empty: leg B does not check the Pulsar topics' max message size, and a message over a topic-level limit is lost")
		}
		legB := pulsarleg.New(pulsarleg.Options{
			JetStream: js, Stream: cfg.Stream, Pulsar: pc, Routes: routes, DLQ: dead,
			InFlight: cfg.InFlight, SinkRetries: cfg.SinkRetries, AckWait: cfg.AckWait,
			DrainTimeout: cfg.ShutdownTimeout / 2, MaxBackoff: cfg.MaxBackoff, Logger: log, Metrics: m,
			MaxMessageSize: sizes, PolicyInterval: cfg.PolicyInterval, LagInterval: cfg.CommitInterval, TracerProvider: tp.Tracer,
			KafkaCluster: func(ctx context.Context) (string, error) { return kafkaleg.ClusterID(ctx, cfg.KafkaBrokers) },
		})
		owner = legB.Partition
		checks = append(checks, server.Check{Name: "pulsar", Probe: func(context.Context) error {
			return pulsarleg.Ping(pc, routes[0].PulsarTopic)
		}})
		if sizes != nil {
			// Not a probe of the admin API itself: a session that has read the policy archives on under its last
			// reading while the admin API is away; only the sessions waiting for a first reading archive nothing.
			checks = append(checks, server.Check{Name: "pulsar-admin", Probe: legB.PolicyWait})
		}
	}

	start := kafka.FirstOffset
	if cfg.StartOffset == "last" {
		start = kafka.LastOffset
	}
	legA := kafkaleg.New(kafkaleg.Options{
		Brokers: cfg.KafkaBrokers, Group: cfg.Group, Routes: routes, StartOffset: start,
		NATS: nc, JetStream: js, DLQ: dead,
		Validate: func(h map[string]string, v []byte) error { _, err := event.FromHeaders(h, v); return err },
		MaxBytes: cfg.MaxMessageBytes, InFlight: cfg.InFlight, SinkRetries: cfg.SinkRetries,
		CommitInterval: cfg.CommitInterval, DrainTimeout: cfg.ShutdownTimeout / 2, MaxBackoff: cfg.MaxBackoff,
		Logger: log, Metrics: m, Owner: owner, TracerProvider: tp.Tracer,
	})

	// Leg A's consumer group generation, not a TCP dial: a broker that accepts connections says nothing about
	// whether the leg can consume (kafkaleg.Leg.Ready).
	checks = append(checks, server.Check{Name: "kafka", Probe: legA.Ready})

	srv := server.New(server.Options{
		Name: "bridge", Version: Version, Addr: cfg.HTTPAddr, AdminAddr: cfg.AdminAddr,
		ShutdownTimeout: cfg.ShutdownTimeout, Logger: log, Telemetry: tp, Checks: checks,
	})

	legCtx, stopLegs := context.WithCancel(context.Background())
	defer stopLegs()
	// A stream the bridge must not publish to, or cannot create, stops the whole bridge: the
	// server shuts down in its usual order and Run returns why.
	ctx, refuse := context.WithCancelCause(ctx)
	defer refuse(nil)
	legDone := make(chan error, 1)
	go func() {
		// The stream must exist before leg A publishes; NATS may come up
		// after the bridge, so keep trying.
		if err := EnsureStream(legCtx, js, cfg, log); err != nil {
			log.Error("refusing to start", "stream", cfg.Stream, "err", err)
			refuse(fmt.Errorf("%w: %w", errRefused, err))
			legDone <- nil
			return
		}
		go streams.watch(legCtx, streamCheckInterval)
		legDone <- legA.Run(legCtx)
	}()
	srv.OnShutdown(func(ctx context.Context) error {
		stopLegs()
		select {
		case err := <-legDone:
			return err
		case <-ctx.Done():
			return fmt.Errorf("legs did not stop: %w", ctx.Err())
		}
	})
	err = srv.Run(ctx)
	if cause := context.Cause(ctx); errors.Is(cause, errRefused) {
		return errors.Join(cause, err)
	}
	return err
}
