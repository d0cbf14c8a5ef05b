package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// runMainEnv makes the test binary run main instead of the tests, so the
// binary's own output is checked without a separate build.
const runMainEnv = "GATEWAY_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// A bad configuration is printed as the other binaries print it: the
// binary's name, then one line per bad variable, and exit status 2.
func TestBadConfigurationIsReportedByName(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = []string{runMainEnv + "=1", "PATH=" + os.Getenv("PATH"), "GATEWAY_MODE=x", "GATEWAY_MAX_ATTEMPTS="}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("want exit status 2, got %v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 || lines[0] != "gateway: invalid configuration (2 problems):" ||
		!strings.HasPrefix(strings.TrimSpace(lines[1]), "GATEWAY_MAX_ATTEMPTS: ") ||
		!strings.HasPrefix(strings.TrimSpace(lines[2]), "GATEWAY_MODE: ") {
		t.Fatalf("unexpected report:\n%s", out)
	}
}
