//go:build unix

package main

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Two runs started at once on blocks that overlap (here -port P and P+2,
// which share P+2 to P+4 and P+1002 to P+1004) both found the ports free,
// split them between their parts and both stopped: no run was left. Now the
// ports are locked before anything starts, so one run comes up and keeps
// running, and the other stops at once, exit status 1, naming the lock and
// the pid of the run that holds it, with no data directory left. The test
// runs this test binary as the program (main, embedded) twice at once.
func TestTwoRunsOnOverlappingPortsLeaveOneRunning(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the embedded platform in child processes")
	}
	t.Parallel() // waits on its child processes; see parallelNote
	// $TMPDIR of both runs: the port locks' directory is in it.
	tmp := t.TempDir()
	port := freePortBlock(t)
	runs := []*exec.Cmd{
		asProgram("-port "+strconv.Itoa(port), "TMPDIR="+tmp, "PULSAR_URL=", "PULSAR_ADMIN_URL="),
		asProgram("-port "+strconv.Itoa(port+2), "TMPDIR="+tmp, "PULSAR_URL=", "PULSAR_ADMIN_URL="),
	}
	type ended struct {
		i   int
		err error
	}
	stderr := make([]*bytes.Buffer, len(runs))
	up, exited := make(chan int, len(runs)), make(chan ended, len(runs))
	for i, run := range runs {
		stderr[i] = new(bytes.Buffer)
		run.Stderr = stderr[i]
		pipe, err := run.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := run.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { run.Process.Kill() }) // when the test fails
		go func() {
			var out bytes.Buffer
			buf := make([]byte, 4096)
			for {
				n, err := pipe.Read(buf)
				out.Write(buf[:n])
				if bytes.Contains(out.Bytes(), []byte("Ctrl-C stops everything.")) {
					up <- i
					out.Reset()
				}
				if err != nil {
					break
				}
			}
			exited <- ended{i, run.Wait()}
		}()
	}

	var first ended
	select {
	case first = <-exited:
	case i := <-up:
		t.Fatalf("run %d is up while the other still runs: each must have its ports or stop first", i)
	case <-time.After(2 * time.Minute): // hang guard only
		t.Fatal("neither run ended within 2 minutes")
	}
	winner := 1 - first.i
	var exit *exec.ExitError
	if !errors.As(first.err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("the refused run ended with %v, want exit status 1; stderr:\n%s", first.err, stderr[first.i])
	}
	// Either way P+2: the lowest port of the second block, the first one
	// both want.
	lock := filepath.Join(tmp, "shanhai-ports", strconv.Itoa(port+2))
	want := "another shanhai run holds " + lock + " (pid " + strconv.Itoa(runs[winner].Process.Pid) + ")"
	if !strings.Contains(stderr[first.i].String(), want) {
		t.Fatalf("the refused run's message does not say %q:\n%s", want, stderr[first.i])
	}
	select {
	case i := <-up:
		if i != winner {
			t.Fatalf("the refused run %d printed a banner", i)
		}
	case e := <-exited:
		t.Fatalf("the other run stopped too: %v; stderr:\n%s", e.err, stderr[e.i])
	case <-time.After(2 * time.Minute): // hang guard only
		t.Fatal("the other run was not up within 2 minutes")
	}
	gateway := port
	if winner == 1 {
		gateway = port + 2
	}
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(gateway) + "/readyz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the run left running: gateway /readyz %v, %v", resp, err)
	}
	resp.Body.Close()
	if left, _ := filepath.Glob(filepath.Join(tmp, "shanhai-run-*")); len(left) != 1 {
		t.Fatalf("data directories while one run runs: %v, want its one", left)
	}

	if err := runs[winner].Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-exited:
		if e.err != nil {
			t.Fatalf("the run stopped with %v; stderr:\n%s", e.err, stderr[e.i])
		}
	case <-time.After(time.Minute): // hang guard only
		t.Fatal("the run still runs a minute after Ctrl-C")
	}
	if locks, _ := os.ReadDir(filepath.Join(tmp, "shanhai-ports")); len(locks) != 0 {
		t.Fatalf("lock files left after both runs ended: %d", len(locks))
	}
}
