package main

import (
	"flag"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/config"
)

var update = flag.Bool("update", false, "rewrite the bpf-agent block of docs/configuration.md")

// TestConfigDoc keeps the agent's block in docs/configuration.md in step
// with Config; run with -update after changing a variable.
func TestConfigDoc(t *testing.T) {
	err := config.SyncDoc("../../../docs/configuration.md", "bpf-agent", *update,
		config.Section{Title: "eBPF agent (bpf/cmd/agent)", Config: Config{}})
	if err != nil {
		t.Fatal(err)
	}
}
