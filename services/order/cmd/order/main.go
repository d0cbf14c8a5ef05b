// Command order runs the order service: the process environment → order.Run, the
// same wiring cmd/shanhai hosts in its one process.
package main

import (
	"context"
	"os"

	// Connects to DATABASE_URL while the packages below initialise, for the
	// start-up's migration check to find the connection made (see its doc).
	_ "github.com/shanhai-dev/shanhai/pkg/database/pgconnect/early"
	"github.com/shanhai-dev/shanhai/pkg/server"
	"github.com/shanhai-dev/shanhai/services/order"
)

func main() {
	// 2 and the reason on stderr for a bad configuration, 1 for a failure
	// Run has logged (server.ExitCode).
	os.Exit(server.ExitCode(os.Stderr, "order", order.Run(context.Background(), order.Options{})))
}
