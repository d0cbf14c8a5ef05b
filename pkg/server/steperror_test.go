package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/telemetry"
)

// A stop's failed step is a *StepError naming it, so that a host can tell a
// deregistration that ran out of time (cmd/shanhai's embedded run, whose
// etcd closes right after, does not count it) from a failure that loses
// something.
func TestFailedDeregistrationIsNamedStepError(t *testing.T) {
	s, _ := newTestServer(t, Options{ShutdownTimeout: 5 * time.Second, Deregister: func(ctx context.Context) error {
		<-ctx.Done() // an etcd that never answers the revoke
		return ctx.Err()
	}})
	err := s.StartFailed(errors.New("no listener"))
	var step *StepError
	if !errors.As(err, &step) || step.Step != DeregisterStep || !errors.Is(step.Err, context.DeadlineExceeded) {
		t.Fatalf("StartFailed = %v, want a %q *StepError of a deadline", err, DeregisterStep)
	}
	if want := "deregister: " + context.DeadlineExceeded.Error(); step.Error() != want {
		t.Errorf("step error %q, want %q as before", step.Error(), want)
	}
}

// A host that reads a child's log (cmd/shanhai's -processes) tells a late
// deregistration from any other failed stop by these attributes, not by the
// lines' wording: the step's line names it and whether it timed out, and
// RunService's last line lists the failed steps beside the count of other
// errors in Run's error.
func TestFailedStopIsLoggedWithStableAttributes(t *testing.T) {
	s, logs := newTestServer(t, Options{ShutdownTimeout: 5 * time.Second, Deregister: func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}})
	stopErr := s.StartFailed(errors.New("no listener"))
	var stepLine map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec[StepKey] == DeregisterStep && rec["level"] == "ERROR" {
			stepLine = rec
		}
	}
	if stepLine == nil || stepLine[TimedOutKey] != true {
		t.Fatalf("no ERROR line with %s=%q and %s=true; log:\n%s", StepKey, DeregisterStep, TimedOutKey, logs.String())
	}

	var buf strings.Builder
	err := Part{Logger: telemetry.NewLogger(&buf, slog.LevelInfo)}.RunService(t.Context(), Wiring{Name: "demo",
		New: func(context.Context, *slog.Logger, *telemetry.Provider) (Runner, error) {
			return runnerFunc(func(context.Context) error { return stopErr }), nil
		}})
	if err == nil {
		t.Fatal("RunService = nil, want Run's error")
	}
	var last struct {
		Steps []LoggedStep `json:"failed_steps"`
		Other *int         `json:"other_errors"`
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatal(err)
	}
	want := []LoggedStep{{Step: DeregisterStep, TimedOut: true}}
	if !slices.Equal(last.Steps, want) || last.Other == nil || *last.Other != 1 {
		t.Errorf("last line %s: want %s %v and %s 1 (the start's failure)", lines[len(lines)-1], FailedStepsKey, want, OtherErrorsKey)
	}
}

// A Run that failed before any shutdown step (its start, say) is logged
// with its error alone: no empty failed_steps beside a count of one.
func TestFailedStartIsLoggedWithoutSteps(t *testing.T) {
	var buf strings.Builder
	err := Part{Logger: telemetry.NewLogger(&buf, slog.LevelInfo)}.RunService(t.Context(), Wiring{Name: "demo",
		New: func(context.Context, *slog.Logger, *telemetry.Provider) (Runner, error) {
			return runnerFunc(func(context.Context) error { return errors.New("listen: address in use") }), nil
		}})
	if err == nil {
		t.Fatal("RunService = nil, want Run's error")
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var last map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatal(err)
	}
	if _, ok := last[FailedStepsKey]; ok || last[OtherErrorsKey] != nil || last["err"] != "listen: address in use" {
		t.Errorf("last line %s: want the error alone, no %s or %s", lines[len(lines)-1], FailedStepsKey, OtherErrorsKey)
	}
}

// FailedSteps finds the steps however Run's error holds them: wrapped,
// joined, or both, and counts every other leaf; nil holds nothing.
func TestFailedStepsWalksWrappedAndJoinedErrors(t *testing.T) {
	late := &StepError{Step: DeregisterStep, Err: fmt.Errorf("revoke: %w", context.DeadlineExceeded)}
	hook := &StepError{Step: "outbox", Err: errors.New("not flushed")}
	serve := errors.New("serve: broken pipe")
	for _, tc := range []struct {
		name  string
		err   error
		steps []LoggedStep
		other int
	}{
		{"nil", nil, nil, 0},
		{"not a step", serve, nil, 1},
		{"wrapped step", fmt.Errorf("stop: %w", late), []LoggedStep{{DeregisterStep, true}}, 0},
		{"joined", errors.Join(hook, serve, late), []LoggedStep{{"outbox", false}, {DeregisterStep, true}}, 1},
		{"wrapped join", fmt.Errorf("run: %w", errors.Join(late, fmt.Errorf("start: %w", serve))), []LoggedStep{{DeregisterStep, true}}, 1},
		{"two %w", fmt.Errorf("%w; %w", hook, late), []LoggedStep{{"outbox", false}, {DeregisterStep, true}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			steps, other := FailedSteps(tc.err)
			if !slices.Equal(steps, tc.steps) || other != tc.other {
				t.Errorf("FailedSteps = %v, %d; want %v, %d", steps, other, tc.steps, tc.other)
			}
		})
	}
}
