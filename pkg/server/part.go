package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sort"

	"github.com/shanhai-dev/shanhai/pkg/config"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
)

// Part says where one of the platform's binaries (user, order, payment,
// gateway, bridge) reads its configuration and where it reports. Each module
// exports Run(ctx, Options) with Options = Part, and both callers go through
// it: the binary's main with the zero value, and cmd/shanhai, which hosts all
// five in one process (saving each executable's ~35 MB of mapped code) and so
// fills every field. One wiring path, whichever runs it.
type Part struct {
	// Env holds the configuration variables (docs/configuration.md); nil
	// means the process environment.
	Env map[string]string
	// Logger receives the part's logs; nil means JSON at LOG_LEVEL,
	// installed as slog's default. A given logger is left alone: the host's
	// default stays the host's.
	Logger *slog.Logger
	// Telemetry is the host's provider. The part uses a Shared view of it,
	// whose Shutdown flushes but leaves it running for the other parts; nil
	// means the part sets up its own from OTEL_* and shuts it down at the end.
	Telemetry *telemetry.Provider
	// CheckOnly makes Run return as soon as its configuration loaded, with
	// ErrConfigChecked when every variable is good (else the *config.Error):
	// every Run calls LoadConfig before it starts anything. cmd/shanhai
	// checks all five parts' variables this way before it starts the
	// servers they need, so a mistyped variable costs no start-up.
	CheckOnly bool
}

// ErrConfigChecked is what Run returns under Part.CheckOnly when the
// configuration is good: nothing was started.
var ErrConfigChecked = errors.New("configuration checked; nothing started")

// LoadConfig fills cfg (pkg/config rules) from Env, or from the process
// environment when Env is nil, and checks PAGEOUT_AFTER_READY (PageoutConfig)
// beside it: the one error lists every bad variable of both, sorted.
//
// Why here: every service returns LoadConfig's error before RunService,
// which reads PageoutConfig, starts, so a bad PAGEOUT_AFTER_READY next to
// another bad variable was left out of the message and only reported on the
// next start. The trade-off: LoadConfig cannot tell a service's
// configuration from the gateway's or the bridge's, so those two refuse a
// malformed PAGEOUT_AFTER_READY too, although they never page out.
//
// The OTEL_* variables SetupTelemetry would refuse (telemetry.CheckEnv) are
// listed too, for the same reason: Setup found them only after a bad
// DATABASE_URL had been reported, on the next start, and logged them as a
// failure (exit 1) rather than a bad configuration (exit 2). Not when the
// part uses the host's Telemetry, which was set up from the host's
// variables. The gateway in routing mode, which sets up no telemetry,
// refuses them as well: one rule for every binary.
func (p Part) LoadConfig(cfg any) error {
	var po PageoutConfig
	var otel error
	if p.Telemetry == nil {
		otel = telemetry.CheckEnv(p.Env)
	}
	err := mergeConfigErrors(p.load(cfg), p.load(&po), otel)
	if err == nil && p.CheckOnly {
		return ErrConfigChecked
	}
	return err
}

func (p Part) load(cfg any) error {
	if p.Env == nil {
		return config.Load(cfg)
	}
	return config.LoadFrom(cfg, p.Env)
}

// mergeConfigErrors joins two loads' problems into one *config.Error, sorted
// by variable as config.Load sorts them, each variable once (a cfg that
// itself holds PageoutConfig reports it in both). An error that is not a
// *config.Error (a malformed struct, a programming mistake) is returned as
// it is, the first one first.
func mergeConfigErrors(errs ...error) error {
	var merged config.Error
	seen := map[string]bool{}
	for _, err := range errs {
		if err == nil {
			continue
		}
		var ce *config.Error
		if !errors.As(err, &ce) {
			return err
		}
		for _, v := range ce.Vars {
			if !seen[v.Var] {
				seen[v.Var] = true
				merged.Vars = append(merged.Vars, v)
			}
		}
	}
	if len(merged.Vars) == 0 {
		return nil
	}
	sort.SliceStable(merged.Vars, func(i, j int) bool { return merged.Vars[i].Var < merged.Vars[j].Var })
	return &merged
}

// LogAt is the part's logger: Logger when given, otherwise a JSON logger on
// w at level that becomes slog's default.
func (p Part) LogAt(w io.Writer, level slog.Level) *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	log := telemetry.NewLogger(w, level)
	slog.SetDefault(log)
	return log
}

// SetupTelemetry returns a Shared view of the host's provider, or sets up the
// part's own from o when there is no host.
func (p Part) SetupTelemetry(ctx context.Context, o telemetry.Options) (*telemetry.Provider, error) {
	if p.Telemetry != nil {
		return p.Telemetry.Shared(), nil
	}
	return telemetry.Setup(ctx, o)
}
