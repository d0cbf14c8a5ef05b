package testenv_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// The private nats-server is the version scripts/deps.sh pins, not the newest
// by name: "nats-server-v2.9.0" sorts after "nats-server-v2.14.9", and a cache
// holding both ran pkg/stream's and the bridge's fault tests on 2.9.
func TestNATSServerBinaryIsThePinnedVersion(t *testing.T) {
	version, err := testenv.NATSVersion()
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	if err := os.Mkdir(filepath.Join(cache, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	pinned := filepath.Join(cache, "bin", "nats-server-"+version)
	for _, bin := range []string{pinned, filepath.Join(cache, "bin", "nats-server-v2.9.0")} {
		if err := os.WriteFile(bin, nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("SHANHAI_CACHE", cache)
	if got, err := testenv.NATSServerBinary(); got != pinned {
		t.Fatalf("nats-server = %q (%v), want the pinned %s", got, err, pinned)
	}
}
