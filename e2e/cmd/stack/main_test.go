package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMain lets a test run the command itself: with STACK_TEST_MAIN set, the
// test binary is stack, its arguments main's flags.
func TestMain(m *testing.M) {
	if os.Getenv("STACK_TEST_MAIN") != "" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// A word where a flag was meant ("stack load" for "stack -load") ends the
// flags: everything after it was ignored and the stack ran with the client
// limits on, building and starting for a minute before a load run found
// itself limited. It is refused before anything is built, with exit status 2.
// GOWORK=off makes the run fail at once where it would otherwise go on (no
// repository found), so the test never builds.
func TestAWordWhereAFlagWasMeantIsRefused(t *testing.T) {
	for _, args := range [][]string{{"load"}, {"-logs", t.TempDir(), "load"}} {
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), "STACK_TEST_MAIN=1", "GOWORK=off")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(stderr.String(), `unexpected argument "load"`) {
			t.Errorf("stack %v: %v, stderr %q; want exit status 2 naming the argument", args, err, stderr.String())
		}
	}
}
