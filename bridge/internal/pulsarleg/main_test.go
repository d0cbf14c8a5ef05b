package pulsarleg_test

import (
	"os"
	"testing"

	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
)

// TestMain lets eight of the tests that call setup run at once: each has names
// of its own on the shared servers and spends its time waiting on them (held
// fetches, idle windows that must stay empty, redeliveries), so two at a time
// (go test's default on the 2-core CI machine) left the CPU mostly idle.
func TestMain(m *testing.M) {
	harness.WaitingTestsInParallel(8)
	os.Exit(m.Run())
}
