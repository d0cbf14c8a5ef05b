package config

import (
	"testing"

	pkgconfig "github.com/shanhai-dev/shanhai/pkg/config"
)

// TestConfigDocShared keeps the gateway's block in docs/configuration.md,
// the one page listing every binary's variables, in step with Config (the
// README keeps its own copy through TestConfigDoc); -update rewrites both.
func TestConfigDocShared(t *testing.T) {
	err := pkgconfig.SyncDoc("../../../docs/configuration.md", "gateway", *update,
		pkgconfig.Section{Title: "gateway (gateway/cmd/gateway)", Config: Config{}})
	if err != nil {
		t.Fatal(err)
	}
}
