package discovery

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// A call cancelled under an etcd client (as a Ctrl-C during make run's start cancels the parts' registrations) makes
// the client warn. Given EtcdLogger the warning is an slog record; given no logger, the client's own printed it on
// stderr, which the test catches too, so it shows it would see a line there. os.Stderr is swapped for a pipe while
// each client is built (zap's "stderr" is the os.Stderr of that moment): no test here runs in parallel.
func TestEtcdLoggerKeepsTheClientOffStderr(t *testing.T) {
	eps := testenv.Etcd(t)
	cancelledGet := func(cfg clientv3.Config) (stderr string) {
		t.Helper()
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		orig := os.Stderr
		os.Stderr = w
		cfg.Endpoints, cfg.DialTimeout = eps, 2*time.Second
		cli, err := clientv3.New(cfg)
		os.Stderr = orig
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := cli.Get(ctx, Prefix); err == nil {
			t.Fatal("a Get under a cancelled context succeeded")
		}
		_ = cli.Close()
		_ = w.Close()
		out, _ := io.ReadAll(r)
		return string(out)
	}

	if out := cancelledGet(clientv3.Config{}); !strings.Contains(out, `"logger":"etcd-client"`) {
		t.Fatalf("without a logger the client printed %q on stderr, not its warning: the check below proves nothing", out)
	}

	var logs testenv.LogBuffer
	out := cancelledGet(clientv3.Config{Logger: EtcdLogger(slog.New(slog.NewJSONHandler(&logs, nil)))})
	if out != "" {
		t.Fatalf("the client printed on stderr: %s", out)
	}
	var warned bool
	for line := range strings.Lines(logs.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not a JSON record: %q", line)
		}
		if rec["level"] == "DEBUG" {
			t.Fatalf("a debug record passed an info handler: %s", line)
		}
		msg, _ := rec["error"].(string)
		warned = warned || rec["level"] == "WARN" && rec["logger"] == "etcd-client" && strings.Contains(msg, "context canceled")
	}
	if !warned {
		t.Fatalf("no WARN record of the cancelled call, with its error, among:\n%s", logs.String())
	}
}
