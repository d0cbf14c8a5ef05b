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
	"syscall"

	"github.com/shanhai-dev/shanhai/pkg/config"

	"github.com/shanhai-dev/shanhai/gateway"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := gateway.Run(ctx, gateway.Options{})
	stop()
	var bad *config.Error
	switch {
	case errors.As(err, &bad):
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	case err != nil:
		os.Exit(1) // Run logged why
	}
}
