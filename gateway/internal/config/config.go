// Package config is the gateway's configuration: environment variables read
// once at start (through pkg/config) and the dynamic part (limits, canary
// weights, route timeouts) watched in etcd.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	pkgconfig "github.com/shanhai-dev/shanhai/pkg/config"

	"github.com/shanhai-dev/shanhai/gateway/internal/quota"
	"github.com/shanhai-dev/shanhai/gateway/internal/route"
)

// Config is read from the environment at start.
type Config struct {
	Addr            string        `env:"HTTP_ADDR" envDefault:":8080" desc:"public listen address (API, /healthz, /readyz)"`
	AdminAddr       string        `env:"ADMIN_ADDR" envDefault:"127.0.0.1:9080" desc:"admin listener: /metrics, pprof and the liveness /healthz the manifests probe (200 while the event loops run); empty disables all three, and a liveness probe of the admin port then fails"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"10s" desc:"drain deadline"`
	LogLevel        slog.Level    `env:"LOG_LEVEL" envDefault:"info" desc:"debug, info, warn, error"`
	Version         string        `env:"SERVICE_VERSION" envDefault:"dev" desc:"reported in traces"`

	EtcdEndpoints   []string `env:"ETCD_ENDPOINTS" envDefault:"127.0.0.1:12379" envSeparator:"," desc:"etcd for discovery and dynamic config"`
	DiscoveryStatic string   `env:"DISCOVERY_STATIC" desc:"service=host:port,...; when set it replaces etcd discovery (etcd still serves dynamic config)"`
	RedisURL        string   `env:"REDIS_URL" envDefault:"redis://127.0.0.1:16379/0" desc:"Redis for limits shared by gateway replicas"`
	JWKSURL         string   `env:"JWKS_URL" envDefault:"http://127.0.0.1:8081/.well-known/jwks.json" desc:"user service key set for JWT verification"`

	Transport    string        `env:"GATEWAY_TRANSPORT" envDefault:"auto" desc:"auto (loop, or fasthttp when TLS_CERT_FILE is set), fasthttp (a goroutine per connection), or loop (gnet event loops; no TLS)"`
	EventLoops   int           `env:"GATEWAY_EVENT_LOOPS" envDefault:"0" desc:"event loops of the loop transport; 0 leaves it to gnet: one per CPU runtime.NumCPU counts, every CPU the process's affinity allows, not a container's CPU limit (in a container with a limit, set this to the limit; deploy/k8s sets it from limits.cpu)"`
	Mode         string        `env:"GATEWAY_MODE" envDefault:"full" desc:"full, or routing (no auth, limits, breaker, tracing or metrics: a benchmark baseline only)"`
	Routes       string        `env:"GATEWAY_ROUTES" envDefault:"/api/v1/users=user,/api/v1/sessions=user,/.well-known/jwks.json=user,/api/v1/orders=order,/api/v1/products=order,/api/v1/payments=payment" desc:"route table: path prefix=service,..."`
	RouteTimeout time.Duration `env:"GATEWAY_ROUTE_TIMEOUT" envDefault:"5s" desc:"default per-route timeout (504 when reached), at most GATEWAY_MAX_TIMEOUT; dynamic config may override per route"`
	KeyedRetry   []string      `env:"GATEWAY_KEYED_RETRY_ROUTES" envDefault:"/api/v1/orders" envSeparator:"," desc:"route prefixes whose upstream honours Idempotency-Key (replays a key's first answer): only there is a failed POST, PATCH, PUT or DELETE with the key retried; a prefix the table lacks is refused, but for the default's; dynamic config may override per route"`
	MaxTimeout   time.Duration `env:"GATEWAY_MAX_TIMEOUT" envDefault:"30s" desc:"cap on every deadline: a client's X-Request-Timeout-Ms and a route's timeout (a dynamic one above it is cut to it)"`

	MaxBodyBytes int `env:"GATEWAY_MAX_BODY_BYTES" envDefault:"1048576" desc:"largest request body (413 above)"`
	// LoopHeldBytes: 8 MiB, whose Content-Length bodies took the live
	// heap to 25-36 MB (gnet's rings hold about twice their bytes, and
	// its pool more; the 32 MiB it was took it to 76 MB), about a quarter
	// of the deployment's GOMEMLIMIT (102 MiB), beside a live heap of
	// 20-35 MB (limit shards, pools) and LoopMaxConns' 22 MB: hostile
	// clients can then take the live heap to some 90 MB at most, not to
	// the soft limit (README, "Chunked messages on the event loop"). A fixed figure, not one derived from GOMEMLIMIT: a host
	// run has no limit to take a share of, and a deployment that raises
	// the memory raises this with it.
	LoopHeldBytes int64 `env:"GATEWAY_LOOP_HELD_BYTES" envDefault:"8388608" desc:"loop transport: bytes all connections together may hold of requests not yet sent upstream, beyond the first 16 KiB of each (bodies arriving, chunk framing included); a request whose bytes would pass it is 503 gateway-busy and its connection closed; at least twice GATEWAY_MAX_BODY_BYTES (checked with the loop transport only)"`
	// LoopMaxConns: 1024 slow clients hold some 22 MB (21 KB each,
	// README), beside the budget's 8 MiB (25-36 MB) and the live heap's 20-35 MB:
	// under the deployment's GOMEMLIMIT (102 MiB) together.
	LoopMaxConns int           `env:"GATEWAY_LOOP_MAX_CONNS" envDefault:"1024" desc:"client connections the gateway holds at once, on either transport (named for the event loop, which had it first); one over it is answered 503 gateway-busy and closed at once (on the loop each holds its first 16 KiB outside GATEWAY_LOOP_HELD_BYTES, so this bounds them)"`
	ReadTimeout  time.Duration `env:"GATEWAY_READ_TIMEOUT" envDefault:"5s" desc:"time to read a whole request, headers and body (slow clients are cut off)"`
	WriteTimeout time.Duration `env:"GATEWAY_WRITE_TIMEOUT" envDefault:"30s" desc:"time to write a response"`
	IdleTimeout  time.Duration `env:"GATEWAY_IDLE_TIMEOUT" envDefault:"60s" desc:"keep-alive idle time"`
	MaxConns     int           `env:"GATEWAY_UPSTREAM_MAX_CONNS" envDefault:"1024" desc:"connections per upstream instance"`

	TrustedProxies []string `env:"GATEWAY_TRUSTED_PROXIES" envSeparator:"," desc:"CIDRs whose X-Forwarded-For is believed"`
	CORSOrigins    []string `env:"GATEWAY_CORS_ORIGINS" envSeparator:"," desc:"allowed browser origins (exact, or *)"`
	TLSCertFile    string   `env:"TLS_CERT_FILE" desc:"serve TLS 1.2+ (1.3 preferred) with this certificate"`
	TLSKeyFile     string   `env:"TLS_KEY_FILE" desc:"key for TLS_CERT_FILE"`

	IPLimit        Rate   `env:"GATEWAY_IP_LIMIT" envDefault:"100/1s:200" desc:"per client IP"`
	LoginLimit     Rate   `env:"GATEWAY_LOGIN_LIMIT" envDefault:"10/1m:5" desc:"per client IP on log in, refresh and password change"`
	UserLimit      Rate   `env:"GATEWAY_USER_LIMIT" envDefault:"50/1s:100" desc:"per authenticated user"`
	LimitNamespace string `env:"GATEWAY_LIMIT_NAMESPACE" envDefault:"gateway" desc:"Redis key namespace of the limits; replicas sharing limits share it"`
	Replicas       int    `env:"GATEWAY_REPLICAS" envDefault:"1" desc:"gateway replicas sharing the limits (sizes the local fallback when Redis is down)"`

	RetryBudget    float64       `env:"GATEWAY_RETRY_BUDGET" envDefault:"0.2" desc:"retries allowed as a share of requests (per upstream, 10s window)"`
	RetryFloor     int           `env:"GATEWAY_RETRY_FLOOR" envDefault:"3" desc:"retries per second always allowed"`
	MaxAttempts    int           `env:"GATEWAY_MAX_ATTEMPTS" envDefault:"2" desc:"attempts per idempotent request, first included"`
	BreakerMin     uint32        `env:"GATEWAY_BREAKER_MIN_REQUESTS" envDefault:"20" desc:"calls in the window before the breaker may open"`
	BreakerRatio   float64       `env:"GATEWAY_BREAKER_FAILURE_RATIO" envDefault:"0.5" desc:"failure share that opens the breaker"`
	BreakerOpen    time.Duration `env:"GATEWAY_BREAKER_OPEN" envDefault:"1s" desc:"first open period (doubles per consecutive trip)"`
	BreakerWindow  time.Duration `env:"GATEWAY_BREAKER_WINDOW" envDefault:"10s" desc:"sliding window of the failure rate"`
	ConcurrencyMax int           `env:"GATEWAY_CONCURRENCY_MAX" envDefault:"1000" desc:"ceiling of the adaptive concurrency limit per upstream"`

	DynamicKey string `env:"GATEWAY_DYNAMIC_KEY" envDefault:"gateway" desc:"etcd key /shanhai/config/<name> with the dynamic config JSON"`
}

// TransportName resolves GATEWAY_TRANSPORT=auto: the event loop, which
// spends less CPU per request (gateway/bench/README.md, fourth pass),
// unless TLS is configured, which only the fasthttp transport serves.
func (c *Config) TransportName() string {
	if c.Transport != "auto" {
		return c.Transport
	}
	if c.TLSCertFile != "" {
		return "fasthttp"
	}
	return "loop"
}

// Load reads and validates the environment.
func Load() (Config, error) {
	var c Config
	err := pkgconfig.Load(&c)
	return c, err
}

// Validate is called by pkg/config after parsing.
func (c *Config) Validate() error {
	var errs []error
	// A variable set to "" is its zero value (pkg/config), not its default:
	// each zero or negative value that means nothing here is refused by
	// name rather than replaced by a built-in default or left to break
	// traffic (TestEmptyOrMeaninglessValuesAreRefusedByName).
	required := func(name, val string) { errs = append(errs, pkgconfig.NotEmpty(name, val)) }
	positive := func(name string, ok bool) {
		if !ok {
			errs = append(errs, pkgconfig.Invalid(name, "must be positive (unset it for the default)"))
		}
	}
	if c.Mode != "full" && c.Mode != "routing" {
		errs = append(errs, pkgconfig.Invalid("GATEWAY_MODE", "must be full or routing"))
	}
	required("HTTP_ADDR", c.Addr)
	// 0 is a drain whose deadline has passed when it starts: none at all.
	positive("SHUTDOWN_TIMEOUT", c.ShutdownTimeout > 0)
	if c.Mode == "full" { // routing mode verifies no token and limits nothing
		required("JWKS_URL", c.JWKSURL)
		required("REDIS_URL", c.RedisURL)
		required("GATEWAY_LIMIT_NAMESPACE", c.LimitNamespace)
	}
	required("GATEWAY_DYNAMIC_KEY", c.DynamicKey)
	positive("GATEWAY_MAX_TIMEOUT", c.MaxTimeout > 0)
	positive("GATEWAY_WRITE_TIMEOUT", c.WriteTimeout > 0)
	positive("GATEWAY_IDLE_TIMEOUT", c.IdleTimeout > 0)
	positive("GATEWAY_UPSTREAM_MAX_CONNS", c.MaxConns > 0)
	positive("GATEWAY_REPLICAS", c.Replicas > 0)
	positive("GATEWAY_BREAKER_OPEN", c.BreakerOpen > 0)
	positive("GATEWAY_BREAKER_WINDOW", c.BreakerWindow > 0)
	positive("GATEWAY_CONCURRENCY_MAX", c.ConcurrencyMax > 0)
	if c.RetryFloor < 0 {
		errs = append(errs, pkgconfig.Invalid("GATEWAY_RETRY_FLOOR", "must not be negative"))
	}
	switch {
	case c.Transport != "auto" && c.Transport != "fasthttp" && c.Transport != "loop":
		errs = append(errs, pkgconfig.Invalid("GATEWAY_TRANSPORT", "must be auto, fasthttp or loop"))
	case c.Transport == "loop" && (c.TLSCertFile != "" || c.TLSKeyFile != ""):
		// The event loop reads and writes raw sockets; TLS there would need a
		// record layer driven by the loop, which is not built.
		errs = append(errs, pkgconfig.Invalid("GATEWAY_TRANSPORT", "loop does not serve TLS; use GATEWAY_TRANSPORT=fasthttp with TLS_CERT_FILE, or terminate TLS in front"))
	}
	if c.EventLoops < 0 {
		errs = append(errs, pkgconfig.Invalid("GATEWAY_EVENT_LOOPS", "must be 0 (one per CPU) or a positive count"))
	}
	if tb, err := route.Parse(c.Routes, c.RouteTimeout, nil); err != nil {
		errs = append(errs, pkgconfig.Invalid("GATEWAY_ROUTES", err.Error()))
	} else if _, err := c.withKeyedRetry(tb); err != nil {
		errs = append(errs, pkgconfig.Invalid("GATEWAY_KEYED_RETRY_ROUTES", err.Error()))
	}
	switch {
	case c.RouteTimeout <= 0:
		errs = append(errs, pkgconfig.Invalid("GATEWAY_ROUTE_TIMEOUT", "must be positive"))
	case c.MaxTimeout > 0 && c.RouteTimeout > c.MaxTimeout:
		// GATEWAY_MAX_TIMEOUT bounds every deadline (proxy.Options): a
		// longer route timeout would be cut to it on every request.
		errs = append(errs, pkgconfig.Invalid("GATEWAY_ROUTE_TIMEOUT", "must not exceed GATEWAY_MAX_TIMEOUT"))
	}
	if c.MaxBodyBytes <= 0 {
		errs = append(errs, pkgconfig.Invalid("GATEWAY_MAX_BODY_BYTES", "must be positive"))
	}
	switch {
	case c.LoopHeldBytes < 0:
		errs = append(errs, pkgconfig.Invalid("GATEWAY_LOOP_HELD_BYTES", "must not be negative"))
	case c.TransportName() == "loop" && c.LoopHeldBytes < 2*int64(c.MaxBodyBytes):
		// One body at the limit, with its head and a chunked framing's
		// overhead, must fit an otherwise idle gateway. Only the loop
		// has the budget: a fasthttp gateway with a large body limit
		// (TLS, or chosen) must not be refused over a variable it does
		// not read.
		errs = append(errs, pkgconfig.Invalid("GATEWAY_LOOP_HELD_BYTES", "must be at least twice GATEWAY_MAX_BODY_BYTES with the loop transport"))
	}
	if c.LoopMaxConns <= 0 {
		errs = append(errs, pkgconfig.Invalid("GATEWAY_LOOP_MAX_CONNS", "must be positive"))
	}
	if c.ReadTimeout <= 0 {
		errs = append(errs, pkgconfig.Invalid("GATEWAY_READ_TIMEOUT", "must be positive: without it a slow client holds a connection forever"))
	}
	if _, err := c.Trusted(); err != nil {
		errs = append(errs, pkgconfig.Invalid("GATEWAY_TRUSTED_PROXIES", err.Error()))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, pkgconfig.Invalid("TLS_CERT_FILE", "TLS_CERT_FILE and TLS_KEY_FILE go together"))
	}
	if len(c.EtcdEndpoints) == 0 && c.DiscoveryStatic == "" {
		errs = append(errs, pkgconfig.Invalid("DISCOVERY_STATIC", "required when ETCD_ENDPOINTS is empty"))
	}
	if c.MaxAttempts < 1 {
		errs = append(errs, pkgconfig.Invalid("GATEWAY_MAX_ATTEMPTS", "must be at least 1 (unset it for the default)"))
	}
	if c.BreakerRatio <= 0 || c.BreakerRatio > 1 {
		errs = append(errs, pkgconfig.Invalid("GATEWAY_BREAKER_FAILURE_RATIO", "must be in (0, 1]"))
	}
	if c.RetryBudget < 0 {
		errs = append(errs, pkgconfig.Invalid("GATEWAY_RETRY_BUDGET", "must not be negative (0: only the budget's floor of retries)"))
	}
	// errors.Join keeps each Invalid error whole, so pkg/config lists every
	// variable as its own problem with what is expected of it.
	return errors.Join(errs...)
}

// Trusted parses GATEWAY_TRUSTED_PROXIES; a bare address is a /32 or /128,
// and an IPv4-mapped one (::ffff:10.0.0.0/104) is its IPv4 network (10.0.0.0/8).
func (c *Config) Trusted() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range c.TrustedProxies {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("%q is not an address or CIDR", s)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address or CIDR", s)
		}
		// Peers are compared unmapped (proxy.Trusted), so an IPv4-mapped
		// prefix kept as written would match no IPv4 peer at all.
		if a := p.Addr(); a.Is4In6() {
			if p.Bits() < 96 {
				return nil, fmt.Errorf("%q: an IPv4-mapped CIDR shorter than /96 reaches beyond ::ffff:0:0/96; write the IPv4 network", s)
			}
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Rate is "count/period[:burst]", e.g. "100/1s:200"; "0" switches it off.
type Rate quota.Rate

// TypeName is the form's name in the configuration table and in the error
// naming a bad value (pkg/config.TypeNamer), instead of "config.Rate".
func (Rate) TypeName() string { return "rate (count/period[:burst], e.g. 100/1s:200; 0 off)" }

// UnmarshalText parses the env form.
func (r *Rate) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "0" || s == "" || s == "off" {
		*r = Rate{}
		return nil
	}
	spec, burstStr, hasBurst := strings.Cut(s, ":")
	countStr, periodStr, ok := strings.Cut(spec, "/")
	if !ok {
		return fmt.Errorf("want count/period[:burst], got %q", s)
	}
	count, err := strconv.Atoi(countStr)
	if err != nil || count <= 0 {
		return fmt.Errorf("count %q must be a positive integer", countStr)
	}
	period, err := time.ParseDuration(periodStr)
	if err != nil || period <= 0 {
		return fmt.Errorf("period %q must be a positive duration", periodStr)
	}
	burst := 0
	if hasBurst {
		if burst, err = strconv.Atoi(burstStr); err != nil || burst <= 0 {
			return fmt.Errorf("burst %q must be a positive integer", burstStr)
		}
	}
	*r = Rate{Count: count, Period: period, Burst: burst}
	return nil
}

// Quota converts to the limiter's type.
func (r Rate) Quota() quota.Rate { return quota.Rate(r) }

// RouteTable is the route table of GATEWAY_ROUTES with the public paths and
// the routes of GATEWAY_KEYED_RETRY_ROUTES marked (route.Route.KeyedRetry).
func (c *Config) RouteTable() (*route.Table, error) {
	tb, err := route.Parse(c.Routes, c.RouteTimeout, route.DefaultPublic)
	if err != nil {
		return nil, fmt.Errorf("GATEWAY_ROUTES: %w", err)
	}
	if tb, err = c.withKeyedRetry(tb); err != nil {
		return nil, fmt.Errorf("GATEWAY_KEYED_RETRY_ROUTES: %w", err)
	}
	return tb, nil
}

// withKeyedRetry marks tb's keyed retry routes. A prefix the table lacks is
// refused (a misspelt one would mark nothing), but not the default's: it
// names the default table's order route, and a gateway with a table of its
// own (the user service's routes alone, say) that left the variable unset
// would otherwise not start. The default marks the order route where there
// is one. Set to its own value by hand it reads as the default.
func (c *Config) withKeyedRetry(tb *route.Table) (*route.Table, error) {
	prefixes := c.KeyedRetry
	if slices.Equal(prefixes, route.DefaultKeyedRetry) {
		prefixes = slices.DeleteFunc(slices.Clone(prefixes), func(p string) bool {
			return !slices.ContainsFunc(tb.Routes(), func(r route.Route) bool { return r.Prefix == p })
		})
	}
	return tb.WithKeyedRetry(prefixes)
}
