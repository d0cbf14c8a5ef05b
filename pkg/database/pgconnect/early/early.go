// Package early starts connecting to the PostgreSQL database DATABASE_URL names while the binary that imports it is
// still initialising its packages (pgconnect.Start): a service's main imports it for its side effect,
//
//	import _ "github.com/shanhai-dev/shanhai/pkg/database/pgconnect/early"
//
// and the service's first database.OpenMigrated of that URL then finds its connection made or being made. It only
// saves time: the migration check still runs on that connection before the service is ready, and a connect that
// failed is made again there, so what the service reports is unchanged.
//
// Only the production mains import it. A process hosting several services, or a test, opens its databases when
// it asks for them; there the import would connect to whatever the environment names, for nothing. The mains' own
// tests (package main, linked with this import) are such tests, so in a binary go test built it does nothing.
package early

import (
	"os"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/database/pgconnect"
)

func init() {
	// testing.Testing is false in every binary go build makes; importing testing adds no flags to them.
	if testing.Testing() {
		return
	}
	pgconnect.Start(os.Getenv("DATABASE_URL"))
}
