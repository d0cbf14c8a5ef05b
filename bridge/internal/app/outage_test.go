package app_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	pulsarlog "github.com/apache/pulsar-client-go/pulsar/log"
	"github.com/segmentio/kafka-go"

	pkgconfig "github.com/shanhai-dev/shanhai/pkg/config"
	"github.com/shanhai-dev/shanhai/pkg/freeport"
	"github.com/shanhai-dev/shanhai/pkg/server"
	"github.com/shanhai-dev/shanhai/pkg/testenv"

	"github.com/shanhai-dev/shanhai/bridge/internal/app"
	"github.com/shanhai-dev/shanhai/bridge/internal/config"
	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
)

// bridge is one bridge started by startBridge through the production wiring, on a Kafka topic, stream, group and DLQ
// of its own.
type bridge struct {
	brokers []string
	topic   string
	nats    string           // NATS_URL
	stream  string           // BRIDGE_STREAM
	addr    string           // HTTP: /readyz, /metrics
	pulsar  string           // the real Pulsar's service URL, for reading the archive
	recs    []harness.Record // what archived has read so far
	log     *testenv.LogBuffer
	// stop cancels app.RunWith's context and returns how long it took to return and what it returned; the test's
	// cleanup calls it too (only the first call stops the bridge).
	stop func() (time.Duration, error)
}

// startBridge runs app.RunWith against the real servers with env on top of the test's own variables (PULSAR_URL and
// PULSAR_ADMIN_URL there name servers that may not answer yet) until the test ends. The configuration is loaded from
// those variables alone, not the process environment, and the bridge sets up telemetry of its own: the tests that
// start bridges run in parallel.
func startBridge(t *testing.T, env map[string]string) *bridge {
	t.Helper()
	return startBridgeIn(t, env, server.Part{})
}

// startBridgeIn is startBridge as a part of a host: part's Telemetry, and its Logger when given.
func startBridgeIn(t *testing.T, env map[string]string, part server.Part) *bridge {
	t.Helper()
	b := &bridge{brokers: testenv.Kafka(t), log: &testenv.LogBuffer{}}
	natsURL := testenv.NATS(t)
	pulsarURL, adminURL := testenv.Pulsar(t)
	b.pulsar, b.nats = pulsarURL, natsURL
	harness.LockPulsar(t, false)
	id := harness.ID()
	b.topic = "bridgeout." + id + ".orders"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for tp, n := range map[string]int{b.topic: 3, "bridgeout." + id + ".dlq": 1} {
		if err := harness.CreateTopic(ctx, b.brokers, tp, n); err != nil {
			t.Fatal(err)
		}
	}
	addrs, err := freeport.Addrs(2)
	if err != nil {
		t.Fatal(err)
	}
	b.addr = addrs[0]
	vars := map[string]string{
		"HTTP_ADDR": addrs[0], "ADMIN_ADDR": addrs[1], "LOG_LEVEL": "warn",
		"KAFKA_BROKERS": strings.Join(b.brokers, ","), "NATS_URL": natsURL, "PULSAR_URL": pulsarURL, "PULSAR_ADMIN_URL": adminURL,
		"BRIDGE_TOPICS": b.topic, "BRIDGE_STREAM": "BRIDGEOUT_" + id, "BRIDGE_STREAM_SUBJECTS": "bridgeout." + id + ".>",
		"BRIDGE_GROUP": "bridgeout-" + id, "BRIDGE_DLQ_TOPIC": "bridgeout." + id + ".dlq",
	}
	for k, v := range env {
		vars[k] = v
	}
	var cfg config.Config
	if err := pkgconfig.LoadFrom(&cfg, vars); err != nil {
		t.Fatal(err)
	}
	b.stream = cfg.Stream
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	if part.Logger == nil {
		part.Logger = slog.New(slog.NewJSONHandler(b.log, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	go func() { done <- app.RunWith(runCtx, cfg, part) }()
	var (
		once    sync.Once
		took    time.Duration
		stopErr error
	)
	b.stop = func() (time.Duration, error) {
		once.Do(func() {
			start := time.Now()
			stop()
			select {
			case stopErr = <-done:
			case <-time.After(60 * time.Second):
				stopErr = errors.New("bridge did not shut down within 60s")
			}
			took = time.Since(start)
		})
		return took, stopErr
	}
	// Cleanups run last in first: the bridge stops before its stream is dropped.
	t.Cleanup(func() { dropStream(t, natsURL, cfg.Stream) })
	t.Cleanup(func() {
		if _, err := b.stop(); err != nil {
			t.Error(err)
		}
	})
	// Until its HTTP server listens, a test's first look at /metrics or /readyz would fail on the connection (it
	// did once when nothing slower came first).
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + b.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bridge HTTP server not listening on %s within 30 s: %v", b.addr, err)
		}
	}
	return b
}

// produce writes n events, numbered from first, to the bridge's topic.
func (b *bridge) produce(t *testing.T, first, n int) {
	t.Helper()
	b.write(t, harness.Writer(b.brokers, b.topic), first, n)
}

// write writes n events, numbered from first, with w, and closes it.
func (b *bridge) write(t *testing.T, w *kafka.Writer, first, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = harness.Event(first+i, 37, 512)
	}
	defer w.Close()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
}

// waitCarried waits until leg A has put n messages into JetStream.
func (b *bridge) waitCarried(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, m := get(t, "http://"+b.addr+"/metrics")
		if v := counter(m, "bridge_messages_total{", `leg="kafka-nats"`, `result="ok"`); v >= float64(n) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("leg A did not carry %d messages Kafka → NATS within 2 min while Pulsar was away", n)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// metric sums the samples of a metric on /metrics (prefix: its name and "{") whose label set contains every want.
func (b *bridge) metric(t *testing.T, prefix string, want ...string) float64 {
	t.Helper()
	_, m := get(t, "http://"+b.addr+"/metrics")
	return counter(m, prefix, want...)
}

// readyz returns /readyz's status and body.
func (b *bridge) readyz(t *testing.T) (int, string) {
	t.Helper()
	return get(t, "http://"+b.addr+"/readyz")
}

// awayAddr returns a loopback address nothing listens on: a Pulsar or admin API port that does not answer until the
// test serves on it (serveOn).
func awayAddr(t *testing.T) string {
	t.Helper()
	port, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(port)
}

// away is the set-up the outage tests share: a bridge started on env (on top of startBridge's; a PULSAR_URL or
// PULSAR_ADMIN_URL that does not answer), n records carried Kafka → NATS, and what the bridge must show after hold.
type away struct {
	env map[string]string
	n   int
	// hold is how long the test keeps the outage before the checks once leg A carried everything (and, with
	// policyWait, once bridge_pulsar_policy_waiting first counted a partition).
	hold time.Duration
	// notReady is the /readyz check that must fail then ("" for none).
	notReady string
	// policyWait: bridge_pulsar_policy_waiting must count the partitions waiting for the max message size policy.
	policyWait bool
}

// startAway starts a bridge under a, produces a.n records, waits until leg A carried them (and leg B shows its wait for
// the policy, with a.policyWait), keeps the outage for a.hold, and checks /readyz and bridge_pulsar_policy_waiting.
func startAway(t *testing.T, a away) *bridge {
	t.Helper()
	b := startBridge(t, a.env)
	b.produce(t, 0, a.n)
	b.waitCarried(t, a.n)
	if a.policyWait {
		deadline := time.Now().Add(time.Minute)
		for b.metric(t, "bridge_pulsar_policy_waiting{") < 1 {
			if time.Now().After(deadline) {
				t.Fatal("leg B did not wait for the policy within a minute of leg A carrying")
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	time.Sleep(a.hold)
	if code, body := b.readyz(t); a.notReady != "" && (code != http.StatusServiceUnavailable || !strings.Contains(body, a.notReady)) {
		t.Errorf("/readyz = %d %s during the outage, want 503 naming %s", code, body, a.notReady)
	}
	if v := b.metric(t, "bridge_pulsar_policy_waiting{"); a.policyWait && v < 1 {
		t.Errorf("bridge_pulsar_policy_waiting = %v while leg B waits for the policy, want its waiting partitions", v)
	}
	return b
}

// checkBack checks, once everything was archived after an outage, that /readyz is 200 and no partition waits for the
// max message size policy.
func (b *bridge) checkBack(t *testing.T) {
	t.Helper()
	if code, body := b.readyz(t); code != http.StatusOK {
		t.Errorf("/readyz = %d %s with every broker and the admin API up", code, body)
	}
	if v := b.metric(t, "bridge_pulsar_policy_waiting{"); v != 0 {
		t.Errorf("bridge_pulsar_policy_waiting = %v once the policy was read, want 0", v)
	}
}

// archived reads the archive until n records came in all (the subscription goes on where the last call stopped) or
// none came for within, and checks them all: every one once, in partition order, with its metadata.
func (b *bridge) archived(t *testing.T, n int, within time.Duration) {
	t.Helper()
	pc, err := pulsar.NewClient(pulsar.ClientOptions{URL: b.pulsar, Logger: pulsarlog.DefaultNopLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), within+30*time.Second)
	defer cancel()
	start := time.Now()
	recs, err := harness.ReadPulsar(ctx, pc, "persistent://shanhai/events/"+b.topic, n-len(b.recs), within)
	if err != nil {
		t.Fatal(err)
	}
	b.recs = append(b.recs, recs...)
	t.Logf("%d of %d archived %v after the check started", len(b.recs), n, time.Since(start).Round(time.Millisecond))
	if v := harness.Judge(n, b.recs); !v.OK() {
		t.Fatalf("archive %v", v)
	}
}

// TestBridgeArchivesOncePulsarsAdminAPIAnswers: a bridge started while the Pulsar admin API it reads the topics' max
// message size policy from does not answer (a closed port) carries Kafka → NATS at once, shows on /readyz that leg B
// waits for the policy, and archives everything exactly once in order as soon as the admin API answers (a reverse
// proxy to the real one, started on that port later: the shared Pulsar is never stopped).
func TestBridgeArchivesOncePulsarsAdminAPIAnswers(t *testing.T) {
	t.Parallel()
	harness.LockPulsar(t, false) // before the ports it picks and its time limits: under CI it waits for the fault tests
	_, realAdmin := testenv.Pulsar(t)
	addr := awayAddr(t)
	const n = 300
	b := startAway(t, away{env: map[string]string{"PULSAR_ADMIN_URL": "http://" + addr}, n: n, hold: outage,
		notReady: "pulsar-admin", policyWait: true})
	logs := b.log.String()
	waits, restarts := strings.Count(logs, "leg B waits for"), strings.Count(logs, `"msg":"leg B partition restarting"`)
	if waits == 0 || restarts > 0 {
		t.Errorf("while the admin API was away leg B logged %d waits for the policy and %d partition restarts; want the waits (one a partition) and no restarts", waits, restarts)
	}

	target, err := url.Parse(realAdmin)
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, addr, func(ln net.Listener) error {
		return (&http.Server{Handler: httputil.NewSingleHostReverseProxy(target)}).Serve(ln)
	})
	b.archived(t, n, 60*time.Second)
	b.checkBack(t)
}

// TestBridgeArchivesOncePulsarAnswers: a bridge started while Pulsar does not answer, neither its service URL nor its
// admin API (closed ports), carries Kafka → NATS at once and archives everything exactly once in order as soon as
// Pulsar answers (a TCP proxy to the real Pulsar and a reverse proxy to its admin API, started on those ports later).
func TestBridgeArchivesOncePulsarAnswers(t *testing.T) {
	t.Parallel()
	harness.LockPulsar(t, false) // before the ports it picks and its time limits: under CI it waits for the fault tests
	pulsarURL, adminURL := testenv.Pulsar(t)
	service, err := url.Parse(pulsarURL)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := url.Parse(adminURL)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := freeport.Addrs(2) // not two awayAddr: a port just closed may be handed out again
	if err != nil {
		t.Fatal(err)
	}
	serviceAddr, adminAddr := addrs[0], addrs[1]
	const n = 300
	b := startAway(t, away{env: map[string]string{"PULSAR_URL": "pulsar://" + serviceAddr, "PULSAR_ADMIN_URL": "http://" + adminAddr},
		n: n, hold: outage, notReady: "pulsar"})
	serveOn(t, serviceAddr, func(ln net.Listener) error { return proxyTCP(ln, service.Host) })
	serveOn(t, adminAddr, func(ln net.Listener) error {
		return (&http.Server{Handler: httputil.NewSingleHostReverseProxy(admin)}).Serve(ln)
	})
	b.archived(t, n, 90*time.Second)
	b.checkBack(t)
}

// outage is how long a test keeps Pulsar or its admin API away once leg A carried everything: longer than the Pulsar
// client's operation timeout (30 s), so that leg B's first attempts have given up before it answers.
const outage = 40 * time.Second

// serveOn listens on addr (a port nothing listened on until now) and runs serve until the test ends.
func serveOn(t *testing.T, addr string, serve func(net.Listener) error) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s (taken since it was picked?): %v", addr, err)
	}
	done := make(chan error, 1)
	go func() { done <- serve(ln) }()
	t.Cleanup(func() {
		ln.Close()
		if err := <-done; err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve %s: %v", addr, err)
		}
	})
}

// proxyTCP relays every connection ln accepts to target until ln is closed, then closes the relayed ones.
func proxyTCP(ln net.Listener, target string) error {
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		u, err := net.Dial("tcp", target)
		if err != nil {
			c.Close()
			continue
		}
		mu.Lock()
		conns = append(conns, c, u)
		mu.Unlock()
		wg.Add(2)
		go func() { defer wg.Done(); _, _ = io.Copy(u, c); u.Close() }()
		go func() { defer wg.Done(); _, _ = io.Copy(c, u); c.Close() }()
	}
}
