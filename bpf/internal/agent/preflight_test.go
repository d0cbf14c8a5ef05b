package agent

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// tracefsDirEnv, in a child run of the test binary, names the directory that child checks as an unprivileged user.
const tracefsDirEnv = "SHANHAI_TEST_TRACEFS_DIR"

// tracefs is mode 0700: an agent that is not root and lacks CAP_DAC_READ_SEARCH gets EACCES on it, and was told
// "tracefs is not mounted" (after a mount it had no right to try), sending the operator to mount what is mounted
// (found by review). It must say the directory cannot be read, and what grants it. The check runs in a copy of this
// test binary as nobody, on a root-owned 0700 directory that has events/ like a mounted tracefs.
func TestTracefsUnreadableIsNotReportedUnmounted(t *testing.T) {
	if dir := os.Getenv(tracefsDirEnv); dir != "" {
		err := mountTracefsAt(dir)
		if err == nil || strings.Contains(err.Error(), "not mounted") || !strings.Contains(err.Error(), "CAP_DAC_READ_SEARCH") {
			t.Fatalf("tracefs at %s unreadable: %v; want it said unreadable, naming CAP_DAC_READ_SEARCH, not unmounted", dir, err)
		}
		return
	}
	requireRoot(t)
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} { // nobody must reach the binary and the directory below
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tracing := filepath.Join(base, "tracing")
	if err := os.MkdirAll(filepath.Join(tracing, "events"), 0o700); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "agent.test")
	copyInPlace(t, self, bin)
	cmd := exec.Command(bin, "-test.run=^TestTracefsUnreadableIsNotReportedUnmounted$", "-test.count=1")
	cmd.Dir = base
	cmd.Env = append(os.Environ(), tracefsDirEnv+"="+tracing)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("check as nobody: %v\n%s", err, out)
	}
}
