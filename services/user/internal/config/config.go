// Package config is the user service's environment configuration.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/auth"
	"github.com/shanhai-dev/shanhai/pkg/config"
	"github.com/shanhai-dev/shanhai/services/user/internal/adapters"
)

// Config is read once at start by config.Load; docs/conventions.md lists the
// shared variables, the rest are specific to this service.
type Config struct {
	Addr            string        `env:"HTTP_ADDR" envDefault:":8081" desc:"HTTP listen address"`
	AdminAddr       string        `env:"ADMIN_ADDR" envDefault:"127.0.0.1:9081" desc:"pprof listener; empty disables"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"10s" desc:"drain deadline"`
	ReadTimeout     time.Duration `env:"READ_TIMEOUT" envDefault:"30s" desc:"time from a request's first byte by which its body must be in; a body still coming then gets 408 (headers have a fixed 10s)"`
	LogLevel        slog.Level    `env:"LOG_LEVEL" envDefault:"info" desc:"lowest level logged"`
	Version         string        `env:"SERVICE_VERSION" envDefault:"dev" desc:"version registered in discovery (canary routing)"`
	Zone            string        `env:"ZONE" desc:"zone registered in discovery"`

	DatabaseURL string `env:"DATABASE_URL,required,notEmpty" desc:"postgres://... or sqlite://path"`
	RedisURL    string `env:"REDIS_URL" envDefault:"redis://127.0.0.1:16379/0" desc:"profile cache and login limits"`

	KafkaBrokers    []string `env:"KAFKA_BROKERS" envDefault:"127.0.0.1:19092" envSeparator:"," desc:"outbox relay target (topic shanhai.users)"`
	EtcdEndpoints   []string `env:"ETCD_ENDPOINTS" envDefault:"127.0.0.1:12379" envSeparator:"," desc:"discovery registry; empty uses DISCOVERY_STATIC"`
	DiscoveryStatic string   `env:"DISCOVERY_STATIC" desc:"service=addr,... when etcd is not used"`
	AdvertiseAddr   string   `env:"ADVERTISE_ADDR" desc:"host:port registered in discovery; default 127.0.0.1 and the HTTP_ADDR port"`

	Keys auth.KeyConfig

	AccessTokenTTL  time.Duration `env:"ACCESS_TOKEN_TTL" envDefault:"15m" desc:"access JWT lifetime"`
	RefreshTokenTTL time.Duration `env:"REFRESH_TOKEN_TTL" envDefault:"720h" desc:"refresh token family lifetime (rotation does not extend it)"`
	ProfileCacheTTL time.Duration `env:"PROFILE_CACHE_TTL" envDefault:"5m" desc:"how long a profile stays in Redis"`

	LoginAccountAttempts int           `env:"LOGIN_ACCOUNT_ATTEMPTS" envDefault:"5" desc:"login attempts per account allowed in a burst"`
	LoginIPAttempts      int           `env:"LOGIN_IP_ATTEMPTS" envDefault:"20" desc:"login attempts per client IP (an IPv6 client counts by its /64) allowed in a burst"`
	LoginWindow          time.Duration `env:"LOGIN_WINDOW" envDefault:"5m" desc:"time for a throttled account or IP to regain its full quota"`
	SignupIPAttempts     int           `env:"SIGNUP_IP_ATTEMPTS" envDefault:"20" desc:"sign-ups per client IP (counted as log ins are, by IP or IPv6 /64) allowed in a burst; apart from the log ins' quota"`
	SignupWindow         time.Duration `env:"SIGNUP_WINDOW" envDefault:"5m" desc:"time for an IP that used its sign-up quota to regain all of it"`
	Replicas             int           `env:"REPLICAS" envDefault:"1" desc:"replicas sharing the Redis limits (sizes the local fallback when Redis is down)"`
	TrustedProxies       []string      `env:"TRUSTED_PROXIES" envDefault:"127.0.0.1/32,::1/128" envSeparator:"," desc:"CIDRs whose X-Forwarded-For is believed for the client IP (the gateway); empty trusts none"`

	Argon2MemoryKiB   uint32 `env:"ARGON2_MEMORY_KIB" envDefault:"19456" desc:"argon2id memory cost per hash"`
	Argon2Time        uint32 `env:"ARGON2_TIME" envDefault:"2" desc:"argon2id passes"`
	Argon2Concurrency int    `env:"ARGON2_CONCURRENCY" envDefault:"2" desc:"hashes computed at once; more wait (bounds memory)"`
}

// Validate checks what types alone cannot.
func (c *Config) Validate() error {
	var errs []error
	// REDIS_URL= failed only once the service wired itself, HTTP_ADDR= not at all (config.NotEmpty says why).
	errs = append(errs, config.NotEmpty("HTTP_ADDR", c.Addr), config.NotEmpty("REDIS_URL", c.RedisURL))
	positive := map[string]time.Duration{
		"SHUTDOWN_TIMEOUT": c.ShutdownTimeout, "READ_TIMEOUT": c.ReadTimeout, "ACCESS_TOKEN_TTL": c.AccessTokenTTL,
		"REFRESH_TOKEN_TTL": c.RefreshTokenTTL, "PROFILE_CACHE_TTL": c.ProfileCacheTTL, "LOGIN_WINDOW": c.LoginWindow,
		"SIGNUP_WINDOW": c.SignupWindow,
	}
	for name, d := range positive {
		if d <= 0 {
			errs = append(errs, config.Invalid(name, "must be positive"))
		}
	}
	if c.AccessTokenTTL > time.Hour {
		errs = append(errs, config.Invalid("ACCESS_TOKEN_TTL", "must be at most 1h: access tokens cannot be revoked"))
	}
	if c.Keys.Current == "" && c.Keys.CurrentFile == "" && !c.Keys.DevKeys {
		errs = append(errs, config.Invalid("AUTH_SIGNING_KEY", "must be set (or AUTH_SIGNING_KEY_FILE, or AUTH_DEV_KEYS=true for a throwaway development key)"))
	}
	if c.LoginAccountAttempts < 1 {
		errs = append(errs, config.Invalid("LOGIN_ACCOUNT_ATTEMPTS", "must be at least 1"))
	}
	if c.LoginIPAttempts < 1 {
		errs = append(errs, config.Invalid("LOGIN_IP_ATTEMPTS", "must be at least 1"))
	}
	if c.SignupIPAttempts < 1 {
		errs = append(errs, config.Invalid("SIGNUP_IP_ATTEMPTS", "must be at least 1"))
	}
	if c.Argon2MemoryKiB < 8*1024 || c.Argon2MemoryKiB > adapters.MaxArgon2MemoryKiB {
		errs = append(errs, config.Invalid("ARGON2_MEMORY_KIB", fmt.Sprintf("must be between 8192 and %d", adapters.MaxArgon2MemoryKiB)))
	}
	if c.Argon2Time < 1 || c.Argon2Time > adapters.MaxArgon2Time {
		errs = append(errs, config.Invalid("ARGON2_TIME", fmt.Sprintf("must be between 1 and %d", adapters.MaxArgon2Time)))
	}
	if c.Argon2Concurrency < 1 {
		errs = append(errs, config.Invalid("ARGON2_CONCURRENCY", "must be at least 1"))
	}
	if c.Replicas < 1 {
		errs = append(errs, config.Invalid("REPLICAS", "must be at least 1"))
	}
	for _, p := range c.TrustedProxies {
		if _, err := netip.ParsePrefix(strings.TrimSpace(p)); err != nil {
			errs = append(errs, config.Invalid("TRUSTED_PROXIES", "must be a comma list of CIDRs like 10.0.0.0/8"))
			break
		}
	}
	if len(c.KafkaBrokers) == 0 {
		errs = append(errs, config.Invalid("KAFKA_BROKERS", "must list at least one broker"))
	}
	return errors.Join(errs...)
}
