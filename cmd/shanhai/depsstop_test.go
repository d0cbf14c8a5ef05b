package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// A start of PostgreSQL cut short leaves a postmaster running: `pg_ctl start
// -w` gave up after SHANHAI_READY_TIMEOUT (or was killed: a closed terminal
// or a signal to the script's process group) while the postmaster
// went on starting. deps.sh recorded it in pg.pid only once pg_ctl had
// returned successfully, so `down pg` said "not started from this
// checkout, left alone" and the postmaster ran on, nobody's. The record is
// now the postmaster's own postmaster.pid, written as it starts. Here the
// postmaster is stopped (SIGSTOP) as soon as it has written it, so that
// pg_ctl's 2 s wait runs out; it is let go before `down`.
func TestDepsDownStopsAPostgresWhoseStartWasCutShort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	d := newDepsScript(t, "SHANHAI_PG_PORT="+kernelPort(t), "SHANHAI_READY_TIMEOUT=2")
	d.forPostgres()
	_, stderr, done := d.start("up", "pg")

	// initdb's single-user backend writes the file too, with its pid
	// negated: the postmaster's is the first positive one.
	postmaster := 0
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	for postmaster <= 0 {
		select {
		case err := <-done:
			t.Fatalf("deps.sh up pg ended (%v) before a postmaster wrote %s:\n%s", err, d.pidFile("pg"), stderr.String())
		case <-poll.C:
		}
		if b, err := os.ReadFile(d.pidFile("pg")); err == nil {
			first, _, _ := strings.Cut(string(b), "\n")
			postmaster, _ = strconv.Atoi(first)
		}
	}
	if err := syscall.Kill(postmaster, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(postmaster, syscall.SIGCONT)
		_ = syscall.Kill(postmaster, syscall.SIGQUIT) // immediate shutdown, when down left it
	})
	if err := <-done; err == nil || !strings.Contains(stderr.String(), "pg_ctl start failed") {
		t.Fatalf("deps.sh up pg, its postmaster stopped: %v, want pg_ctl to give up after 2 s:\n%s", err, stderr.String())
	}
	if err := syscall.Kill(postmaster, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}

	if out, err := d.run("down", "pg"); err != nil || alive(postmaster) {
		t.Fatalf("deps.sh down pg after a start cut short: %v, postmaster %d still running: %v\n%s",
			err, postmaster, alive(postmaster), out)
	}
}

// A `deps.sh up` stopped by a signal to it alone (`kill <pid>`, a supervisor
// stopping the step) ended, but its starts, background jobs that got no
// signal, went on: the one waiting for its server's lock started etcd after
// the script had gone. Now the script ends every start with it and says what
// it leaves running (recorded for `down`). Here etcd's lock is held while
// redis starts; once the script waits for it, the script gets SIGTERM.
func TestDepsUpStoppedStartsNothingMore(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis")
	}
	d := newDepsScript(t, "SHANHAI_REDIS_PORT="+kernelPort(t), "SHANHAI_ETCD_PORT="+kernelPort(t),
		"SHANHAI_ETCD_PEER_PORT="+kernelPort(t))
	lockPath := filepath.Join(filepath.Dir(d.dir), "cache", "locks", "etcd.lock")
	if err := os.MkdirAll(filepath.Dir(lockPath), 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.Create(lockPath)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}

	up, stderr, done := d.start("up", "redis", "etcd")
	t.Cleanup(func() { _, _ = d.run("down", "redis", "etcd") })
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for s := stderr.String(); !strings.Contains(s, "redis: up at") || !strings.Contains(s, "etcd: another deps.sh"); s = stderr.String() {
		select {
		case err := <-done:
			t.Fatalf("deps.sh up redis etcd ended (%v) before it waited for etcd's lock:\n%s", err, s)
		case <-poll.C:
		}
	}
	redis := d.pid("redis")
	if err := up.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("deps.sh up did not end within 60 s of SIGTERM:\n%s", stderr)
	}
	for _, want := range []string{"interrupted", "redis (pid " + strconv.Itoa(redis) + ")", "scripts/deps.sh down"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("deps.sh up stopped: stderr lacks %q:\n%s", want, stderr.String())
		}
	}

	// Whatever would still start etcd holds its lock, waiting for it: once
	// the script has ended, nothing but this test may.
	deadline := time.Now().Add(10 * time.Second)
	for holders := lockHolders(t, lockPath); len(holders) > 0; holders = lockHolders(t, lockPath) {
		if time.Now().After(deadline) {
			t.Fatalf("10 s after deps.sh up ended, processes %v still wait for etcd's lock to start it:\n%s",
				holders, stderr.String())
		}
		<-poll.C
	}
	if _, err := os.Stat(d.pidFile("etcd")); !os.IsNotExist(err) {
		t.Fatalf("etcd was started after deps.sh up was stopped (%v):\n%s", err, stderr.String())
	}
	if out, err := d.run("down", "redis"); err != nil || alive(redis) {
		t.Fatalf("deps.sh down redis, left by an up stopped: %v, redis %d still running: %v\n%s", err, redis, alive(redis), out)
	}
}

// lockHolders lists the processes other than this one with path open.
func lockHolders(t *testing.T, path string) []int {
	t.Helper()
	fds, err := filepath.Glob("/proc/[0-9]*/fd/*")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, fd := range fds {
		if target, err := os.Readlink(fd); err != nil || target != path {
			continue
		}
		pid, _ := strconv.Atoi(strings.Split(fd, "/")[2])
		if pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// `status` said "started here" for any pid file, one whose process had
// died or whose number (after a reboot) is another program's too: it says
// the file is stale, and that `down` removes it.
func TestDepsStatusCallsAStalePidFileStale(t *testing.T) {
	d := newDepsScript(t, "SHANHAI_ETCD_PORT="+kernelPort(t))
	pid := d.stalePid("etcd", exec.Command("sleep", "300"))
	var stdout bytes.Buffer
	status := d.command("status", "etcd")
	status.Stdout = &stdout
	_ = status.Run() // exits 3: etcd is down
	out := stdout.String()
	if strings.Contains(out, "started here") || !strings.Contains(out, "stale pid file") ||
		!strings.Contains(out, "scripts/deps.sh down etcd removes it") {
		t.Fatalf("deps.sh status etcd, its pid file naming a sleep (pid %d): want it called stale, and down named:\n%s", pid, out)
	}
}

// A pid file is this checkout's record of one server: a process is taken
// for that server only when it works in, or names, the server's own state
// directory. Any path in the state directory was enough, so a pid file
// left by a crash (PostgreSQL's postmaster.pid, which a killed postmaster
// leaves behind) whose number another of the checkout's servers has now
// named that server: `down etcd` stopped redis, `status pg` called redis
// PostgreSQL started here (and `down pg` had pg_ctl signal it, and `up pg`
// waited for it to answer as PostgreSQL). Here redis runs, and etcd's and
// PostgreSQL's pid files name it.
func TestDepsPidFileNamingAnotherOfItsServersIsStale(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis")
	}
	d := newDepsScript(t, "SHANHAI_REDIS_PORT="+kernelPort(t), "SHANHAI_ETCD_PORT="+kernelPort(t),
		"SHANHAI_PG_PORT="+kernelPort(t))
	if out, err := d.run("up", "redis"); err != nil {
		t.Fatalf("deps.sh up redis: %v\n%s", err, out)
	}
	redis := d.pid("redis")
	t.Cleanup(func() { _, _ = d.run("down", "redis") })
	for _, server := range []string{"etcd", "pg"} {
		if err := os.MkdirAll(filepath.Dir(d.pidFile(server)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(d.pidFile(server), []byte(strconv.Itoa(redis)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	var stdout bytes.Buffer
	status := d.command("status", "etcd", "pg")
	status.Stdout = &stdout
	_ = status.Run() // exits 3: etcd and pg are down
	if out := stdout.String(); strings.Contains(out, "started here") || strings.Count(out, "stale pid file") != 2 {
		t.Errorf("deps.sh status etcd pg, both pid files naming this checkout's redis (pid %d): want both called stale:\n%s",
			redis, out)
	}
	if out, err := d.run("down", "etcd"); err != nil || !alive(redis) {
		t.Fatalf("deps.sh down etcd, its pid file naming this checkout's redis: %v, redis %d still running: %v\n%s",
			err, redis, alive(redis), out)
	}
	if _, err := os.Stat(d.pidFile("etcd")); !os.IsNotExist(err) {
		t.Errorf("deps.sh down etcd left its stale pid file (%v)", err)
	}
}

// `up` run at a terminal with `stty tostop` (background output stops its
// writer) hung for good: each start runs in a process group of its own,
// not the terminal's foreground one, so its first message to the terminal
// stopped it, and the script waited for it. The starts now ignore the
// terminal's stops. Here the script runs on a pseudo-terminal of its own,
// as its controlling terminal, with tostop set.
func TestDepsUpAtATerminalWithTostop(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis")
	}
	d := newDepsScript(t, "SHANHAI_REDIS_PORT="+kernelPort(t))
	ptm, pts := openPty(t)
	tio := ioctlTermios(t, pts, syscall.TCGETS, syscall.Termios{})
	tio.Lflag |= syscall.TOSTOP
	ioctlTermios(t, pts, syscall.TCSETS, tio)

	up := d.command("up", "redis")
	up.Stdin, up.Stdout, up.Stderr = pts, pts, pts
	up.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	pts.Close()
	t.Cleanup(func() { _, _ = d.run("down", "redis") })
	var out bytes.Buffer
	read := make(chan struct{})
	go func() { // the terminal's output, until the script's session has gone
		defer close(read)
		_, _ = io.Copy(&out, ptm)
	}()
	done := make(chan error, 1)
	go func() { done <- up.Wait() }()
	select {
	case err := <-done:
		ptm.Close()
		<-read
		if err != nil || !strings.Contains(out.String(), "redis: up at") {
			t.Fatalf("deps.sh up redis at a terminal with tostop: %v\n%s", err, out.String())
		}
	case <-time.After(60 * time.Second):
		// Its start, stopped, ends with the script: an orphaned process
		// group that has a stopped member gets SIGHUP and SIGCONT.
		_ = up.Process.Kill()
		ptm.Close()
		<-done
		t.Fatalf("deps.sh up redis at a terminal with tostop still running after 60 s (a start stopped on its output?)")
	}
}

// openPty opens a new pseudo-terminal: its master and its slave.
func openPty(t *testing.T) (ptm, pts *os.File) {
	t.Helper()
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ptm.Close() })
	var unlock, n int32
	if err := ioctl(ptm, syscall.TIOCSPTLCK, unsafe.Pointer(&unlock)); err != nil {
		t.Fatalf("unlock the pseudo-terminal: %v", err)
	}
	if err := ioctl(ptm, syscall.TIOCGPTN, unsafe.Pointer(&n)); err != nil {
		t.Fatalf("the pseudo-terminal's number: %v", err)
	}
	pts, err = os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pts.Close() })
	return ptm, pts
}

// ioctlTermios gets (TCGETS) or sets (TCSETS) a terminal's settings.
func ioctlTermios(t *testing.T, f *os.File, req uintptr, tio syscall.Termios) syscall.Termios {
	t.Helper()
	if err := ioctl(f, req, unsafe.Pointer(&tio)); err != nil {
		t.Fatalf("terminal settings (ioctl %#x): %v", req, err)
	}
	return tio
}

func ioctl(f *os.File, req uintptr, arg unsafe.Pointer) error {
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), req, uintptr(arg)); errno != 0 {
		return errno
	}
	return nil
}
