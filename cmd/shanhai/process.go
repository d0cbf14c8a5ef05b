package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"syscall"
	"time"
)

// startProcess runs the part's production binary as a child (-processes),
// its output appended to log.
func (p *Part) startProcess(log io.Writer) error {
	p.cmd = exec.Command(p.Path)
	p.cmd.Env = os.Environ()
	keys := make([]string, 0, len(p.Env))
	for k := range p.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p.cmd.Env = append(p.cmd.Env, k+"="+p.Env[k])
	}
	p.cmd.Stdout, p.cmd.Stderr = log, log
	p.cmd.SysProcAttr = childAttr()
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	return nil
}

// stopProcess sends SIGTERM (the binaries drain and shut down in order on
// it) and waits up to grace before killing. A child's exit status is its
// stop's outcome, as a hosted part's Run error is: 1 is a failed stop, which
// the binary logged (pkg/server.ExitCode). An end by the SIGTERM itself (a
// child signalled before its handler was set) is not: it was told to end.
func (p *Part) stopProcess(grace time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		var exit *exec.ExitError
		if errors.As(err, &exit) && endedBy(exit, syscall.SIGTERM) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("stop %s: %w", p.Name, err)
		}
		return nil
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("stop %s: killed after %s", p.Name, grace)
	}
}

// endedBy tells whether the child was ended by sig.
func endedBy(exit *exec.ExitError, sig syscall.Signal) bool {
	ws, ok := exit.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}
