package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"

	"github.com/shanhai-dev/shanhai/pkg/server"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"

	"github.com/shanhai-dev/shanhai/bridge"
	"github.com/shanhai-dev/shanhai/gateway"
	"github.com/shanhai-dev/shanhai/services/order"
	"github.com/shanhai-dev/shanhai/services/payment"
	"github.com/shanhai-dev/shanhai/services/user"
)

// runners are the parts' Run functions, each module's Options being
// server.Part.
var runners = map[string]func(context.Context, server.Part) error{
	"user":    user.Run,
	"order":   order.Run,
	"payment": payment.Run,
	"bridge":  bridge.Run,
	"gateway": gateway.Run,
}

// host returns how a part runs in this process: its module's Run, the very
// function its production main calls, given the part's environment, a JSON
// logger on its own log file and the host's telemetry.
//
// One process instead of five saves what each Go executable costs before it
// does anything: ~35 MB of mapped code and tables per binary. What the parts
// then share is process-wide state, each checked not to collide:
//   - telemetry: one Setup here (OTel globals, one Prometheus registry); the
//     parts get a Shared view, so a part's shutdown flushes without
//     stopping the exporters the others use. Spans and metrics stay
//     distinguishable by instrumentation scope, but every part's /metrics
//     serves the same registry and the resource's service.name is
//     "shanhai" (README: "One process").
//   - signals: the parts run under server.Hosted and ignore SIGINT/SIGTERM;
//     Platform.Stop ends them in order, the gateway first.
//   - discovery: given callersGone (the embedded run, whose etcd is this
//     process's own), the parts also run under server.CallersStopped, so a
//     service waits after deregistering only until Platform.Stop closes it,
//     once the gateway, the one part that routes by discovery, has stopped.
//   - slog's default: a part given a logger does not replace it.
//   - pprof: each part's admin listener has its own mux (pkg/server and the
//     gateway never use http.DefaultServeMux); all of them profile this one
//     process.
func host(name string, tp *telemetry.Provider, level slog.Leveler, callersGone <-chan struct{}) (func(context.Context, map[string]string, io.Writer) error, error) {
	run := runners[name]
	if run == nil {
		return nil, fmt.Errorf("no part named %q", name)
	}
	return func(ctx context.Context, env map[string]string, w io.Writer) (err error) {
		log := telemetry.NewLogger(w, level)
		defer func() {
			// A panic on the part's own goroutine (its wiring, its Run)
			// becomes that part's failure, named, instead of taking the
			// others down; other goroutines' panics still end the process.
			if r := recover(); r != nil {
				log.Error("panic", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				err = fmt.Errorf("%s panicked: %v", name, r)
			}
		}()
		ctx = server.Hosted(ctx)
		if callersGone != nil {
			ctx = server.CallersStopped(ctx, callersGone)
		}
		err = run(ctx, server.Part{Env: env, Logger: log, Telemetry: tp})
		if err == nil && ctx.Err() == nil {
			// Run only returns early on failure; a part that quietly
			// stopped serving is a broken platform all the same.
			err = fmt.Errorf("%s returned before it was asked to stop", name)
		}
		return err
	}, nil
}
