// Package e2e runs the whole platform as separate processes against the real
// servers of scripts/deps.sh and drives it only through the gateway.
package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shanhai-dev/shanhai/e2e/internal/api"
	"github.com/shanhai-dev/shanhai/e2e/internal/otlpsink"
	"github.com/shanhai-dev/shanhai/e2e/internal/stack"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// env is what every subtest shares: one platform, one user.
type env struct {
	st     *stack.Stack
	cli    *api.Client
	sink   *otlpsink.Sink
	token  string
	userID string
	arch   *archive
}

// TestPlatform starts the five binaries once and runs the journeys in order;
// the fault journey goes last because it changes the provider's settings.
func TestPlatform(t *testing.T) {
	e := start(t)
	t.Run("HappyPath", func(t *testing.T) { happyPath(t, e) })
	t.Run("Declined", func(t *testing.T) { declined(t, e) })
	t.Run("ProviderFault", func(t *testing.T) { providerFault(t, e) })
	t.Run("Cancelled", func(t *testing.T) { cancelled(t, e) })
	t.Run("CancelRacingPayment", func(t *testing.T) { cancelRacingPayment(t, e) })
}

func start(t *testing.T) *env {
	t.Helper()
	servers := stack.Servers{
		Redis: testenv.Redis(t), Etcd: testenv.Etcd(t), NATS: testenv.NATS(t), Kafka: testenv.Kafka(t),
	}
	servers.Pulsar, servers.PulsarAdmin = testenv.Pulsar(t)
	dbs := map[string]string{"user": testenv.Postgres(t), "order": testenv.Postgres(t), "payment": testenv.Postgres(t)}
	lockPulsar(t)

	root, err := stack.Root()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	if err := stack.Build(ctx, root, bin); err != nil {
		t.Fatal(err)
	}

	sink := &otlpsink.Sink{}
	srv := httptest.NewServer(sink)
	t.Cleanup(srv.Close)

	logs := os.Getenv("E2E_LOG_DIR")
	if logs == "" {
		logs = t.TempDir()
	}
	// The archive subscription exists before any order, so no event of this
	// run can be trimmed before it is read.
	arch := openArchive(t, servers.Pulsar)

	st, err := stack.Start(ctx, stack.Options{
		Bin: bin, LogDir: logs, Servers: servers, DatabaseURLs: dbs, TracesURL: srv.URL + "/v1/traces",
	})
	if err != nil {
		t.Fatalf("start platform: %v\n%s", err, tails(logs))
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("process logs (in %s):\n%s", logs, st.Tails(40))
		}
		st.Stop()
		dropStream(t, servers.NATS, st.Stream)
	})
	t.Logf("platform %s up: gateway %s, logs in %s", st.ID, st.GatewayURL, logs)

	e := &env{st: st, cli: &api.Client{Base: st.GatewayURL, HTTP: &http.Client{Timeout: 15 * time.Second}}, sink: sink, arch: arch}
	email := "e2e-" + st.ID + "@example.com"
	const password = "correct horse battery staple"
	r, err := e.cli.Register(ctx, email, password, "E2E "+st.ID)
	if err != nil || r.Status != http.StatusCreated {
		t.Fatalf("register through the gateway: %v %v", r, err)
	}
	r, err = e.cli.Login(ctx, email, password)
	if err != nil || (r.Status != http.StatusOK && r.Status != http.StatusCreated) {
		t.Fatalf("log in through the gateway: %v %v", r, err)
	}
	var s api.Session
	if err := r.JSON(&s); err != nil || s.AccessToken == "" || s.UserID == "" {
		t.Fatalf("session %v: %v", r, err)
	}
	e.token, e.userID = s.AccessToken, s.UserID
	waitBridge(t, e, servers.NATS)
	return e
}

// waitBridge returns once this run's bridge carries new Kafka records: it
// starts at the newest offsets, so an event written before its consumer group
// owned the partitions would never arrive. user.registered events are the
// probe; a probe user registered too early is simply replaced by another.
func waitBridge(t *testing.T, e *env, natsURL string) {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatalf("nats: %v", err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync(e.st.Prefix + "shanhai.users.>")
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	ctx := context.Background()
	deadline := time.Now().Add(90 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		email := "probe-" + e.st.ID + "-" + randomHex(3) + "@example.com"
		if r, err := e.cli.Register(ctx, email, "probe password 1234", "probe"); err != nil || r.Status != http.StatusCreated {
			t.Fatalf("register probe: %v %v", r, err)
		}
		if _, err := sub.NextMsg(3 * time.Second); err == nil {
			return
		}
	}
	t.Fatalf("the bridge carried no user.registered event to %sshanhai.users.> within 90 s\n%s", e.st.Prefix, e.st.Tails(30))
}

func dropStream(t *testing.T, natsURL, stream string) {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Logf("drop stream %s: %v", stream, err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := js.DeleteStream(ctx, stream); err != nil {
		t.Logf("drop stream %s: %v", stream, err)
	}
}

// lockPulsar takes the bridge tests' Pulsar lock shared: the bridge's fault
// test restarts Pulsar under an exclusive lock on the same file.
func lockPulsar(t *testing.T) {
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "shanhai-bridge-pulsar.lock"), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatalf("pulsar test lock: %v", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
		f.Close()
		t.Fatalf("pulsar test lock: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() })
}

func tails(dir string) string {
	out := ""
	for name := range stack.Binaries {
		b, err := os.ReadFile(filepath.Join(dir, name+".log"))
		if err != nil {
			continue
		}
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		out += "==== " + name + "\n" + string(b) + "\n"
	}
	return out
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
