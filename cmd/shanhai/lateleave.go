package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"

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
	switch {
	case err == nil:
		return nil
	case part.Hosted():
		if p.Infra != nil && onlyLateDeregistrations(err) {
			return p.lateLeave(name, err)
		}
		return err
	}
	late, plain := childLateLeave(err, log, from)
	switch {
	case late && p.Infra != nil:
		return p.lateLeave(name, err)
	case plain != "":
		return fmt.Errorf("%w; its log has a line that is not a pkg/server record: %q", err, plain)
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

// onlyLateDeregistrations tells whether err is made only of pkg/server
// deregistration steps that ran out of time.
func onlyLateDeregistrations(err error) bool {
	steps, other := server.FailedSteps(err)
	return other == 0 && onlyLate(steps)
}

// onlyLate tells whether steps, one at least, are all deregistrations that
// timed out.
func onlyLate(steps []server.LoggedStep) bool {
	for _, step := range steps {
		if step.Step != server.DeregisterStep || !step.TimedOut {
			return false
		}
	}
	return len(steps) > 0
}

// childLateLeave is onlyLateDeregistrations for a child process, whose
// stop error is only its exit status: 1 says its Run failed and logged why
// (pkg/server.ExitCode), so the log lines this stop wrote (from offset
// from) tell. It reads pkg/server's attributes, not its wording: late holds
// when the only errors are failed steps' lines (server.StepKey) of a
// deregistration that timed out and RunService's last line
// (server.FailedStepsKey) listing only those. Any other error line, a line
// that is not JSON, or a log that cannot be read leaves a failed stop; the
// first line that is not JSON is returned as plain, a reason nothing else
// reports (a main's fmt.Fprintln before os.Exit(1), a panic's first line).
// -processes exited 1 on the stop the embedded run let through.
func childLateLeave(err error, log string, from int64) (late bool, plain string) {
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return false, ""
	}
	f, err := os.Open(log)
	if err != nil {
		return false, ""
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return false, ""
	}
	lateSteps, other := 0, false
	lines := bufio.NewScanner(f)
	lines.Buffer(nil, 1<<20)
	for lines.Scan() {
		line := bytes.TrimSpace(lines.Bytes())
		if len(line) == 0 {
			continue
		}
		var rec map[string]json.RawMessage
		if json.Unmarshal(line, &rec) != nil {
			if plain == "" {
				plain = string(line[:min(len(line), 200)])
			}
			other = true
			continue
		}
		if level(rec) != slog.LevelError.String() {
			continue
		}
		switch {
		case rec[server.StepKey] != nil:
			var step server.LoggedStep
			if json.Unmarshal(rec[server.StepKey], &step.Step) != nil || json.Unmarshal(rec[server.TimedOutKey], &step.TimedOut) != nil ||
				!onlyLate([]server.LoggedStep{step}) {
				other = true
			}
			lateSteps++
		case rec[server.FailedStepsKey] != nil:
			var steps []server.LoggedStep
			var others int
			if json.Unmarshal(rec[server.FailedStepsKey], &steps) != nil || json.Unmarshal(rec[server.OtherErrorsKey], &others) != nil ||
				others != 0 || !onlyLate(steps) {
				other = true
			}
		default:
			other = true
		}
	}
	late = exit.ExitCode() == 1 && lines.Err() == nil && !other && lateSteps > 0
	return late, plain
}

// level is a log record's level, as slog's JSON handler writes it.
func level(rec map[string]json.RawMessage) string {
	var l string
	_ = json.Unmarshal(rec[slog.LevelKey], &l)
	return l
}
