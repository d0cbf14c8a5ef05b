package config_test

import (
	"flag"
	"testing"

	pkgconfig "github.com/shanhai-dev/shanhai/pkg/config"
	"github.com/shanhai-dev/shanhai/pkg/server"
	"github.com/shanhai-dev/shanhai/services/user/internal/config"
)

var update = flag.Bool("update", false, "rewrite the user block of docs/configuration.md")

// TestConfigDoc keeps this binary's table in docs/configuration.md in step
// with its config struct; run with -update after changing a variable.
func TestConfigDoc(t *testing.T) {
	err := pkgconfig.SyncDoc("../../../../docs/configuration.md", "user", *update,
		pkgconfig.Section{Title: "user service (services/user/cmd/user)", Config: struct {
			config.Config
			server.PageoutConfig // RunService's, listed in the same table
		}{}})
	if err != nil {
		t.Fatal(err)
	}
}
