// Command bridge carries events Kafka -> NATS JetStream -> Pulsar. All
// settings come from the environment; see internal/config.
package main

import (
	"context"
	"fmt"
	"os"

	pkgconfig "github.com/shanhai-dev/shanhai/pkg/config"

	"github.com/shanhai-dev/shanhai/bridge/internal/app"
	"github.com/shanhai-dev/shanhai/bridge/internal/config"
)

func main() {
	var cfg config.Config
	pkgconfig.MustLoad(&cfg)
	if err := app.Run(context.Background(), cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bridge:", err)
		os.Exit(1)
	}
}
