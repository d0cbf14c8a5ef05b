package agent

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests load and attach real eBPF programs, so they need root. Without it they fail, naming the reason,
// unless SHANHAI_BPF_OPTOUT=1 says explicitly that this run does not cover the probes.
const optOut = "SHANHAI_BPF_OPTOUT"

var binDir string // target binaries built once for the whole package

// Tests that call t.Parallel run together once the sequential ones are done; most of their time is spent waiting (for
// targets to start, the verifier, probes to fire), not computing. What a test sets for its agent is in that agent's
// Config (NoExitPrograms, and the unexported knobs slotEntries and goroutinesByUprobe), never in a package variable.
// A test stays sequential if it counts something machine-wide or process-wide (loaded programs, open descriptors, the
// Go heap), or forces pids (ns_last_pid). A
// parallel test probes a file no other test runs (its own copy of a shared binary: ownCopy), so that what its agent
// sees is its own processes. parallelTests is how many run at once unless -test.parallel says otherwise: the default,
// GOMAXPROCS, is 2 on the CI machine, which leaves it mostly idle.
const parallelTests = "4"

func TestMain(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		if err := flag.Set("test.parallel", parallelTests); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
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
	args := []string{"build", "-o", filepath.Join(binDir, name)}
	if stripped {
		args = append(args, "-ldflags=-s -w")
	}
	return buildOnce(t, name, append(os.Environ(), "CGO_ENABLED=0"), append(args, "../../"+pkg)...)
}

var (
	buildsMu sync.Mutex
	builds   = map[string]*buildResult{} // by output name in binDir
)

type buildResult struct {
	once sync.Once
	err  error
}

// buildOnce runs `go args...` (which writes binDir/name) the first time a test asks for name, and returns that path.
// Tests running in parallel that ask for the same binary wait for the one build rather than each writing the file
// again under another test that may be executing it.
func buildOnce(t testing.TB, name string, env []string, args ...string) string {
	t.Helper()
	buildsMu.Lock()
	r := builds[name]
	if r == nil {
		r = &buildResult{}
		builds[name] = r
	}
	buildsMu.Unlock()
	r.once.Do(func() {
		cmd := exec.Command("go", args...)
		cmd.Env = env
		if b, err := cmd.CombinedOutput(); err != nil {
			r.err = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, b)
		}
	})
	if r.err != nil {
		t.Fatal(r.err)
	}
	return filepath.Join(binDir, name)
}

// ownCopy copies a binary shared by the package's tests into the test's temporary directory under the same base
// name. A test that runs in parallel probes its copy: an agent probing the shared file by path would also see, and
// count, the processes other tests start from it.
func ownCopy(t *testing.T, bin string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), filepath.Base(bin))
	copyFile(t, bin, p)
	return p
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
	return startCmd(t, cmd)
}

// startCmd starts cmd, which runs the target (through programs that exec it, keeping the pid), as startTarget.
func startCmd(t testing.TB, cmd *exec.Cmd) *target {
	t.Helper()
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
	eventuallyWithin(t, 10*time.Second, cond)
}

// eventuallyWithin is eventually with a wait of d.
func eventuallyWithin(t *testing.T, d time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
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

func newAgent(t *testing.T, targets ...string) *Agent {
	t.Helper()
	return newAgentWith(t, Config{}, targets...)
}

// newAgentWith is newAgent with cfg's settings (NoExitPrograms, the tests' knobs); its Targets are targets.
func newAgentWith(t *testing.T, cfg Config, targets ...string) *Agent {
	t.Helper()
	requireRoot(t)
	cfg.Targets = targets
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func isRoot() bool { return os.Geteuid() == 0 }
