package stream_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/stream"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// A credentials change on the server (or a restart with auth briefly wrong)
// makes every reconnect attempt meet the same authorization error. nats.go
// gives up on a server after that error twice unless told otherwise, and a
// consumer whose only server it is then stays closed for ever, even once the
// credentials are right again. The test runs its own nats-server (the shared
// one must not have its auth changed), turns the password away long enough for
// several refused reconnects, restores it and wants the same connection back.
func TestConnectSurvivesAuthChange(t *testing.T) {
	srv := startAuthNATS(t, "right")
	nc, _, closeNATS, err := stream.Connect(fmt.Sprintf("nats://svc:right@%s", srv.addr), "connect-auth-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeNATS() })

	srv.reload(t, "other")
	// Three refusals: one more than nats.go's give-up threshold, so a client
	// that gives up has done so by now, whatever the reconnect timing.
	waitFor(t, 60*time.Second, "three refused reconnects", func() bool {
		return nc.IsClosed() || srv.violations(t) >= 3
	})
	srv.reload(t, "right")
	waitFor(t, 60*time.Second, "the connection back after the password is restored", func() bool {
		if nc.IsClosed() {
			t.Fatalf("the connection closed for good after %v; want it to keep reconnecting (server log:\n%s)", nc.LastError(), srv.log(t))
		}
		return nc.IsConnected()
	})
}

// authNATS is a private nats-server whose one user's password the test changes.
type authNATS struct {
	addr, conf, logPath string
	cmd                 *exec.Cmd
}

// startAuthNATS starts the nats-server binary that scripts/deps.sh installs on
// a free port, with user svc and password, and stops it when t ends.
func startAuthNATS(t *testing.T, password string) *authNATS {
	t.Helper()
	bin := natsServerBinary(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	dir := t.TempDir()
	s := &authNATS{addr: addr, conf: filepath.Join(dir, "nats.conf"), logPath: filepath.Join(dir, "nats.log")}
	s.write(t, password)
	logFile, err := os.Create(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = logFile.Close() })
	s.cmd = exec.Command(bin, "-c", s.conf)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() { _ = s.cmd.Process.Kill(); _ = s.cmd.Wait() })
	waitFor(t, 30*time.Second, "the private nats-server to listen", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	})
	return s
}

// natsServerBinary finds the nats-server scripts/deps.sh builds into its cache
// (the newest version there), else one on PATH; a missing one fails the test
// with the deps script's hint, as pkg/testenv does for a missing server.
func natsServerBinary(t *testing.T) string {
	t.Helper()
	cache := os.Getenv("SHANHAI_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "shanhai")
	}
	found, _ := filepath.Glob(filepath.Join(cache, "bin", "nats-server-v*"))
	if len(found) > 0 {
		sort.Strings(found)
		return found[len(found)-1]
	}
	if bin, err := exec.LookPath("nats-server"); err == nil {
		return bin
	}
	t.Fatalf("no nats-server in %s/bin or on PATH: %s", cache, testenv.Hint)
	return ""
}

func (s *authNATS) write(t *testing.T, password string) {
	t.Helper()
	conf := fmt.Sprintf("listen: %q\nauthorization {\n  user: svc\n  password: %q\n}\n", s.addr, password)
	if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
}

// reload rewrites the password and has the server reload its configuration,
// which drops clients whose credentials no longer hold.
func (s *authNATS) reload(t *testing.T, password string) {
	t.Helper()
	s.write(t, password)
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatalf("reload nats-server: %v", err)
	}
}

func (s *authNATS) log(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// violations counts the connection attempts the server refused for their
// credentials.
func (s *authNATS) violations(t *testing.T) int {
	return bytes.Count(s.log(t), []byte("authentication error"))
}

// waitFor polls cond until it holds, failing t as waiting for what after
// limit (a bound for a stuck test, not a timing goal).
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s after %v", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
