package main

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/config"
)

// An operator whose kernel misreports bpf_loop or bpf_map_lookup_percpu_elem (a backport the feature probe takes
// for present, whose exit programs then fail the verifier and take their probes with them) must be able to choose
// the exitless path without rebuilding: BPF_NO_EXIT_PROGRAMS reaches agent.Config.NoExitPrograms.
func TestNoExitProgramsVariable(t *testing.T) {
	for env, want := range map[string]bool{"": false, "false": false, "true": true, "1": true} {
		environ := map[string]string{}
		if env != "" {
			environ["BPF_NO_EXIT_PROGRAMS"] = env
		}
		var cfg Config
		if err := config.LoadFrom(&cfg, environ); err != nil {
			t.Fatalf("BPF_NO_EXIT_PROGRAMS=%q: %v", env, err)
		}
		if got := agentConfig(cfg, slog.Default()).NoExitPrograms; got != want {
			t.Errorf("BPF_NO_EXIT_PROGRAMS=%q: NoExitPrograms = %v, want %v", env, got, want)
		}
	}
	var cfg Config
	if err := config.LoadFrom(&cfg, map[string]string{"BPF_NO_EXIT_PROGRAMS": "sometimes"}); err == nil {
		t.Error("BPF_NO_EXIT_PROGRAMS=sometimes accepted, want refused")
	}
}

// The cap on executables probed at once (agent.Config.MaxExecutables) must be the operator's to size against the
// agent's memory limit: BPF_MAX_EXECUTABLES reaches it, 16 unset, and a cap below 1 is refused.
func TestMaxExecutablesVariable(t *testing.T) {
	for env, want := range map[string]int{"": 16, "4": 4} {
		environ := map[string]string{}
		if env != "" {
			environ["BPF_MAX_EXECUTABLES"] = env
		}
		var cfg Config
		if err := config.LoadFrom(&cfg, environ); err != nil {
			t.Fatalf("BPF_MAX_EXECUTABLES=%q: %v", env, err)
		}
		if got := agentConfig(cfg, slog.Default()).MaxExecutables; got != want {
			t.Errorf("BPF_MAX_EXECUTABLES=%q: MaxExecutables = %d, want %d", env, got, want)
		}
	}
	for _, env := range []string{"0", "-1", "many"} {
		var cfg Config
		if err := config.LoadFrom(&cfg, map[string]string{"BPF_MAX_EXECUTABLES": env}); err == nil {
			t.Errorf("BPF_MAX_EXECUTABLES=%s accepted, want refused", env)
		}
	}
}

// BPF_DETACH_GRACE=0 (or a negative duration) ran the agent with the default grace of a minute without a word: the
// agent takes a zero Grace for unset. It is refused at start; a positive value reaches agent.Config.Grace.
func TestDetachGraceVariable(t *testing.T) {
	for _, env := range []string{"0", "0s", "-1s"} {
		if got, err := refused(t, map[string]string{"BPF_DETACH_GRACE": env}); !strings.Contains(got["BPF_DETACH_GRACE"], "more than 0") {
			t.Errorf("BPF_DETACH_GRACE=%s: got %v, want it refused", env, err)
		}
	}
	var cfg Config
	if err := config.LoadFrom(&cfg, map[string]string{"BPF_DETACH_GRACE": "30s"}); err != nil {
		t.Fatal(err)
	}
	if got := agentConfig(cfg, slog.Default()).Grace; got != 30*time.Second {
		t.Errorf("BPF_DETACH_GRACE=30s: Grace = %v", got)
	}
}
