//go:build linux

package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A child part must not outlive this program: a second Ctrl-C (or a kill)
// ends it at once, without the orderly stop, and the child, in its own
// process group, sees neither signal. The test runs a helper process (this
// test binary) that starts a part as a child, kills the helper, and wants
// the child gone.
func TestChildDiesWithThisProgram(t *testing.T) {
	if dir := os.Getenv("SHANHAI_TEST_PARENT"); dir != "" {
		part := &Part{Name: "user", Path: filepath.Join(dir, "part")}
		if err := part.Start(os.Stderr); err != nil {
			fmt.Println("start:", err)
			os.Exit(1)
		}
		fmt.Println(part.Pid())
		select {} // until killed
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "part"), []byte("#!/bin/sh\nexec sleep 600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	parent := exec.Command(os.Args[0], "-test.run=^TestChildDiesWithThisProgram$")
	parent.Env = append(os.Environ(), "SHANHAI_TEST_PARENT="+dir)
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		parent.Process.Kill()
		t.Fatalf("helper: %v", err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		parent.Process.Kill()
		t.Fatalf("helper said %q", line)
	}
	defer syscall.Kill(child, syscall.SIGKILL) // when the test fails

	if err := parent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = parent.Wait()
	for deadline := time.Now().Add(10 * time.Second); alive(child); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("child part %d still runs after its parent was killed", child)
		}
	}
}

// alive says whether pid runs: it exists and is not a zombie waiting for a
// reaper.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z")
}

// A part whose binary could not be started was never started: stopping the
// platform after it (Start does, on the way out) must not touch the process
// it never got. It sent SIGTERM to a nil *os.Process and the run panicked.
func TestStopAfterAFailedForkIsANoOp(t *testing.T) {
	p := &Part{Name: "user", Path: filepath.Join(t.TempDir(), "user")}
	if err := p.Start(io.Discard); err == nil {
		t.Fatal("started a binary that is not there")
	}
	if p.Running() {
		t.Fatal("a part whose fork failed reports itself running")
	}
	if err := p.Stop(time.Second); err != nil {
		t.Fatalf("stop after a failed start: %v", err)
	}
}
