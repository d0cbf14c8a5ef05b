package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/freeport"
)

// silentListener accepts TCP connections (the kernel does, from its
// backlog) and never answers: a port something holds that is not the
// server the run wants.
func silentListener(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().String()
}

// The embedded run with a PULSAR_URL nothing answers at (still exported by
// an earlier eval "$(./scripts/deps.sh env)", the servers since stopped)
// says so before anything starts; it used to wait, silent, forever.
func TestEmbeddedRunRefusesAPulsarNothingAnswersAt(t *testing.T) {
	port, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	t.Setenv("PULSAR_URL", "pulsar://"+addr)
	t.Setenv("PULSAR_ADMIN_URL", "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // hang guard only
	defer cancel()
	p, err := Start(ctx, Options{DataDir: t.TempDir()})
	if err == nil {
		p.Stop()
		t.Fatal("Start succeeded with nothing answering at PULSAR_URL")
	}
	for _, want := range []string{"PULSAR_URL (" + addr + ")", "make deps-up", "unset PULSAR_URL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Start error = %q, want it to contain %q", err, want)
		}
	}
}

// A part that never gets ready (the bridge, its Pulsar a listener that
// never answers: the dial check passes) ends the start-up at its limit with
// an error naming that part and its log, instead of a silent wait.
func TestStartNamesThePartNotReadyWithinItsLimit(t *testing.T) {
	t.Setenv("PULSAR_URL", "pulsar://"+silentListener(t))
	t.Setenv("PULSAR_ADMIN_URL", "")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second) // hang guard only
	defer cancel()
	data := t.TempDir()
	p, err := Start(ctx, Options{DataDir: data, ReadyTimeout: 15 * time.Second})
	if err == nil {
		p.Stop()
		t.Fatal("Start succeeded with the bridge's Pulsar never answering")
	}
	if ctx.Err() != nil {
		t.Fatalf("Start returned only after the test's own guard: %v", err)
	}
	for _, want := range []string{"bridge not ready", "not ready within the start-up limit of 15s", "log: " + filepath.Join(data, "logs", "bridge.log")} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Start error = %q, want it to contain %q", err, want)
		}
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Start error = %v, want it to wrap context.DeadlineExceeded", err)
	}
}

// fakeDeps is a repository root whose scripts/deps.sh env prints these
// variables, as the real one prints the servers' addresses.
func fakeDeps(t *testing.T, env map[string]string) string {
	t.Helper()
	root := t.TempDir()
	var script strings.Builder
	script.WriteString("#!/bin/sh\n")
	for k, v := range env {
		script.WriteString("echo \"export " + k + "='" + v + "'\"\n")
	}
	if err := os.MkdirAll(filepath.Join(root, "scripts"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "scripts", "deps.sh"), []byte(script.String()), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

// -native against a PostgreSQL that takes the connection and never answers
// (wedged, or another program on its port) stops with a message naming it,
// and Ctrl-C meanwhile ends the run with status 130 as anywhere in the
// start-up. The run waited for the first answer to its databases' look-up
// for good, silent, and an interrupt there exited 1 with a "context
// canceled" from the PostgreSQL driver.
func TestNativeRunStopsOnAPostgreSQLThatNeverAnswers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the program in a child process")
	}
	t.Parallel() // waits on its child process; see parallelNote
	silent := silentListener(t)
	root := fakeDeps(t, map[string]string{
		"DATABASE_URL":  "postgres://shanhai@" + silent + "/shanhai?sslmode=disable",
		"KAFKA_BROKERS": silent,
	})
	args := "-native -root " + root + " -port " + strconv.Itoa(freePortBlock(t))

	run := asProgram(args, "PULSAR_URL=", "PULSAR_ADMIN_URL=", "TMPDIR="+t.TempDir())
	var out bytes.Buffer
	run.Stdout, run.Stderr = &out, &out
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- run.Wait() }()
	var err error
	select {
	case err = <-waited:
	case <-time.After(45 * time.Second): // hang guard only
		_ = run.Process.Kill()
		t.Fatalf("-native still waits on a PostgreSQL that never answers after 45 s:\n%s", out.String())
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(out.String(), silent) {
		t.Fatalf("the run: %v, want exit status 1 naming %s:\n%s", err, silent, out.String())
	}

	// Interrupted while it waits: status 130.
	run = asProgram(args, "PULSAR_URL=", "PULSAR_ADMIN_URL=", "TMPDIR="+t.TempDir())
	out.Reset()
	run.Stdout, run.Stderr = &out, &out
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { waited <- run.Wait() }()
	deadline := time.After(30 * time.Second) // hang guard only
	for !strings.Contains(waitingPostgres(run.Process.Pid), silent) {
		select {
		case err := <-waited:
			t.Fatalf("the run ended before it waited on PostgreSQL: %v\n%s", err, out.String())
		case <-deadline:
			_ = run.Process.Kill()
			t.Fatal("no connection to the silent PostgreSQL within 30 s")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := run.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err = <-waited:
	case <-time.After(30 * time.Second): // hang guard only
		_ = run.Process.Kill()
		t.Fatalf("the run still runs 30 s after Ctrl-C:\n%s", out.String())
	}
	if !errors.As(err, &exit) || exit.ExitCode() != 130 {
		t.Fatalf("the run after Ctrl-C: %v, want exit status 130:\n%s", err, out.String())
	}
}

// waitingPostgres lists the remote addresses of pid's established TCP
// connections (from /proc/net/tcp), to see the run connected and waiting.
func waitingPostgres(pid int) string {
	links, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	inodes := map[string]bool{}
	for _, l := range links {
		if target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, l.Name())); err == nil {
			if ino, ok := strings.CutPrefix(target, "socket:["); ok {
				inodes[strings.TrimSuffix(ino, "]")] = true
			}
		}
	}
	b, _ := os.ReadFile("/proc/net/tcp")
	var remotes []string
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 10 || f[3] != "01" || !inodes[f[9]] { // 01: ESTABLISHED
			continue
		}
		hostPort := strings.Split(f[2], ":")
		if len(hostPort) != 2 {
			continue
		}
		port, _ := strconv.ParseUint(hostPort[1], 16, 16)
		ip, _ := strconv.ParseUint(hostPort[0], 16, 32)
		remotes = append(remotes, fmt.Sprintf("%d.%d.%d.%d:%d", ip&0xff, ip>>8&0xff, ip>>16&0xff, ip>>24, port))
	}
	return strings.Join(remotes, " ")
}

// Ctrl-C while -native reads the servers' addresses (scripts/deps.sh env,
// here one that takes its time) ends the run as an interrupted start-up:
// status 130, the temporary data directory removed. The signal handler was
// set only after that step, so Ctrl-C there killed the run outright and left
// its data directory (and shanhai.log) in $TMPDIR. SIGTERM and SIGHUP stop
// it the same way, each with its own status (128 + its number), as a shell
// reports a process that signal ended: every one exited 130, so a run its
// closed terminal stopped read as one stopped by Ctrl-C.
func TestSignalWhileReadingTheNativeServersCleansUp(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the program in a child process")
	}
	// As in TestHangUpStopsTheRunAsCtrlCDoes: the run catches SIGHUP only if
	// it did not start with it ignored, as under a nohup'ed test binary.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP)
	defer signal.Reset(syscall.SIGHUP)
	for _, c := range []struct {
		sig    syscall.Signal
		status int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}, {syscall.SIGHUP, 129}} {
		t.Run(c.sig.String(), func(t *testing.T) {
			root := fakeDeps(t, nil)
			script := filepath.Join(root, "scripts", "deps.sh")
			if err := os.WriteFile(script, []byte("#!/bin/sh\nexec sleep 30\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			tmp := t.TempDir()
			run := asProgram("-native -root "+root+" -port "+strconv.Itoa(freePortBlock(t)), "TMPDIR="+tmp)
			var out bytes.Buffer
			run.Stdout, run.Stderr = &out, &out
			if err := run.Start(); err != nil {
				t.Fatal(err)
			}
			defer run.Process.Kill() // when the test fails
			waited := make(chan error, 1)
			go func() { waited <- run.Wait() }()
			deadline := time.After(30 * time.Second) // hang guard only
			for !childRuns(run.Process.Pid, "sleep") {
				select {
				case err := <-waited:
					t.Fatalf("the run ended before it read the servers: %v\n%s", err, out.String())
				case <-deadline:
					t.Fatal("no scripts/deps.sh env running within 30 s")
				case <-time.After(20 * time.Millisecond):
				}
			}
			if err := run.Process.Signal(c.sig); err != nil {
				t.Fatal(err)
			}
			var err error
			select {
			case err = <-waited:
			case <-time.After(20 * time.Second): // hang guard only
				t.Fatalf("the run still runs 20 s after %v:\n%s", c.sig, out.String())
			}
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != c.status {
				t.Fatalf("the run after %v: %v, want exit status %d:\n%s", c.sig, err, c.status, out.String())
			}
			if left, _ := filepath.Glob(filepath.Join(tmp, "shanhai-run-*")); len(left) > 0 {
				t.Fatalf("data directories left behind: %v", left)
			}
		})
	}
}

// childRuns reports whether parent has a child process whose command is name
// (a child of any of its threads: Go forks from whichever runs).
func childRuns(parent int, name string) bool {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", parent))
	for _, task := range tasks {
		b, err := os.ReadFile(task)
		if err != nil {
			continue
		}
		for _, pid := range strings.Fields(string(b)) {
			if comm, err := os.ReadFile("/proc/" + pid + "/comm"); err == nil && strings.TrimSpace(string(comm)) == name {
				return true
			}
		}
	}
	return false
}
