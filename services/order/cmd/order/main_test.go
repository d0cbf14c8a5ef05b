package main

import (
	"flag"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/config"
	"github.com/shanhai-dev/shanhai/pkg/server"
	orderconfig "github.com/shanhai-dev/shanhai/services/order/internal/config"
)

var update = flag.Bool("update", false, "rewrite docs/configuration.md")

// TestConfigDoc keeps this binary's table in docs/configuration.md in step
// with its config struct; run with -update after changing a variable.
func TestConfigDoc(t *testing.T) {
	err := config.SyncDoc("../../../../docs/configuration.md", "order", *update,
		config.Section{Title: "order service (services/order/cmd/order)", Config: struct {
			orderconfig.Config
			server.PageoutConfig // RunService's, listed in the same table
		}{}})
	if err != nil {
		t.Fatal(err)
	}
}
