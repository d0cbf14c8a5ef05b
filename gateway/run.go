package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel"

	"github.com/shanhai-dev/shanhai/pkg/auth"
	"github.com/shanhai-dev/shanhai/pkg/breaker"
	"github.com/shanhai-dev/shanhai/pkg/discovery"
	"github.com/shanhai-dev/shanhai/pkg/dynconfig"
	"github.com/shanhai-dev/shanhai/pkg/limit"
	"github.com/shanhai-dev/shanhai/pkg/redisurl"
	"github.com/shanhai-dev/shanhai/pkg/retry"
	"github.com/shanhai-dev/shanhai/pkg/server"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"

	"github.com/shanhai-dev/shanhai/gateway/internal/authn"
	"github.com/shanhai-dev/shanhai/gateway/internal/canary"
	"github.com/shanhai-dev/shanhai/gateway/internal/config"
	"github.com/shanhai-dev/shanhai/gateway/internal/evloop"
	"github.com/shanhai-dev/shanhai/gateway/internal/proxy"
	"github.com/shanhai-dev/shanhai/gateway/internal/quota"
	"github.com/shanhai-dev/shanhai/gateway/internal/route"
	"github.com/shanhai-dev/shanhai/gateway/internal/sockio"
	"github.com/shanhai-dev/shanhai/gateway/internal/upstream"
)

// Options say where Run reads its configuration and where it reports: the
// zero value is the production binary (cmd/gateway); cmd/shanhai fills them
// to host the gateway beside the services in one process (see server.Part).
type Options = server.Part

// Run starts the gateway and serves until ctx ends, then drains. Unlike the
// services it watches no signals itself: cmd/gateway turns SIGINT/SIGTERM
// into the end of ctx. A bad configuration is returned as a *config.Error
// (pkg/config) before anything starts; any later failure is also logged.
func Run(ctx context.Context, o Options) error {
	var cfg config.Config
	if err := o.LoadConfig(&cfg); err != nil {
		return err
	}
	log := o.LogAt(os.Stdout, cfg.LogLevel)
	if err := run(ctx, o, cfg, log); err != nil {
		log.Error("gateway stopped", "error", err.Error())
		return err
	}
	return nil
}

// resolver adapts pkg/discovery to the upstream pool.
// maxHeadBytes caps a message's head (start line and fields), a client's
// request or an upstream's answer, on both transports: the event loop reads
// both through one buffer of this size, and the fasthttp transport's pools
// read answers into 8 KiB (their default), so an answer with a head between
// the two was 502 on fasthttp and passed on by the event loop.
const maxHeadBytes = 16 << 10

type resolver struct{ r discovery.Resolver }

func (a resolver) Instances(svc string) []upstream.Instance {
	ins := a.r.Instances(svc)
	out := make([]upstream.Instance, len(ins))
	for i, in := range ins {
		out[i] = upstream.Instance{ID: in.ID, Addr: in.Addr, Version: in.Version}
	}
	return out
}

func run(ctx context.Context, o Options, cfg config.Config, log *slog.Logger) error {
	full := cfg.Mode == "full"
	var tel *telemetry.Provider // nil in routing mode: that baseline measures no telemetry
	if full {
		var err error
		if tel, err = o.SetupTelemetry(ctx, telemetry.Options{ServiceName: "gateway", ServiceVersion: cfg.Version, Logger: log}); err != nil {
			return fmt.Errorf("telemetry: %w", err)
		}
	}

	// Discovery: etcd watch, or a static list.
	var (
		res discovery.Resolver
		cli *clientv3.Client
	)
	if len(cfg.EtcdEndpoints) > 0 {
		var err error
		cli, err = clientv3.New(discovery.EtcdConfig(cfg.EtcdEndpoints, 5*time.Second, log))
		if err != nil {
			return fmt.Errorf("etcd %v: %w", cfg.EtcdEndpoints, err)
		}
		defer cli.Close()
	}
	if cli != nil && cfg.DiscoveryStatic == "" {
		er, err := discovery.NewEtcdResolver(ctx, cli)
		if err != nil {
			return fmt.Errorf("discovery: %w", err)
		}
		res = er
	} else {
		st, err := discovery.NewStatic(cfg.DiscoveryStatic)
		if err != nil {
			return fmt.Errorf("DISCOVERY_STATIC: %w", err)
		}
		res = st
	}

	table, err := cfg.RouteTable()
	if err != nil {
		return err
	}
	var names []string
	seen := map[string]bool{}
	for _, r := range table.Routes() {
		if !seen[r.Service] {
			seen[r.Service] = true
			names = append(names, r.Service)
		}
	}
	pool := upstream.NewPool(resolver{res}, names, upstream.ClientOptions{MaxConns: cfg.MaxConns, ReadBufferSize: maxHeadBytes})
	go pool.Run(ctx, 100*time.Millisecond)

	trusted, _ := cfg.Trusted()
	opts := proxy.Options{
		Table: table, Upstreams: pool, Trusted: trusted, MaxAttempts: cfg.MaxAttempts,
		MaxTimeout: cfg.MaxTimeout, TLS: cfg.TLSCertFile != "", Log: log,
	}
	if len(cfg.CORSOrigins) > 0 {
		c := proxy.DefaultCORS(cfg.CORSOrigins)
		opts.CORS = &c
	}

	var dyn atomic.Pointer[proxy.Dynamic]
	dyn.Store(&proxy.Dynamic{})
	opts.Dynamic = func() proxy.Dynamic { return *dyn.Load() }

	var rdb *redis.Client
	if full {
		// A breaker per version of each service (Pool.SetBreakers: one
		// per service let a dead canary cut off the stable release), named
		// by the service, and "service@version" for a registered version.
		// The pool closes a version's when its last instance leaves, and
		// the rest on return, once the server has drained: a breaker
		// reports its state (shanhai.breaker.state) until closed, so each
		// Run in a process that lives on left the last gateway's breakers
		// reported, and held, for good. A refresh after that makes none.
		defer pool.CloseBreakers()
		pool.SetBreakers(func(service, version string) upstream.Breaker {
			name := service
			if version != "" {
				name += "@" + version
			}
			return breaker.New(name, breaker.Settings{
				Window: cfg.BreakerWindow, MinRequests: cfg.BreakerMin, FailureRatio: cfg.BreakerRatio, OpenBase: cfg.BreakerOpen,
			})
		})
		for _, svc := range pool.Services() {
			// Named, so the limit and the calls in flight per upstream are on
			// /metrics (shanhai.limit.concurrency.*); closed on return like the
			// breaker.
			lim := limit.NewAdaptive(limit.AdaptiveOptions{Name: svc.Name, Initial: min(100, cfg.ConcurrencyMax), Max: cfg.ConcurrencyMax})
			defer lim.Close()
			svc.Limit = lim
			svc.Budget = retry.NewBudget(cfg.RetryBudget, cfg.RetryFloor, 10*time.Second)
		}
		// The verifier caches verified tokens (looked up by the header bytes); 65536 as the gateway's own cache had.
		opts.Auth = authn.Verifier{V: auth.NewVerifier(cfg.JWKSURL, auth.VerifierOptions{CacheEntries: 1 << 16})}

		// Read as the services read it: the errors hide the password, and each
		// call is bounded at 250 ms without retries, so a lease refill waits on
		// a hung Redis at most that long before the local fallback decides
		// (go-redis's defaults: 3 s reads, retried three times).
		ropts, err := redisurl.Parse(cfg.RedisURL)
		if err != nil {
			return fmt.Errorf("REDIS_URL: %w", err)
		}
		rdb = redis.NewClient(ropts)
		defer rdb.Close()
		lims := map[string]*quota.Lease{
			"ip":    quota.New(rdb, cfg.LimitNamespace+":ip", cfg.IPLimit.Quota(), cfg.Replicas, log),
			"login": quota.New(rdb, cfg.LimitNamespace+":login", cfg.LoginLimit.Quota(), cfg.Replicas, log),
			"user":  quota.New(rdb, cfg.LimitNamespace+":user", cfg.UserLimit.Quota(), cfg.Replicas, log),
		}
		// Always installed: a limit switched off ("0") answers allow without
		// touching Redis, and dynamic config may switch it on later.
		opts.IPLimit, opts.LoginLimit, opts.UserLimit = lims["ip"], lims["login"], lims["user"]
		opts.Tracing, opts.Metrics = true, true
		// Keys evicted at a limit's cap, beside the decisions, on the meter
		// they use; unregistered on return, so a process that lives on does
		// not keep reporting (and holding) a stopped gateway's limits.
		evicters := map[string]proxy.Evicter{}
		for name, l := range lims {
			evicters[name] = l
		}
		if reg, err := proxy.ExportEvictions(otel.GetMeterProvider(), evicters); err != nil {
			// As for the decisions: the gateway serves without this metric.
			otel.Handle(err)
		} else {
			defer func() { _ = reg.Unregister() }()
		}

		if cli != nil {
			val, err := dynconfig.Watch(ctx, cli, cfg.DynamicKey, config.Dynamic{})
			if err != nil {
				return err
			}
			apply := func(d config.Dynamic) {
				next := proxy.Dynamic{Canary: map[string]canary.Weights{}, Timeouts: map[string]time.Duration{}, KeyedRetry: maps.Clone(d.KeyedRetry)}
				for svc, w := range d.Canary {
					next.Canary[svc] = canary.Weights(w)
				}
				for r, t := range d.Timeouts {
					next.Timeouts[r] = time.Duration(t)
				}
				dyn.Store(&next)
				envs := map[string]config.Rate{"ip": cfg.IPLimit, "login": cfg.LoginLimit, "user": cfg.UserLimit}
				for name, l := range lims {
					r, ok := d.Limits[name]
					if !ok {
						r = envs[name]
					}
					l.SetRate(r.Quota())
				}
				log.Info("dynamic config applied", "canary", d.Canary, "timeouts", len(d.Timeouts), "keyed_retry", d.KeyedRetry, "limits", len(d.Limits))
				// Not refused (config.Dynamic.UnmarshalJSON): gateways with
				// other route tables may share the key. But a misspelt
				// service or route name does nothing, which must show.
				if names := unrouted(d, table); len(names) > 0 {
					log.Warn("dynamic config names what this gateway does not route; those entries do nothing", "names", names)
				}
				warnCutTimeouts(log, d, cfg.MaxTimeout)
			}
			apply(val.Load())
			val.OnChange(apply)
		}
	}

	p := proxy.New(opts)
	var shuttingDown atomic.Bool
	// Health and readiness are answered on the public port too: a load
	// balancer in front reads them there, and they tell nothing about the
	// platform. Readiness is asked there: a gateway holding
	// GATEWAY_LOOP_MAX_CONNS clients answers its probe 503 gateway-busy and
	// is taken out of its Service, so new connections go to replicas with
	// room, which is what readiness is for. Liveness is not: a full gateway
	// is not a broken one, so its probe asks the admin listener's /healthz
	// (serveAdmin), which the cap does not count and which fails only when
	// an event loop is stuck (evloop's Alive). /metrics is on the admin
	// listener only: the gateway is the public door, and its series name
	// routes, upstreams and error rates. On the public port /metrics is a
	// path like any other.
	handler := func(ctx *fasthttp.RequestCtx) {
		if sockio.ReadTimedOut(ctx.Conn()) {
			// The fasthttp transport only: its parser takes a trailer
			// section the read timeout cut off after its CR ("0\r\n\r")
			// for a whole one. The request did not arrive in time: 408,
			// as on the event loop, not proxied.
			proxy.ErrorHandler(ctx, os.ErrDeadlineExceeded)
			return
		}
		path := string(proxy.AdminPath(&ctx.Request.Header)) // as the event loop matches them
		switch path {
		case "/healthz", "/readyz":
			if !proxy.AdminFramed(&ctx.Request.Header) {
				p.Handle(ctx) // refused, or answered and closed, as on every other path
				return
			}
			if proxy.AdminTrailer(ctx) {
				return // fields in a chunked trailer: 400, as on every other path
			}
		}
		switch path {
		case "/healthz":
			ctx.SetContentType("text/plain")
			ctx.SetBodyString("ok")
			return
		case "/readyz":
			if shuttingDown.Load() {
				ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
				ctx.SetBodyString("shutting down")
				return
			}
			ctx.SetBodyString("ready")
			return
		}
		p.Handle(ctx)
	}

	var loops *evloop.Server
	// On the fasthttp transport a goroutine serves each connection and no
	// loop can be stuck: the admin listener answering is the process alive.
	alive := func(context.Context) error { return nil }
	if cfg.TransportName() == "loop" {
		loops = newLoops(cfg, log, p, pool, handler)
		alive = loops.Alive
	}
	if cfg.AdminAddr != "" {
		var metrics http.Handler // none in routing mode, as before
		if tel != nil {
			metrics = tel.MetricsHandler()
		}
		admin, err := serveAdmin(cfg.AdminAddr, metrics, alive, log)
		if err != nil {
			return err
		}
		defer admin.Close() // on return: a host process outlives the gateway it ran
	}
	if loops != nil {
		return serveLoop(ctx, cfg, log, loops, &shuttingDown, tel)
	}
	srv := &fasthttp.Server{
		Handler:      handler,
		ErrorHandler: proxy.ErrorHandler,
		HeaderReceived: func(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
			return proxy.HeaderReceived(h, cfg.MaxBodyBytes) // Expect: 100-continue as on the event loop
		},
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		ReadTimeout:           cfg.ReadTimeout,
		WriteTimeout:          cfg.WriteTimeout,
		IdleTimeout:           cfg.IdleTimeout,
		MaxRequestBodySize:    cfg.MaxBodyBytes,
		ReadBufferSize:        maxHeadBytes, // caps request line + headers
		CloseOnShutdown:       true,
		Logger:                fasthttpLogger{log},
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	// Raw socket calls (internal/sockio), and the cap on client
	// connections the event loop has too (GATEWAY_LOOP_MAX_CONNS):
	// fasthttp's own, Server.Concurrency, is 262,144 by default.
	// Refusals are counted and logged as the event loop's are, under its
	// metric names (proxy.ExportClientConns).
	var refused proxy.Refusals
	busy := proxy.ConnsFullAnswer()
	if cfg.TLSCertFile != "" {
		busy = nil // plain bytes to a TLS client are garbage to it: closed without a word
	}
	clients := &sockio.Cap{Max: int64(cfg.LoopMaxConns), Full: busy,
		Refused: func(peer net.Addr) {
			refused.Note(log, "connection refused: the gateway holds as many client connections as it may",
				"peer", peer.String(), "max_conns", cfg.LoopMaxConns, "env", "GATEWAY_LOOP_MAX_CONNS")
		}}
	ln = sockio.Listener{Listener: ln, Cap: clients}
	if reg, err := proxy.ExportClientConns(otel.GetMeterProvider(), clients.Open, &refused); err != nil {
		otel.Handle(err) // the gateway serves without the metric, as without the others
	} else {
		defer func() { _ = reg.Unregister() }()
	}
	errc := make(chan error, 1)
	go func() {
		if cfg.TLSCertFile != "" {
			// TLS 1.2 at least; Go negotiates 1.3 first whenever the client can.
			srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
			errc <- srv.ServeTLS(ln, cfg.TLSCertFile, cfg.TLSKeyFile)
			return
		}
		errc <- srv.Serve(ln)
	}()
	log.Info("gateway listening", "addr", ln.Addr().String(), "transport", cfg.TransportName(), "mode", cfg.Mode, "routes", cfg.Routes)
	return serveUntil(ctx, cfg, log, errc, &shuttingDown, tel, func(sctx context.Context) error {
		if err := srv.ShutdownWithContext(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		return nil
	})
}

// newLoops builds the event-loop transport (GATEWAY_TRANSPORT=loop): the
// same chain and public health paths on gnet event loops (internal/evloop).
func newLoops(cfg config.Config, log *slog.Logger, p *proxy.Proxy, pool *upstream.Pool, health fasthttp.RequestHandler) *evloop.Server {
	return evloop.New(evloop.Options{
		Addr: cfg.Addr, Loops: cfg.EventLoops, Proxy: p, Admin: health, AdminPaths: []string{"/healthz", "/readyz"},
		MaxBodyBytes: cfg.MaxBodyBytes, MaxHeaderBytes: maxHeadBytes, HeldBytes: cfg.LoopHeldBytes, MaxClients: cfg.LoopMaxConns,
		ReadTimeout:  cfg.ReadTimeout,
		WriteTimeout: cfg.WriteTimeout, IdleTimeout: cfg.IdleTimeout, MaxConns: cfg.MaxConns, Endpoints: pool, Log: log,
	})
}

// serveLoop is run's tail for GATEWAY_TRANSPORT=loop: srv serves until ctx
// ends.
func serveLoop(ctx context.Context, cfg config.Config, log *slog.Logger, srv *evloop.Server, shuttingDown *atomic.Bool, tel *telemetry.Provider) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()
	log.Info("gateway listening", "addr", cfg.Addr, "transport", cfg.TransportName(), "mode", cfg.Mode, "routes", cfg.Routes)
	return serveUntil(ctx, cfg, log, errc, shuttingDown, tel, func(sctx context.Context) error {
		err := srv.Stop(sctx)
		select {
		case <-errc: // Serve has returned: every connection is closed
		case <-sctx.Done():
		}
		return err
	})
}

// serveUntil waits for the server to fail (errc) or ctx to end; then it
// fails readiness, stops the server within SHUTDOWN_TIMEOUT and flushes
// telemetry.
//
// The stop has one deadline, fixed when it begins, under pkg/server's rule
// for the services (server.FlushFloor): the drain gets SHUTDOWN_TIMEOUT, and
// the flush what is left of the deadline, at least server.FlushFloor (and at
// most SHUTDOWN_TIMEOUT). The two shared one SHUTDOWN_TIMEOUT before, so a
// drain that used all of it left the flush an expired context, and the
// spans of the last requests, the ones that explain a slow stop, were lost.
// The floor keeps a dead collector's cost bounded: a stop takes at most
// SHUTDOWN_TIMEOUT + server.FlushFloor (deploy/stopgrace_test.go counts it).
func serveUntil(ctx context.Context, cfg config.Config, log *slog.Logger, errc <-chan error, shuttingDown *atomic.Bool,
	tel *telemetry.Provider, stop func(context.Context) error) error {
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shuttingDown.Store(true)
	stopBy := time.Now().Add(cfg.ShutdownTimeout + min(server.FlushFloor, cfg.ShutdownTimeout))
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	err := stop(sctx)
	cancel()
	if err != nil {
		log.Warn("shutdown", "error", err.Error())
	}
	if tel != nil {
		fctx, cancel := context.WithTimeout(context.Background(), server.FlushTimeout(stopBy, cfg.ShutdownTimeout))
		err := tel.Shutdown(fctx)
		cancel()
		if err != nil {
			log.Warn("telemetry flush", "error", err.Error())
		}
	}
	log.Info("gateway stopped")
	return nil
}

// serveAdmin serves pprof, liveness (/healthz: see liveness) and, when
// metrics is not nil, /metrics on addr: the listener for operators,
// Prometheus and the kubelet's liveness probe, never published (127.0.0.1
// by default; compose and Kubernetes open it to their Prometheus alone,
// and to the node the kubelet probes from).
//
// A taken address stops the start, as in pkg/server: a gateway running on
// without it would be ready and unobserved.
func serveAdmin(addr string, metrics http.Handler, alive func(context.Context) error, log *slog.Logger) (*http.Server, error) {
	mux := http.NewServeMux()
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	mux.Handle("GET /healthz", liveness(alive, log))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen admin %s: %w", addr, err)
	}
	s := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("admin listener", "addr", addr, "error", err.Error())
		}
	}()
	return s, nil
}

// fasthttpLogger routes fasthttp's own messages into slog.
type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	f.l.Debug(strings.TrimSpace(fmt.Sprintf(format, args...)), "component", "fasthttp")
}

// warnCutTimeouts logs the routes of d whose timeout is above limit, once for
// the document (apply), not per request. The proxy cuts them to it, as
// every deadline; the document is not refused, since the cap is this
// gateway's environment and other gateways may share the key.
func warnCutTimeouts(log *slog.Logger, d config.Dynamic, limit time.Duration) {
	var long []string
	for _, r := range slices.Sorted(maps.Keys(d.Timeouts)) {
		if time.Duration(d.Timeouts[r]) > limit {
			long = append(long, r)
		}
	}
	if len(long) > 0 {
		log.Warn("dynamic route timeouts above GATEWAY_MAX_TIMEOUT are cut to it", "routes", long, "max", limit.String())
	}
}

// unrouted lists the canary services, timeout routes and keyed_retry routes
// of d that the route table has no route for ("canary <service>",
// "timeouts <route>", "keyed_retry <route>"), sorted.
func unrouted(d config.Dynamic, table *route.Table) []string {
	services, routes := map[string]bool{}, map[string]bool{}
	for _, r := range table.Routes() {
		services[r.Service], routes[r.Name] = true, true
	}
	var out []string
	for svc := range d.Canary {
		if !services[svc] {
			out = append(out, "canary "+svc)
		}
	}
	for r := range d.Timeouts {
		if !routes[r] {
			out = append(out, "timeouts "+r)
		}
	}
	for r := range d.KeyedRetry {
		if !routes[r] {
			out = append(out, "keyed_retry "+r)
		}
	}
	slices.Sort(out)
	return out
}
