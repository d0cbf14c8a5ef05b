// Command gateway is Shanhai's front door: it routes /api/v1/... to the
// services found in discovery, verifies JWTs, limits, breaks, retries and
// splits canary traffic. Configuration: see internal/config (env) and the
// dynamic JSON in etcd at /shanhai/config/gateway. The wiring is
// gateway.Run, which cmd/shanhai also hosts in its one process.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/shanhai-dev/shanhai/pkg/config"

	"github.com/shanhai-dev/shanhai/gateway"
)

// gcPercent is the gateway's GOGC unless the environment sets one. Its live
// heap is about 2 MB, so at the default 100 the collector runs at the
// runtime's 4 MB minimum goal: with tracing at 10 % the OTLP exporter's
// garbage started a cycle every ~6,000 requests under wrk, about 0.5 µs of
// CPU per request (gctrace; README.md, "The sampled tenth"). 400 moves the
// goal to about 16 MB, a dozen MB of memory for about a quarter of the
// cycles. Only the gateway binary does this: cmd/shanhai hosts other
// services in the same process, whose heaps are not this one.
const gcPercent = 400

func main() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(gcPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := gateway.Run(ctx, gateway.Options{})
	stop()
	var bad *config.Error
	switch {
	case errors.As(err, &bad):
		fmt.Fprintf(os.Stderr, "gateway: %v\n", err)
		os.Exit(2) // usage error, as config.MustLoad exits
	case err != nil:
		os.Exit(1) // Run logged why
	}
}
