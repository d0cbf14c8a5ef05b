package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"time"
)

// Binary is one platform binary run as a child process. The children are the
// same executables production runs (built from services/*/cmd, gateway/cmd,
// bridge/cmd); only their environment points at other servers.
type Binary struct {
	Name string            // user, order, payment, gateway, bridge
	Path string            // executable
	Port int               // HTTP port: /readyz is polled here
	Env  map[string]string // added to this process's environment

	cmd  *exec.Cmd
	done chan error
}

// URL is the binary's HTTP base URL.
func (b *Binary) URL() string { return fmt.Sprintf("http://127.0.0.1:%d", b.Port) }

// Start launches the binary with its output appended to log.
func (b *Binary) Start(log io.Writer) error {
	b.cmd = exec.Command(b.Path)
	b.cmd.Env = os.Environ()
	keys := make([]string, 0, len(b.Env))
	for k := range b.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.cmd.Env = append(b.cmd.Env, k+"="+b.Env[k])
	}
	b.cmd.Stdout, b.cmd.Stderr = log, log
	// Own process group: a Ctrl-C in the terminal reaches only this program,
	// which then stops the children in order instead of all at once.
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := b.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", b.Name, err)
	}
	b.done = make(chan error, 1)
	go func() { b.done <- b.cmd.Wait() }()
	return nil
}

// Pid is the child's process id (0 before Start).
func (b *Binary) Pid() int {
	if b.cmd == nil || b.cmd.Process == nil {
		return 0
	}
	return b.cmd.Process.Pid
}

// WaitReady polls /readyz until it answers 200, the child exits or ctx ends.
func (b *Binary) WaitReady(ctx context.Context) error {
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	last := "no answer"
	for {
		resp, err := client.Get(b.URL() + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		}
		select {
		case err := <-b.done:
			b.done <- err
			return fmt.Errorf("%s exited before it was ready: %v", b.Name, err)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready (last /readyz: %s): %w", b.Name, last, ctx.Err())
		case <-tick.C:
		}
	}
}

// Stop sends SIGTERM (the binaries drain and shut down in order on it) and
// waits up to grace before killing.
func (b *Binary) Stop(grace time.Duration) error {
	if b.cmd == nil || b.cmd.Process == nil {
		return nil
	}
	select {
	case err := <-b.done:
		b.done <- err
		return nil // already gone
	default:
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-b.done:
		b.done <- err
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			return fmt.Errorf("stop %s: %w", b.Name, err)
		}
		return nil
	case <-time.After(grace):
		_ = b.cmd.Process.Kill()
		<-b.done
		return fmt.Errorf("stop %s: killed after %s", b.Name, grace)
	}
}

// Exited reports a child that ended on its own.
func (b *Binary) Exited() <-chan error { return b.done }

// logFile opens dir/<name>.log for appending.
func logFile(dir, name string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("log dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	return f, nil
}
