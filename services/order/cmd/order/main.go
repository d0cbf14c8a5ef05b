// Command order runs the order service: the process environment → order.Run, the
// same wiring cmd/shanhai hosts in its one process.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/shanhai-dev/shanhai/pkg/config"
	// Connects to DATABASE_URL while the packages below initialise, for the
	// start-up's migration check to find the connection made (see its doc).
	_ "github.com/shanhai-dev/shanhai/pkg/database/pgconnect/early"
	"github.com/shanhai-dev/shanhai/services/order"
)

func main() {
	err := order.Run(context.Background(), order.Options{})
	var bad *config.Error
	switch {
	case errors.As(err, &bad):
		fmt.Fprintf(os.Stderr, "order: %v\n", err)
		os.Exit(2) // usage error, as config.MustLoad exits
	case err != nil:
		os.Exit(1) // Run logged why
	}
}
