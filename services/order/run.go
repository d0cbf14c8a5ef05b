package order

import (
	"context"
	"log/slog"

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
// *config.Error before anything starts; any later failure is also logged
// (server.Part.RunService, which every service starts through).
func Run(ctx context.Context, o Options) error {
	var cfg orderconfig.Config
	if err := o.LoadConfig(&cfg); err != nil {
		return err
	}
	return o.RunService(ctx, server.Wiring{
		Name: service.Name, Version: cfg.Version, LogLevel: cfg.LogLevel,
		New: func(ctx context.Context, log *slog.Logger, tp *telemetry.Provider) (server.Runner, error) {
			return service.New(ctx, cfg, service.Options{Logger: log, Telemetry: tp})
		},
	})
}
