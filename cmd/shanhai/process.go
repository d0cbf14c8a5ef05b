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
// it) and waits up to grace before killing.
func (p *Part) stopProcess(grace time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			return fmt.Errorf("stop %s: %w", p.Name, err)
		}
		return nil
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("stop %s: killed after %s", p.Name, grace)
	}
}
