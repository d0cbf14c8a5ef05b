// Command bridge carries events Kafka -> NATS JetStream -> Pulsar. All
// settings come from the environment; see internal/config. The wiring is
// bridge.Run, which cmd/shanhai also hosts in its one process.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/shanhai-dev/shanhai/pkg/config"

	"github.com/shanhai-dev/shanhai/bridge"
)

func main() {
	err := bridge.Run(context.Background(), bridge.Options{})
	var bad *config.Error
	switch {
	case errors.As(err, &bad):
		fmt.Fprintf(os.Stderr, "bridge: %v\n", err)
		os.Exit(2) // usage error, as config.MustLoad exits
	case err != nil:
		fmt.Fprintln(os.Stderr, "bridge:", err)
		os.Exit(1)
	}
}
