package stream_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	nc, _, closeNATS, err := stream.Connect(fmt.Sprintf("nats://svc:right@%s", srv.addr), "connect-auth-test", nil)
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

// startAuthNATS starts the nats-server that scripts/deps.sh pins, with user
// svc and password, and stops it when t ends. The server takes a random port
// itself (-1) and names it in a ports file: a port picked by closing a
// listener first could be taken by someone else before the server bound it.
func startAuthNATS(t *testing.T, password string) *authNATS {
	t.Helper()
	bin := natsServerBinary(t)
	dir := t.TempDir()
	s := &authNATS{addr: "127.0.0.1:-1", conf: filepath.Join(dir, "nats.conf"), logPath: filepath.Join(dir, "nats.log")}
	s.write(t, password)
	logFile, err := os.Create(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = logFile.Close() })
	s.cmd = exec.Command(bin, "-c", s.conf, "--ports_file_dir", dir)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() { _ = s.cmd.Process.Kill(); _ = s.cmd.Wait() })
	// The ports file is written once the server listens.
	var ports struct{ NATS []string }
	waitFor(t, 30*time.Second, "the private nats-server's ports file", func() bool {
		found, _ := filepath.Glob(filepath.Join(dir, "*.ports"))
		if len(found) == 0 {
			return false
		}
		b, err := os.ReadFile(found[0])
		return err == nil && json.Unmarshal(b, &ports) == nil && len(ports.NATS) > 0
	})
	u, err := url.Parse(ports.NATS[0])
	if err != nil {
		t.Fatalf("ports file names %q: %v", ports.NATS[0], err)
	}
	s.addr = u.Host
	return s
}

// natsServerBinary is testenv.NATSServerBinary, or the test fails with why
// there is none.
func natsServerBinary(t *testing.T) string {
	t.Helper()
	bin, err := testenv.NATSServerBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
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

// Connect logs the connection's life to the logger it is given. It logged to
// slog.Default: in cmd/shanhai, which hosts five binaries in one process,
// that is the host's logger, so the order and payment parts' NATS
// disconnects went out under neither part's name.
func TestConnectLogsToItsLogger(t *testing.T) {
	srv := startAuthNATS(t, "right")
	var buf testenv.LogBuffer
	log := slog.New(slog.NewJSONHandler(&buf, nil)).With("part", "order")
	_, _, closeNATS, err := stream.Connect(fmt.Sprintf("nats://svc:right@%s", srv.addr), "connect-log-test", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeNATS() })
	srv.reload(t, "other") // the server drops the connection
	waitFor(t, 30*time.Second, "the disconnect in the given logger", func() bool {
		return strings.Contains(buf.String(), `"msg":"nats disconnected"`)
	})
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if !strings.Contains(line, `"part":"order"`) || !strings.Contains(line, `"nats_name":"connect-log-test"`) {
			t.Fatalf("record %s lacks the caller's attributes or the connection's name", line)
		}
	}
}
