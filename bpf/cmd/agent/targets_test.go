package main

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/config"
)

// Targets are compared with /proc/<pid>/exe, which is clean: a path spelled otherwise must be cleaned here or it
// matches no process (workshop lab 7 once passed "$PWD/../var/bin/order"). A symlink is kept as given: the agent
// resolves it on every scan, and resolved here once, a link created or repointed later named the old file for good
// (found by review; the agent side is TestSymlinkTargetFollowsTheLink).
func TestTargetsAreCleanedNotResolved(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "bin", "order")
	if err := os.MkdirAll(filepath.Dir(exe), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "current")
	if err := os.Symlink(filepath.Join(dir, "bin"), link); err != nil {
		t.Fatal(err)
	}
	got := targets(" gateway, " + dir + "/x/../bin/order ," + link + "/order,/nonexistent/a/../b")
	want := []string{"gateway", exe, link + "/order", "/nonexistent/b"}
	if !slices.Equal(got, want) {
		t.Errorf("targets = %q, want %q", got, want)
	}
}

func TestRelativeTargetPathIsRefused(t *testing.T) {
	err := (&Config{Targets: "order,../var/bin/order", HTTPProbe: "uprobe", ScanInterval: 1e9}).Validate()
	if err == nil || !strings.Contains(err.Error(), "../var/bin/order") {
		t.Errorf("Validate = %v, want BPF_TARGETS refused naming the relative path", err)
	}
	if err := (&Config{Addr: ":8085", Targets: "order,/usr/bin/x", HTTPProbe: "uprobe", ScanInterval: 1e9, Grace: time.Minute, MaxExecutables: 16}).Validate(); err != nil {
		t.Errorf("Validate of good targets: %v", err)
	}
}

// TestEmptyHTTPAddrIsRefusedByName: HTTP_ADDR= reached http.Server{Addr: ""}, which listens on :80, where no probe
// or scrape looks (and which a non-root agent may not even bind). It is a start-up error naming the variable, in the
// gateway's, the services' and the bridge's words, and it comes in the same error as every other bad variable.
func TestEmptyHTTPAddrIsRefusedByName(t *testing.T) {
	for _, value := range []string{"", " \t"} {
		got, err := refused(t, map[string]string{"HTTP_ADDR": value, "BPF_SCAN_INTERVAL": "1ms"})
		if !strings.Contains(got["HTTP_ADDR"], "must not be empty (unset it for the default)") {
			t.Errorf("HTTP_ADDR=%q: got %v, want HTTP_ADDR must not be empty", value, err)
		}
		if _, ok := got["BPF_SCAN_INTERVAL"]; !ok || len(got) != 2 {
			t.Errorf("HTTP_ADDR=%q with BPF_SCAN_INTERVAL=1ms: got %v, want both in one error and nothing else", value, err)
		}
	}
	var c Config
	if err := config.LoadFrom(&c, map[string]string{}); err != nil || c.Addr != ":8085" {
		t.Errorf("HTTP_ADDR unset: Addr %q, err %v; want the default :8085", c.Addr, err)
	}
}

// TestBadLogLevelIsRefused: LOG_LEVEL=verbose (or warning, or DEBUG) started the agent at info without a word, where
// every other binary refuses it at start; it comes in the one error with every other bad variable.
func TestBadLogLevelIsRefused(t *testing.T) {
	for _, value := range []string{"verbose", "warning", "DEBUG", ""} {
		got, err := refused(t, map[string]string{"LOG_LEVEL": value, "BPF_SCAN_INTERVAL": "1ms"})
		if !strings.Contains(got["LOG_LEVEL"], "must be debug, info, warn or error") || len(got) != 2 {
			t.Errorf("LOG_LEVEL=%q with BPF_SCAN_INTERVAL=1ms: got %v, want both in one error and nothing else", value, err)
		}
	}
	for _, value := range []string{"debug", "info", "warn", "error"} {
		var c Config
		if err := config.LoadFrom(&c, map[string]string{"LOG_LEVEL": value}); err != nil {
			t.Errorf("LOG_LEVEL=%s: %v", value, err)
		}
	}
}

// refused loads Config from env, which must be refused, and returns each refused variable's problem and the error.
func refused(t *testing.T, env map[string]string) (map[string]string, error) {
	t.Helper()
	var c Config
	err := config.LoadFrom(&c, env)
	var bad *config.Error
	if !errors.As(err, &bad) {
		t.Fatalf("%v: got %v, want a *config.Error", env, err)
	}
	got := map[string]string{}
	for _, v := range bad.Vars {
		got[v.Var] = v.Problem
	}
	return got, err
}
