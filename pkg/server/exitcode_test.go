package server

import (
	"fmt"
	"strings"
	"testing"
)

type exitConfig struct {
	Port int `env:"EXIT_TEST_PORT" envDefault:"1" desc:"a number"`
}

// TestExitCodeTellsUsageFromFailure: a bad configuration, however wrapped,
// exits 2 with the binary's name and every bad variable on stderr (nothing
// else reports it); a later failure exits 1 and prints nothing (Run logged
// it); no error exits 0.
func TestExitCodeTellsUsageFromFailure(t *testing.T) {
	var cfg exitConfig
	bad := (Part{Env: map[string]string{"EXIT_TEST_PORT": "eighty"}}).LoadConfig(&cfg)
	if bad == nil {
		t.Fatal("a non-number was accepted")
	}
	for _, tc := range []struct {
		name   string
		err    error
		code   int
		stderr string
	}{
		{"clean stop", nil, 0, ""},
		{"bad configuration", bad, 2, "user: " + bad.Error() + "\n"},
		{"wrapped bad configuration", fmt.Errorf("start: %w", bad), 2, "user: start: " + bad.Error() + "\n"},
		{"later failure", fmt.Errorf("listen: address in use"), 1, ""},
	} {
		var w strings.Builder
		if got := ExitCode(&w, "user", tc.err); got != tc.code || w.String() != tc.stderr {
			t.Errorf("%s: exit %d with %q, want %d with %q", tc.name, got, w.String(), tc.code, tc.stderr)
		}
	}
}
