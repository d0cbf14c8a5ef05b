package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These tests run scripts/deps.sh (which `-native` runs too) on a state
// directory, a cache and ports of their own, so the shared servers the
// checkout's var/deps names are never touched. Only etcd and redis are
// started: they come from Debian packages and start in a second.

// depsScript is scripts/deps.sh run with its state in a temporary directory
// and env (SHANHAI_*_PORT, ...) added.
type depsScript struct {
	t   *testing.T
	env []string
	dir string // SHANHAI_VAR
}

func newDepsScript(t *testing.T, env ...string) *depsScript {
	t.Helper()
	for _, bin := range []string{"etcd", "redis-server", "redis-cli", "curl", "flock", "setsid"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not on PATH: scripts/deps.sh up installs it (this test does not): %v", bin, err)
		}
	}
	tmp := t.TempDir()
	d := &depsScript{t: t, dir: filepath.Join(tmp, "var")}
	d.env = append(append(os.Environ(), "SHANHAI_VAR="+d.dir, "SHANHAI_CACHE="+filepath.Join(tmp, "cache")), env...)
	return d
}

func (d *depsScript) command(args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join("..", "..", "scripts", "deps.sh"), args...)
	cmd.Env = d.env
	return cmd
}

// run runs the script to its end and returns its stderr, where it says
// everything.
func (d *depsScript) run(args ...string) (string, error) {
	var stderr bytes.Buffer
	cmd := d.command(args...)
	cmd.Stderr = &stderr
	err := cmd.Run()
	return stderr.String(), err
}

// start runs the script in the background: it returns the command, its
// stderr as it grows and its end. stderr is a file, not a pipe: Wait would
// wait for a pipe's every writer, a start going on after the script too.
func (d *depsScript) start(args ...string) (*exec.Cmd, fileLog, <-chan error) {
	d.t.Helper()
	cmd := d.command(args...)
	f, err := os.Create(filepath.Join(d.t.TempDir(), "stderr"))
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { _ = f.Close() })
	cmd.Stderr = f
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return cmd, fileLog{f}, done
}

// fileLog is a command's output in a file, read as it grows.
type fileLog struct{ f *os.File }

func (l fileLog) String() string {
	b, _ := os.ReadFile(l.f.Name())
	return string(b)
}

// pidFile is the file where the script records server's process:
// PostgreSQL's is the postmaster's own postmaster.pid.
func (d *depsScript) pidFile(server string) string {
	if server == "pg" {
		return filepath.Join(d.dir, "pg", "postmaster.pid")
	}
	return filepath.Join(d.dir, server+".pid")
}

// pid is the process the script recorded for server.
func (d *depsScript) pid(server string) int {
	d.t.Helper()
	b, err := os.ReadFile(d.pidFile(server))
	if err != nil {
		d.t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		d.t.Fatal(err)
	}
	return pid
}

// stalePid starts other, a program none of this script's, and names it in
// server's pid file, as a pid file left from before a reboot may; other
// ends with the test.
func (d *depsScript) stalePid(server string, other *exec.Cmd) int {
	d.t.Helper()
	if err := other.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() {
		_ = other.Process.Kill()
		_ = other.Wait()
	})
	if err := os.MkdirAll(filepath.Dir(d.pidFile(server)), 0o755); err != nil {
		d.t.Fatal(err)
	}
	pid := other.Process.Pid
	if err := os.WriteFile(d.pidFile(server), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		d.t.Fatal(err)
	}
	return pid
}

// kernelPort is a port free now, as the kernel picks one.
func kernelPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// `deps.sh up` again while a server it started is not answering yet (the
// first `up` cut short by Ctrl-C, or a slow start) waits for that one. It
// started a second copy, which failed on the taken port, replaced the pid
// file with its own and removed it on failing: `down` then said "not started
// from this checkout, left alone" and the first server ran on, nobody's. A
// stopped etcd (SIGSTOP: its port open, its health unanswered) is the server
// still starting; it is let go once the second `up` says it waits.
func TestDepsUpAgainWaitsForItsOwnServerStillStarting(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	d := newDepsScript(t, "SHANHAI_ETCD_PORT="+kernelPort(t), "SHANHAI_ETCD_PEER_PORT="+kernelPort(t), "SHANHAI_READY_TIMEOUT=60")
	if out, err := d.run("up", "etcd"); err != nil {
		t.Fatalf("deps.sh up etcd: %v\n%s", err, out)
	}
	etcd := d.pid("etcd")
	t.Cleanup(func() {
		// Whatever the outcome, this test's etcd does not outlive it.
		_ = syscall.Kill(etcd, syscall.SIGCONT)
		_ = syscall.Kill(etcd, syscall.SIGKILL)
	})
	if err := syscall.Kill(etcd, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}

	_, stderr, done := d.start("up", "etcd")
	waiting := time.NewTicker(50 * time.Millisecond)
	defer waiting.Stop()
	for !strings.Contains(stderr.String(), "not answering yet") {
		select {
		case err := <-done:
			t.Fatalf("second deps.sh up etcd, its first etcd (pid %d) not answering: ended (%v) without waiting for it:\n%s",
				etcd, err, stderr.String())
		case <-waiting.C:
		}
	}
	if err := syscall.Kill(etcd, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("second deps.sh up etcd, its first etcd let go: %v\n%s", err, stderr.String())
	}
	// One that never answered would not be restarted either: the wait says how to.
	if want := "scripts/deps.sh down etcd, then up again"; !strings.Contains(stderr.String(), want) {
		t.Errorf("second deps.sh up etcd does not say what to do if it never answers (%q):\n%s", want, stderr.String())
	}
	if got := d.pid("etcd"); got != etcd {
		t.Fatalf("pid file names %d after the second up, want the first etcd, %d", got, etcd)
	}
	if out, err := d.run("down", "etcd"); err != nil || alive(etcd) {
		t.Fatalf("deps.sh down etcd: %v, etcd %d still running: %v\n%s", err, etcd, alive(etcd), out)
	}
}

// A port something else holds is said at once, with the port, the variable
// that moves the server and how to find the holder. redis-server daemonizes:
// its start "succeeded", its child failed on the port, and `up` waited the
// whole SHANHAI_READY_TIMEOUT (120 s by default) to say only "not ready".
func TestDepsUpNamesATakenPort(t *testing.T) {
	if testing.Short() {
		t.Skip("runs deps.sh")
	}
	_, port, err := net.SplitHostPort(silentListener(t))
	if err != nil {
		t.Fatal(err)
	}
	d := newDepsScript(t, "SHANHAI_REDIS_PORT="+port, "SHANHAI_READY_TIMEOUT=30")
	out, err := d.run("up", "redis")
	if err == nil {
		t.Fatalf("deps.sh up redis succeeded with its port %s held by a listener that never answers:\n%s", port, out)
	}
	for _, want := range []string{"port " + port + " is taken", "SHANHAI_REDIS_PORT=<port>", "sport = :" + port} {
		if !strings.Contains(out, want) {
			t.Errorf("deps.sh up redis, port %s taken: stderr lacks %q:\n%s", port, want, out)
		}
	}
}

// A pid file outlives a reboot, and its number may then be another
// program's: `down` sent that program TERM, and KILL 30 s later. It now
// removes the stale file and leaves the process alone.
func TestDepsDownLeavesAnotherProgramWithTheRecordedPid(t *testing.T) {
	d := newDepsScript(t)
	other := d.stalePid("etcd", exec.Command("sleep", "300"))
	out, err := d.run("down", "etcd")
	if err != nil {
		t.Fatalf("deps.sh down etcd: %v\n%s", err, out)
	}
	if !alive(other) {
		t.Fatalf("deps.sh down etcd stopped pid %d, a sleep its stale pid file named:\n%s", other, out)
	}
	if _, err := os.Stat(filepath.Join(d.dir, "etcd.pid")); !os.IsNotExist(err) {
		t.Fatalf("stale pid file still there after down (%v):\n%s", err, out)
	}
}

// A Pulsar fetch cut short (Ctrl-C, a full disk) while Maven copied the
// distribution into the cache left a partial tarball in
// pulsar-<version>.download. The next `up` ran copy-dependencies again, which
// keeps a file already there that is newer than the repository's (the
// plugin's documented overwrite rule), so every later run failed "unpacking
// the Pulsar distribution failed" until the file was found and removed.
// mvn and java are stand-ins here: mvn copies a small distribution only to a
// directory that does not have it, as the real one does with the newer
// partial file; java exits at once, ending the start after the fetch.
func TestDepsFetchAfterACutShortCopyStartsAgain(t *testing.T) {
	bin := t.TempDir()
	stub := func(name, script string) {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/usr/bin/env bash\n"+script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	stub("mvn", `set -eu
for a in "$@"; do case $a in -DoutputDirectory=*) out=${a#*=} ;; esac; done
v=$(sed -n 's|.*<pulsar.version>\(.*\)</pulsar.version>.*|\1|p' pom.xml)
tgz=$out/pulsar-server-distribution-$v-bin.tar.gz
mkdir -p "$out"
[[ -e $tgz ]] && exit 0 # the destination has it: kept
d=$(mktemp -d)
mkdir -p "$d/apache-pulsar-$v/conf" "$d/apache-pulsar-$v/lib"
echo '# stand-in' >"$d/apache-pulsar-$v/conf/standalone.conf"
tar -czf "$tgz" -C "$d" "apache-pulsar-$v"
rm -rf "$d"
`)
	stub("java", "exit 1\n")
	ports := []string{}
	for _, v := range []string{"SHANHAI_PULSAR_PORT", "SHANHAI_PULSAR_HTTP_PORT", "SHANHAI_PULSAR_BOOKIE_PORT"} {
		ports = append(ports, v+"="+kernelPort(t))
	}
	d := newDepsScript(t, append(ports, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))...)
	cache := filepath.Join(filepath.Dir(d.dir), "cache")
	script, err := os.ReadFile(filepath.Join("..", "..", "scripts", "deps.sh"))
	if err != nil {
		t.Fatal(err)
	}
	version := regexp.MustCompile(`(?m)^PULSAR_VERSION=(\S+)$`).FindSubmatch(script)
	if version == nil {
		t.Fatal("scripts/deps.sh sets no PULSAR_VERSION")
	}
	download := filepath.Join(cache, "pulsar-"+string(version[1])+".download")
	if err := os.MkdirAll(download, 0o755); err != nil {
		t.Fatal(err)
	}
	partial := filepath.Join(download, "pulsar-server-distribution-"+string(version[1])+"-bin.tar.gz")
	if err := os.WriteFile(partial, []byte("\x1f\x8b\x08\x00 cut short"), 0o644); err != nil {
		t.Fatal(err)
	}

	out, err := d.run("up", "pulsar")
	if err == nil || !strings.Contains(out, "exited during startup") {
		t.Fatalf("deps.sh up pulsar with a java that exits: %v, want it to fetch, then fail starting:\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(cache, "pulsar-"+string(version[1]), ".complete")); err != nil {
		t.Fatalf("the distribution was not fetched again after a cut-short copy (%v):\n%s", err, out)
	}
}

// `down` stops the redis it started when the state directory is named
// through a symlink (a checkout under a symlinked directory: the script's
// paths are the logical ones `pwd` gives) or with a trailing slash. Redis
// rewrites its command line, so only its working directory, which the kernel
// gives as the physical path, tells it is this checkout's: compared with the
// path as named, it never matched, and `down` called the running redis a
// stale pid file's, removed the file and left the server running, nobody's.
func TestDepsDownStopsItsRedisWhateverTheStateDirIsCalled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis")
	}
	for _, c := range []struct {
		name string
		path func(dir string) string // SHANHAI_VAR naming the directory dir
	}{
		{"through a symlink", func(dir string) string {
			link := filepath.Join(filepath.Dir(dir), "link")
			if err := os.Symlink(dir, link); err != nil {
				t.Fatal(err)
			}
			return link
		}},
		{"with a trailing slash", func(dir string) string { return dir + "/" }},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := newDepsScript(t, "SHANHAI_REDIS_PORT="+kernelPort(t))
			if err := os.MkdirAll(d.dir, 0o755); err != nil {
				t.Fatal(err)
			}
			d.env = append(d.env, "SHANHAI_VAR="+c.path(d.dir)) // the last value of a variable is the one used
			if out, err := d.run("up", "redis"); err != nil {
				t.Fatalf("deps.sh up redis: %v\n%s", err, out)
			}
			redis := d.pid("redis")
			t.Cleanup(func() { _ = syscall.Kill(redis, syscall.SIGKILL) }) // when down left it
			if out, err := d.run("down", "redis"); err != nil || alive(redis) {
				t.Fatalf("deps.sh down redis: %v, redis %d still running: %v\n%s", err, redis, alive(redis), out)
			}
		})
	}
}

// A stale pid file's number may, after a reboot, be one of another
// checkout's servers, whose paths contain this checkout's state directory
// (/ci/work/main/var/deps/etcd/data holds /work/main/var/deps/): `down` took
// it for its own, a substring of its command line matching, and stopped it.
func TestDepsDownLeavesAnotherCheckoutsServer(t *testing.T) {
	d := newDepsScript(t)
	// A sleep whose command line (its argv[0]) is the other checkout's path.
	other := exec.Command("sleep", "300")
	other.Args[0] = "/ci" + d.dir + "/etcd/data"
	pid := d.stalePid("etcd", other)
	out, err := d.run("down", "etcd")
	if err != nil || !alive(pid) {
		t.Fatalf("deps.sh down etcd: %v; it stopped pid %d, another checkout's server its stale pid file named:\n%s",
			err, pid, out)
	}
}

// forPostgres readies the state directory for a PostgreSQL deps.sh runs:
// as root it runs the server and pg_ctl as the postgres user, which must
// reach the directory (t.TempDir makes its directories 0700). It returns the
// credential of a process that user may signal, nil when deps.sh runs it as
// this process's user.
func (d *depsScript) forPostgres() *syscall.Credential {
	d.t.Helper()
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		d.t.Fatal(err)
	}
	if os.Getuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		d.t.Fatalf("running as root with no postgres user (scripts/deps.sh up pg needs one): %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for dir := d.dir; dir != os.TempDir() && dir != filepath.Dir(dir); dir = filepath.Dir(dir) {
		if err := os.Chmod(dir, 0o755); err != nil {
			d.t.Fatal(err)
		}
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// `down pg` stops the PostgreSQL `up pg` started: postmaster.pid names the
// postmaster, whose -D argument and working directory are in the state
// directory, as the check for "still this checkout's" wants before pg_ctl
// is let stop it.
func TestDepsDownStopsItsPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	d := newDepsScript(t, "SHANHAI_PG_PORT="+kernelPort(t))
	d.forPostgres()
	if out, err := d.run("up", "pg"); err != nil {
		t.Fatalf("deps.sh up pg: %v\n%s", err, out)
	}
	postmaster := d.pid("pg")
	t.Cleanup(func() { _ = syscall.Kill(postmaster, syscall.SIGQUIT) }) // immediate shutdown, when down left it
	if out, err := d.run("down", "pg"); err != nil || alive(postmaster) {
		t.Fatalf("deps.sh down pg: %v, postmaster %d still running: %v\n%s", err, postmaster, alive(postmaster), out)
	}
}

// After a reboot (or a container's restart) the data directory's
// postmaster.pid is as stale as pg.pid: a postmaster killed, not stopped,
// leaves it. `down pg` ran pg_ctl stop on it, which sends SIGINT to whatever
// process now has its number, then waited 60 s for the file to go.
func TestDepsDownLeavesAnotherProgramWithThePostmastersPid(t *testing.T) {
	d := newDepsScript(t)
	other := exec.Command("sleep", "300")
	other.SysProcAttr = &syscall.SysProcAttr{Credential: d.forPostgres()} // one pg_ctl may signal
	data := filepath.Join(d.dir, "pg")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if c := other.SysProcAttr.Credential; c != nil {
		if err := os.Chown(data, int(c.Uid), int(c.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	pid := d.stalePid("pg", other)
	for name, text := range map[string]string{"PG_VERSION": "15\n", "postmaster.pid": strconv.Itoa(pid) + "\n" + data + "\n"} {
		if err := os.WriteFile(filepath.Join(data, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := d.run("down", "pg")
	if err != nil || !alive(pid) {
		t.Fatalf("deps.sh down pg: %v; it stopped pid %d, a sleep its stale pid files named:\n%s", err, pid, out)
	}
}
