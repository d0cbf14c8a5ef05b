package agent

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// agentProc is the agent binary (cmd/agent) running as a child process.
type agentProc struct {
	cmd    *exec.Cmd
	addr   string
	stderr *testenv.LogBuffer
}

func startAgentBinary(t *testing.T, bin, targets string) *agentProc {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := &agentProc{cmd: exec.Command(bin), addr: addr, stderr: &testenv.LogBuffer{}}
	p.cmd.Env = append(os.Environ(), "HTTP_ADDR="+addr, "BPF_TARGETS="+targets, "BPF_SCAN_INTERVAL=100ms")
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	eventually(t, func() (bool, string) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			return resp.StatusCode == 200, "readyz " + resp.Status
		}
		return false, fmt.Sprintf("agent not serving: %v\n%s", err, p.stderr)
	})
	return p
}

func (p *agentProc) stop() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Signal(syscall.SIGTERM)
		p.cmd.Wait()
	}
}

// requests scrapes /metrics for the server request count of pid, GET 200.
func (p *agentProc) requests(t *testing.T, pid int) (uint64, bool) {
	t.Helper()
	resp, err := http.Get("http://" + p.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "shanhai_bpf_http_server_request_duration_seconds_count{") &&
			strings.Contains(l, `pid="`+strconv.Itoa(pid)+`"`) && strings.Contains(l, `method="GET"`) && strings.Contains(l, `status="200"`) {
			n, err := strconv.ParseUint(l[strings.LastIndexByte(l, ' ')+1:], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n, true
		}
	}
	return 0, false
}

func drive(t *testing.T, tg *target, n int) {
	c := &http.Client{}
	for range n {
		tg.get(t, c, "GET", "/work")
	}
}

func (p *agentProc) waitRequests(t *testing.T, pid int, want uint64) {
	t.Helper()
	eventually(t, func() (bool, string) {
		got, _ := p.requests(t, pid)
		return got == want, fmt.Sprintf("agent /metrics: pid %d GET 200 = %d, want %d\n%s", pid, got, want, p.stderr)
	})
}

// TestAgentSurvivesRestarts runs the agent binary and checks /metrics through a target restart from the same file,
// a target whose file was replaced (a deploy: new inode at the same path), and a restart of the agent itself.
func TestAgentSurvivesRestarts(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	agentBin := build(t, "cmd/agent", "agent", false)
	src := buildTarget(t, false)
	bin := filepath.Join(t.TempDir(), "svc")
	copyFile(t, src, bin)

	ag := startAgentBinary(t, agentBin, bin)
	tg := startTarget(t, bin)
	drive(t, tg, 50)
	ag.waitRequests(t, tg.pid, 50)

	// Restart from the same file: already probed, counted under the new pid; the old pid's series go away.
	old := tg.pid
	tg.stop()
	tg = startTarget(t, bin)
	drive(t, tg, 30)
	ag.waitRequests(t, tg.pid, 30)
	eventually(t, func() (bool, string) {
		_, ok := ag.requests(t, old)
		return !ok, fmt.Sprintf("series of exited pid %d still exported", old)
	})

	// Deploy: a new file renamed over the path. The agent must attach to the new file.
	tg.stop()
	copyFile(t, src, bin+".new")
	if err := os.Rename(bin+".new", bin); err != nil {
		t.Fatal(err)
	}
	tg = startTarget(t, bin)
	ag.waitTarget(t, bin, tg.pid)
	drive(t, tg, 20)
	ag.waitRequests(t, tg.pid, 20)

	// The agent restarts: a new agent attaches to the running target and counts from its own start.
	ag.stop()
	if ag.cmd.ProcessState.ExitCode() != 0 {
		t.Fatalf("agent exit %d after SIGTERM\n%s", ag.cmd.ProcessState.ExitCode(), ag.stderr)
	}
	ag = startAgentBinary(t, agentBin, bin)
	ag.waitTarget(t, bin, tg.pid)
	drive(t, tg, 10)
	ag.waitRequests(t, tg.pid, 10)
}

// waitTarget waits until /metrics lists pid as a target with every probe that applies to it attached.
func (p *agentProc) waitTarget(t *testing.T, bin string, pid int) {
	t.Helper()
	eventually(t, func() (bool, string) {
		resp, err := http.Get("http://" + p.addr + "/metrics")
		if err != nil {
			return false, err.Error()
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return strings.Contains(string(b), `shanhai_bpf_target_info{exe="`+bin+`",pid="`+strconv.Itoa(pid)+`",probes="httpserver,goruntime,httpclient,tcpaccept"} 1`),
			"agent does not report the running target:\n" + p.stderr.String()
	})
}

// TestAgentRefusesWithoutRoot runs the agent as nobody: it must exit 1 and say what is missing.
func TestAgentRefusesWithoutRoot(t *testing.T) {
	requireRoot(t) // to switch to another user
	agentBin := build(t, "cmd/agent", "agent", false)
	if err := os.Chmod(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(agentBin)
	cmd.Env = append(os.Environ(), "HTTP_ADDR=127.0.0.1:0", "BPF_TARGETS=x")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("agent as nobody: %v, want exit 1\n%s", err, out)
	}
	if !strings.Contains(string(out), "missing CAP_SYS_ADMIN") {
		t.Fatalf("agent as nobody did not name the missing privilege:\n%s", out)
	}
	t.Logf("%s", out)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}
