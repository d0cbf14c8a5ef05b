package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/shanhai-dev/shanhai/pkg/server"
)

// stopPart stops the named part within its grace, with a deregistration
// that only the run's own etcd left unanswered not counted (lateLeave).
func (p *Platform) stopPart(name string, part *Part) error {
	log := filepath.Join(p.LogDir, name+".log")
	var from int64 // where this stop's lines begin in a child's log
	if fi, err := os.Stat(log); err == nil {
		from = fi.Size()
	}
	err := part.Stop(stopGrace[name])
	if err == nil || p.Infra == nil {
		return err
	}
	if part.Hosted() && onlyLateDeregistrations(err) || !part.Hosted() && childLateLeave(name, err, log, from) {
		return p.lateLeave(name, err)
	}
	return err
}

// lateLeave logs a part's stop error made only of deregistrations that
// timed out against the run's own etcd, and drops it. The embedded etcd
// closes right after the parts (Platform.Stop), so a lease revoke it did
// not answer within pkg/server.DeregisterTimeout loses nothing: no caller is
// left to be routed by it, and its data is this run's. Under load (24 on 2
// cores) revokes missed that second and a clean stop exited 1. Against the
// servers of a -native run, whose etcd outlives the run and keeps the lease
// until its TTL, a late deregistration is still a failure (stopPart).
func (p *Platform) lateLeave(name string, err error) error {
	slog.Warn("a part's deregistration timed out against the run's own etcd, which stops next; not a failed stop",
		"part", name, "err", err)
	return nil
}

// onlyLateDeregistrations tells whether every error in err's tree ends in a
// pkg/server deregistration step that ran out of time.
func onlyLateDeregistrations(err error) bool {
	if step, ok := err.(*server.StepError); ok {
		return step.Step == server.DeregisterStep && errors.Is(step.Err, context.DeadlineExceeded)
	}
	switch e := err.(type) {
	case interface{ Unwrap() []error }:
		errs := e.Unwrap()
		for _, err := range errs {
			if !onlyLateDeregistrations(err) {
				return false
			}
		}
		return len(errs) > 0
	case interface{ Unwrap() error }:
		next := e.Unwrap()
		return next != nil && onlyLateDeregistrations(next)
	}
	return false
}

// childLateLeave is onlyLateDeregistrations for a child process, whose
// stop error is only its exit status: 1 says its Run failed and logged why
// (pkg/server.ExitCode), so the log lines this stop wrote (from offset
// from) tell. It holds when those lines' errors are only pkg/server's
// "shutdown step failed" of the deregistration, timed out, and the
// "<name> service stopped" of pkg/server.RunService repeating them; any
// other error line, or a log that cannot be read, leaves a failed stop.
// -processes exited 1 on the stop the embedded run let through.
func childLateLeave(name string, err error, log string, from int64) bool {
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		return false
	}
	f, err := os.Open(log)
	if err != nil {
		return false
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return false
	}
	late := 0
	lines := bufio.NewScanner(f)
	lines.Buffer(nil, 1<<20)
	for lines.Scan() {
		var rec struct {
			Level, Msg, Step, Error, Err string
		}
		if json.Unmarshal(lines.Bytes(), &rec) != nil || rec.Level != slog.LevelError.String() {
			continue
		}
		switch {
		case rec.Msg == "shutdown step failed" && rec.Step == server.DeregisterStep && timedOut(rec.Error):
			late++
		case rec.Msg == name+" service stopped" && onlyLateSteps(rec.Err):
		default:
			return false
		}
	}
	return lines.Err() == nil && late > 0
}

// onlyLateSteps tells whether text, an errors.Join of *server.StepError as
// logged, holds only deregistrations that timed out.
func onlyLateSteps(text string) bool {
	for line := range strings.SplitSeq(text, "\n") {
		msg, ok := strings.CutPrefix(line, server.DeregisterStep+": ")
		if !ok || !timedOut(msg) {
			return false
		}
	}
	return text != ""
}

// timedOut tells a logged error that is a deadline's: the context's own, or
// gRPC's status for it, as etcd's client returns it.
func timedOut(msg string) bool {
	return strings.Contains(msg, context.DeadlineExceeded.Error()) || strings.Contains(msg, "code = DeadlineExceeded")
}
