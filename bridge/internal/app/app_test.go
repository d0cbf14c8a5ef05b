package app_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	pulsarlog "github.com/apache/pulsar-client-go/pulsar/log"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/segmentio/kafka-go"

	pkgconfig "github.com/shanhai-dev/shanhai/pkg/config"
	"github.com/shanhai-dev/shanhai/pkg/testenv"

	"github.com/shanhai-dev/shanhai/bridge/internal/app"
	"github.com/shanhai-dev/shanhai/bridge/internal/config"
	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
)

// TestEndToEndKafkaToPulsar runs the production wiring against the real
// servers: every message produced to Kafka arrives in the Pulsar archive once,
// in partition order, with metadata and trace context, and the bridge's
// /readyz and /metrics show it.
func TestEndToEndKafkaToPulsar(t *testing.T) {
	t.Parallel()
	brokers := testenv.Kafka(t)
	natsURL := testenv.NATS(t)
	pulsarURL, adminURL := testenv.Pulsar(t)
	harness.LockPulsar(t, false)
	id := harness.ID()
	topic := "bridgee2e." + id + ".orders"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for tp, n := range map[string]int{topic: 3, "bridgee2e." + id + ".dlq": 1} {
		if err := harness.CreateTopic(ctx, brokers, tp, n); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	l, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	admin := l.Addr().String()
	l.Close()
	// The test's own variables alone, not the process environment's (the tests run in parallel).
	var cfg config.Config
	if err := pkgconfig.LoadFrom(&cfg, map[string]string{
		"HTTP_ADDR": addr, "ADMIN_ADDR": admin, "LOG_LEVEL": "warn",
		"KAFKA_BROKERS": strings.Join(brokers, ","), "NATS_URL": natsURL, "PULSAR_URL": pulsarURL, "PULSAR_ADMIN_URL": adminURL,
		"BRIDGE_TOPICS": topic, "BRIDGE_STREAM": "BRIDGEE2E_" + id, "BRIDGE_STREAM_SUBJECTS": "bridgee2e." + id + ".>",
		"BRIDGE_GROUP": "bridgee2e-" + id, "BRIDGE_DLQ_TOPIC": "bridgee2e." + id + ".dlq",
	}); err != nil {
		t.Fatal(err)
	}
	// Cleanups run after the deferred shutdown below: the stream goes once the bridge stopped.
	t.Cleanup(func() { dropStream(t, natsURL, cfg.Stream) })
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(runCtx, cfg) }()
	defer func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(30 * time.Second):
			t.Error("bridge did not shut down within 30s")
		}
	}()

	const n = 500
	var msgs []kafka.Message
	for i := 0; i < n; i++ {
		msgs = append(msgs, harness.Event(i, 37, 512))
	}
	w := harness.Writer(brokers, topic)
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	w.Close()

	pc, err := pulsar.NewClient(pulsar.ClientOptions{URL: pulsarURL, Logger: pulsarlog.DefaultNopLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	recs, err := harness.ReadPulsar(ctx, pc, "persistent://shanhai/events/"+topic, n, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if v := harness.Judge(n, recs); !v.OK() {
		t.Fatalf("archive: %v", v)
	}

	if code, _ := get(t, "http://"+addr+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz = %d with every broker up", code)
	}
	_, metrics := get(t, "http://"+addr+"/metrics")
	for _, leg := range []string{"kafka-nats", "nats-pulsar"} {
		if v := counter(metrics, `bridge_messages_total{`, `leg="`+leg+`"`, `result="ok"`); v < n {
			t.Errorf("bridge_messages_total leg=%s result=ok = %v, want >= %d", leg, v, n)
		}
	}
	if !strings.Contains(metrics, "bridge_hop_duration_seconds_bucket") || !strings.Contains(metrics, "bridge_consumer_lag") {
		t.Error("/metrics lacks the hop latency histogram or consumer lag")
	}
}

func dropStream(t *testing.T, natsURL, stream string) {
	js, nc, err := connectJetStream(natsURL)
	if err == nil {
		defer nc.Close()
		err = js.DeleteStream(context.Background(), stream)
	}
	if err != nil {
		t.Logf("drop stream %s: %v", stream, err)
	}
}

// connectJetStream is a JetStream of its own connection to natsURL, which the caller closes.
func connectJetStream(natsURL string) (jetstream.JetStream, *nats.Conn, error) {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return js, nc, nil
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// counter sums the samples of a metric whose label set contains every want.
func counter(text, prefix string, want ...string) float64 {
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(line, w)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}
