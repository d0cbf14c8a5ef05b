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
	"strings"
	"time"
)

// Part is one of the five parts of the platform (user, order, payment,
// bridge, gateway). By default it runs inside this process, through the same
// <module>.Run its production binary calls; with -processes it runs as that
// binary, a child process. Either way it gets the same environment.
type Part struct {
	Name string            // user, order, payment, gateway, bridge
	Port int               // HTTP port: /readyz is polled here
	Env  map[string]string // its configuration variables, beyond this process's own

	// Path is the production binary; when set the part runs as a child
	// process instead of in this one.
	Path string
	cmd  *exec.Cmd

	// host runs the part in this process until ctx ends; stop ends it.
	host func(ctx context.Context, env map[string]string, log io.Writer) error
	stop context.CancelFunc

	// done receives how the part ended; a reader that only peeks puts the
	// value back, so every waiter sees it.
	done chan error
}

// URL is the part's HTTP base URL.
func (p *Part) URL() string { return fmt.Sprintf("http://127.0.0.1:%d", p.Port) }

// MetricsURL is where the part's Prometheus text is: its HTTP port's
// /metrics, but the gateway's admin listener, since the public door keeps
// the platform's series to itself.
func (p *Part) MetricsURL() string {
	if p.Name == "gateway" {
		return "http://" + p.Env["ADMIN_ADDR"] + "/metrics"
	}
	return p.URL() + "/metrics"
}

// Hosted says whether the part runs in this process.
func (p *Part) Hosted() bool { return p.Path == "" }

// Start runs the part with its logs going to log.
func (p *Part) Start(log io.Writer) error {
	p.done = make(chan error, 1)
	if !p.Hosted() {
		if err := p.startProcess(log); err != nil {
			// Never started: Stop and Running must not wait for, or
			// signal, a process that does not exist (Stop signalled a nil
			// *os.Process, and the run panicked on its way out).
			p.done = nil
			return err
		}
		return nil
	}
	ctx, stop := context.WithCancel(context.Background())
	p.stop = stop
	env := environ(p.Env)
	go func() { p.done <- p.host(ctx, env, log) }()
	return nil
}

// environ is this process's environment with the part's variables on top:
// what the part would inherit as a child process.
func environ(own map[string]string) map[string]string {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	for k, v := range own {
		env[k] = v
	}
	return env
}

// Pid is the process the part runs in: this one when hosted.
func (p *Part) Pid() int {
	if p.Hosted() {
		return os.Getpid()
	}
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// WaitReady polls /readyz until it answers 200, the part ends or ctx ends.
func (p *Part) WaitReady(ctx context.Context) error {
	client := &http.Client{Timeout: time.Second}
	// This side closes its kept-alive connections: a connection the gateway
	// closes at its shutdown stays in TIME_WAIT on its port, which it binds
	// without SO_REUSEADDR, so the next run could not start for a minute.
	defer client.CloseIdleConnections()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	last := "no answer"
	for {
		resp, err := client.Get(p.URL() + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
			if resp.StatusCode == http.StatusOK {
				if mine, known := listensOn(p.Pid(), p.Port); mine || !known {
					return nil
				}
				// Another program's part: this one failed to bind, or
				// has not yet; its end (p.done) says which.
				last = "200 from another program holding the port"
			}
		}
		select {
		case err := <-p.done:
			p.done <- err
			return fmt.Errorf("%s %w: %w", p.Name, errEndedEarly, err)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready (last /readyz: %s): %w", p.Name, last, ctx.Err())
		case <-tick.C:
		}
	}
}

// errEndedEarly marks a part that ended before it was ready.
var errEndedEarly = errors.New("ended before it was ready")

// logTail is the end of a part's log, at most tailLines lines of the last
// tailBytes bytes, each indented, for an error about a child process: its
// "exit status 2" says nothing, and why it ended (a refused variable, a
// panic) is only in its log. "" when the log cannot be read or is empty.
func logTail(path string) string {
	const tailLines, tailBytes = 10, 4096
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	from := max(0, fi.Size()-tailBytes)
	b := make([]byte, fi.Size()-from)
	if _, err := f.ReadAt(b, from); err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	text := strings.TrimRight(string(b), "\n")
	if from > 0 { // the first line is cut: leave it out
		if _, rest, ok := strings.Cut(text, "\n"); ok {
			text = rest
		}
	}
	lines := strings.Split(text, "\n")
	lines = lines[max(0, len(lines)-tailLines):]
	if len(lines) == 1 && lines[0] == "" {
		return ""
	}
	return "\n  " + strings.Join(lines, "\n  ")
}

// Stop asks the part to drain and shut down (a hosted part's ctx ends, a
// child gets SIGTERM) and waits up to grace. A child still running then is
// killed; a hosted part cannot be, and is reported.
func (p *Part) Stop(grace time.Duration) error {
	if p.done == nil {
		return nil // never started
	}
	select {
	case err := <-p.done:
		p.done <- err
		return nil // already gone
	default:
	}
	if !p.Hosted() {
		return p.stopProcess(grace)
	}
	p.stop()
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			return fmt.Errorf("stop %s: %w", p.Name, err)
		}
		return nil
	case <-time.After(grace):
		return fmt.Errorf("stop %s: still shutting down after %s", p.Name, grace)
	}
}

// Running reports whether the part was started and has not ended yet. A nil
// part never ran.
func (p *Part) Running() bool {
	if p == nil || p.done == nil {
		return false
	}
	select {
	case err := <-p.done:
		p.done <- err
		return false
	default:
		return true
	}
}

// Exited reports a part that ended; after Stop that is expected, before it
// the platform is broken.
func (p *Part) Exited() <-chan error { return p.done }

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
