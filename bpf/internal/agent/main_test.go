package agent

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// These tests load and attach real eBPF programs, so they need root. Without it they fail, naming the reason,
// unless SHANHAI_BPF_OPTOUT=1 says explicitly that this run does not cover the probes.
const optOut = "SHANHAI_BPF_OPTOUT"

var binDir string // target binaries built once for the whole package

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bpf-agent-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv(optOut) == "1" {
		t.Skipf("not root and %s=1: eBPF probe tests explicitly opted out", optOut)
	}
	t.Fatalf("eBPF probe tests must run as root (they load and attach BPF programs); run `sudo make test`, or set %s=1 to opt out explicitly", optOut)
}

// build compiles a main package (relative to the module root) once; variant "stripped" passes -ldflags=-s -w.
func build(t testing.TB, pkg, name string, stripped bool) string {
	t.Helper()
	out := filepath.Join(binDir, name)
	if _, err := os.Stat(out); err == nil {
		return out
	}
	args := []string{"build", "-o", out}
	if stripped {
		args = append(args, "-ldflags=-s -w")
	}
	cmd := exec.Command("go", append(args, "../../"+pkg)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

func buildTarget(t *testing.T, stripped bool) string {
	name := "target"
	if stripped {
		name = "target-stripped"
	}
	return build(t, "testdata/target", name, stripped)
}

// target is a running test target process.
type target struct {
	cmd  *exec.Cmd
	base string // http://addr
	pid  int
}

func startTarget(t testing.TB, bin string, env ...string) *target {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tg := &target{cmd: cmd, pid: cmd.Process.Pid}
	t.Cleanup(tg.stop)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("target did not print its address: %v", err)
	}
	tg.base = "http://" + strings.TrimSpace(line)
	return tg
}

func (tg *target) stop() {
	if tg.cmd.ProcessState == nil {
		tg.cmd.Process.Kill()
		tg.cmd.Wait()
	}
}

func (tg *target) get(t *testing.T, c *http.Client, method, path string) string {
	t.Helper()
	req, err := http.NewRequest(method, tg.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// eventually polls cond until it holds or 10 s pass. Kernel counters are updated when a probe fires, which for the
// last request may be just after the client got its response (net/http flushes after ServeHTTP returns).
func eventually(t *testing.T, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// withoutExitPrograms, when set, starts the agents of newAgent with Config.NoExitPrograms: the exactness tests run
// as on kernels before 5.19 (TestProbesWithoutExitPrograms).
var withoutExitPrograms bool

func newAgent(t *testing.T, targets ...string) *Agent {
	t.Helper()
	requireRoot(t)
	a, err := New(Config{Targets: targets, NoExitPrograms: withoutExitPrograms})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func isRoot() bool { return os.Geteuid() == 0 }
