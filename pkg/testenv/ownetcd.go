package testenv

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/freeport"
)

// OwnEtcd is a private single-node etcd on free loopback ports, for tests that stop, restart or wipe it: the shared
// one must never be. etcd comes from the PATH, as scripts/deps.sh finds it (the Debian package etcd-server).
type OwnEtcd struct {
	t                      testing.TB
	bin, dir, client, peer string
	cmd                    *exec.Cmd
}

// StartEtcd starts an OwnEtcd with a data directory of its own and stops it when the test ends.
func StartEtcd(t testing.TB) *OwnEtcd {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Fatalf("testenv: etcd is needed for a private etcd: %v\n%s", err, Hint)
	}
	addrs, err := freeport.Addrs(2)
	if err != nil {
		t.Fatal(err)
	}
	e := &OwnEtcd{t: t, bin: bin, dir: t.TempDir(), client: addrs[0], peer: addrs[1]}
	e.Start()
	t.Cleanup(e.Stop)
	return e
}

// Endpoint is the client address (host:port).
func (e *OwnEtcd) Endpoint() string { return e.client }

// Start starts etcd on its data directory and ports and waits until it answers.
func (e *OwnEtcd) Start() {
	e.t.Helper()
	c, p := "http://"+e.client, "http://"+e.peer
	e.cmd = exec.Command(e.bin, "--name", "t", "--data-dir", e.dir,
		"--listen-client-urls", c, "--advertise-client-urls", c,
		"--listen-peer-urls", p, "--initial-advertise-peer-urls", p,
		"--initial-cluster", "t="+p, "--log-level", "error")
	logf, err := os.Create(e.dir + ".log")
	if err != nil {
		e.t.Fatal(err)
	}
	defer logf.Close()
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	if err := e.cmd.Start(); err != nil {
		e.t.Fatalf("testenv: start etcd: %v", err)
	}
	// Ready when /health says so (as scripts/deps.sh waits): over plain HTTP, so this package links no etcd client.
	hc := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := hc.Get(c + "/health")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"health":"true"`) {
				return
			}
			err = fmt.Errorf("/health: %s %s", resp.Status, body)
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(e.dir + ".log")
			e.t.Fatalf("testenv: private etcd on %s not ready: %v\n%s", e.client, err, log)
		}
	}
}

// Stop kills etcd (no graceful stop: what a crash or a node loss leaves); Start brings it back on the same data.
func (e *OwnEtcd) Stop() {
	if e.cmd == nil || e.cmd.Process == nil {
		return
	}
	_ = e.cmd.Process.Kill()
	_ = e.cmd.Wait()
	e.cmd = nil
}

// Wipe deletes the data directory of a stopped etcd: the next Start begins a new cluster at revision 1, as a member
// whose volume was lost does.
func (e *OwnEtcd) Wipe() {
	e.t.Helper()
	if err := os.RemoveAll(e.dir); err != nil {
		e.t.Fatal(err)
	}
}
