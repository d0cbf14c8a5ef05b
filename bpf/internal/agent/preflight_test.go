package agent

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
	base := nobodyDir(t)
	tracing := filepath.Join(base, "tracing")
	if err := os.MkdirAll(filepath.Join(tracing, "events"), 0o700); err != nil {
		t.Fatal(err)
	}
	runAsNobody(t, "TestTracefsUnreadableIsNotReportedUnmounted", base, tracefsDirEnv+"="+tracing)
}

// runAsNobody runs test in a copy of this test binary, in dir (which nobody must reach), as nobody with the ambient
// capabilities caps, and fails t if it fails.
func runAsNobody(t *testing.T, test, dir, env string, caps ...uintptr) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "agent.test")
	if _, err := os.Stat(bin); err != nil {
		copyInPlace(t, self, bin)
	}
	cmd := exec.Command(bin, "-test.run=^"+test+"$", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}, AmbientCaps: caps}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s as nobody with capabilities %v: %v\n%s", test, caps, err, out)
	}
}

// nobodyDir is a temporary directory nobody can reach, for runAsNobody.
func nobodyDir(t *testing.T) string {
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return base
}

// preflightWantEnv, in a child run of the test binary, says what Preflight must answer there: "ok", or text the
// refusal must contain.
const preflightWantEnv = "SHANHAI_TEST_PREFLIGHT_WANT"

// CAP_BPF+CAP_PERFMON passed the preflight, yet this kernel opens a uprobe's perf event only with CAP_SYS_ADMIN, so
// such an agent started and every probe failed with "opening perf event: permission denied" (found by review).
// Preflight now attaches a uprobe for real and names the one capability missing; with CAP_SYS_ADMIN it passes. The
// checks run in copies of this test binary as nobody with ambient capabilities (CAP_DAC_READ_SEARCH for tracefs).
func TestPreflightNamesTheCapabilityUprobesNeed(t *testing.T) {
	if want := os.Getenv(preflightWantEnv); want != "" {
		err := Preflight(HTTPProbeUprobe)
		switch {
		case want == "ok" && err != nil:
			t.Fatalf("Preflight: %v; want it to pass", err)
		case want == "ok":
		case err == nil:
			t.Fatalf("Preflight passed; want a refusal saying %q", want)
		case !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n"):
			t.Fatalf("Preflight: %v; want one problem only, saying %q", err, want)
		}
		return
	}
	requireRoot(t)
	dir := nobodyDir(t)
	runAsNobody(t, t.Name(), dir, preflightWantEnv+"=missing CAP_SYS_ADMIN", capBPF, capPerfmon, capDacReadSearch)
	runAsNobody(t, t.Name(), dir, preflightWantEnv+"=missing CAP_SYS_ADMIN", capDacReadSearch)
	runAsNobody(t, t.Name(), dir, preflightWantEnv+"=ok", capSysAdmin, capDacReadSearch)
}

// The socket probe's programs are BTF tracepoint (tp_btf) programs, which the preflight never tried: a kernel
// without them, or without BTF for those tracepoints, passed it and failed at load (found by review). A tracepoint
// this kernel has no BTF for stands in for a kernel lacking them; the uprobe mode does not need them.
func TestPreflightTriesBTFTracepoints(t *testing.T) {
	requireRoot(t)
	if err := Preflight(HTTPProbeSocket); err != nil {
		t.Fatalf("Preflight on this kernel: %v", err)
	}
	saved := sockTracepoints
	t.Cleanup(func() { sockTracepoints = saved })
	sockTracepoints = append(slices.Clone(saved), "shanhai_no_such_tracepoint")
	err := Preflight(HTTPProbeSocket)
	if err == nil || !strings.Contains(err.Error(), "tp_btf") || !strings.Contains(err.Error(), "shanhai_no_such_tracepoint") {
		t.Fatalf("Preflight with a tracepoint missing: %v; want a refusal naming tp_btf and the tracepoint", err)
	}
	if err := Preflight(HTTPProbeUprobe); err != nil {
		t.Fatalf("Preflight in uprobe mode, which uses no tp_btf program: %v", err)
	}
}

// A kernel without BTF (built without CONFIG_DEBUG_INFO_BTF) is refused with the file and the kernel option named,
// before anything is loaded; a path that does not exist stands in for it.
func TestPreflightNamesMissingBTF(t *testing.T) {
	saved := kernelBTF
	t.Cleanup(func() { kernelBTF = saved })
	kernelBTF = filepath.Join(t.TempDir(), "vmlinux")
	err := Preflight(HTTPProbeUprobe)
	if err == nil || !strings.Contains(err.Error(), "kernel BTF missing") || !strings.Contains(err.Error(), kernelBTF) ||
		!strings.Contains(err.Error(), "CONFIG_DEBUG_INFO_BTF") {
		t.Fatalf("Preflight without kernel BTF: %v; want a refusal naming the file and CONFIG_DEBUG_INFO_BTF", err)
	}
}

// deleteSelfEnv, in a child run of the test binary, makes that child delete its own executable before Preflight.
const deleteSelfEnv = "SHANHAI_TEST_DELETE_SELF"

// An agent whose binary was deleted or replaced while it ran (an upgrade in place) was refused by Preflight: it
// opened os.Executable's path, which names the file gone (found by review). It opens /proc/self/exe now, which a
// copy of this test binary that deleted itself checks.
func TestPreflightAfterTheAgentsBinaryIsDeleted(t *testing.T) {
	if os.Getenv(deleteSelfEnv) == "1" {
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(self); err != nil {
			t.Fatal(err)
		}
		if err := Preflight(HTTPProbeUprobe); err != nil {
			t.Fatalf("Preflight with the agent's binary deleted: %v", err)
		}
		return
	}
	requireRoot(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "agent.test")
	copyInPlace(t, self, bin)
	cmd := exec.Command(bin, "-test.run=^"+t.Name()+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), deleteSelfEnv+"=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("a copy that deleted itself: %v\n%s", err, out)
	}
}

// The TCP probe's state-change and retransmit programs are tp_btf programs too since dd444e6, in every HTTP probe
// mode: a kernel without them passed the preflight in uprobe mode and failed only at attach.
func TestPreflightTriesTheTCPProbesBTFTracepoints(t *testing.T) {
	requireRoot(t)
	saved := tcpTracepoints
	t.Cleanup(func() { tcpTracepoints = saved })
	tcpTracepoints = append(slices.Clone(saved), "shanhai_no_such_tracepoint")
	for _, mode := range []string{HTTPProbeUprobe, HTTPProbeSocket} {
		err := Preflight(mode)
		if err == nil || !strings.Contains(err.Error(), "TCP probe") || !strings.Contains(err.Error(), "shanhai_no_such_tracepoint") {
			t.Errorf("Preflight(%s) with a TCP tracepoint missing: %v; want a refusal naming the TCP probe and the tracepoint", mode, err)
		}
	}
}
