package main

import (
	"flag"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/config"
	"github.com/shanhai-dev/shanhai/pkg/server"
	paymentconfig "github.com/shanhai-dev/shanhai/services/payment/internal/config"
)

var update = flag.Bool("update", false, "rewrite docs/configuration.md")

// TestConfigDoc keeps this binary's table in docs/configuration.md in step
// with its config struct; run with -update after changing a variable.
func TestConfigDoc(t *testing.T) {
	err := config.SyncDoc("../../../../docs/configuration.md", "payment", *update,
		config.Section{Title: "payment service (services/payment/cmd/payment)", Config: struct {
			paymentconfig.Config
			server.PageoutConfig // RunService's, listed in the same table
		}{}})
	if err != nil {
		t.Fatal(err)
	}
}
