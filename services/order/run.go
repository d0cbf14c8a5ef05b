package order

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/shanhai-dev/shanhai/pkg/config"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
	orderconfig "github.com/shanhai-dev/shanhai/services/order/internal/config"
	"github.com/shanhai-dev/shanhai/services/order/internal/service"
)

// Options say where Run reads its configuration and where it reports. The
// zero value is the production binary (cmd/order): the process environment, a
// JSON logger on stderr that becomes slog's default, and telemetry of its
// own. cmd/shanhai fills them to host this service beside the others in one
// process, which saves each binary's ~35 MB of mapped code.
type Options struct {
	// Env holds the configuration variables (docs/configuration.md); nil
	// means the process environment.
	Env map[string]string
	// Logger receives the service's logs; nil means JSON on stderr at
	// LOG_LEVEL, installed as slog's default. A given logger is left alone:
	// the host's default stays the host's.
	Logger *slog.Logger
	// Telemetry is the host's provider, shared: the service's shutdown
	// flushes it but leaves it running. Nil means Run sets up its own from
	// OTEL_* and shuts it down at the end.
	Telemetry *telemetry.Provider
}

// Run wires the order service from its configuration and serves until ctx
// ends or (unless ctx is server.Hosted) SIGINT/SIGTERM arrives, then shuts
// down in pkg/server's order. A bad configuration is returned as a
// *config.Error before anything starts; any later failure is also logged.
func Run(ctx context.Context, o Options) error {
	var cfg orderconfig.Config
	if err := load(&cfg, o.Env); err != nil {
		return err
	}
	log := o.Logger
	if log == nil {
		var level slog.Level
		_ = level.UnmarshalText([]byte(cfg.LogLevel)) // Validate accepted it
		log = telemetry.NewLogger(os.Stderr, level)
		slog.SetDefault(log)
	}
	if err := run(ctx, cfg, log, o.Telemetry); err != nil {
		log.Error("order service stopped", "err", err)
		return err
	}
	return nil
}

func run(ctx context.Context, cfg orderconfig.Config, log *slog.Logger, tp *telemetry.Provider) error {
	if tp == nil {
		var err error
		tp, err = telemetry.Setup(ctx, telemetry.Options{ServiceName: service.Name, ServiceVersion: cfg.Version, Logger: log})
		if err != nil {
			return fmt.Errorf("telemetry: %w", err)
		}
	} else {
		tp = tp.Shared()
	}
	svc, err := service.New(ctx, cfg, service.Options{Logger: log, Telemetry: tp})
	if err != nil {
		_ = tp.Shutdown(ctx)
		return err
	}
	return svc.Run(ctx)
}

func load(cfg *orderconfig.Config, env map[string]string) error {
	if env == nil {
		return config.Load(cfg)
	}
	return config.LoadFrom(cfg, env)
}
