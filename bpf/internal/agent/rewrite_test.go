package agent

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A deploy by "stop; cp new over the path; start" keeps the file's inode. The probes the agent put on the old build
// (a path target is probed as soon as the file exists) must come off and go on again at the new build's offsets:
// keyed by device and inode alone, they stayed, and none of the new build's requests was counted (found by review).
// Not parallel, as TestRewrittenInPlaceAndStartedAtOnce: a fork elsewhere in the process keeps the old probes on.
func TestRewrittenInPlaceIsProbedAgain(t *testing.T) {
	requireRoot(t)
	p := filepath.Join(t.TempDir(), "svc")
	copyInPlace(t, buildTarget(t, false), p)
	a := newAgent(t, p)
	a.Scan() // probes on the old build
	// The same program without optimisation: its functions, and so the probes' offsets, are elsewhere.
	copyInPlace(t, buildNoOpt(t), p)
	a.Scan()
	tg := startTarget(t, p)
	a.Scan()
	c := &http.Client{Timeout: 5 * time.Second}
	for range 20 {
		tg.get(t, c, "GET", "/work?status=201")
	}
	eventually(t, func() (bool, string) { return countIs(t, a, tg.pid, 20) })
}

// The same deploy with the new build started before the agent's next scan (a restart right after the copy): the old
// build's uprobes were still on the inode, the new process got their breakpoints at the old build's offsets, where
// its own code has other instructions, and the kernel ran the old build's instructions there: it died at start
// (SIGSEGV in the uprobes' execute-out-of-line page; found by review). A read lease (lease.go) now has the agent
// take the probes off before the copy may begin. The new build must run and answer, and be counted exactly once the
// next scan has probed it.
//
// Not parallel: a uprobe lives as long as any descriptor of its perf event, and a child another test forks holds a
// copy of every descriptor of this process until it execs. Closed by the agent while such a child was still starting,
// the old build's probes stayed on the inode past the copy; the new build got their breakpoints, and lost bytes of
// its code to the old build's when the child's exec finally dropped them (SIGSEGV in the runtime, seen in a whole
// module run). The agent runs in a process that forks nothing; this test must not share its process with forks either.
func TestRewrittenInPlaceAndStartedAtOnce(t *testing.T) {
	requireRoot(t)
	p := filepath.Join(t.TempDir(), "svc")
	copyInPlace(t, buildTarget(t, false), p)
	a := newAgent(t, p)
	a.Scan()
	c := &http.Client{Timeout: 5 * time.Second}
	old := startTarget(t, p) // the kernel copies the probed instructions when a process first maps the build
	old.get(t, c, "GET", "/gc")
	for range 5 {
		old.get(t, c, "GET", "/work?status=201")
	}
	eventually(t, func() (bool, string) { return countIs(t, a, old.pid, 5) })
	old.stop()

	copyInPlace(t, buildNoOpt(t), p) // its functions, and so the old probes' offsets, are elsewhere
	tg := startTarget(t, p)
	drive := func() {
		for i := range 20 {
			tg.get(t, c, "GET", "/work?status=201")
			if i == 10 {
				tg.get(t, c, "GET", "/gc")
			}
		}
	}
	drive()
	a.Scan()
	drive()
	eventually(t, func() (bool, string) { return countIs(t, a, tg.pid, 20) })
	if tg.cmd.ProcessState != nil {
		t.Fatalf("the new build exited: %v", tg.cmd.ProcessState)
	}
}

// A scan while the file is half copied must not probe it. The finished copy has the same inode and must be probed;
// a failure to read the half copy was kept by device and inode, so the file stayed unprobed for good (found by
// review). The copy is interrupted twice: once while the file is open for writing (with read leases, lease.go, the
// agent leaves it alone then) and once with the half copy closed, which the attach fails to read.
func TestScanDuringCopyIsRetried(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	bin, err := os.ReadFile(buildTarget(t, false))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "svc")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(bin[:len(bin)/4]); err != nil {
		t.Fatal(err)
	}
	a := newAgent(t, p)
	a.Scan()
	if len(a.bins) != 0 {
		t.Fatalf("a quarter of a binary, open for writing: probed %v, want it left alone", a.bins)
	}
	if _, err := f.Write(bin[len(bin)/4 : len(bin)/2]); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	a.Scan()
	if len(a.failed) != 1 {
		t.Fatalf("half a binary: failed = %v, want its attach failed", a.failed)
	}
	if f, err = os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(bin[len(bin)/2:]); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	a.Scan()
	tg := startTarget(t, p)
	a.Scan()
	if ts := a.Targets(); len(ts) != 1 || len(ts[0].Unprobed) != 0 || len(ts[0].Probes) == 0 {
		t.Fatalf("after the copy finished: targets = %+v, want pid %d probed", ts, tg.pid)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	for range 5 {
		tg.get(t, c, "GET", "/work?status=201")
	}
	eventually(t, func() (bool, string) { return countIs(t, a, tg.pid, 5) })
}

// copyInPlace writes src's bytes over dst the way cp does to an existing file: truncated and rewritten, same inode.
func copyInPlace(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// buildNoOpt builds the test target with optimisation and inlining off, once.
func buildNoOpt(t *testing.T) string {
	t.Helper()
	return buildOnce(t, "target-noopt", append(os.Environ(), "CGO_ENABLED=0"), "build", "-gcflags=all=-N -l", "-o", filepath.Join(binDir, "target-noopt"), "../../testdata/target")
}

// countIs reports whether the agent counted want GET requests answered 201 by pid.
func countIs(t *testing.T, a *Agent, pid int, want uint64) (bool, string) {
	t.Helper()
	snap, err := a.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	got := snap.Server[RED{PID: pid, Method: "GET", Status: 201}].Count
	return got == want, fmt.Sprintf("agent counted %d GET 201 of pid %d, want %d (targets %+v)", got, pid, want, a.Targets())
}
