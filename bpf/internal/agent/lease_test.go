package agent

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Each probed executable is held open with a read lease (lease.go). A deploy that renames each new build over the
// path (the usual atomic one: the old inode is never opened for writing, so no lease breaks) and restarts the target
// leaves a file per build behind: each must be probed as before, and its descriptor and lease must go with its probes,
// or a long-lived agent runs out of descriptors and pins every old build's inode.
func TestLeasesGoWithTheirExecutables(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "leasesvc")
	// /proc/locks shows every lease of this process, and the package's parallel tests run their agents in it too,
	// on files of the same filesystem: only the leases on this test's builds count. Each build keeps a second link
	// outside dir, so its inode number cannot go to another test's file while the test looks.
	kept, mine := t.TempDir(), map[uint64]bool{}
	keep := func(path string) {
		t.Helper()
		var st syscall.Stat_t
		if err := syscall.Stat(path, &st); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(path, filepath.Join(kept, strconv.FormatUint(st.Ino, 10))); err != nil {
			t.Fatal(err)
		}
		mine[st.Ino] = true
	}
	copyFile(t, buildTarget(t, false), p)
	keep(p)
	a := newAgentWith(t, Config{Grace: time.Nanosecond}, p)
	a.Scan()
	c := &http.Client{Timeout: 5 * time.Second}
	builds := []string{buildNoOpt(t), buildTarget(t, false)}
	for i := range 4 {
		copyFile(t, builds[i%2], p+".new")
		keep(p + ".new")
		if err := os.Rename(p+".new", p); err != nil {
			t.Fatal(err)
		}
		tg := startTarget(t, p)
		a.Scan()
		for range 3 {
			tg.get(t, c, "GET", "/work?status=201")
		}
		eventually(t, func() (bool, string) { return countIs(t, a, tg.pid, 3) })
		tg.stop()
		a.Scan() // its file, renamed over by the next round, is detached once no process runs it (Grace 1ns)
	}
	a.Scan()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	if got := openUnder(t, dir); len(got) != 1 {
		t.Errorf("agent holds %d descriptors on the builds: %v, want 1, the file at the path", len(got), got)
	}
	if got := leasesOn(t, dir, mine); len(got) != 1 || got[0] != st.Ino {
		t.Errorf("leases on inodes %v, want one on %d, the file at the path", got, st.Ino)
	}
}

// openUnder lists what this process's descriptors open under dir (a build renamed over reads "... (deleted)").
func openUnder(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, dir+"/") {
			out = append(out, l)
		}
	}
	return out
}

// leasesOn lists the inodes among mine, on dir's device, on which this process holds a lease (/proc/locks).
func leasesOn(t *testing.T, dir string, mine map[uint64]bool) []uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		t.Fatal(err)
	}
	dev := fmt.Sprintf("%02x:%02x", (st.Dev>>8)&0xfff|(st.Dev>>32)&^0xfff, st.Dev&0xff|(st.Dev>>12)&^0xff) // as the kernel prints it
	var out []uint64
	for _, line := range strings.Split(string(b), "\n") {
		// 1: LEASE  ACTIVE    READ  1234 fd:00:131 0 EOF
		f := strings.Fields(line)
		if len(f) < 6 || f[1] != "LEASE" || f[4] != strconv.Itoa(os.Getpid()) {
			continue
		}
		id := strings.Split(f[5], ":")
		if len(id) != 3 {
			continue
		}
		if d := id[0] + ":" + id[1]; d != dev {
			continue
		}
		if ino, err := strconv.ParseUint(id[2], 10, 64); err == nil && mine[ino] {
			out = append(out, ino)
		}
	}
	return out
}
