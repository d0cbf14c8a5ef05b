//go:build unix

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A run Ctrl-C, SIGTERM or SIGHUP cuts short still prints its summary, and exits 128 + the signal's number: it exited
// 0, as a run that sent its whole -duration does, so nothing but a careful look at its rates told a script its figures
// were not a complete run's. SIGHUP (the terminal of a `loadgen > load.json` closed) killed it with no summary. The
// test runs this test binary as loadgen against a fake gateway and signals it once it is sending.
func TestInterruptedRunExitsWithTheSignalsStatus(t *testing.T) {
	// loadgen catches SIGHUP only if it did not start with it ignored (nohup), and a child inherits an ignored
	// signal: under a nohup'ed `go test` the run rightly ignored the SIGHUP, and the subtest waited for a 1 h run
	// until the test binary's timeout, leaving that run behind. A signal this process catches starts at its default
	// in the child.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	gw := fakeGateway(0)
	defer gw.Close()
	for _, c := range []struct {
		sig    syscall.Signal
		status int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}, {syscall.SIGHUP, 129}} {
		t.Run(c.sig.String(), func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-target", gw.URL, "-rate", "5", "-duration", "1h", "-users", "1",
				"-login-ratio", "0", "-drain", "0s", "-json")
			cmd.Env = append(os.Environ(), "LOADGEN_TEST_MAIN=1")
			var out bytes.Buffer
			cmd.Stdout = &out
			said, readDone := untilSending(t, cmd)
			if err := cmd.Process.Signal(c.sig); err != nil {
				t.Fatal(err)
			}
			<-readDone
			err := cmd.Wait()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != c.status {
				t.Fatalf("loadgen after %v: %v, want exit status %d; status output:\n%s", c.sig, err, c.status, said())
			}
			var sum Summary
			if err := json.Unmarshal(out.Bytes(), &sum); err != nil || sum.Sent == 0 {
				t.Fatalf("no summary of what it sent (%v): %q", err, out.String())
			}
		})
	}
}

// `loadgen ... | tee load.txt` and Ctrl-C: the Ctrl-C ends tee too, and the summary written to the dead pipe made
// the Go runtime kill loadgen with SIGPIPE, so the shell reported 141, not the 130 of an interrupted run. The test
// closes loadgen's stdout once it sends, as tee's end does, then interrupts it.
func TestInterruptedRunWhoseStdoutReaderWentExitsWithTheSignalsStatus(t *testing.T) {
	gw := fakeGateway(0)
	defer gw.Close()
	cmd := exec.Command(os.Args[0], "-target", gw.URL, "-rate", "5", "-duration", "1h", "-users", "1",
		"-login-ratio", "0", "-drain", "0s")
	cmd.Env = append(os.Environ(), "LOADGEN_TEST_MAIN=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	said, readDone := untilSending(t, cmd)
	stdout.Close() // the reader is gone before the summary is written
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	<-readDone
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 130 {
		t.Fatalf("loadgen after Ctrl-C with its stdout's reader gone: %v, want exit status 130; status output:\n%s", err, said())
	}
}

// A run that sent its whole -duration but whose summary could not be written, its stdout's reader gone
// (`loadgen | head -1`, or tee ended by a Ctrl-C in another pane), fails: exit status 1 and the reason on stderr.
// Since SIGPIPE is notified (for the interrupted run's 130 above) the runtime no longer kills it there, and the
// table's write errors were dropped, so it exited 0 as if its figures had been delivered.
func TestFinishedRunWhoseSummaryCouldNotBeWrittenFails(t *testing.T) {
	gw := fakeGateway(0)
	defer gw.Close()
	cmd := exec.Command(os.Args[0], "-target", gw.URL, "-rate", "5", "-duration", "200ms", "-users", "1",
		"-login-ratio", "0", "-drain", "0s")
	cmd.Env = append(os.Environ(), "LOADGEN_TEST_MAIN=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill() // when the test fails
	stdout.Close()           // the reader is gone before the summary is written
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(stderr.String(), "write summary") {
		t.Fatalf("loadgen whose summary met a broken pipe: %v, want exit status 1 and \"write summary\" on stderr; stderr:\n%s",
			err, stderr.String())
	}
}

// untilSending starts cmd (loadgen, its stderr not yet set) and returns once its live line ("... in flight", once a
// second while it sends) says the run is under way. said is everything it wrote to stderr; done is closed when that
// ended. A failed start or a run that ends or stays silent before it sends fails the test; the cleanup kills cmd
// when the test fails before it has ended.
func untilSending(t *testing.T, cmd *exec.Cmd) (said func() string, done <-chan struct{}) {
	t.Helper()
	status, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	var (
		mu     sync.Mutex
		text   strings.Builder
		live   = make(chan struct{})
		closed sync.Once
	)
	said = func() string {
		mu.Lock()
		defer mu.Unlock()
		return text.String()
	}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 4096)
		for {
			n, err := status.Read(buf)
			mu.Lock()
			text.Write(buf[:n])
			if strings.Contains(text.String(), "in flight") {
				closed.Do(func() { close(live) })
			}
			mu.Unlock()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					t.Errorf("reading its status output: %v", err)
				}
				return
			}
		}
	}()
	select {
	case <-live:
	case <-readDone:
		t.Fatalf("loadgen ended before it sent: %s", said())
	case <-time.After(30 * time.Second): // hang guard only
		t.Fatal("no live line within 30 s")
	}
	return said, readDone
}
