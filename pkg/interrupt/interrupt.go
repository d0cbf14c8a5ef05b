// Package interrupt ends a command's run on a stop signal and keeps which
// signal it was, so that the command can exit as a shell reports a process
// that signal ended (128 + its number: 130 for Ctrl-C, 143 for SIGTERM, 129
// for SIGHUP) after it has cleaned up. A script or a supervisor reads that
// status to tell a run cut short, and by what, from one that finished; a
// command that exits 0 or 1 instead hides it.
//
// signal.NotifyContext ends a context on a signal too, but its cause only
// names the signal in a message: the number is gone. NotifyContext here
// keeps the signal itself as the context's cause, an Error, and Status reads
// the exit status back from that cause or from any error wrapping it.
package interrupt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// Error is the cause of a context a signal NotifyContext caught ended.
type Error struct {
	Signal os.Signal
}

func (e Error) Error() string { return fmt.Sprintf("interrupted (signal: %v)", e.Signal) }

// NotifyContext is signal.NotifyContext keeping the signal itself as ctx's
// cause (an Error), for Status. Like it, it goes on catching sigs until stop
// is called, also after the first has ended ctx; stop gives the signals
// their default handling back (so a second Ctrl-C may end a clean-up that
// hangs) and cancels ctx, with no interrupt as its cause if none came.
func NotifyContext(parent context.Context, sigs ...os.Signal) (ctx context.Context, stop context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sigs...)
	go func() {
		select {
		case s := <-ch:
			cancel(Error{s})
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		cancel(nil)
	}
}

// StopSignals are the signals that stop a command's run as Ctrl-C does:
// SIGINT, SIGTERM and SIGHUP, unless SIGHUP was ignored when the command
// started. Uncaught, the hang-up of a closed terminal (an ssh session that
// dropped) ended the process at once: no clean-up, no summary of what it
// had done. But a command started under nohup (or by a service manager
// ignoring SIGHUP) is meant to outlive its terminal, and signal.Notify would
// install a handler for the ignored signal, so the hang-up nohup guards
// against would stop it.
func StopSignals() []os.Signal {
	sigs := []os.Signal{os.Interrupt, syscall.SIGTERM}
	if !signal.Ignored(syscall.SIGHUP) {
		sigs = append(sigs, syscall.SIGHUP)
	}
	return sigs
}

// OutliveBrokenPipe keeps a write to a stdout or stderr nobody reads any
// more from killing the process. Under `cmd | tee out.txt`, the Ctrl-C that
// stops cmd ends tee too, and the Go runtime kills a program whose write to
// fd 1 or 2 meets a broken pipe with SIGPIPE (status 141) unless SIGPIPE is
// notified: a summary or a "stopping..." line did that, so the clean-up
// after the interrupt never ran and the run's status was not the
// interrupt's. Notified, such a write just fails with EPIPE, which the
// caller reports. Notify rather than signal.Ignore: an ignored signal stays
// ignored in the children a process starts, a notified one is back to its
// default there.
func OutliveBrokenPipe() {
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
}

// Status is the exit status of a run a signal ended, when err is (or wraps)
// the Error NotifyContext gave its context, as context.Cause returns it:
// 128 plus the signal's number. ok is false for any other err, nil included:
// nothing interrupted the run, and its own outcome decides its status.
func Status(err error) (status int, ok bool) {
	var in Error
	if !errors.As(err, &in) {
		return 0, false
	}
	if s, isNum := in.Signal.(syscall.Signal); isNum {
		return 128 + int(s), true
	}
	// A signal without a number (only a hand-made Error has one on the
	// systems this runs on) is taken for Ctrl-C, the usual interrupt.
	return 130, true
}
