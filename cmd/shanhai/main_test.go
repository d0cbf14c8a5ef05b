package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/freeport"
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
	t.Parallel() // waits on its child process; see parallelNote
	bin := buildBinaries(t)
	port := freePortBlock(t)
	run := asProgram("-processes -bin "+bin+" -port "+strconv.Itoa(port),
		"TMPDIR="+t.TempDir(), // where the run makes its data directory
		"PULSAR_URL=")
	_, stderr, _ := startUntilUp(t, run) // killed when the test fails; the children die with it (Pdeathsig)
	payment := childNamed(t, run.Process.Pid, "payment")
	if err := syscall.Kill(payment, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	waited := make(chan error, 1)
	go func() { waited <- run.Wait() }()
	var err error
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

// asProgram runs this test binary as the program: TestDeadPartKeepsItsLog's
// first lines call main with args, in this environment plus env.
//
// parallelNote: the tests that mostly wait on such a child (its start-up,
// a timeout it must reach, a build) run in parallel with each other and
// with TestFork. Each child has its own data directory and port block, and
// gets the environment through asProgram, which reads it only once the
// sequential tests (some of which t.Setenv) are over.
func asProgram(args string, env ...string) *exec.Cmd {
	run := exec.Command(os.Args[0], "-test.run=^TestDeadPartKeepsItsLog$")
	run.Env = append(append(os.Environ(), "SHANHAI_TEST_MAIN="+args), env...)
	return run
}

// freePortBlock finds a -port whose ten ports (HTTP and pprof) are free now,
// below the ephemeral range: the run refuses a block in it (outsideEphemeral),
// where the kernel's free ports (freePort) are. A test that also runs at
// -port plus some offsets names them, and every one of their blocks is
// checked: checking only the first let a port of the others' be taken.
func freePortBlock(t *testing.T, offsets ...int) int {
	t.Helper()
	const bottom = 10000
	span := slices.Max(append(offsets, 0)) // the last block's offset
	top := 30000 - span
	if lo, _, ok := ephemeralRange(); ok {
		top = min(top, lo-1005-span)
	}
	free := func(port int) bool {
		httpPorts, admin, err := portBlock(port)
		return err == nil && checkPorts(httpPorts, admin) == nil
	}
	for range 50 {
		port := bottom
		if top > bottom {
			port += rand.IntN(top - bottom)
		}
		ok := free(port)
		for _, off := range offsets {
			ok = ok && free(port+off)
		}
		if ok {
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

// A second Ctrl-C ends a run whose start-up was interrupted and whose
// shutdown hangs (the bridge, waiting for a Pulsar that never answers),
// as the README promises; it used to be caught like the first until the
// run was ready, so the run ended only when its parts' stop gave up. The
// test runs this test binary as the program (main, embedded) and wants it
// ended by the second SIGINT, not exited on its own (status 130).
func TestSecondCtrlCEndsAnInterruptedStartUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the embedded platform in a child process")
	}
	t.Parallel() // waits on its child process; see parallelNote
	data := t.TempDir()
	run := asProgram("-port "+strconv.Itoa(freePortBlock(t))+" -data "+data,
		"PULSAR_URL=pulsar://"+silentListener(t), "PULSAR_ADMIN_URL=")
	var stderr bytes.Buffer
	run.Stderr = &stderr
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	defer run.Process.Kill() // when the test fails
	waited := make(chan error, 1)
	go func() { waited <- run.Wait() }()

	// The parts' logs are opened after the signal handler is set: from
	// then on the start-up is under way.
	bridgeLog := filepath.Join(data, "logs", "bridge.log")
	guard := time.After(60 * time.Second) // hang guard only
	for {
		if _, err := os.Stat(bridgeLog); err == nil {
			break
		}
		select {
		case err := <-waited:
			t.Fatalf("the run ended before its start-up was under way: %v", err)
		case <-guard:
			t.Fatalf("no %s within 60 s", bridgeLog)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := run.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	// Repeated, because the second only ends the run once the first was
	// handled; before that it is caught like the first.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var err error
wait:
	for {
		select {
		case err = <-waited:
			break wait
		case <-tick.C:
			_ = run.Process.Signal(syscall.SIGINT)
		case <-time.After(60 * time.Second): // hang guard only
			t.Fatal("the run still runs 60 s after the first Ctrl-C")
		}
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("run ended with %v; stderr:\n%s", err, stderr.String())
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGINT {
		t.Fatalf("run ended with %v, want it ended by the second SIGINT; stderr:\n%s", err, stderr.String())
	}
}

// A variable set for make run reaches every part (README), LOG_LEVEL too:
// `LOG_LEVEL=debug make run` logs at debug, as -log-level debug does. The
// run used to hand every part its -log-level, whose default info replaced
// the variable. The test runs this test binary as the program (main with
// -measure: start, measure, stop) and reads a part's log.
func TestLogLevelFromTheEnvironmentReachesTheParts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the embedded platform in a child process")
	}
	t.Parallel() // waits on its child process; see parallelNote
	data := t.TempDir()
	run := asProgram("-measure -port "+strconv.Itoa(freePortBlock(t))+" -data "+data,
		"LOG_LEVEL=debug", "PULSAR_URL=", "PULSAR_ADMIN_URL=")
	if out, err := run.CombinedOutput(); err != nil {
		t.Fatalf("the run: %v\n%s", err, out)
	}
	log, err := os.ReadFile(filepath.Join(data, "logs", "order.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(log, []byte(`"level":"DEBUG"`)) {
		t.Fatalf("LOG_LEVEL=debug, but order.log has no debug line:\n%s", log)
	}
}

// A -log-level (or LOG_LEVEL) the parts refuse is refused before anything
// starts, naming the flag. The run checked it with slog's parser, which also
// takes "INFO" or "warn+1", then handed it to the parts, whose configuration
// takes exactly debug, info, warn or error: the embedded servers started,
// three parts failed on LOG_LEVEL, and the message pointed at their logs.
// A level in capitals is the same level and is taken.
func TestLogLevelThePartsRefuseStopsTheRunFirst(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the program in a child process")
	}
	data := t.TempDir()
	run := asProgram("-log-level warn+1 -port "+strconv.Itoa(freePortBlock(t))+" -data "+data,
		"PULSAR_URL=", "PULSAR_ADMIN_URL=")
	out, err := run.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("the run: %v, want exit status 1\n%s", err, out)
	}
	if !bytes.Contains(out, []byte(`-log-level "warn+1"`)) {
		t.Fatalf("the run's message does not name -log-level \"warn+1\":\n%s", out)
	}
	for _, name := range Names {
		if _, err := os.Stat(filepath.Join(data, "logs", name+".log")); err == nil {
			t.Fatalf("%s started (its log is there) on a log level it refuses:\n%s", name, out)
		}
	}
	if _, err := os.Stat(filepath.Join(data, "jetstream")); err == nil {
		t.Fatalf("the embedded servers started on a log level the parts refuse:\n%s", out)
	}

	if lvl, err := partsLogLevel("DEBUG"); err != nil || lvl != "debug" {
		t.Fatalf(`partsLogLevel("DEBUG") = %q, %v; want debug`, lvl, err)
	}
}

// -processes with a -bin that lacks the binaries (go run ./cmd/shanhai
// -processes: -bin defaults to the directory of go run's temporary
// executable) stops before anything starts, naming -bin and the binary,
// and leaves no data directory behind. It used to start the embedded
// servers, fail on the first fork, and keep the temporary data directory
// for logs that said nothing of it.
func TestProcessesWithoutTheBinariesStopsFirst(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the program in a child process")
	}
	tmp, bin := t.TempDir(), t.TempDir()
	run := asProgram("-processes -bin "+bin+" -port "+strconv.Itoa(freePortBlock(t)),
		"TMPDIR="+tmp, "PULSAR_URL=", "PULSAR_ADMIN_URL=")
	out, err := run.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("the run: %v, want exit status 1\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("-bin")) || !bytes.Contains(out, []byte(filepath.Join(bin, "user"))) {
		t.Fatalf("the run's message names neither -bin nor %s:\n%s", filepath.Join(bin, "user"), out)
	}
	left, err := filepath.Glob(filepath.Join(tmp, "shanhai-run-*"))
	if err != nil || len(left) > 0 {
		t.Fatalf("data directories left behind: %v (%v)\n%s", left, err, out)
	}
}

// A child that ends at start (-processes) is reported with why: the end of
// its log. Its error is only its exit status, so the run said "gateway
// ended before it was ready: exit status 2" and the reason (here the
// variable it refused) had to be dug out of the log; a hosted part's error
// is its Run's and says it already. The test runs this test binary as the
// program (main with -processes) with a certificate only the gateway reads
// and cannot open: a failure at start, past its configuration, which the
// run checks before anything starts (TestRefusedVariablesStartNothing).
func TestChildEndedAtStartIsReportedWithItsLogTail(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the five binaries")
	}
	t.Parallel() // waits on its child process; see parallelNote
	bin := buildBinaries(t)
	missing := filepath.Join(t.TempDir(), "missing")
	run := asProgram("-processes -bin "+bin+" -port "+strconv.Itoa(freePortBlock(t))+" -data "+t.TempDir(),
		"PULSAR_URL=", "PULSAR_ADMIN_URL=", "TLS_CERT_FILE="+missing+".pem", "TLS_KEY_FILE="+missing+".key")
	out, err := run.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("the run: %v, want exit status 1\n%s", err, out)
	}
	for _, want := range []string{"gateway ended before it was ready", missing + ".pem"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Fatalf("the run's message does not say %q:\n%s", want, out)
		}
	}
}

// logTail keeps the last lines of a log, never a line cut by its byte
// bound, and nothing of an empty or missing file.
func TestLogTail(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "part.log")
	var b strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&b, "line %d %s\n", i, strings.Repeat("x", 100))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimPrefix(logTail(path), "\n  "), "\n  ")
	if len(got) != 10 || !strings.HasPrefix(got[0], "line 990 ") || !strings.HasPrefix(got[9], "line 999 ") {
		t.Fatalf("logTail of 1000 lines = %q, want lines 990 to 999", got)
	}
	if err := os.WriteFile(path, []byte("a\nb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := logTail(path); got != "\n  a\n  b" {
		t.Fatalf("logTail of two lines = %q", got)
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := logTail(path); got != "" {
		t.Fatalf("logTail of an empty log = %q, want none", got)
	}
	if got := logTail(filepath.Join(dir, "missing.log")); got != "" {
		t.Fatalf("logTail of a missing log = %q, want none", got)
	}
}

// A -data with a ? in it is refused before anything starts. Each service's
// DATABASE_URL is sqlite://<data>/<service>.db, and pkg/database reads the
// file name up to a ?: all three services opened one SQLite file beside the
// directory (<data> cut at the ?), and order and payment stopped on "0001_init.sql
// was changed after it was applied", user's migration of the same name
// being there first, a message that sent the reader after the migrations.
func TestDataDirWithAQuestionMarkIsRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the program in a child process")
	}
	t.Parallel() // waits on its child process; see parallelNote
	parent := t.TempDir()
	data := filepath.Join(parent, "run?1")
	run := asProgram("-port "+strconv.Itoa(freePortBlock(t))+" -data "+data, "PULSAR_URL=", "PULSAR_ADMIN_URL=")
	out, err := run.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("the run: %v, want exit status 1\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("-data")) || !bytes.Contains(out, []byte("?")) {
		t.Fatalf("the run's message names neither -data nor the ?:\n%s", out)
	}
	if left, _ := os.ReadDir(parent); len(left) > 0 {
		var names []string
		for _, e := range left {
			names = append(names, e.Name())
		}
		t.Fatalf("the refused run left %v in %s:\n%s", names, parent, out)
	}
}

// The default -data is a new directory in $TMPDIR, so a ? there splits the
// services' SQLite file name as a ? in -data does: the run must refuse it
// before it makes anything, naming $TMPDIR.
func TestTempDirWithAQuestionMarkIsRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the program in a child process")
	}
	t.Parallel() // waits on its child process; see parallelNote
	tmp := filepath.Join(t.TempDir(), "tmp?1")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	run := asProgram("-port "+strconv.Itoa(freePortBlock(t)), "TMPDIR="+tmp, "PULSAR_URL=", "PULSAR_ADMIN_URL=")
	out, err := run.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("the run: %v, want exit status 1\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("TMPDIR")) || !bytes.Contains(out, []byte("?")) {
		t.Fatalf("the run's message names neither $TMPDIR nor the ?:\n%s", out)
	}
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Fatalf("the refused run left %d entries in %s:\n%s", len(left), tmp, out)
	}
}

// The embedded run refused for a PULSAR_URL nothing answers at (one still
// exported by an earlier eval "$(./scripts/deps.sh env)") has started
// nothing, so it leaves no temporary data directory behind and points at
// no logs. It kept the directory, an empty shanhai.log in it, and ended its
// message with "(logs in ...)" as if a part had failed: one more directory
// in $TMPDIR for every try.
func TestPulsarRefusalLeavesNoDataDir(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the program in a child process")
	}
	t.Parallel() // waits on its child process; see parallelNote
	port, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	run := asProgram("-port "+strconv.Itoa(freePortBlock(t)),
		"TMPDIR="+tmp, "PULSAR_URL=pulsar://127.0.0.1:"+strconv.Itoa(port), "PULSAR_ADMIN_URL=")
	out, err := run.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("the run: %v, want exit status 1\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("PULSAR_URL")) || bytes.Contains(out, []byte("logs in")) {
		t.Fatalf("the run's message should name PULSAR_URL and point at no logs:\n%s", out)
	}
	left, err := filepath.Glob(filepath.Join(tmp, "shanhai-run-*"))
	if err != nil || len(left) > 0 {
		t.Fatalf("data directories left behind: %v (%v)\n%s", left, err, out)
	}
}

// Closing the terminal make run runs in sends SIGHUP, which stops the run
// as Ctrl-C does: the parts drain, the servers stop and the temporary data
// directory goes. SIGHUP was not caught, so it ended the process at once:
// no part drained or left discovery, and every such run left its
// /tmp/shanhai-run-* behind, databases, logs and all. The test runs this
// test binary as the program (main, embedded) and hangs it up once it is up.
func TestHangUpStopsTheRunAsCtrlCDoes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the embedded platform in a child process")
	}
	t.Parallel() // waits on its child process; see parallelNote
	// The run catches SIGHUP only if it was not ignored when it started (so
	// that nohup works), and a child inherits an ignored signal: under a
	// test binary started by nohup, as a CI job may be, the run would start
	// with SIGHUP ignored and rightly go on. A signal this process catches
	// is reset to its default in a child, so the run starts as from a
	// terminal; Reset gives this process back its own disposition after.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP)
	defer signal.Reset(syscall.SIGHUP)
	tmp := t.TempDir()
	run := asProgram("-port "+strconv.Itoa(freePortBlock(t)), "TMPDIR="+tmp, "PULSAR_URL=", "PULSAR_ADMIN_URL=")
	out, stderr, _ := startUntilUp(t, run)
	if err := run.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- run.Wait() }()
	var err error
	select {
	case err = <-waited:
	case <-time.After(2 * time.Minute): // hang guard only
		t.Fatal("the run still runs 2 minutes after SIGHUP")
	}
	stdoutText := <-out
	if err != nil {
		t.Fatalf("the run ended with %v after SIGHUP, want a stop as for Ctrl-C; stdout:\n%s\nstderr:\n%s", err, stdoutText, stderr.String())
	}
	if !strings.Contains(stdoutText, "\nstopped\n") {
		t.Fatalf("the run did not say it stopped; stdout:\n%s\nstderr:\n%s", stdoutText, stderr.String())
	}
	left, err := filepath.Glob(filepath.Join(tmp, "shanhai-run-*"))
	if err != nil || len(left) > 0 {
		t.Fatalf("data directories left behind: %v (%v)", left, err)
	}
}

// startUntilUp starts run and returns once its banner's last line is out:
// out gives all of its stdout once it ended (or once stdout, the pipe it is
// read from, was closed), stderr collects its stderr. The pipe is read to
// the end meanwhile, so the run never blocks on a full one; closing it is
// what a reader of the run's output that went away does.
func startUntilUp(t *testing.T, run *exec.Cmd) (out <-chan string, stderr *bytes.Buffer, stdout io.Closer) {
	t.Helper()
	stderr = new(bytes.Buffer)
	run.Stderr = stderr
	pipe, err := run.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { run.Process.Kill() }) // when the test fails
	up, all := make(chan bool, 1), make(chan string, 1)
	go func() {
		var text strings.Builder
		found := false
		for lines := bufio.NewScanner(pipe); lines.Scan(); {
			text.WriteString(lines.Text() + "\n")
			if !found && lines.Text() == "Ctrl-C stops everything." {
				found = true
				up <- true
			}
		}
		if !found {
			up <- false
		}
		all <- text.String()
	}()
	select {
	case ok := <-up:
		if !ok {
			t.Fatalf("the run ended before it was up; stdout:\n%s\nstderr:\n%s", <-all, stderr.String())
		}
	case <-time.After(2 * time.Minute): // hang guard only
		t.Fatal("the run was not up within 2 minutes")
	}
	return all, stderr, pipe
}

// Under nohup (or a service manager that starts it with SIGHUP ignored) a
// run is meant to outlive its terminal. signal.Notify installs a handler
// even for a signal ignored at start, so catching SIGHUP unconditionally
// (2562a36) made such a run stop when the terminal closed. The test starts
// the program under nohup, hangs up, and requires it to be running still;
// a Ctrl-C then stops it as always.
func TestHangUpUnderNohupKeepsTheRunGoing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the embedded platform in a child process")
	}
	nohup, err := exec.LookPath("nohup")
	if err != nil {
		t.Skip("no nohup here")
	}
	t.Parallel() // waits on its child process; see parallelNote
	tmp := t.TempDir()
	run := asProgram("-port "+strconv.Itoa(freePortBlock(t)), "TMPDIR="+tmp, "PULSAR_URL=", "PULSAR_ADMIN_URL=")
	run.Args = append([]string{"nohup"}, run.Args...) // nohup execs the program: same pid
	run.Path = nohup
	out, stderr, _ := startUntilUp(t, run)
	if err := run.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- run.Wait() }()
	// A caught SIGHUP ends the run within a second or two (the stop that
	// follows a Ctrl-C); an ignored one never does. The window is how long
	// "never" is watched, not a synchronisation.
	select {
	case err := <-waited:
		t.Fatalf("the run under nohup ended on SIGHUP (%v), want it to go on; stdout:\n%s\nstderr:\n%s", err, <-out, stderr.String())
	case <-time.After(5 * time.Second):
	}
	if err := run.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err = <-waited:
	case <-time.After(2 * time.Minute): // hang guard only
		t.Fatal("the run still runs 2 minutes after Ctrl-C")
	}
	if text := <-out; err != nil || !strings.Contains(text, "\nstopped\n") {
		t.Fatalf("Ctrl-C after the hang-up: %v; stdout:\n%s\nstderr:\n%s", err, text, stderr.String())
	}
}

// `make run | tee run.log` and then Ctrl-C: the terminal's Ctrl-C ends tee
// too, so the run's "stopping..." goes to a pipe nobody reads, and the Go
// runtime ends a program whose write to stdout meets a broken pipe with
// SIGPIPE at once: no part drained or left discovery, and the temporary data
// directory stayed behind (the shell reported 141). The test reads the run's
// stdout up to its banner, closes it as tee's death does, then interrupts it.
func TestCtrlCAfterTheReaderOfStdoutWentStillCleansUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the embedded platform in a child process")
	}
	t.Parallel() // waits on its child process; see parallelNote
	tmp := t.TempDir()
	run := asProgram("-port "+strconv.Itoa(freePortBlock(t)), "TMPDIR="+tmp, "PULSAR_URL=", "PULSAR_ADMIN_URL=")
	_, stderr, stdout := startUntilUp(t, run)
	stdout.Close() // the reader is gone: the next write to stdout meets a broken pipe
	if err := run.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- run.Wait() }()
	var err error
	select {
	case err = <-waited:
	case <-time.After(2 * time.Minute): // hang guard only
		t.Fatal("the run still runs 2 minutes after Ctrl-C")
	}
	if err != nil {
		t.Fatalf("the run ended with %v after Ctrl-C with its stdout's reader gone, want a clean stop; stderr:\n%s", err, stderr.String())
	}
	left, err := filepath.Glob(filepath.Join(tmp, "shanhai-run-*"))
	if err != nil || len(left) > 0 {
		t.Fatalf("data directories left behind: %v (%v)", left, err)
	}
}

// -measure prints its figures and stops; figures that could not be written,
// the reader of its stdout gone (`shanhai -measure | tee m.txt` and tee
// ended), fail the run with exit status 1 and say why. Since SIGPIPE is
// notified (63a9ec6) the runtime no longer kills the run at that write, and
// -measure dropped its write errors, so it exited 0 with nothing delivered.
// The run still stops cleanly: its temporary data directory goes.
func TestMeasureWhoseFiguresCouldNotBeWrittenFails(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the embedded platform in a child process")
	}
	t.Parallel() // waits on its child process; see parallelNote
	tmp := t.TempDir()
	run := asProgram("-measure -port "+strconv.Itoa(freePortBlock(t)), "TMPDIR="+tmp, "PULSAR_URL=", "PULSAR_ADMIN_URL=")
	var stderr bytes.Buffer
	run.Stderr = &stderr
	stdout, err := run.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { run.Process.Kill() }) // when the test fails
	stdout.Close()                           // the reader is gone before the figures are written
	err = run.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(stderr.String(), "-measure") {
		t.Fatalf("-measure whose stdout's reader went: %v, want exit status 1 and a message naming -measure; stderr:\n%s",
			err, stderr.String())
	}
	left, err := filepath.Glob(filepath.Join(tmp, "shanhai-run-*"))
	if err != nil || len(left) > 0 {
		t.Fatalf("data directories left behind: %v (%v)", left, err)
	}
}

// A variable a hosted part refuses stops the run with the part's message,
// which names the variable and what it takes, and leaves no temporary data
// directory: every such try used to keep one (the servers' files and five
// logs) for a message that already said everything, with "(log: ...)"
// pointers to it.
func TestRefusedVariableLeavesNoDataDir(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the program in a child process")
	}
	t.Parallel() // waits on its child process; see parallelNote
	tmp := t.TempDir()
	run := asProgram("-port "+strconv.Itoa(freePortBlock(t)),
		"TMPDIR="+tmp, "PULSAR_URL=", "PULSAR_ADMIN_URL=", "GATEWAY_IP_LIMIT=bogus")
	out, err := run.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("the run: %v, want exit status 1\n%s", err, out)
	}
	if !bytes.Contains(out, []byte(`GATEWAY_IP_LIMIT: "bogus" is invalid`)) {
		t.Fatalf("the run's message does not name the variable:\n%s", out)
	}
	if bytes.Contains(out, []byte(tmp)) {
		t.Fatalf("the run's message points into the data directory it removes:\n%s", out)
	}
	left, err := filepath.Glob(filepath.Join(tmp, "shanhai-run-*"))
	if err != nil || len(left) > 0 {
		t.Fatalf("data directories left behind: %v (%v)\n%s", left, err, out)
	}
}
