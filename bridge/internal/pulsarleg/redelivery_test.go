package pulsarleg_test

import (
	"context"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	pulsarlog "github.com/apache/pulsar-client-go/pulsar/log"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/shanhai-dev/shanhai/pkg/testenv"

	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
	"github.com/shanhai-dev/shanhai/bridge/internal/mapping"
	"github.com/shanhai-dev/shanhai/bridge/internal/metrics"
	"github.com/shanhai-dev/shanhai/bridge/internal/pulsarleg"
)

// TestLegBRedeliveryAfterPulsarConfirmedArchivesNothingTwice: leg B sent every message and Pulsar confirmed it, but
// the JetStream acks were lost (the NATS connection died before the first ack was due, as in a crash), so JetStream
// redelivers all of them from the ack floor to the next bridge: a new NATS connection, a new Pulsar client and so new
// producers, which start with no sequence id of their own (LastSequenceID -1). Pulsar's dedup must drop every replay:
// the archive holds each message once, the replays are counted as duplicates, and the partition is acked to the end.
func TestLegBRedeliveryAfterPulsarConfirmedArchivesNothingTwice(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const n = 20
	for i := range n {
		e.publish(t, i, 0, int64(i), kafkaleg.MsgID(e.route.Topic, 0, int64(i)))
	}

	// The first bridge: its own NATS connection, acks due only after an hour.
	nc, err := nats.Connect(testenv.NATS(t), nats.ReconnectBufSize(-1), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	first := e.opts
	first.JetStream, first.AckInterval = js, time.Hour
	e.leg = pulsarleg.New(first)
	stop := e.run(1)
	if recs := e.read(t, n, 30*time.Second); len(recs) != n {
		stop()
		t.Fatalf("the first bridge archived %d, want %d", len(recs), n)
	}
	nc.Close() // the acks die with the connection
	stop()
	c, err := e.js.Consumer(context.Background(), e.stream, mapping.Name(e.route.Topic, 0))
	if err != nil {
		t.Fatal(err)
	}
	if floor := c.CachedInfo().AckFloor.Stream; floor != 0 {
		t.Fatalf("ack floor %d after the first bridge, want 0: the test needs every message unacked", floor)
	}

	// The second bridge, as after a restart.
	pulsarURL, _ := testenv.Pulsar(t)
	pc, err := pulsar.NewClient(pulsar.ClientOptions{URL: pulsarURL, Logger: pulsarlog.DefaultNopLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	reader := sdkmetric.NewManualReader()
	m, err := metrics.New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	second := e.opts
	second.Pulsar, second.Metrics = pc, m
	e.leg = pulsarleg.New(second)
	stop = e.run(1)
	waitAcked(t, e, 1)
	stop()
	if recs := e.read(t, 1, 5*time.Second); len(recs) != 0 {
		t.Errorf("the redelivered messages archived again: %d more records, the first at offset %d", len(recs), recs[0].Offset)
	}
	for result, want := range map[string]int64{"ok": 0, "duplicate": n} {
		if v, _, err := harness.Int64Metric(reader, "bridge.messages", "result", result); err != nil || v != want {
			t.Errorf("second bridge: bridge_messages_total{result=%q} = %d (%v), want %d", result, v, err, want)
		}
	}
}
