package server

import (
	"context"
	"io"
	"log/slog"

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
}

// LoadConfig fills cfg (pkg/config rules) from Env, or from the process
// environment when Env is nil.
func (p Part) LoadConfig(cfg any) error {
	if p.Env == nil {
		return config.Load(cfg)
	}
	return config.LoadFrom(cfg, p.Env)
}

// Log is the part's logger: Logger when given, otherwise a JSON logger on w
// at level (an slog level name; an unknown one means info, since config
// validation has already refused it) that becomes slog's default.
func (p Part) Log(w io.Writer, level string) *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	log := telemetry.NewLogger(w, l)
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
