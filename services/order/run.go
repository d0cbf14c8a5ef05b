package order

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/shanhai-dev/shanhai/pkg/server"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
	orderconfig "github.com/shanhai-dev/shanhai/services/order/internal/config"
	"github.com/shanhai-dev/shanhai/services/order/internal/service"
)

// Options say where Run reads its configuration and where it reports: the
// zero value is the production binary (cmd/order); cmd/shanhai fills them to
// host this service beside the others in one process (see server.Part).
type Options = server.Part

// Run wires the order service from its configuration and serves until ctx
// ends or (unless ctx is server.Hosted) SIGINT/SIGTERM arrives, then shuts
// down in pkg/server's order. A bad configuration is returned as a
// *config.Error before anything starts; any later failure is also logged.
func Run(ctx context.Context, o Options) error {
	var cfg orderconfig.Config
	if err := o.LoadConfig(&cfg); err != nil {
		return err
	}
	log := o.Log(os.Stderr, cfg.LogLevel)
	if err := run(ctx, o, cfg, log); err != nil {
		log.Error("order service stopped", "err", err)
		return err
	}
	return nil
}

func run(ctx context.Context, o Options, cfg orderconfig.Config, log *slog.Logger) error {
	// These two debug lines split startup_bench's timeline: exec to the first
	// is the runtime and package initialisation, then telemetry's set-up.
	log.Debug("configuration loaded")
	tp, err := o.SetupTelemetry(ctx, telemetry.Options{ServiceName: service.Name, ServiceVersion: cfg.Version, Logger: log})
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	log.Debug("telemetry set up")
	svc, err := service.New(ctx, cfg, service.Options{Logger: log, Telemetry: tp})
	if err != nil {
		_ = tp.Shutdown(ctx)
		return err
	}
	return svc.Run(ctx)
}
