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
	// Each run its own $TMPDIR: the ports are the machine's, and the locks
	// were in $TMPDIR, where such runs did not see each other's.
	tmps := []string{t.TempDir(), t.TempDir()}
	port := freePortBlock(t, 2) // the second run's -port is port+2
	runs := []*exec.Cmd{
		asProgram("-port "+strconv.Itoa(port), "TMPDIR="+tmps[0], "PULSAR_URL=", "PULSAR_ADMIN_URL="),
		asProgram("-port "+strconv.Itoa(port+2), "TMPDIR="+tmps[1], "PULSAR_URL=", "PULSAR_ADMIN_URL="),
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
	lock := filepath.Join(portLockDir, strconv.Itoa(port+2))
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
	if left, _ := filepath.Glob(filepath.Join(tmps[first.i], "shanhai-run-*")); len(left) != 0 {
		t.Fatalf("data directories of the refused run: %v, want none", left)
	}
	if left, _ := filepath.Glob(filepath.Join(tmps[winner], "shanhai-run-*")); len(left) != 1 {
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
	// The directory is every run's: only this test's ports are looked at.
	for p := range 7 { // both blocks: port to port+6, and the same 1000 higher
		for _, p := range []int{port + p, port + 1000 + p} {
			if _, err := os.Lstat(filepath.Join(portLockDir, strconv.Itoa(p))); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("lock file of port %d left after both runs ended: %v", p, err)
			}
		}
	}
}

// The port locks' directory is every user's: a symbolic link another user
// planted there in a port's name is refused, not followed. Followed, the run
// truncated the file it pointed at to write its pid there.
func TestPortLockRefusesASymbolicLink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "someone's file")
	if err := os.WriteFile(target, []byte("kept\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, "28080")); err != nil {
		t.Fatal(err)
	}
	locks, err := lockPorts(dir, []int{28080})
	locks.release()
	if content, _ := os.ReadFile(target); string(content) != "kept\n" {
		t.Fatalf("the file the link points at now holds %q", content)
	}
	if err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("lockPorts over a symbolic link: %v, want it refused as one", err)
	}
}

// Another user's run locks a port's file opened read-only, so the file is
// readable by all whatever the umask: a 0600 one left by a killed run
// refused every other user's run on that port with "permission denied".
// Not parallel: the umask is the process's.
func TestPortLockFileIsReadableByAll(t *testing.T) {
	defer syscall.Umask(syscall.Umask(0o077))
	dir := t.TempDir()
	locks, err := lockPorts(dir, []int{28080})
	if err != nil {
		t.Fatal(err)
	}
	defer locks.release()
	info, err := os.Stat(filepath.Join(dir, "28080"))
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o644 {
		t.Fatalf("lock file mode %v under umask 077, want -rw-r--r--", perm)
	}
}

// A run that opened a port's file just before its holder released it (the
// holder removes the file, then drops the lock) gets the lock of a file no
// longer there, while a third run creates a new one at the path and locks
// that: two runs would hold the one port. lockPortFile sees that the file it
// locked is not the one named, and locks the named one instead. Not
// parallel: it stands in flock to release the holder at that moment.
func TestPortLockTakenOnAFileBeingRemovedIsTakenAgain(t *testing.T) {
	dir := t.TempDir()
	holder, err := lockPorts(dir, []int{28080})
	if err != nil {
		t.Fatal(err)
	}
	real := flock
	t.Cleanup(func() { flock = real })
	flock = func(fd, how int) error {
		flock = real
		holder.release() // between the second run's open and its flock
		return real(fd, how)
	}
	second, err := lockPorts(dir, []int{28080})
	if err != nil {
		t.Fatal(err)
	}
	defer second.release()
	if _, err := lockPorts(dir, []int{28080}); !errors.Is(err, errPortsHeld) {
		t.Fatalf("a third run's lockPorts while the second holds the port: %v, want errPortsHeld", err)
	}
}

// The directory's name is fixed in the world-writable /tmp, so another user
// may have put a symbolic link there: the run chmodded the directory it
// points at to 01777 (here one of ours, 0700) and made its lock files in it.
// Now such a name is not followed: the run warns and goes on without port
// locks. Not parallel: the umask is the process's.
func TestPortLockDirThatIsASymbolicLinkIsNotFollowed(t *testing.T) {
	target := t.TempDir()
	if err := os.Chmod(target, 0o700); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "shanhai-ports")
	if err := os.Symlink(target, dir); err != nil {
		t.Fatal(err)
	}
	locks, err := lockPorts(dir, []int{28080})
	defer locks.release()
	if err != nil || locks != nil {
		t.Fatalf("lockPorts in a symbolic link = %v, %v; want no locks and no error", locks, err)
	}
	info, err := os.Stat(target)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode() != os.ModeDir|0o700 {
		t.Errorf("the linked directory's mode is now %v, want drwx------", info.Mode())
	}
	if files, _ := os.ReadDir(target); len(files) != 0 {
		t.Errorf("files made in the linked directory: %v", files)
	}
}

// A directory another user made is locked in only when it is every user's
// and sticky, as the one a run makes: in one of theirs with mode 0755 our
// run could make no file (and as root made files its owner could swap).
// A directory of ours is made every user's whatever the umask. Not
// parallel: it stands in getuid and sets the umask.
func TestPortLockDirIsEveryUsersAndSticky(t *testing.T) {
	defer syscall.Umask(syscall.Umask(0o077))
	ours := filepath.Join(t.TempDir(), "shanhai-ports")
	locks, err := lockPorts(ours, []int{28080})
	if err != nil || len(locks) != 1 {
		t.Fatalf("lockPorts in a new directory = %v, %v", locks, err)
	}
	locks.release()
	if info, err := os.Lstat(ours); err != nil || info.Mode() != os.ModeDir|os.ModeSticky|0o777 {
		t.Fatalf("the new directory: %v, %v; want drwxrwxrwt", info, err)
	}

	real := getuid
	t.Cleanup(func() { getuid = real })
	getuid = func() int { return real() + 1 } // the directories are another user's
	for _, tc := range []struct {
		mode os.FileMode
		lock bool
	}{{0o755, false}, {0o777, false}, {os.ModeSticky | 0o777, true}} {
		dir := filepath.Join(t.TempDir(), "shanhai-ports")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, tc.mode); err != nil {
			t.Fatal(err)
		}
		locks, err := lockPorts(dir, []int{28080})
		locks.release()
		if err != nil || (len(locks) == 1) != tc.lock {
			t.Errorf("another user's directory of mode %v: lockPorts = %v, %v; want locked %v", tc.mode, locks, err, tc.lock)
		}
	}
}
