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
	"regexp"
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

// natsServerBinary finds the nats-server at the version scripts/deps.sh pins
// (NATS_VERSION), which it builds into its cache, else one on PATH reporting
// that version. The newest by file name was taken before: v2.9 sorts after
// v2.10, and a cache holding another version than the pin ran the test on it.
// A missing one fails the test with the deps script's hint, as pkg/testenv
// does for a missing server.
func natsServerBinary(t *testing.T) string {
	t.Helper()
	version := pinnedNATSVersion(t)
	cache := os.Getenv("SHANHAI_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "shanhai")
	}
	bin := filepath.Join(cache, "bin", "nats-server-"+version)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if onPath, err := exec.LookPath("nats-server"); err == nil {
		out, _ := exec.Command(onPath, "--version").Output()
		if strings.TrimSpace(string(out)) == "nats-server: "+version {
			return onPath
		}
	}
	t.Fatalf("no nats-server %s in %s/bin or on PATH: %s", version, cache, testenv.Hint)
	return ""
}

// pinnedNATSVersion reads NATS_VERSION from scripts/deps.sh at the root of
// the workspace this test runs in.
func pinnedNATSVersion(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.work above the test's directory: cannot find scripts/deps.sh's NATS_VERSION")
		}
		dir = parent
	}
	script, err := os.ReadFile(filepath.Join(dir, "scripts", "deps.sh"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^NATS_VERSION=(v[0-9][^\s#]*)`).FindSubmatch(script)
	if m == nil {
		t.Fatal("scripts/deps.sh sets no NATS_VERSION")
	}
	return string(m[1])
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

// The private server is the version scripts/deps.sh pins, not the newest by
// name: "nats-server-v2.9.0" sorts after "nats-server-v2.14.9", and a cache
// holding both ran the test on 2.9.
func TestNATSServerBinaryIsThePinnedVersion(t *testing.T) {
	cache := t.TempDir()
	if err := os.Mkdir(filepath.Join(cache, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	pinned := filepath.Join(cache, "bin", "nats-server-"+pinnedNATSVersion(t))
	for _, bin := range []string{pinned, filepath.Join(cache, "bin", "nats-server-v2.9.0")} {
		if err := os.WriteFile(bin, nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("SHANHAI_CACHE", cache)
	if got := natsServerBinary(t); got != pinned {
		t.Fatalf("nats-server = %s, want the pinned %s", got, pinned)
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
