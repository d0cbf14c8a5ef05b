package main

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Lab 1 has the reader kill payment under -processes: the run stops and
// names that part's log, so the log must still be there once the run has
// exited. The run used to remove its temporary data directory, logs and
// all, on the way out. The test runs this test binary as the program (main
// with -processes on a free port block) and kills payment as the lab does.
func TestDeadPartKeepsItsLog(t *testing.T) {
	if args := os.Getenv("SHANHAI_TEST_MAIN"); args != "" {
		os.Args = append([]string{"shanhai"}, strings.Fields(args)...)
		main()
		return
	}
	if testing.Short() {
		t.Skip("builds the five binaries")
	}
	bin := buildBinaries(t)
	port := freePortBlock(t)
	run := exec.Command(os.Args[0], "-test.run=^TestDeadPartKeepsItsLog$")
	run.Env = append(os.Environ(),
		"SHANHAI_TEST_MAIN=-processes -bin "+bin+" -port "+strconv.Itoa(port),
		"TMPDIR="+t.TempDir(), // where the run makes its data directory
		"PULSAR_URL=")
	var stderr bytes.Buffer
	run.Stderr = &stderr
	stdout, err := run.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	defer run.Process.Kill() // when the test fails; the children die with it (Pdeathsig)

	ready := make(chan bool, 1)
	go func() {
		// Reads to the end: the run must not block on a full pipe.
		found := false
		for lines := bufio.NewScanner(stdout); lines.Scan(); {
			if !found && lines.Text() == "Ctrl-C stops everything." {
				found = true
				ready <- true
			}
		}
		if !found {
			ready <- false
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			_ = run.Wait()
			t.Fatalf("the run ended before its banner: %s", stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("no banner within 60 s")
	}
	payment := childNamed(t, run.Process.Pid, "payment")
	if err := syscall.Kill(payment, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	waited := make(chan error, 1)
	go func() { waited <- run.Wait() }()
	select {
	case err = <-waited:
	case <-time.After(60 * time.Second):
		t.Fatal("the run still runs 60 s after payment was killed")
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("run ended with %v, want exit status 1; stderr:\n%s", err, stderr.String())
	}
	m := regexp.MustCompile(`payment exited on its own \(log: ([^)]+)\)`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("stderr does not name payment and its log:\n%s", stderr.String())
	}
	log, err := os.ReadFile(m[1])
	if err != nil {
		t.Fatalf("the log the run named is gone: %v", err)
	}
	if !bytes.Contains(log, []byte(`"msg":"shutdown requested"`)) {
		t.Fatalf("%s does not show payment stopping:\n%s", m[1], log)
	}
}

// freePortBlock finds a -port whose ten ports (HTTP and pprof) are free now.
func freePortBlock(t *testing.T) int {
	t.Helper()
	for range 50 {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		httpPorts, admin, err := portBlock(port)
		if err == nil && checkPorts(httpPorts, admin) == nil {
			return port
		}
	}
	t.Fatal("no free block of ports in 50 tries")
	return 0
}

// childNamed is the pid of parent's child process whose command is name.
func childNamed(t *testing.T, parent int, name string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		comm, rest, ok := strings.Cut(string(stat), ") ")
		fields := strings.Fields(rest)
		if !ok || len(fields) < 2 || comm[strings.IndexByte(comm, '(')+1:] != name {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid == parent {
			return pid
		}
	}
	t.Fatalf("no child process %q of pid %d", name, parent)
	return 0
}
