// Package service wires the order service from its configuration: the one
// place that knows every adapter. main and the component tests both build
// the service here, so tests exercise the production wiring.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/auth"
	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/dedup"
	"github.com/shanhai-dev/shanhai/pkg/discovery"
	"github.com/shanhai-dev/shanhai/pkg/migrate"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
	"github.com/shanhai-dev/shanhai/pkg/periodic"
	"github.com/shanhai-dev/shanhai/pkg/redisurl"
	"github.com/shanhai-dev/shanhai/pkg/server"
	"github.com/shanhai-dev/shanhai/pkg/server/discoverable"
	"github.com/shanhai-dev/shanhai/pkg/startgc"
	"github.com/shanhai-dev/shanhai/pkg/stream"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
	"github.com/shanhai-dev/shanhai/services/order/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/order/internal/app"
	"github.com/shanhai-dev/shanhai/services/order/internal/config"
	"github.com/shanhai-dev/shanhai/services/order/internal/ports"
	"github.com/shanhai-dev/shanhai/services/order/migrations"
)

// Name is the service name in discovery, telemetry and logs.
const Name = "order"

// Options are what the caller provides beyond the environment config.
type Options struct {
	Logger    *slog.Logger
	Telemetry *telemetry.Provider
	// Verifier overrides the JWKS_URL verifier.
	Verifier *auth.Verifier
	// JetStream overrides the stream and consumer names (tests use private
	// ones); zero fields keep the platform's names.
	JetStream adapters.Names
	// MaxDeliver overrides how often a payment result is delivered before
	// it is terminated (tests lower it); zero keeps adapters.MaxDeliver.
	MaxDeliver int
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
			n.Subject = cfg.NATSSubjectPrefix + adapters.PaymentsSubject
		}
	}
	return n
}

// Service is a wired, not yet running, order service.
type Service struct {
	cfg      config.Config
	log      *slog.Logger
	Server   *server.Server
	App      app.Application
	DB       *gorm.DB
	Redis    *redis.Client
	NATS     *nats.Conn
	Relay    *outbox.Relay
	Catalog  *adapters.CatalogRedis
	registry discovery.Registry
	events   *adapters.PaymentEvents
	orders   *adapters.OrderGorm
	expiry   *expiry

	// workers are the relay, the housekeeping and the payment-result consumer,
	// from Start until Stop.
	workers server.Workers
	cleanup server.Cleanup
}

// Migrate applies the pkg sets this service uses and its own set.
func Migrate(ctx context.Context, db *gorm.DB) error {
	return migrate.UpAll(ctx, db, outbox.Migrations, dedup.Migrations, migrations.FS)
}

// New connects to every dependency, migrates the database and builds the
// HTTP server. Nothing is consumed or served until Start/Run.
//
// The dependencies do not need each other, so they are set up concurrently:
// start-up takes as long as the slowest (usually PostgreSQL's connect and
// migration check), not the sum. Redis and the JWKS are warmed in the
// background: neither may stop the service from starting (the user service
// may itself be starting). /readyz waits for the JWKS; Redis it only watches
// (server.Optional).
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
			s.log.Debug("order service wired", phases.Args()...)
		}
	}()

	ropt, err := redisurl.Parse(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	verifier := o.Verifier
	if verifier == nil {
		verifier = auth.NewVerifier(cfg.JWKSURL, auth.VerifierOptions{})
		go func() { _ = verifier.Ready(context.WithoutCancel(ctx)) }()
	}
	s.Redis = redis.NewClient(ropt)
	s.cleanup.Add(s.Redis.Close)
	go func() { _ = s.Redis.Ping(context.WithoutCancel(ctx)).Err() }()

	names := jetStreamNames(cfg, o.JetStream)
	var consumer jetstream.Consumer
	if err = s.cleanup.OpenAll(phases,
		server.Opening{Name: "database", Open: func() (func() error, error) {
			db, err := database.OpenMigrated(ctx, cfg.DatabaseURL, database.Options{Logger: o.Logger, MaxOpenConns: cfg.DatabaseMaxConns}, Migrate)
			s.DB = db
			return database.Closer(db), err
		}},
		server.Opening{Name: "nats", Open: func() (close func() error, err error) {
			var js jetstream.JetStream
			if s.NATS, js, close, err = stream.Connect(cfg.NATSURL, Name, o.Logger); err != nil {
				return close, err
			}
			// The consumer lookup now, beside the database, rather than
			// after listening: Start then only begins delivery.
			consumer, err = adapters.EnsureConsumer(ctx, js, names, o.MaxDeliver)
			return close, err
		}},
		server.Opening{Name: "discovery", Open: func() (func() error, error) {
			reg, err := discoverable.Open(ctx, cfg.EtcdEndpoints, cfg.DiscoveryStatic, o.Logger)
			s.registry = reg.Registry
			return reg.Close, err
		}},
	); err != nil {
		return nil, err
	}

	writer := outbox.NewWriter(cfg.KafkaBrokers...)
	s.cleanup.Add(writer.Close)
	s.Relay = outbox.NewRelay(s.DB, writer, outbox.RelayOptions{Logger: o.Logger, DelayFirstPoll: true})

	s.orders = adapters.NewOrderGorm(s.DB).NotifyOnEvents(s.Relay.Nudge)
	orders := s.orders
	catalogKey, err := adapters.CatalogKeyFor(adapters.CatalogKey, migrations.FS)
	if err != nil {
		return nil, err
	}
	s.Catalog = adapters.NewCatalogRedis(adapters.NewCatalogGorm(s.DB), s.Redis, cfg.CatalogCacheTTL, o.Logger).WithKey(catalogKey)
	s.App = app.New(app.Deps{
		Orders:  orders,
		Catalog: adapters.NewCatalogMemo(s.Catalog, adapters.CatalogMemoTTL),
		NewID:   func() string { return uuid.Must(uuid.NewV7()).String() },
		Render:  ports.Render,
		// Past it, an order payment never answered is cancelled (expiry.go).
		PendingTimeout: cfg.PendingTimeout,
	})
	s.expiry = newExpiry(s.App.ExpireOrders, cfg.PendingTimeout, o.Logger)
	s.events = adapters.NewPaymentEvents(consumer, names, s.App.ApplyPayment, o.MaxDeliver, o.Logger)

	s.Server = server.New(server.Options{
		Name: Name, Version: cfg.Version, Addr: cfg.Addr, AdminAddr: cfg.AdminAddr,
		ShutdownTimeout: cfg.ShutdownTimeout, ReadTimeout: cfg.ReadTimeout, Logger: o.Logger, Telemetry: o.Telemetry,
		Deregister: s.registry.Deregister, DeregisterDelay: server.DefaultDeregisterDelay,
		// The collector's first cycle after start-up, once the first ready
		// answer is out rather than beside it (startgc.Linger says why).
		OnReady: startgc.Ready,
		Checks: []server.Check{
			server.DatabaseCheck(s.DB.DB),
			// Redis holds only the catalogue cache, which the database stands in for.
			server.Optional("redis", func(ctx context.Context) error { return s.Redis.Ping(ctx).Err() }, o.Logger),
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
	// The hook's deadline (SHUTDOWN_TIMEOUT) also bounds the payment results
	// being applied: one waiting on a locked order row must not hold the stop.
	s.Server.OnShutdown(func(ctx context.Context) error { s.workers.Stop(ctx); return s.cleanup.Close() })
	return s, nil
}

// Start runs the outbox relay and the payment-result consumer. It returns
// once both are running; Stop (or the server's shutdown) ends them, waiting
// for a Start under way first; a second Start, or one after Stop, is an
// error (server.Workers says why).
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
	wg.Go(func() { periodic.Run(wctx, time.Minute, time.Hour, s.housekeeping) })
	wg.Go(func() { periodic.Run(wctx, time.Minute, time.Minute, s.expiry.round) })
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

// Retention of idempotency records and processed-event ids. Both must
// outlive any retry: a client's (hours) and a redelivery's (the stream keeps
// seven days).
const (
	keyRetention   = 24 * time.Hour
	dedupRetention = 8 * 24 * time.Hour
)

// housekeeping forgets old idempotency keys and dedup records, a minute
// after start and hourly after that (pkg/periodic says why then), so the
// tables stay proportional to recent traffic.
func (s *Service) housekeeping(ctx context.Context) {
	now := time.Now()
	if n, err := s.orders.ForgetKeys(ctx, now.Add(-keyRetention)); err != nil {
		if ctx.Err() != nil {
			return // a stop is not a failure, and the cleanup would only fail on the same ctx
		}
		s.log.WarnContext(ctx, "housekeeping", "err", err)
	} else if n > 0 {
		s.log.InfoContext(ctx, "forgot idempotency keys", "count", n)
	}
	if _, err := dedup.Cleanup(ctx, s.DB, now.Add(-dedupRetention)); err != nil && ctx.Err() == nil {
		s.log.WarnContext(ctx, "housekeeping", "err", err)
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

// Stop ends the workers and closes every connection (tests; Run does this
// through the server's shutdown hooks).
func (s *Service) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	s.workers.Stop(ctx)
	return s.cleanup.Close()
}
