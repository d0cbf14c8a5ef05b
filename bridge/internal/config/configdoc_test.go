package config

import (
	"flag"
	"testing"

	pkgconfig "github.com/shanhai-dev/shanhai/pkg/config"
)

var update = flag.Bool("update", false, "rewrite the bridge block of docs/configuration.md")

// TestConfigDoc keeps the bridge's block in docs/configuration.md, the one
// page listing every binary's variables, in step with Config; run with
// -update after changing a variable. (The README's own table is
// TestReadmeConfigTable's.)
func TestConfigDoc(t *testing.T) {
	err := pkgconfig.SyncDoc("../../../docs/configuration.md", "bridge", *update,
		pkgconfig.Section{Title: "bridge (bridge/cmd/bridge)", Config: Config{}})
	if err != nil {
		t.Fatal(err)
	}
}
