package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/shanhai-dev/shanhai/bridge/internal/config"
	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
	"github.com/shanhai-dev/shanhai/bridge/internal/metrics"
	pkgconfig "github.com/shanhai-dev/shanhai/pkg/config"
	"github.com/shanhai-dev/shanhai/pkg/server"
	"github.com/shanhai-dev/shanhai/pkg/stream"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// The bridge, order and payment each create the stream when it is absent,
// and whoever starts first defines it: the bridge's stream must keep
// messages by the same limits as the services' (stream.Ensure), or a
// platform whose bridge started first kept every event for ever, until
// JetStream's store was full and refused the saga's publishes.
func TestBridgeCreatesTheStreamTheServicesWould(t *testing.T) {
	t.Parallel()
	js := jetStream(t, testenv.NATS(t))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id := time.Now().UnixNano()
	byBridge, byServices := fmt.Sprintf("BRIDGESTREAM%d", id), fmt.Sprintf("SVCSTREAM%d", id)
	cfg := config.Config{Stream: byBridge, StreamSubjects: []string{fmt.Sprintf("bst%d.>", id)}, DuplicateWindow: 2 * time.Minute}
	if err := EnsureStream(ctx, js, cfg, slog.Default()); err != nil {
		t.Fatal(err)
	}
	if err := stream.Ensure(ctx, js, stream.Names{Stream: byServices, StreamSubjects: fmt.Sprintf("sst%d.>", id)}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{byBridge, byServices} {
		t.Cleanup(func() { _ = js.DeleteStream(context.Background(), name) })
	}
	b, err := js.Stream(ctx, byBridge)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, byServices)
	if err != nil {
		t.Fatal(err)
	}
	bc, sc := b.CachedInfo().Config, s.CachedInfo().Config
	if bc.MaxAge != sc.MaxAge || bc.MaxBytes != sc.MaxBytes || bc.MaxMsgs != sc.MaxMsgs ||
		bc.Retention != sc.Retention || bc.Storage != sc.Storage || bc.Duplicates != sc.Duplicates {
		t.Errorf("the bridge's stream keeps messages by other limits than the services':\n"+
			"bridge:   max age %v, bytes %d, msgs %d, retention %v, storage %v, duplicates %v\n"+
			"services: max age %v, bytes %d, msgs %d, retention %v, storage %v, duplicates %v",
			bc.MaxAge, bc.MaxBytes, bc.MaxMsgs, bc.Retention, bc.Storage, bc.Duplicates,
			sc.MaxAge, sc.MaxBytes, sc.MaxMsgs, sc.Retention, sc.Storage, sc.Duplicates)
	}
}

// TestBridgeRefusesAStreamWhoseWindowIsShorterThanARepublish: the bridge leaves
// an existing stream as it is, but leg A republishes a message JetStream stored
// without confirming it in time up to 2 × BRIDGE_PUBLISH_TIMEOUT +
// BRIDGE_MAX_BACKOFF later (35 s with the defaults); a stream created by the
// services or an operator with a 5 s window stored such a message twice. The
// bridge with its defaults must refuse that stream, naming it and both values,
// and stop instead of running.
func TestBridgeRefusesAStreamWhoseWindowIsShorterThanARepublish(t *testing.T) {
	t.Parallel()
	natsURL := testenv.NATS(t)
	js := jetStream(t, natsURL)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id := time.Now().UnixNano()
	name, subjects := fmt.Sprintf("SHORTWINDOW%d", id), fmt.Sprintf("sw%d.>", id)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: name, Subjects: []string{subjects}, Storage: jetstream.FileStorage, Duplicates: 5 * time.Second,
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), name) })

	cfg := legAConfig(t, natsURL, fmt.Sprintf("sw%d", id), name, subjects)

	err := EnsureStream(ctx, js, cfg, slog.Default())
	var short *ShortWindowError
	if !errors.As(err, &short) || short.Stream != name || short.Window != 5*time.Second || short.Need != 35*time.Second {
		t.Fatalf("EnsureStream on a stream with a 5 s duplicate window = %v, want a ShortWindowError naming %s, 5s and 35s", err, name)
	}
	for _, want := range []string{name, "5s", "35s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if got := streamWindow(ctx, t, js, name); got != 5*time.Second {
		t.Errorf("the stream's window became %v: the bridge rewrote a setting it does not own", got)
	}

	// The bridge itself stops with that error rather than serving with leg A idle.
	done := make(chan error, 1)
	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { done <- Run(runCtx, cfg) }()
	select {
	case err := <-done:
		if !errors.As(err, &short) {
			t.Fatalf("Run on a stream with a 5 s duplicate window returned %v, want a ShortWindowError", err)
		}
	case <-ctx.Done():
		t.Fatal("Run kept running on a stream with a 5 s duplicate window")
	}

	// A window that outlasts the republish is accepted.
	cfg.PublishTimeout, cfg.MaxBackoff = time.Second, time.Second
	if err := EnsureStream(ctx, js, cfg, slog.Default()); err != nil {
		t.Fatalf("EnsureStream with a 3 s republish span on a 5 s window: %v", err)
	}
}

// legAConfig is the configuration of a bridge running leg A alone on stream with subjects, its topic, group and DLQ
// named from prefix.
func legAConfig(t *testing.T, natsURL, prefix, stream, subjects string) config.Config {
	t.Helper()
	var cfg config.Config
	if err := pkgconfig.LoadFrom(&cfg, map[string]string{
		"HTTP_ADDR": "127.0.0.1:0", "ADMIN_ADDR": "", "LOG_LEVEL": "error",
		"KAFKA_BROKERS": strings.Join(testenv.Kafka(t), ","), "NATS_URL": natsURL, "BRIDGE_LEGS": "kafka-nats",
		"BRIDGE_TOPICS": prefix + ".orders", "BRIDGE_STREAM": stream, "BRIDGE_STREAM_SUBJECTS": subjects,
		"BRIDGE_GROUP": prefix + "-group", "BRIDGE_DLQ_TOPIC": prefix + ".dlq",
	}); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func streamWindow(ctx context.Context, t *testing.T, js jetstream.JetStream, name string) time.Duration {
	t.Helper()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().Config.Duplicates
}

// jetStream is a JetStream client on a connection to url, closed when t ends.
func jetStream(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// A slow consumer earlier in a connection's life leaves its error in
// LastError on a connection that went on working. Run's own close at shutdown
// must not then be logged as NATS giving up on the connection; a close Run
// did not ask for still is.
func TestClosedHandlerIsQuietAboutADeliberateCloseAfterASlowConsumer(t *testing.T) {
	for _, deliberate := range []bool{true, false} {
		var logs strings.Builder
		log := slog.New(slog.NewTextHandler(&logs, nil))
		var closing atomic.Bool
		handled := make(chan struct{})
		var o nats.Options
		for _, opt := range stream.LogEvents(log, &closing) {
			if err := opt(&o); err != nil {
				t.Fatal(err)
			}
		}
		closed := o.ClosedCB
		nc, err := nats.Connect(testenv.NATS(t),
			nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}),
			nats.ClosedHandler(func(c *nats.Conn) { closed(c); close(handled) }))
		if err != nil {
			t.Fatal(err)
		}
		subject := fmt.Sprintf("slowconsumer%d", time.Now().UnixNano())
		release := make(chan struct{})
		sub, err := nc.Subscribe(subject, func(*nats.Msg) { <-release })
		if err != nil {
			t.Fatal(err)
		}
		if err := sub.SetPendingLimits(1, -1); err != nil {
			t.Fatal(err)
		}
		for range 5 {
			if err := nc.Publish(subject, []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "a slow consumer", func() bool { return errors.Is(nc.LastError(), nats.ErrSlowConsumer) })
		close(release)
		closing.Store(deliberate)
		nc.Close()
		<-handled
		if logged := strings.Contains(logs.String(), "closed for good"); logged == deliberate {
			t.Errorf("deliberate close %v: logged as closed for good: %v; want %v (log: %s)", deliberate, logged, !deliberate, logs.String())
		}
	}
}

// waitUntil polls cond until it holds, failing t after 10 s (a bound for a
// stuck test, not a timing goal).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

// TestBridgeRefusesAStreamWhoseSubjectsAnotherStreamHolds: a stream of another
// name already holding subjects that overlap BRIDGE_STREAM_SUBJECTS makes
// JetStream refuse the bridge's stream for as long as it exists. The bridge
// retried that every second for ever, leg A carrying nothing, with a warning
// each second that named neither stream's subjects. It must stop at once with
// an error naming the other stream and its subjects, logged once.
func TestBridgeRefusesAStreamWhoseSubjectsAnotherStreamHolds(t *testing.T) {
	t.Parallel()
	natsURL := testenv.NATS(t)
	js := jetStream(t, natsURL)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id := time.Now().UnixNano()
	other, subjects := fmt.Sprintf("OTHER%d", id), fmt.Sprintf("ov%d.>", id)
	otherSubject := fmt.Sprintf("ov%d.orders.>", id)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: other, Subjects: []string{otherSubject}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), other) })
	mine := fmt.Sprintf("MINE%d", id)
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), mine) }) // should it be created after all

	cfg := legAConfig(t, natsURL, fmt.Sprintf("ov%d", id), mine, subjects)

	var logs testenv.LogBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	ensureCtx, ensureCancel := context.WithTimeout(ctx, 5*time.Second)
	defer ensureCancel()
	err := EnsureStream(ensureCtx, js, cfg, log)
	var overlap *OverlapError
	if !errors.As(err, &overlap) {
		t.Fatalf("EnsureStream with %s on %s = %v, want an OverlapError (log: %s)", subjects, otherSubject, err, logs.String())
	}
	if got := overlap.Others[other]; len(got) != 1 || got[0] != otherSubject {
		t.Errorf("OverlapError names %v, want %s with %s", overlap.Others, other, otherSubject)
	}
	for _, want := range []string{mine, subjects, other, otherSubject} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if n := strings.Count(logs.String(), "not ready"); n != 0 {
		t.Errorf("EnsureStream logged %d retries of a refusal that cannot go away: %s", n, logs.String())
	}

	// The bridge itself stops with that error rather than serving with leg A idle.
	done := make(chan error, 1)
	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { done <- RunWith(runCtx, cfg, server.Part{Logger: log}) }()
	select {
	case err := <-done:
		if !errors.As(err, &overlap) {
			t.Fatalf("Run with a stream whose subjects %s holds returned %v, want an OverlapError", other, err)
		}
	case <-ctx.Done():
		t.Fatal("Run kept running while another stream holds its subjects")
	}
	if n := strings.Count(logs.String(), `"msg":"refusing to start"`); n != 1 {
		t.Errorf("the refusal was logged %d times, want once: %s", n, logs.String())
	}
}

// TestReadinessSeesAStreamWindowShrunkAfterTheStart: EnsureStream checks the
// duplicate window once, at start; someone may shrink it on the server later.
// The stream's readiness check reads the stream's settings anyway, so it says
// not ready, naming the window, and logs the change once, not at every probe;
// it is ready again, with one line, once the window is raised.
func TestReadinessSeesAStreamWindowShrunkAfterTheStart(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js, cfg, logs, log := windowedStream(ctx, t, "SHRUNK")
	name := cfg.Stream
	check := newStreamCheck(js, cfg, log, nil)
	if err := check.probe(ctx); err != nil {
		t.Fatalf("ready check on a stream with a 2 min window: %v", err)
	}

	setWindow(ctx, t, js, name, 5*time.Second)
	for range 3 {
		var short *ShortWindowError
		if err := check.probe(ctx); !errors.As(err, &short) || short.Window != 5*time.Second {
			t.Fatalf("ready check on the stream shrunk to a 5 s window = %v, want a ShortWindowError", err)
		}
	}
	if n := strings.Count(logs.String(), "too short"); n != 1 {
		t.Errorf("the shrunk window was logged %d times in three probes, want once: %s", n, logs.String())
	}
	setWindow(ctx, t, js, name, 2*time.Minute)
	if err := check.probe(ctx); err != nil {
		t.Fatalf("ready check after the window was raised again: %v", err)
	}
	if n := strings.Count(logs.String(), "long enough again"); n != 1 {
		t.Errorf("the raised window was logged %d times, want once: %s", n, logs.String())
	}
}

// TestStreamCheckSeesAShrunkWindowWithoutAProbe: the stream's window was checked again only by /readyz, so a bridge
// whose readiness nobody polled never noticed a window shrunk on the server. Its own check, every interval, must log
// the change once, set bridge_stream_window_short to 1, and say so once and set it to 0 when the window is raised.
func TestStreamCheckSeesAShrunkWindowWithoutAProbe(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js, cfg, logs, log := windowedStream(ctx, t, "WATCHED")
	name := cfg.Stream
	reader := sdkmetric.NewManualReader()
	m, err := metrics.New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	check := newStreamCheck(js, cfg, log, func(short bool) { m.StreamWindowShort(name, short) })
	watchCtx, stop := context.WithCancel(ctx)
	watching := make(chan struct{})
	go func() { defer close(watching); check.watch(watchCtx, 20*time.Millisecond) }()
	defer func() { stop(); <-watching }()
	short := func(want int64) func() bool {
		return func() bool {
			v, ok, err := harness.Int64Metric(reader, "bridge.stream.window.short", "stream", name)
			if err != nil {
				t.Fatal(err)
			}
			return ok && v == want
		}
	}

	waitUntil(t, "bridge_stream_window_short 0 on a 2 min window", short(0))
	setWindow(ctx, t, js, name, 5*time.Second)
	waitUntil(t, "bridge_stream_window_short 1 on the window shrunk to 5 s", short(1))
	waitUntil(t, "the shrunk window logged", func() bool { return strings.Contains(logs.String(), "too short") })
	setWindow(ctx, t, js, name, 2*time.Minute)
	waitUntil(t, "bridge_stream_window_short 0 on the window raised again", short(0))
	waitUntil(t, "the raised window logged", func() bool { return strings.Contains(logs.String(), "long enough again") })
	for _, line := range []string{"too short", "long enough again"} {
		if n := strings.Count(logs.String(), line); n != 1 {
			t.Errorf("%q logged %d times, want once: %s", line, n, logs.String())
		}
	}
}

// windowedStream creates a stream of its own, named from prefix, by EnsureStream with a 2 min window and leg A's
// defaults (a 35 s republish span), deleted when t ends; it returns the configuration, and the logger EnsureStream
// logged to with what it wrote.
func windowedStream(ctx context.Context, t *testing.T, prefix string) (jetstream.JetStream, config.Config, *testenv.LogBuffer, *slog.Logger) {
	t.Helper()
	js := jetStream(t, testenv.NATS(t))
	id := time.Now().UnixNano()
	name := fmt.Sprintf("%s%d", prefix, id)
	cfg := config.Config{Legs: "kafka-nats", Stream: name, StreamSubjects: []string{fmt.Sprintf("%s%d.>", strings.ToLower(prefix), id)},
		DuplicateWindow: 2 * time.Minute, PublishTimeout: 15 * time.Second, MaxBackoff: 5 * time.Second}
	logs := &testenv.LogBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	if err := EnsureStream(ctx, js, cfg, log); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), name) })
	return js, cfg, logs, log
}

// setWindow sets the stream's duplicate window on the server, as an operator would.
func setWindow(ctx context.Context, t *testing.T, js jetstream.JetStream, name string, d time.Duration) {
	t.Helper()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	sc := s.CachedInfo().Config
	sc.Duplicates = d
	if _, err := js.UpdateStream(ctx, sc); err != nil {
		t.Fatal(err)
	}
}

// TestOverlapErrorNamesTheOtherStreamsInOrder: the error listed the other streams in map order, so the same refusal
// read differently from one start (or log line) to the next; it lists them by name.
func TestOverlapErrorNamesTheOtherStreamsInOrder(t *testing.T) {
	e := &OverlapError{Stream: "SHANHAI", Subjects: []string{"shanhai.>"}, Err: errors.New("refused"), Others: map[string][]string{}}
	for _, name := range []string{"E", "B", "D", "A", "C", "F"} {
		e.Others[name] = []string{"shanhai." + strings.ToLower(name) + ".>"}
	}
	want := "A (subjects shanhai.a.>); B (subjects shanhai.b.>); C (subjects shanhai.c.>); D (subjects shanhai.d.>); " +
		"E (subjects shanhai.e.>); F (subjects shanhai.f.>)"
	for range 20 {
		if got := e.Error(); !strings.Contains(got, want) {
			t.Fatalf("OverlapError = %q, want the streams by name: %q", got, want)
		}
	}
}
