package agent

import (
	"bufio"
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

// TestRebuiltWhileRunning: a deploy that renames a new build over the path (a new inode, its functions at other
// offsets) while the old process still runs the old, now deleted, file (/proc/<pid>/exe ends in " (deleted)"), then
// starts the new one. Both processes must be counted exactly, each by probes at its own build's offsets, whether the
// target is named by path or by name, and the old process keeps what it counted before the deploy. The unlink moved
// the old file's ctime, which the agent took for a rewrite in place: it detached the old process's probes, their
// counts with them, and attached the same bytes again (found by review).
func TestRebuiltWhileRunning(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	for _, byName := range []bool{false, true} {
		t.Run(map[bool]string{false: "path", true: "name"}[byName], func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "rebuiltsvc")
			copyInPlace(t, buildTarget(t, false), p)
			target := p
			if byName {
				target = filepath.Base(p)
			}
			a := newAgent(t, target)
			a.Scan()
			old := startTarget(t, p)
			a.Scan()
			c := &http.Client{Timeout: 5 * time.Second}
			for range 10 {
				old.get(t, c, "GET", "/work?status=201")
			}
			eventually(t, func() (bool, string) { return countIs(t, a, old.pid, 10) })
			copyInPlace(t, buildNoOpt(t), p+".new") // the same program at other offsets
			if err := os.Rename(p+".new", p); err != nil {
				t.Fatal(err)
			}
			if exe, _ := os.Readlink("/proc/" + strconv.Itoa(old.pid) + "/exe"); !strings.HasSuffix(exe, " (deleted)") {
				t.Fatalf("old process's exe %q, want it deleted", exe)
			}
			tg := startTarget(t, p)
			a.Scan()
			if ts := a.Targets(); len(ts) != 2 || len(ts[0].Probes) == 0 || len(ts[1].Probes) == 0 {
				t.Fatalf("targets = %+v, want both processes probed", ts)
			}
			for range 10 {
				old.get(t, c, "GET", "/work?status=201")
			}
			for range 7 {
				tg.get(t, c, "GET", "/work?status=201")
			}
			eventually(t, func() (bool, string) { return countIs(t, a, old.pid, 20) })
			eventually(t, func() (bool, string) { return countIs(t, a, tg.pid, 7) })
		})
	}
}

// TestTargetInOtherMountNamespace: a target whose file exists only in its own mount namespace (a container's root,
// here a tmpfs mounted after unshare -m), so the agent reaches it only through /proc/<pid>/exe, is probed and
// counted exactly. Found to hold (no change).
func TestTargetInOtherMountNamespace(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	bin := buildTarget(t, false)
	mnt := t.TempDir()
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
		`mount -t tmpfs none "$1" && cp "$2" "$1/nssvc" && exec "$1/nssvc"`, "sh", mnt, bin)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tg := &target{cmd: cmd, pid: cmd.Process.Pid}
	t.Cleanup(tg.stop)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("target did not print its address: %v", err)
	}
	tg.base = "http://" + strings.TrimSpace(line)
	if _, err := os.Stat(filepath.Join(mnt, "nssvc")); err == nil {
		t.Fatal("the target's file is visible in the agent's mount namespace")
	}

	a := newAgent(t, "nssvc")
	a.Scan()
	if ts := a.Targets(); len(ts) != 1 || ts[0].PID != tg.pid || len(ts[0].Probes) == 0 || len(ts[0].Unprobed) != 0 {
		t.Fatalf("targets = %+v, want pid %d probed", ts, tg.pid)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	for range 9 {
		tg.get(t, c, "GET", "/work?status=201")
	}
	eventually(t, func() (bool, string) { return countIs(t, a, tg.pid, 9) })
}

// TestTargetInChroot: a target run under chroot (its /proc/<pid>/root is the jail) is found by name and by its
// path as the agent sees it, probed and counted exactly. Found to hold (no change): /proc/<pid>/exe names the file
// from the reader's root.
func TestTargetInChroot(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	jail := t.TempDir()
	copyInPlace(t, buildTarget(t, false), filepath.Join(jail, "jailsvc"))
	for _, name := range []string{"jailsvc", filepath.Join(jail, "jailsvc")} {
		t.Run(map[bool]string{false: "name", true: "path"}[filepath.IsAbs(name)], func(t *testing.T) {
			cmd := exec.Command("/jailsvc")
			cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: jail}
			cmd.Stderr = os.Stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			tg := &target{cmd: cmd, pid: cmd.Process.Pid}
			t.Cleanup(tg.stop)
			line, err := bufio.NewReader(out).ReadString('\n')
			if err != nil {
				t.Fatalf("target did not print its address: %v", err)
			}
			tg.base = "http://" + strings.TrimSpace(line)
			a := newAgent(t, name)
			a.Scan()
			if ts := a.Targets(); len(ts) != 1 || ts[0].PID != tg.pid || len(ts[0].Probes) == 0 || len(ts[0].Unprobed) != 0 {
				t.Fatalf("targets = %+v, want pid %d probed", ts, tg.pid)
			}
			c := &http.Client{Timeout: 5 * time.Second}
			for range 6 {
				tg.get(t, c, "GET", "/work?status=201")
			}
			eventually(t, func() (bool, string) { return countIs(t, a, tg.pid, 6) })
		})
	}
}
