// Package service wires the payment service from its configuration. main and
// the component tests both build it here, so tests exercise the real wiring.
package service

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/auth"
	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/discovery"
	"github.com/shanhai-dev/shanhai/pkg/dynconfig"
	"github.com/shanhai-dev/shanhai/pkg/migrate"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
	"github.com/shanhai-dev/shanhai/pkg/periodic"
	"github.com/shanhai-dev/shanhai/pkg/server"
	"github.com/shanhai-dev/shanhai/pkg/server/discoverable"
	"github.com/shanhai-dev/shanhai/pkg/startgc"
	"github.com/shanhai-dev/shanhai/pkg/stream"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
	"github.com/shanhai-dev/shanhai/services/payment/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/payment/internal/app"
	"github.com/shanhai-dev/shanhai/services/payment/internal/config"
	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
	"github.com/shanhai-dev/shanhai/services/payment/internal/ports"
	"github.com/shanhai-dev/shanhai/services/payment/migrations"
)

// Name is the service name in discovery, telemetry and logs.
const Name = "payment"

// Options are what the caller provides beyond the environment config.
type Options struct {
	Logger    *slog.Logger
	Telemetry *telemetry.Provider
	// Verifier overrides the JWKS_URL verifier.
	Verifier *auth.Verifier
	// JetStream overrides the stream and consumer names (tests use private
	// ones); zero fields keep the platform's names.
	JetStream adapters.Names
}

// jetStreamNames fills what the caller left empty from the config.
func jetStreamNames(cfg config.Config, n adapters.Names) adapters.Names {
	if n.Stream == "" {
		n.Stream = cfg.NATSStream
	}
	if cfg.NATSSubjectPrefix != "" {
		if n.StreamSubjects == "" {
			n.StreamSubjects = cfg.NATSSubjectPrefix + adapters.StreamSubjects
		}
		if n.Subject == "" {
			n.Subject = cfg.NATSSubjectPrefix + adapters.OrdersSubject
		}
	}
	return n
}

// Service is a wired, not yet running, payment service.
type Service struct {
	cfg      config.Config
	log      *slog.Logger
	Server   *server.Server
	App      app.Application
	DB       *gorm.DB
	NATS     *nats.Conn
	Relay    *outbox.Relay
	Payments *adapters.PaymentGorm
	Provider *adapters.SimulatedProvider
	// Settings returns the live dynamic settings (etcd, else the initial).
	Settings func() config.Dynamic
	registry discovery.Registry
	events   *adapters.OrderEvents
	settled  metric.Int64Counter
	// settleFailures counts what the settle round failed on, by reason
	// (settleFailure*): a round that keeps failing leaves cancelled orders
	// charged, and only a series can fire an alert.
	settleFailures metric.Int64Counter

	// workers are the relay, the settle rounds and the order-event consumer,
	// from Start until Stop.
	workers server.Workers
	cleanup server.Cleanup
}

// Migrate applies the outbox set and this service's own set.
func Migrate(ctx context.Context, db *gorm.DB) error {
	return migrate.UpAll(ctx, db, outbox.Migrations, migrations.Set())
}

// New connects to every dependency, migrates the database and builds the
// HTTP server. Nothing is consumed or served until Start/Run.
//
// The dependencies do not need each other, so they are set up concurrently:
// start-up takes as long as the slowest (usually PostgreSQL's connect and
// migration check), not the sum. The JWKS is fetched in the background:
// /readyz asks for it, but the user service may itself be starting.
func New(ctx context.Context, cfg config.Config, o Options) (s *Service, err error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s = &Service{cfg: cfg, log: o.Logger}
	// Returning (nil, err) clears s before deferred calls run; keep our own
	// reference so a failed start still closes what it opened.
	built := s
	defer func() {
		if err != nil {
			_ = built.cleanup.Close()
		}
	}()
	phases := server.NewPhases()
	defer func() {
		if err == nil {
			phases.Done("server")
			s.log.Debug("payment service wired", phases.Args()...)
		}
	}()
	verifier := o.Verifier
	if verifier == nil {
		verifier = auth.NewVerifier(cfg.JWKSURL, auth.VerifierOptions{})
		go func() { _ = verifier.Ready(context.WithoutCancel(ctx)) }()
	}

	names := jetStreamNames(cfg, o.JetStream)
	var (
		consumer jetstream.Consumer
		js       jetstream.JetStream
	)
	if err = s.cleanup.OpenAll(phases,
		server.Opening{Name: "database", Open: func() (func() error, error) {
			db, err := database.OpenMigrated(ctx, cfg.DatabaseURL, database.Options{Logger: o.Logger, MaxOpenConns: cfg.DatabaseMaxConns}, Migrate)
			s.DB = db
			return database.Closer(db), err
		}},
		server.Opening{Name: "nats", Open: func() (close func() error, err error) {
			if s.NATS, js, close, err = stream.Connect(cfg.NATSURL, Name, o.Logger); err != nil {
				return close, err
			}
			// The consumer lookup now, beside the database, rather than
			// after listening: Start then only begins delivery. One found
			// missing is created below, above the floor the database holds.
			consumer, err = adapters.LookUpConsumer(ctx, js, names, adapters.ConsumerConfig(names, cfg.MaxDeliver))
			return close, err
		}},
		server.Opening{Name: "etcd", Open: func() (func() error, error) { return s.etcdParts(ctx) }},
	); err != nil {
		return nil, err
	}

	floors := adapters.NewFloorGorm(s.DB)
	if consumer == nil {
		// Deleted while every replica was down: created just above the
		// last ack floor saved, not from the stream's start. Made push
		// based by hand: replaced as a running replica replaces it.
		if consumer, err = adapters.CreateConsumer(ctx, js, names, adapters.ConsumerConfig(names, cfg.MaxDeliver), floors, o.Logger); err != nil {
			return nil, err
		}
	}

	writer := outbox.NewWriter(cfg.KafkaBrokers...)
	s.cleanup.Add(writer.Close)
	s.Relay = outbox.NewRelay(s.DB, writer, outbox.RelayOptions{Logger: o.Logger, DelayFirstPoll: true})
	s.Payments = adapters.NewPaymentGorm(s.DB).NotifyOnEvents(s.Relay.Nudge)
	s.Provider = adapters.NewSimulatedProvider(s.Settings)
	s.App = app.New(app.Deps{
		Payments: s.Payments,
		Provider: s.Provider,
		Rules: func() payment.Rules {
			d := s.Settings()
			return payment.Rules{MaxAmountCents: d.DeclineAboveCents, Currencies: d.Currencies}
		},
		NewID: func() string { return uuid.Must(uuid.NewV7()).String() },
	})
	// A consumer deleted on the server is created again, as a start would.
	s.events = adapters.NewOrderEvents(consumer, names, s.App, cfg.MaxDeliver, o.Logger).Recreates(js).RemembersFloor(floors)
	s.settled, _ = otel.Meter("shanhai/payment").Int64Counter("shanhai.payment.settled",
		metric.WithDescription("payments of cancelled orders the settle round voided, refunded or found refused a refund (refund_declined), by outcome"))
	s.settleFailures, _ = otel.Meter("shanhai/payment").Int64Counter("shanhai.payment.settle.failures",
		metric.WithDescription("what the settle round failed on, by reason: provider (a payment's void or refund faulted), database (a payment's write, or the round's listing, failed), purge (deleting dead letters past their retention failed)"))
	// Every reason's series exists from the start, at 0: the alert reads the
	// counter with increase(), which needs two samples of a series, so a
	// series born at 1 by a process's first failure would show no increase.
	for _, reason := range settleFailureReasons {
		s.settleFailures.Add(ctx, 0, metric.WithAttributes(attribute.String("reason", reason)))
	}

	s.Server = server.New(server.Options{
		Name: Name, Version: cfg.Version, Addr: cfg.Addr, AdminAddr: cfg.AdminAddr,
		ShutdownTimeout: cfg.ShutdownTimeout, ReadTimeout: cfg.ReadTimeout, Logger: o.Logger, Telemetry: o.Telemetry,
		Deregister: s.registry.Deregister, DeregisterDelay: server.DefaultDeregisterDelay,
		// The collector's first cycle after start-up, once the first ready
		// answer is out rather than beside it (startgc.Linger says why).
		OnReady: startgc.Ready,
		Checks: []server.Check{
			server.DatabaseCheck(s.DB.DB),
			{Name: "nats", Probe: func(context.Context) error {
				if !s.NATS.IsConnected() {
					return errors.New("not connected")
				}
				return nil
			}},
			{Name: "jwks", Probe: verifier.Ready},
		},
	})
	ports.Register(s.Server.Router(), s.App, auth.Middleware(verifier), auth.UserID, o.Logger)
	// The hook's deadline (SHUTDOWN_TIMEOUT) also bounds the charges in
	// flight: a provider slowed through etcd must not hold the stop.
	s.Server.OnShutdown(func(ctx context.Context) error { s.workers.Stop(ctx); return s.cleanup.Close() })
	return s, nil
}

// etcdParts sets up discovery and the dynamic settings: both from etcd when
// endpoints are configured, else a static registry and the initial settings.
// It returns what closes the etcd client (nil without etcd), also when the
// settings watch fails.
func (s *Service) etcdParts(ctx context.Context) (close func() error, err error) {
	initial := s.cfg.Initial()
	reg, err := discoverable.Open(ctx, s.cfg.EtcdEndpoints, s.cfg.DiscoveryStatic, s.log)
	s.registry = reg.Registry
	if err != nil {
		return reg.Close, err
	}
	if reg.Etcd == nil {
		s.Settings = func() config.Dynamic { return initial }
		return reg.Close, nil
	}
	// The watch lives as long as the etcd client: closing the client on
	// shutdown ends it.
	v, err := dynconfig.Watch(context.WithoutCancel(ctx), reg.Etcd, s.cfg.SettingsKey, initial)
	if err != nil {
		return reg.Close, err
	}
	v.OnChange(func(d config.Dynamic) { s.log.Info("payment settings changed", "settings", d) })
	s.Settings = v.Load
	return reg.Close, nil
}

// Start runs the outbox relay and the order.created consumer. Stop (or the
// server's shutdown) ends them, waiting for a Start under way first; a
// second Start, or one after Stop, is an error (server.Workers says why).
func (s *Service) Start(ctx context.Context) error {
	return s.workers.Start(ctx, s.startWorkers)
}

// startWorkers starts the workers for server.Workers, which runs it once:
// they end with the stop function it returns, or, when it fails, before it
// returns.
func (s *Service) startWorkers(ctx context.Context) (stop func(context.Context), err error) {
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { _ = s.Relay.Run(wctx) })
	// A Config built in code rather than loaded (tests) has no interval, and
	// periodic.Run with none would run rounds back to back.
	every := s.cfg.SettleInterval
	if every <= 0 {
		every = time.Minute
	}
	wg.Go(func() { periodic.Run(wctx, min(time.Minute, every), every, s.settle) })
	stopConsumer, err := s.events.Start()
	if err != nil {
		cancel()
		wg.Wait()
		return nil, err
	}
	return func(ctx context.Context) {
		stopConsumer(ctx)
		cancel()
		wg.Wait()
	}, nil
}

// settle is one settle round (app.SettleHandler): it voids or refunds the
// cancelled orders whose dead-lettered order.created or order.cancelled left
// them charged, or their key unvoided, because the provider was still
// faulting. Every replica runs it; the status guards store each once.
func (s *Service) settle(ctx context.Context) {
	res, err := s.App.Settle.Handle(ctx)
	if res.Voided > 0 {
		s.settled.Add(ctx, int64(res.Voided), metric.WithAttributes(attribute.String("outcome", "voided")))
	}
	if res.Refunded > 0 {
		s.settled.Add(ctx, int64(res.Refunded), metric.WithAttributes(attribute.String("outcome", "refunded")))
	}
	if res.Voided+res.Refunded > 0 {
		s.log.InfoContext(ctx, "settled cancelled orders left charged by a dead letter", "voided", res.Voided, "refunded", res.Refunded)
	}
	// Each refusal is in the result of the one round that stored it, so it
	// is logged and counted once across replicas; no round retries it, and
	// the money stays taken until a person settles it with the provider.
	for _, d := range res.RefundDeclined {
		s.settled.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", "refund_declined")))
		s.log.ErrorContext(ctx, "the provider declined the refund of a cancelled order: the customer is still charged and the settle round will not retry; settle it with the provider",
			"payment_id", d.PaymentID, "order_id", d.OrderID, "err", d.Err)
	}
	s.countSettleFailures(ctx, settleFailureProvider, res.Faulted)
	s.countSettleFailures(ctx, settleFailureDatabase, res.Failed)
	if err != nil && ctx.Err() == nil {
		// A provider still faulting: the next round tries again.
		s.log.WarnContext(ctx, "settle round", "err", err)
	}
	// After the settling, so that what this round settled is already
	// final; the settled dead letters are kept DEAD_LETTER_RETENTION for
	// the operators, then no round reads them again. A Config built in
	// code rather than loaded (tests) has no retention: it deletes nothing
	// rather than every settled dead letter at once.
	if s.cfg.DeadLetterRetention <= 0 {
		return
	}
	purged, err := s.App.Settle.PurgeDeadLetters(ctx, s.cfg.DeadLetterRetention)
	if purged > 0 {
		s.log.InfoContext(ctx, "deleted settled dead letters past their retention", "deleted", purged, "retention", s.cfg.DeadLetterRetention)
	}
	if err != nil && ctx.Err() == nil {
		s.countSettleFailures(ctx, settleFailurePurge, 1)
		s.log.WarnContext(ctx, "settle round: purge dead letters", "err", err)
	}
}

// The reasons of shanhai_payment_settle_failures_total: a fixed set, so the
// series stay few whatever the errors say.
const (
	settleFailureProvider = "provider" // a payment's void or refund faulted at the provider
	settleFailureDatabase = "database" // a payment's write, or the round's listing, failed
	settleFailurePurge    = "purge"    // deleting settled dead letters past their retention failed
)

var settleFailureReasons = []string{settleFailureProvider, settleFailureDatabase, settleFailurePurge}

func (s *Service) countSettleFailures(ctx context.Context, reason string, n int) {
	if n > 0 {
		s.settleFailures.Add(ctx, int64(n), metric.WithAttributes(attribute.String("reason", reason)))
	}
}

// Run listens and serves until ctx ends or a signal arrives, then shuts down
// in pkg/server's order. The workers start and the instance registers in
// discovery concurrently, while the server comes up; /readyz answers 200 once
// both are done. If either fails, the server shuts down and Run returns why.
func (s *Service) Run(ctx context.Context) error {
	return discoverable.Serve(ctx, discoverable.Instance{
		Server: s.Server, Addr: s.cfg.Addr, Advertise: s.cfg.AdvertiseAddr, Registry: s.registry,
		In:    discovery.Instance{Service: Name, Version: s.cfg.Version, Zone: s.cfg.Zone},
		Start: s.Start,
	})
}

// Stop ends the workers, within SHUTDOWN_TIMEOUT as the shutdown hook does,
// and closes every connection.
func (s *Service) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	s.workers.Stop(ctx)
	return s.cleanup.Close()
}
