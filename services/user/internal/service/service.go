// Package service wires the user service from its configuration: the one
// place that knows every adapter. main and the component tests build the
// service here, so tests exercise the production wiring.
package service

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/auth"
	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/discovery"
	"github.com/shanhai-dev/shanhai/pkg/limit"
	"github.com/shanhai-dev/shanhai/pkg/migrate"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
	"github.com/shanhai-dev/shanhai/pkg/periodic"
	"github.com/shanhai-dev/shanhai/pkg/redisurl"
	"github.com/shanhai-dev/shanhai/pkg/server"
	"github.com/shanhai-dev/shanhai/pkg/server/discoverable"
	"github.com/shanhai-dev/shanhai/pkg/startgc"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
	"github.com/shanhai-dev/shanhai/services/user/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/user/internal/app"
	"github.com/shanhai-dev/shanhai/services/user/internal/config"
	"github.com/shanhai-dev/shanhai/services/user/internal/ports"
	"github.com/shanhai-dev/shanhai/services/user/migrations"
)

// Name is the service name in discovery, telemetry and logs.
const Name = "user"

// Options are what the caller provides beyond the environment config.
type Options struct {
	Logger    *slog.Logger
	Telemetry *telemetry.Provider
}

// Service is a wired, not yet running, user service.
type Service struct {
	cfg      config.Config
	log      *slog.Logger
	Server   *server.Server
	App      app.Application
	Signer   *auth.Signer
	DB       *gorm.DB
	Redis    *redis.Client
	Relay    *outbox.Relay
	sessions *adapters.SessionGorm
	registry discovery.Registry
	users    *adapters.UserGorm
	// invisible is how many accounts have an invisible character in their
	// email, as last counted (reportInvisibleEmails), for the gauge.
	invisible atomic.Int64

	// workers are the relay, the housekeeping and the count of invisible
	// emails, from Start until Stop.
	workers server.Workers
	cleanup server.Cleanup
	// closing runs the end of the service (workers, then connections) once,
	// for whichever asks first: the shutdown hook, which waits for it only
	// as long as its context lasts, or Stop. closed is closed when it is
	// done, and closeErr then says how it went.
	closing  sync.Once
	closed   chan struct{}
	closeErr error
	// firstHousekeeping is how long after Start the first housekeeping round
	// runs (tests set it to 0).
	firstHousekeeping time.Duration
}

// Migrate applies the outbox set and the service's own set, SQL files and
// Go steps (log says what a step could not do).
func Migrate(ctx context.Context, db *gorm.DB, log *slog.Logger) error {
	return migrate.UpAll(ctx, db, outbox.Migrations, migrations.Set(log))
}

// New connects to every dependency, migrates the database and builds the
// HTTP server. Nothing is served until Run.
//
// PostgreSQL (connect and migration check) and etcd do not need each other,
// so they are set up concurrently: start-up takes as long as the slower. Redis
// is warmed in the background: its client connects lazily, and the service
// starts and is ready without it (server.Optional).
func New(ctx context.Context, cfg config.Config, o Options) (_ *Service, err error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	// s is not the named result: "return nil, err" must not hide it from
	// the cleanup below.
	s := &Service{cfg: cfg, log: o.Logger, firstHousekeeping: time.Minute}
	defer func() {
		if err != nil {
			_ = s.cleanup.Close()
		}
	}()

	keys, generated, err := cfg.Keys.Keys()
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	if generated {
		o.Logger.Warn("AUTH_DEV_KEYS: signing with a throwaway key; tokens die with this process", "kid", keys[0].Kid)
	}
	s.Signer = auth.NewSigner(keys...)
	// The service checks its own tokens against its own keys: no HTTP round
	// trip to itself, and no window where it cannot verify what it signed.
	verifier, err := auth.NewStaticVerifier(s.Signer.JWKS(), auth.VerifierOptions{})
	if err != nil {
		return nil, err
	}

	// Short timeouts, no retries: a failed cache read goes on to the
	// database, within the caller's deadline (TestProfileWithAHungRedis);
	// the limiters bound their own calls.
	ropt, err := redisurl.Parse(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	s.Redis = redis.NewClient(ropt)
	s.cleanup.Add(s.Redis.Close)
	go func() { _ = s.Redis.Ping(context.WithoutCancel(ctx)).Err() }()

	phases := server.NewPhases()
	defer func() {
		if err == nil {
			phases.Done("server")
			s.log.Debug("user service wired", phases.Args()...)
		}
	}()
	if err = s.cleanup.OpenAll(phases,
		server.Opening{Name: "database", Open: func() (func() error, error) {
			db, err := database.OpenMigrated(ctx, cfg.DatabaseURL, database.Options{Logger: o.Logger}, func(ctx context.Context, db *gorm.DB) error {
				return Migrate(ctx, db, o.Logger)
			})
			s.DB = db
			return database.Closer(db), err
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

	window := limit.Rate{Period: cfg.LoginWindow}
	perIP, perAccount := window, window
	perIP.Count, perAccount.Count = cfg.LoginIPAttempts, cfg.LoginAccountAttempts
	guard := adapters.NewLoginGuard(
		limit.NewRedis(s.Redis, perIP, cfg.Replicas, limit.Name(adapters.LoginIPPolicy), limit.Logger(o.Logger)),
		limit.NewRedis(s.Redis, perAccount, cfg.Replicas, limit.Name(adapters.LoginAccountPolicy), limit.Logger(o.Logger)),
	)
	// Sign-ups per IP have a quota and variables of their own: a burst of
	// sign-ups from one office must not lock its log ins, and the two abuse
	// shapes (guessing passwords, making accounts) want different rates.
	signupIP := limit.Rate{Count: cfg.SignupIPAttempts, Period: cfg.SignupWindow}
	signups := adapters.NewSignupGuard(limit.NewRedis(s.Redis, signupIP, cfg.Replicas, limit.Name(adapters.SignupIPPolicy), limit.Logger(o.Logger)))
	s.sessions = adapters.NewSessionGorm(s.DB)
	s.users = adapters.NewUserGorm(s.DB).NotifyOnEvents(s.Relay.Nudge)
	if err = s.meterInvisibleEmails(); err != nil {
		return nil, err
	}
	s.App = app.New(app.Deps{
		Users:       s.users,
		Profiles:    adapters.NewProfileRedis(s.Redis, cfg.ProfileCacheTTL),
		Sessions:    s.sessions,
		Credentials: adapters.NewCredentialsGorm(s.DB),
		Hasher:      adapters.NewArgon2(adapters.Argon2Params{Memory: cfg.Argon2MemoryKiB, Time: cfg.Argon2Time, Threads: 1, SaltLen: 16, KeyLen: 32}, cfg.Argon2Concurrency),
		Tokens:      s.Signer,
		Guard:       guard,
		Signups:     signups,
		Logger:      o.Logger,
		NewID:       func() string { return uuid.Must(uuid.NewV7()).String() },
		AccessTTL:   cfg.AccessTokenTTL,
		RefreshTTL:  cfg.RefreshTokenTTL,
	})

	s.Server = server.New(server.Options{
		Name: Name, Version: cfg.Version, Addr: cfg.Addr, AdminAddr: cfg.AdminAddr,
		ShutdownTimeout: cfg.ShutdownTimeout, ReadTimeout: cfg.ReadTimeout, Logger: o.Logger, Telemetry: o.Telemetry,
		Deregister: s.registry.Deregister, DeregisterDelay: server.DefaultDeregisterDelay,
		// The collector's first cycle after start-up, once the first ready
		// answer is out rather than beside it (startgc.Linger says why).
		OnReady: startgc.Ready,
		Checks: []server.Check{
			server.DatabaseCheck(s.DB.DB),
			// Redis holds the profile cache (read through to the database) and the login and sign-up
			// limits (a local limit ÷ REPLICAS when it is gone).
			server.Optional("redis", func(ctx context.Context) error { return s.Redis.Ping(ctx).Err() }, o.Logger),
		},
	})
	router := s.Server.Router()
	if err = router.SetTrustedProxies(cfg.TrustedProxies); err != nil {
		return nil, fmt.Errorf("TRUSTED_PROXIES: %w", err)
	}
	trusted, err := trustedProxies(cfg.TrustedProxies)
	if err != nil {
		return nil, err
	}
	ports.HTTP{App: s.App, JWKS: s.Signer.JWKS(), Verifier: verifier, Logger: o.Logger, TrustedProxies: trusted}.Mount(router)
	s.Server.OnShutdown(s.shutdown)
	return s, nil
}

// trustedProxies parses TRUSTED_PROXIES (config.Validate has checked it) for
// the ports, which read the client's address from the forwarded chain
// themselves rather than with gin's ClientIP (ports.clientIP says why).
func trustedProxies(cidrs []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, c := range cidrs {
		if c = strings.TrimSpace(c); c == "" {
			continue
		}
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, fmt.Errorf("TRUSTED_PROXIES: %w", err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Start runs the outbox relay and the housekeeping in the background until
// Stop or shutdown, and reports the accounts with an invisible character in
// their email once. That report is the start's only query beyond the
// migration check, and nothing waits for it: it runs here, beside the
// relay, rather than in New on the way to ready; the gauge reads 0 until it
// has counted. Stop (or the server's shutdown) ends them, waiting for a
// Start under way first; a second Start, or one after Stop, is an error
// (server.Workers says why).
func (s *Service) Start(ctx context.Context) error {
	return s.workers.Start(ctx, s.startWorkers)
}

// startWorkers starts the workers for server.Workers, which runs it once:
// they end with the stop function it returns.
func (s *Service) startWorkers(ctx context.Context) (stop func(context.Context), err error) {
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := s.reportInvisibleEmails(wctx, true); err != nil && wctx.Err() == nil {
			s.log.WarnContext(wctx, "counting the invisible-character emails failed", "err", err)
		}
	})
	wg.Go(func() { _ = s.Relay.Run(wctx) })
	wg.Go(func() { periodic.Run(wctx, s.firstHousekeeping, time.Hour, s.housekeeping) })
	return func(context.Context) {
		cancel()
		wg.Wait()
	}, nil
}

// How expired refresh tokens are deleted: in batches, each its own short
// statement, and at most expiredBatches of them a round, so a backlog (the
// first round after an upgrade) is worked off over several rounds rather
// than in one long burst of writes beside the logins.
const (
	expiredBatch   = 1000
	expiredBatches = 100
)

// housekeeping deletes expired refresh tokens, a minute after start and then
// hourly (pkg/periodic says why then), so the table stays proportional to
// the live sessions (nothing else deletes them). Replicas may run rounds
// together: a row is deleted once, and the others find fewer.
func (s *Service) housekeeping(ctx context.Context) {
	n, err := s.deleteExpired(ctx)
	if err != nil && ctx.Err() == nil { // a stop is not a failure
		s.log.WarnContext(ctx, "housekeeping", "err", err)
	}
	if n > 0 {
		s.log.InfoContext(ctx, "deleted expired refresh tokens", "count", n)
	}
	// Recounted so that the gauge drops once an operator has settled them.
	if err := s.reportInvisibleEmails(ctx, false); err != nil && ctx.Err() == nil {
		s.log.WarnContext(ctx, "housekeeping", "err", err)
	}
}

// invisibleIDsLogged bounds the ids the start's warning lists: the count is
// whole, and the query in reportInvisibleEmails gives the rest.
const invisibleIDsLogged = 100

// reportInvisibleEmails counts the accounts an older release stored with an
// invisible character in their email (migration 0005's email_visible) for
// the gauge, and at start (logAtStart) logs one WARN with their number and
// ids, never the addresses. They are not rewritten: their owners log in
// under them, and which of two look-alike accounts is whose, or whether an
// address is to be changed at all, is an operator's decision. Sign-up keeps
// the address without the character from registering beside one (EmailTaken).
func (s *Service) reportInvisibleEmails(ctx context.Context, logAtStart bool) error {
	ids, err := s.users.InvisibleEmails(ctx)
	if err != nil {
		return err
	}
	s.invisible.Store(int64(len(ids)))
	if logAtStart && len(ids) > 0 {
		s.log.WarnContext(ctx, "accounts with an invisible character in their email: sign-up refuses the address without it; an operator decides what becomes of them",
			"count", len(ids), "user_ids", ids[:min(len(ids), invisibleIDsLogged)],
			"query", "SELECT id, email, email_visible FROM users WHERE email_visible IS NOT NULL")
	}
	return nil
}

// meterInvisibleEmails exposes the last count of reportInvisibleEmails as
// the gauge shanhai.user.accounts.invisible_email, until the service stops.
func (s *Service) meterInvisibleEmails() error {
	m := otel.Meter("shanhai/user")
	g, err := m.Int64ObservableGauge("shanhai.user.accounts.invisible_email",
		metric.WithDescription("Accounts an older release stored with an invisible character in their email, as last counted (at start, then hourly)"),
		metric.WithUnit("{account}"))
	if err != nil {
		return fmt.Errorf("gauge of invisible emails: %w", err)
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(g, s.invisible.Load())
		return nil
	}, g)
	if err != nil {
		return fmt.Errorf("gauge of invisible emails: %w", err)
	}
	s.cleanup.Add(reg.Unregister)
	return nil
}

// deleteExpired is one housekeeping round: batches until one is not full.
func (s *Service) deleteExpired(ctx context.Context) (int64, error) {
	var deleted int64
	for range expiredBatches {
		n, err := s.sessions.DeleteExpired(ctx, time.Now(), expiredBatch)
		deleted += n
		if err != nil || n < expiredBatch {
			return deleted, err
		}
	}
	return deleted, nil
}

// Run listens and serves until ctx ends or a signal arrives, then shuts down
// in pkg/server's order. The relay starts and the instance registers in
// discovery while the server comes up; /readyz answers 200 once registered.
// If registering fails, the server shuts down and Run returns why.
func (s *Service) Run(ctx context.Context) error {
	return discoverable.Serve(ctx, discoverable.Instance{
		Server: s.Server, Addr: s.cfg.Addr, Advertise: s.cfg.AdvertiseAddr, Registry: s.registry,
		In:    discovery.Instance{Service: Name, Version: s.cfg.Version, Zone: s.cfg.Zone},
		Start: s.Start,
	})
}

// finish ends the workers, then closes every connection, once and in the
// background; the channel it returns is closed when that is done.
func (s *Service) finish() <-chan struct{} {
	s.closing.Do(func() {
		s.closed = make(chan struct{})
		go func() {
			defer close(s.closed)
			// No deadline: the workers' stop only cancels them and
			// waits (shutdown says what bounds that wait).
			s.workers.Stop(context.Background())
			s.closeErr = s.cleanup.Close()
		}()
	})
	return s.closed
}

// shutdown is the server's shutdown hook: finish, waited for until ctx
// (SHUTDOWN_TIMEOUT) ends and no longer. A relay round waiting on a locked
// outbox goes on until 5 s after the stop (pkg/outbox's grace), and the stop
// budgets of compose and Kubernetes count each step once SHUTDOWN_TIMEOUT
// (deploy/stopgrace_test.go); what is still running then finishes in the
// background, or ends with the process.
func (s *Service) shutdown(ctx context.Context) error {
	select {
	case <-s.finish():
		return s.closeErr
	case <-ctx.Done():
		return fmt.Errorf("stop the workers and close the connections: %w", context.Cause(ctx))
	}
}

// Stop ends the relay and closes every connection, and waits for that (tests;
// Run does this through the server's shutdown hook).
func (s *Service) Stop() error {
	<-s.finish()
	return s.closeErr
}
