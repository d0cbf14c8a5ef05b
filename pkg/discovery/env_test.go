package discovery

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcdClient connects to endpoints and fails, never skips, when etcd does
// not answer.
func etcdClient(t testing.TB, endpoints []string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatalf("etcd client for %v: %v", endpoints, err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := cli.Status(ctx, endpoints[0]); err != nil {
		t.Fatalf("etcd at %v not answering: %v", endpoints, err)
	}
	return cli
}

// ownEtcd is a throwaway etcd on random ports that a test may stop and
// restart; the shared one must never be stopped.
type ownEtcd struct {
	t                      *testing.T
	bin, dir, client, peer string
	cmd                    *exec.Cmd
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startOwnEtcd(t *testing.T) *ownEtcd {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Fatalf("etcd binary not found (apt-get install -y etcd-server): %v", err)
	}
	e := &ownEtcd{t: t, bin: bin, dir: t.TempDir(), client: freePort(t), peer: freePort(t)}
	e.start()
	t.Cleanup(e.stop)
	return e
}

func (e *ownEtcd) start() {
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
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	if err := e.cmd.Start(); err != nil {
		e.t.Fatalf("start etcd: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.client}, DialTimeout: time.Second})
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err = cli.Status(ctx, e.client)
			cancel()
			_ = cli.Close()
			if err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(e.dir + ".log")
			e.t.Fatalf("own etcd on %s not ready: %v\n%s", e.client, err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (e *ownEtcd) stop() {
	if e.cmd == nil || e.cmd.Process == nil {
		return
	}
	_ = e.cmd.Process.Kill()
	_ = e.cmd.Wait()
	e.cmd = nil
}

// eventually polls cond until it holds or within passes.
func eventually(within time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > within {
			return time.Since(start), false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func uniqueService(t *testing.T) string {
	return fmt.Sprintf("test-%s-%d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), time.Now().UnixNano())
}
