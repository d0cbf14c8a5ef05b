//go:build unix

package interrupt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

// guard catches sig in this test process for the length of the test, so
// that a NotifyContext that failed to catch it fails the test instead of
// ending (or, for SIGHUP, hanging up) the whole test binary.
func guard(t *testing.T, sig os.Signal) <-chan os.Signal {
	t.Helper()
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sig)
	t.Cleanup(func() { signal.Stop(ch) })
	return ch
}

// A real signal sent to this process ends the context, and its cause gives
// the status a shell reports for a process that signal ended: the number is
// what the callers (loadgen, cmd/shanhai) exit with, so a script can tell a
// Ctrl-C from a closed terminal or a supervisor's stop.
func TestSignalEndsTheContextWithItsStatus(t *testing.T) {
	for _, c := range []struct {
		sig    syscall.Signal
		status int
	}{{syscall.SIGINT, 130}, {syscall.SIGHUP, 129}, {syscall.SIGTERM, 143}, {syscall.SIGUSR1, 138}} {
		t.Run(c.sig.String(), func(t *testing.T) {
			guard(t, c.sig)
			ctx, stop := NotifyContext(context.Background(), c.sig)
			defer stop()
			if err := syscall.Kill(os.Getpid(), c.sig); err != nil {
				t.Fatal(err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(30 * time.Second): // hang guard only
				t.Fatalf("%v sent, the context still not done after 30 s", c.sig)
			}
			cause := context.Cause(ctx)
			if got, ok := Status(cause); !ok || got != c.status {
				t.Fatalf("Status(%v) = %d, %v; want %d, true", cause, got, ok, c.status)
			}
			var in Error
			if !errors.As(cause, &in) || in.Signal != c.sig {
				t.Fatalf("cause %v (%T), want an Error for %v", cause, cause, c.sig)
			}
			// cmd/shanhai returns the cause wrapped in its own message.
			wrapped := fmt.Errorf("%w during start-up", cause)
			if got, ok := Status(wrapped); !ok || got != c.status {
				t.Fatalf("Status(%v) = %d, %v; want %d, true", wrapped, got, ok, c.status)
			}
		})
	}
}

// Only the signals NotifyContext was given end its context: a run that
// catches SIGINT and SIGTERM (loadgen) must not stop on another one some
// other part of the process listens for.
func TestOtherSignalLeavesTheContext(t *testing.T) {
	other := guard(t, syscall.SIGUSR2)
	ctx, stop := NotifyContext(context.Background(), syscall.SIGUSR1)
	defer stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	select {
	case <-other:
	case <-time.After(30 * time.Second): // hang guard only
		t.Fatal("SIGUSR2 sent, not delivered within 30 s")
	}
	// The one it listens for still ends it, as that signal.
	guard(t, syscall.SIGUSR1)
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	<-ctx.Done()
	if got, ok := Status(context.Cause(ctx)); !ok || got != 128+int(syscall.SIGUSR1) {
		t.Fatalf("after SIGUSR2 then SIGUSR1: status %d, %v; want %d (SIGUSR1's), true", got, ok, 128+int(syscall.SIGUSR1))
	}
}

// A context stop (the run's own end) or its parent ended is no
// interruption: the run's own outcome must decide its exit status, not a
// made-up signal's.
func TestNoSignalNoStatus(t *testing.T) {
	ctx, stop := NotifyContext(context.Background(), syscall.SIGUSR1)
	stop()
	if got, ok := Status(context.Cause(ctx)); ok {
		t.Fatalf("after stop: status %d, want none (cause %v)", got, context.Cause(ctx))
	}
	parent, cancel := context.WithCancel(context.Background())
	ctx, stop = NotifyContext(parent, syscall.SIGUSR1)
	defer stop()
	cancel()
	<-ctx.Done()
	if got, ok := Status(context.Cause(ctx)); ok {
		t.Fatalf("parent canceled: status %d, want none (cause %v)", got, context.Cause(ctx))
	}
	if _, ok := Status(nil); ok {
		t.Fatal("Status(nil) reports an interruption")
	}
	if _, ok := Status(errors.New("interrupted (signal: interrupt)")); ok {
		t.Fatal("an error that only says interrupted is taken for one")
	}
}

// brokenStdoutChild is the environment variable that makes this test binary,
// run again by TestOutliveBrokenPipe, the child whose stdout nobody reads.
const brokenStdoutChild = "INTERRUPT_TEST_BROKEN_STDOUT"

// A write to a stdout whose reader is gone fails (EPIPE) after
// OutliveBrokenPipe, where the Go runtime would kill the process with
// SIGPIPE (the parent would see "signal: broken pipe"): the child says on
// stderr how the write ended and exits 0.
func TestOutliveBrokenPipe(t *testing.T) {
	if os.Getenv(brokenStdoutChild) != "" {
		OutliveBrokenPipe()
		_, err := fmt.Println("to nobody")
		fmt.Fprintf(os.Stderr, "write failed with EPIPE: %v (%v)\n", errors.Is(err, syscall.EPIPE), err)
		os.Exit(0)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close() // the reader is gone before the child writes
	cmd := exec.Command(os.Args[0], "-test.run=^TestOutliveBrokenPipe$")
	cmd.Env = append(os.Environ(), brokenStdoutChild+"=1")
	cmd.Stdout = w
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Run()
	w.Close()
	if want := "write failed with EPIPE: true"; err != nil || !strings.Contains(stderr.String(), want) {
		t.Fatalf("child writing to a broken stdout: %v, want exit status 0 and %q on stderr; stderr:\n%s",
			err, want, stderr.String())
	}
}

// stopSignalsChild is the environment variable that makes this test binary,
// run again by TestStopSignalsLeaveAnIgnoredHangUpAlone, print StopSignals.
const stopSignalsChild = "INTERRUPT_TEST_STOP_SIGNALS"

// SIGHUP stops a run as Ctrl-C does, unless the command started with it
// ignored (nohup): then catching it would undo what nohup is for. Each case
// is a fresh process, started as nohup starts one, because only a start
// decides it: the test used to ignore SIGHUP in this process, which no
// signal.Reset undoes, so it failed under -count=2, and under a nohup'ed
// go test, whose test binary starts with SIGHUP ignored.
func TestStopSignalsLeaveAnIgnoredHangUpAlone(t *testing.T) {
	if os.Getenv(stopSignalsChild) != "" {
		fmt.Printf("stop signals: %v\n", StopSignals())
		os.Exit(0)
	}
	// Caught here, SIGHUP starts at its default in a child, even when this
	// process started with it ignored.
	guard(t, syscall.SIGHUP)
	self := []string{os.Args[0], "-test.run=^TestStopSignalsLeaveAnIgnoredHangUpAlone$"}
	// sh's trap '' leaves the program it execs with SIGHUP ignored, as nohup does.
	underNohup := append([]string{"sh", "-c", `trap '' HUP; exec "$@"`, "sh"}, self...)
	for _, c := range []struct {
		name string
		argv []string
		want string
	}{
		{"started from a terminal", self, "stop signals: [interrupt terminated hangup]\n"},
		{"started with SIGHUP ignored", underNohup, "stop signals: [interrupt terminated]\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(c.argv[0], c.argv[1:]...)
			cmd.Env = append(os.Environ(), stopSignalsChild+"=1")
			out, err := cmd.Output()
			if err != nil || !strings.Contains(string(out), c.want) {
				t.Fatalf("%v: %v, output %q; want %q", c.argv, err, out, c.want)
			}
		})
	}
}
