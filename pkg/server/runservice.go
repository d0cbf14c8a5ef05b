package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/shanhai-dev/shanhai/pkg/telemetry"
)

// Runner is a wired service: Run serves until ctx ends (or, unless ctx is
// Hosted, SIGINT/SIGTERM arrives), then shuts down in this package's order.
type Runner interface {
	Run(ctx context.Context) error
}

// Wiring is one service as RunService starts it: what it is called, the two
// settings of its loaded configuration that are needed before it exists,
// and how it is built.
type Wiring struct {
	// Name is the service's name in telemetry and in the line logged when
	// it stops with an error ("<Name> service stopped").
	Name string
	// Version (SERVICE_VERSION) goes to telemetry.
	Version string
	// LogLevel (LOG_LEVEL) is the level of the logger Part.LogAt makes
	// when the host gives none.
	LogLevel slog.Level
	// New wires the service with the logger and the telemetry provider
	// RunService set up for it.
	New func(ctx context.Context, log *slog.Logger, tp *telemetry.Provider) (Runner, error)
}

// RunService is the body of the Run each service module exports (user,
// order, payment), so that the binary and cmd/shanhai start every service
// the same way: logger, then telemetry, then the wiring, then Run. The
// caller loads the configuration first (LoadConfig), because a bad one is
// returned before anything starts, unlogged: main prints it and exits 2.
// Any failure from here on is logged as "<Name> service stopped", with the
// failed shutdown steps in it, if any, under FailedStepsKey, and returned.
// Telemetry is shut down here only when New fails; once the service runs,
// its server flushes it last in the shutdown. RunService
// reads PageoutConfig itself (a bad value is returned as a bad configuration
// is, before anything starts; LoadConfig has listed it with the service's
// own problems already): a service it starts alone in its process
// pages its executable's start-up pages out after its first ready answer.
func (p Part) RunService(ctx context.Context, w Wiring) error {
	var po PageoutConfig
	if err := p.LoadConfig(&po); err != nil {
		return err
	}
	log := p.LogAt(os.Stderr, w.LogLevel)
	if po.Enabled {
		ctx = withPageout(ctx, log)
	}
	if err := p.runService(ctx, w, log); err != nil {
		attrs := []any{"err", err}
		// A failure before the stop (a listener taken, a broker away) has no
		// steps to list: its line says why and no more.
		if steps, other := FailedSteps(err); len(steps) > 0 {
			attrs = append(attrs, FailedStepsKey, steps, OtherErrorsKey, other)
		}
		log.Error(w.Name+" service stopped", attrs...)
		return err
	}
	return nil
}

func (p Part) runService(ctx context.Context, w Wiring, log *slog.Logger) error {
	// These two debug lines split startup_bench's timeline: exec to the first
	// is the runtime and package initialisation, then telemetry's set-up.
	log.Debug("configuration loaded")
	tp, err := p.SetupTelemetry(ctx, telemetry.Options{ServiceName: w.Name, ServiceVersion: w.Version, Logger: log})
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	log.Debug("telemetry set up")
	svc, err := w.New(ctx, log, tp)
	if err != nil {
		_ = tp.Shutdown(ctx)
		return err
	}
	return svc.Run(ctx)
}
