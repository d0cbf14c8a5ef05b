package server

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// executableRSS is the resident bytes of the test binary's read-only
// mappings, from /proc/self/smaps (the figure PageOutExecutable exists to
// lower; RssFile would also count the shared libraries of a cgo build).
func executableRSS(t *testing.T) int64 {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var total int64
	ours := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m, ok := parseMapsLine(sc.Text()); ok {
			ours = len(executableReadOnly([]mapping{m}, exe)) == 1
			continue
		}
		if v, ok := strings.CutPrefix(sc.Text(), "Rss:"); ok && ours {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("smaps Rss %q: %v", v, err)
			}
			total += kb << 10
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return total
}

// The executable's resident code and read-only data fall to a fraction
// after the call: the test binary's own pages, which only this process maps.
func TestPageOutExecutableReleasesItsPages(t *testing.T) {
	before := executableRSS(t)
	p, err := PageOutExecutable()
	if err != nil {
		t.Fatal(err)
	}
	after := executableRSS(t)
	t.Logf("executable RSS %d → %d KiB; %+v", before>>10, after>>10, p)
	if p.Refused != "" {
		t.Fatalf("nothing released: %s", p.Refused)
	}
	if p.Mappings < 2 || after > before/2 || p.Released() == 0 {
		t.Errorf("executable RSS %d → %d bytes over %d mappings (released %d): want at least half released",
			before, after, p.Mappings, p.Released())
	}
}

// childWork runs code from several packages and returns a digest of what it
// computed, so that a child whose code came back wrong after the page-out
// answers differently (or crashes) rather than the same.
func childWork() string {
	h := sha256.New()
	b, _ := json.Marshal(map[string]any{"a": []int{1, 2, 3}, "b": "ü", "c": 1.5})
	h.Write(b)
	re := regexp.MustCompile(`(\w+)@(\w+)\.example`)
	h.Write([]byte(re.ReplaceAllString("ann@host.example bob@other.example", "$2:$1")))
	fmt.Fprintf(h, "%x %v %q", 1<<40, time.Duration(1234567), strconv.Quote("x\ty"))
	return fmt.Sprintf("%x", h.Sum(nil))
}

func majorFaults() int {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	n, _ := strconv.Atoi(f[9]) // majflt, field 12 of proc(5)
	return n
}

// TestPageoutChild is the child of TestPageOutOfAReplacedExecutable, not a
// test of its own: it works, waits to be told the binary it runs from has
// been replaced or removed, pages out, and works again.
func TestPageoutChild(t *testing.T) {
	if os.Getenv("PAGEOUT_TEST_CHILD") != "1" {
		t.Skip("the child of TestPageOutOfAReplacedExecutable")
	}
	fmt.Printf("ready %s\n", childWork())
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	majBefore, cachedBefore := majorFaults(), executableCached()
	p, err := PageOutExecutable()
	if err != nil {
		fmt.Printf("error %v\n", err)
		return
	}
	work := childWork()
	fmt.Printf("done %s %d %d %d %d %d %s\n", work, p.Released(), p.Mappings, majorFaults()-majBefore,
		cachedBefore, executableCached(), p.Refused)
}

// executableCached is the bytes of the executable's read-only mappings that
// are in the page cache (mincore), -1 if it cannot tell.
func executableCached() int64 {
	exe, err := os.Executable()
	if err != nil {
		return -1
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return -1
	}
	maps, err := parseMaps(f)
	f.Close()
	if err != nil {
		return -1
	}
	var n int64
	for _, m := range executableReadOnly(maps, exe) {
		vec := make([]byte, (m.end-m.start+pageSize-1)/pageSize)
		if _, _, e := syscall.Syscall(syscall.SYS_MINCORE, uintptr(m.start), uintptr(m.end-m.start), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
			return -1
		}
		for _, v := range vec {
			n += int64(v&1) * pageSize
		}
	}
	return n
}

// A running binary whose file was replaced (a new build renamed over it,
// as deployments and go build do) or removed keeps its file through the
// mapping: the pages MADV_PAGEOUT drops are read back from that file, not
// from whatever now has its name. The child process, a copy of this test
// binary, computes the same results after its page-out as before, and reads
// pages back from disk (major faults) to do it: only those pages, not the
// disk's read-ahead window around each (MADV_RANDOM), so most of what was
// released stays out of the page cache. Writing into a running
// executable in place is refused by the kernel (ETXTBSY), so the file the
// pages come back from cannot change under the process.
func TestPageOutOfAReplacedExecutable(t *testing.T) {
	if os.Getenv("PAGEOUT_TEST_CHILD") == "1" {
		t.Skip("in the child")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, how := range []string{"renamed over", "removed"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			bin := filepath.Join(dir, "child with spaces")
			copyFile(t, self, bin, 0o755)
			cmd, stdin, next := startChild(t, bin, nil)
			first := next("ready")[0]

			if f, err := os.OpenFile(bin, os.O_WRONLY, 0); err == nil {
				f.Close()
				t.Fatal("the running executable opened for writing; want ETXTBSY")
			} else if !strings.Contains(err.Error(), syscall.ETXTBSY.Error()) {
				t.Fatalf("opening the running executable for writing: %v, want ETXTBSY", err)
			}
			switch how {
			case "renamed over":
				other := filepath.Join(dir, "new build")
				if err := os.WriteFile(other, []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(other, bin); err != nil {
					t.Fatal(err)
				}
			case "removed":
				if err := os.Remove(bin); err != nil {
					t.Fatal(err)
				}
			}

			if _, err := io.WriteString(stdin, "go\n"); err != nil {
				t.Fatal(err)
			}
			done := next("done")
			released, _ := strconv.ParseInt(done[1], 10, 64)
			major, _ := strconv.Atoi(done[3])
			cachedBefore, _ := strconv.ParseInt(done[4], 10, 64)
			cachedAfter, _ := strconv.ParseInt(done[5], 10, 64)
			t.Logf("child: released %d bytes over %s mappings, then %d major faults; executable in the page cache %d → %d KiB",
				released, done[2], major, cachedBefore>>10, cachedAfter>>10)
			if done[0] != first {
				t.Errorf("the child computed %s after the page-out, %s before", done[0], first)
			}
			if released == 0 || major == 0 {
				t.Errorf("released %d bytes and read back with %d major faults: the page-out did not take the pages out", released, major)
			}
			// Pages cached but never mapped stay (a page-out drops mapped
			// pages only); most of what was released must stay out.
			if cachedBefore <= 0 || cachedBefore-cachedAfter < released/2 {
				t.Errorf("executable in the page cache %d → %d bytes after releasing %d: the faults after the page-out read it back",
					cachedBefore, cachedAfter, released)
			}
			if err := cmd.Wait(); err != nil {
				t.Errorf("child: %v", err)
			}
		})
	}
}

// /proc/self/maps writes a newline in a path as \012 but leaves a backslash
// as it is, so an executable whose name holds a backslash followed by 012
// reads there just like one whose name holds a newline. os.Executable gives
// the real name; the page-out must still find its mappings (it found none and
// logged an error, releasing nothing).
func TestPageOutOfAnExecutableNamedWithABackslash(t *testing.T) {
	if os.Getenv("PAGEOUT_TEST_CHILD") == "1" {
		t.Skip("in the child")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), `build\012two`)
	copyFile(t, self, bin, 0o755)
	cmd, stdin, next := startChild(t, bin, nil)
	first := next("ready")[0]
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	done := next("done")
	if released, _ := strconv.ParseInt(done[1], 10, 64); done[0] != first || released == 0 {
		t.Errorf("child at %q: %q; want the same result and bytes released", bin, done)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("child: %v", err)
	}
}

// The kernel pages out a file's pages only for a process that owns the file
// or may write it: one running a root-owned executable as another user (as
// deploy/Dockerfile's images did before they gave the binary to USER 65532)
// releases nothing, and PageOutExecutable says why. Needs root, to own the file and run the child
// as someone else.
func TestPageOutRefusedForAnotherUsersExecutable(t *testing.T) {
	if os.Getenv("PAGEOUT_TEST_CHILD") == "1" {
		t.Skip("in the child")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a root-owned executable as another user")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "child")
	copyFile(t, self, bin, 0o755)
	cmd, stdin, next := startChild(t, bin, &syscall.Credential{Uid: 65532, Gid: 65532})
	first := next("ready")[0]
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	done := next("done")
	if done[0] != first || done[1] != "0" || !strings.Contains(strings.Join(done[6:], " "), "uid 0") {
		t.Errorf("child as uid 65532 of a root-owned executable: %q; want the same result, 0 bytes released and why", done)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("child: %v", err)
	}
}

// startChild runs the copy of this test binary at bin as TestPageoutChild
// (as cred's user when given), and returns its stdin and a reader of its
// output lines: next(prefix) is the fields of the next line that starts so.
func startChild(t *testing.T, bin string, cred *syscall.Credential) (*exec.Cmd, io.Writer, func(string) []string) {
	t.Helper()
	// Clean and out of the page cache, as an image's binary is: the kernel
	// does not page out dirty pages.
	evict(t, bin)
	cmd := exec.Command(bin, "-test.run=^TestPageoutChild$", "-test.v")
	cmd.Env = append(os.Environ(), "PAGEOUT_TEST_CHILD=1")
	cmd.Dir = filepath.Dir(bin)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	lines := bufio.NewScanner(stdout)
	next := func(prefix string) []string {
		t.Helper()
		for lines.Scan() {
			if f := strings.Fields(lines.Text()); len(f) > 0 && (f[0] == prefix || f[0] == "error") {
				if f[0] == "error" {
					t.Fatalf("child: %s", lines.Text())
				}
				return f[1:]
			}
		}
		t.Fatalf("child ended before %q: %v", prefix, lines.Err())
		return nil
	}
	return cmd, stdin, next
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// evict writes path back and drops it from the page cache.
func evict(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	const fadvDontneed = 4
	if _, _, e := syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, fadvDontneed, 0, 0); e != 0 {
		t.Fatalf("fadvise: %v", e)
	}
}

// recordHandler hands every record logged to it to a channel (buffered: a
// test reads what was logged after the call).
type recordHandler chan slog.Record

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	h <- r.Clone()
	return nil
}
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }

// A kernel without MADV_PAGEOUT (before 5.4) answers EINVAL: an environment
// the service runs in, not a fault, so it is a warning with the reason, not
// an error on every start; any other failure stays an error.
func TestPageoutFailureLevels(t *testing.T) {
	m := mapping{start: 0x400000, end: 0x800000, perms: "r-xp"}
	for _, tc := range []struct {
		name       string
		err        error
		want       slog.Level
		wantReason bool
	}{
		{"no MADV_PAGEOUT", pageoutFailure([]error{adviseError(madvPageout, m, syscall.EINVAL), adviseError(madvPageout, m, syscall.EINVAL)}), slog.LevelWarn, true},
		{"MADV_RANDOM refused", pageoutFailure([]error{adviseError(madvRandom, m, syscall.EINVAL)}), slog.LevelError, false},
		{"page-out out of memory", pageoutFailure([]error{adviseError(madvPageout, m, syscall.ENOMEM)}), slog.LevelError, false},
		{"no MADV_PAGEOUT and no RssFile", pageoutFailure([]error{adviseError(madvPageout, m, syscall.EINVAL), errors.New("no RssFile line in status")}), slog.LevelError, false},
		{"no maps", errors.New("page out executable: open /proc/self/maps: no such file or directory"), slog.LevelError, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			records := make(recordHandler, 4)
			logPageout(slog.New(records), Pageout{}, tc.err)
			if len(records) != 1 {
				t.Fatalf("%d lines logged, want 1", len(records))
			}
			r := <-records
			attrs := map[string]string{}
			r.Attrs(func(a slog.Attr) bool {
				attrs[a.Key] = a.Value.String()
				return true
			})
			if r.Level != tc.want {
				t.Errorf("logged %q at %v, want %v (%v)", r.Message, r.Level, tc.want, attrs)
			}
			if tc.wantReason && !strings.Contains(attrs["reason"], "MADV_PAGEOUT") {
				t.Errorf("reason %q: want it to say the kernel lacks MADV_PAGEOUT (%v)", attrs["reason"], attrs)
			}
			if !strings.Contains(attrs["error"], "page out executable") {
				t.Errorf("error %q: want the failure itself", attrs["error"])
			}
		})
	}
}
