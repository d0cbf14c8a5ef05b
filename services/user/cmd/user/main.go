// Command user runs the user service: config → wiring → server.Run.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/shanhai-dev/shanhai/pkg/config"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
	userconfig "github.com/shanhai-dev/shanhai/services/user/internal/config"
	"github.com/shanhai-dev/shanhai/services/user/internal/service"
)

func main() {
	var cfg userconfig.Config
	config.MustLoad(&cfg)
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	log := telemetry.NewLogger(os.Stderr, level)
	slog.SetDefault(log)
	if err := run(cfg, log); err != nil {
		log.Error("user service stopped", "err", err)
		os.Exit(1)
	}
}

func run(cfg userconfig.Config, log *slog.Logger) error {
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
