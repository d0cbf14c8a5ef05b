package bridge

import (
	"context"
	"log/slog"

	pkgconfig "github.com/shanhai-dev/shanhai/pkg/config"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"

	"github.com/shanhai-dev/shanhai/bridge/internal/app"
	"github.com/shanhai-dev/shanhai/bridge/internal/config"
)

// Options say where Run reads its configuration and where it reports. The
// zero value is the production binary (cmd/bridge): the process
// environment, a JSON logger on stdout that becomes slog's default, and
// telemetry of its own. cmd/shanhai fills them to host the bridge beside the
// services in one process.
type Options struct {
	// Env holds the configuration variables (docs/configuration.md); nil
	// means the process environment.
	Env map[string]string
	// Logger receives the bridge's logs; nil means JSON on stdout at
	// LOG_LEVEL, installed as slog's default. A given logger is left alone.
	Logger *slog.Logger
	// Telemetry is the host's provider, shared: the bridge's shutdown
	// flushes it but leaves it running. Nil means Run sets up its own from
	// OTEL_* and shuts it down at the end.
	Telemetry *telemetry.Provider
}

// Run starts the bridge and serves until ctx ends or (unless ctx is
// server.Hosted) SIGINT/SIGTERM arrives, then drains. A bad configuration is
// returned as a *config.Error (pkg/config) before anything starts.
func Run(ctx context.Context, o Options) error {
	var cfg config.Config
	var err error
	if o.Env == nil {
		err = pkgconfig.Load(&cfg)
	} else {
		err = pkgconfig.LoadFrom(&cfg, o.Env)
	}
	if err != nil {
		return err
	}
	tp := o.Telemetry
	if tp != nil {
		tp = tp.Shared()
	}
	return app.RunWith(ctx, cfg, app.Options{Logger: o.Logger, Telemetry: tp})
}
