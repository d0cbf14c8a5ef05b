package server

import (
	"context"
	"errors"
)

// The attributes a stop's failures are logged with, for a host that reads a
// child's log to tell what its exit status 1 was made of (cmd/shanhai's
// -processes). Hosts read these, not the messages, whose wording may change.
const (
	// StepKey names the step on each "shutdown step failed" line.
	StepKey = "step"
	// TimedOutKey is true on a failed step's line when the step ran out of
	// its time (StepError.TimedOut).
	TimedOutKey = "timed_out"
	// FailedStepsKey is on RunService's line for a Run that failed in one
	// shutdown step at least: those steps, as []LoggedStep. A line without
	// it is a Run that failed in no step.
	FailedStepsKey = "failed_steps"
	// OtherErrorsKey is beside FailedStepsKey: how many errors in Run's
	// error are not failed steps (a serve or start failure, say).
	OtherErrorsKey = "other_errors"
)

// TimedOut tells whether the step ran out of its time rather than failed.
func (e *StepError) TimedOut() bool { return errors.Is(e.Err, context.DeadlineExceeded) }

// LoggedStep is a failed step as RunService logs it under FailedStepsKey.
type LoggedStep struct {
	Step     string `json:"step"`
	TimedOut bool   `json:"timed_out"`
}

// FailedSteps splits err's tree into its failed shutdown steps and a count of
// the other errors at its leaves, so that a host can tell a stop that failed
// only in steps it can forgive from one that lost something.
func FailedSteps(err error) (steps []LoggedStep, other int) {
	var walk func(error)
	walk = func(err error) {
		if step, ok := err.(*StepError); ok {
			steps = append(steps, LoggedStep{Step: step.Step, TimedOut: step.TimedOut()})
			return
		}
		switch e := err.(type) {
		case interface{ Unwrap() []error }:
			for _, err := range e.Unwrap() {
				walk(err)
			}
		case interface{ Unwrap() error }:
			if next := e.Unwrap(); next != nil {
				walk(next)
				return
			}
			other++
		case nil:
		default:
			other++
		}
	}
	walk(err)
	return steps, other
}
