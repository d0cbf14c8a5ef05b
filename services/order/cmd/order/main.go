// Command order runs the order service: config → wiring → server.Run.
package main

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

func main() {
	var cfg orderconfig.Config
	config.MustLoad(&cfg)
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	log := telemetry.NewLogger(os.Stderr, level)
	slog.SetDefault(log)
	if err := run(cfg, log); err != nil {
		log.Error("order service stopped", "err", err)
		os.Exit(1)
	}
}

func run(cfg orderconfig.Config, log *slog.Logger) error {
	ctx := context.Background()
	tp, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: service.Name, ServiceVersion: cfg.Version, Logger: log})
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	svc, err := service.New(ctx, cfg, service.Options{Logger: log, Telemetry: tp})
	if err != nil {
		_ = tp.Shutdown(ctx)
		return err
	}
	return svc.Run(ctx)
}
