package stack

import (
	"os"
	"path/filepath"
	"testing"
)

// A log directory that does not exist yet (E2E_LOG_DIR=/tmp/e2e as the
// README suggests, or cmd/stack -logs DIR) is made, not refused: the
// refusal came only once the five binaries were built, a minute or more
// into the run.
func TestProcessLogGoesToADirectoryNotMadeYet(t *testing.T) {
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "user"), []byte("#!/bin/sh\necho started\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	logs := filepath.Join(t.TempDir(), "e2e", "logs")
	p, err := startProc(bin, logs, "user", nil)
	if err != nil {
		t.Fatalf("start with the log directory %s not made yet: %v", logs, err)
	}
	<-p.done
	if b, err := os.ReadFile(filepath.Join(logs, "user.log")); err != nil || string(b) != "started\n" {
		t.Fatalf("the process log holds %q (%v), want its output", b, err)
	}
}
