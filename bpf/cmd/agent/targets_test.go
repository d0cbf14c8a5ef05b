package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
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
	if err := (&Config{Targets: "order,/usr/bin/x", HTTPProbe: "uprobe", ScanInterval: 1e9, MaxExecutables: 16}).Validate(); err != nil {
		t.Errorf("Validate of good targets: %v", err)
	}
}
