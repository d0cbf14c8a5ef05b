package pulsarleg_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	pulsarlog "github.com/apache/pulsar-client-go/pulsar/log"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/shanhai-dev/shanhai/pkg/testenv"

	"github.com/shanhai-dev/shanhai/bridge/internal/dlq"
	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
	"github.com/shanhai-dev/shanhai/bridge/internal/mapping"
	"github.com/shanhai-dev/shanhai/bridge/internal/metrics"
	"github.com/shanhai-dev/shanhai/bridge/internal/pulsarleg"
)

func init() {
	otel.SetTextMapPropagator(propagation.TraceContext{})
	otel.SetTracerProvider(sdktrace.NewTracerProvider())
}

type env struct {
	brokers  []string
	dlqTopic string
	js       jetstream.JetStream
	stream   string
	route    mapping.Route
	pulsar   pulsar.Client
	leg      *pulsarleg.Leg
	opts     pulsarleg.Options // what leg was made with; a test may change them and make another
	admin    string
	tps      map[int]string // traceparent sent per seq
	sizes    map[int]int    // payload size per seq when not 300
	mu       sync.Mutex
}

// setup gives a test its own Kafka topics, JetStream stream, consumer names and meter (harness.ID), on the shared
// servers. The tests that use it call t.Parallel: they share nothing else, and most of their time is spent waiting
// on the brokers (held fetches, idle reads that must stay empty, redeliveries), so they wait together.
func setup(t *testing.T) *env {
	t.Helper()
	natsURL := testenv.NATS(t)
	pulsarURL, adminURL := testenv.Pulsar(t)
	harness.LockPulsar(t, false)
	id := harness.ID()
	e := &env{admin: adminURL, brokers: testenv.Kafka(t), dlqTopic: "bridgetest." + id + ".dlq", stream: "BRIDGETEST_" + id, tps: map[int]string{}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := harness.CreateTopic(ctx, e.brokers, e.dlqTopic, 1); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(natsURL, nats.ReconnectBufSize(-1), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if e.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	if _, err = e.js.CreateStream(ctx, jetstream.StreamConfig{Name: e.stream, Subjects: []string{"bridgetest." + id + ".>"}, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.js.DeleteStream(context.Background(), e.stream) })
	routes, err := mapping.Routes("bridgetest."+id+".orders", []string{"bridgetest." + id + ".>"}, "shanhai/events")
	if err != nil {
		t.Fatal(err)
	}
	e.route = routes[0]
	if e.pulsar, err = pulsar.NewClient(pulsar.ClientOptions{URL: pulsarURL, Logger: pulsarlog.DefaultNopLogger()}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.pulsar.Close)
	m, err := metrics.New(sdkmetric.NewMeterProvider().Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	e.opts = pulsarleg.Options{
		JetStream: e.js, Stream: e.stream, Pulsar: e.pulsar, Routes: routes, DLQ: dlq.NewKafka(e.brokers, e.dlqTopic, time.Second, slog.Default()),
		InFlight: 32, SinkRetries: 2,
		AckInterval: 50 * time.Millisecond, DrainTimeout: 5 * time.Second, MaxBackoff: time.Second,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), Metrics: m,
		KafkaCluster: func(ctx context.Context) (string, error) { return kafkaleg.ClusterID(ctx, e.brokers) },
	}
	e.leg = pulsarleg.New(e.opts)
	return e
}

// publish puts what leg A would: seq's message of partition p at offset o.
// msgID lets a test bypass JetStream dedup to simulate a replay older than the window.
func (e *env) publish(t *testing.T, seq, p int, o int64, msgID string) {
	t.Helper()
	e.publishOn(t, e.route.PartitionSubject(p), seq, p, o, msgID)
}

// publishOn is publish to another subject: the topic's own, where a bridge
// from before subjects per partition put every partition. alter, if given,
// changes the headers last, as a publisher other than leg A might.
func (e *env) publishOn(t *testing.T, subject string, seq, p int, o int64, msgID string, alter ...func(nats.Header)) {
	t.Helper()
	size := 300
	if n, ok := e.sizes[seq]; ok {
		size = n
	}
	k := harness.Event(seq, 10, size)
	h := nats.Header{}
	for _, kh := range k.Headers {
		h[kh.Key] = []string{string(kh.Value)}
	}
	e.mu.Lock()
	e.tps[seq] = h.Get("traceparent")
	e.mu.Unlock()
	h[kafkaleg.HeaderTopic] = []string{e.route.Topic}
	h[kafkaleg.HeaderPartition] = []string{strconv.Itoa(p)}
	h[kafkaleg.HeaderOffset] = []string{strconv.FormatInt(o, 10)}
	h[kafkaleg.HeaderKey] = []string{string(k.Key)}
	h[kafkaleg.HeaderTimestamp] = []string{strconv.FormatInt(time.Now().UnixMilli(), 10)}
	h[jetstream.MsgIDHeader] = []string{msgID}
	for _, f := range alter {
		f(h)
	}
	if _, err := e.js.PublishMsg(context.Background(), &nats.Msg{Subject: subject, Header: h, Data: k.Value}); err != nil {
		t.Fatal(err)
	}
}

// run starts one Partition per partition as the Kafka owner would; the
// returned function stops them gracefully (stop, then the generation ends).
func (e *env) run(partitions int) func() {
	gen, endGen := context.WithCancel(context.Background())
	stop, doStop := context.WithCancel(context.Background())
	var wg, drained sync.WaitGroup
	for p := 0; p < partitions; p++ {
		wg.Add(1)
		drained.Add(1)
		var once sync.Once
		go func() {
			defer wg.Done()
			e.leg.Partition(gen, stop, e.route.Topic, p, func() { once.Do(drained.Done) })
		}()
	}
	return func() {
		doStop()
		drained.Wait()
		endGen()
		wg.Wait()
	}
}

// recreateStream deletes the stream and creates it again with the same configuration: empty, its sequences from 1.
func (e *env) recreateStream(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	st, err := e.js.Stream(ctx, e.stream)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.js.DeleteStream(ctx, e.stream); err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.CreateStream(ctx, st.CachedInfo().Config); err != nil {
		t.Fatal(err)
	}
}

func (e *env) read(t *testing.T, want int, idle time.Duration) []harness.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	recs, err := harness.ReadPulsar(ctx, e.pulsar, e.route.PulsarTopic, want, idle)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// The Pulsar key is the Kafka record's key: one leg A carried base64 because NATS would trim it (" order-1 ") is
// decoded; one that is not UTF-8 stays base64, as a Pulsar key is a string.
func TestLegBArchivesTheRecordKey(t *testing.T) {
	t.Parallel()
	e := setup(t)
	keys := [][]byte{[]byte(" order-1 "), {0xff, 0}}
	for i, k := range keys {
		e.publishOn(t, e.route.PartitionSubject(0), i, 0, int64(i), kafkaleg.MsgID(e.route.Topic, 0, int64(i)), func(h nats.Header) {
			h[kafkaleg.HeaderKey], h[kafkaleg.HeaderKeyEncoding] = []string{base64.StdEncoding.EncodeToString(k)}, []string{"base64"}
		})
	}
	stop := e.run(1)
	defer stop()
	recs := e.read(t, len(keys), 30*time.Second)
	if len(recs) != len(keys) {
		t.Fatalf("archived %d of %d", len(recs), len(keys))
	}
	if want := []string{" order-1 ", base64.StdEncoding.EncodeToString(keys[1])}; recs[0].Key != want[0] || recs[1].Key != want[1] {
		t.Fatalf("pulsar keys %q, %q; want %q", recs[0].Key, recs[1].Key, want)
	}
}

func TestLegBArchivesEachPartitionInOffsetOrderExactlyOnce(t *testing.T) {
	t.Parallel()
	e := setup(t)
	// Three partitions interleaved in the stream, offsets with gaps.
	const per = 100
	seq := 0
	for i := 0; i < per; i++ {
		for p := 0; p < 3; p++ {
			o := int64(i*3 + p%2)
			e.publish(t, seq, p, o, kafkaleg.MsgID(e.route.Topic, p, o))
			seq++
		}
	}
	stop := e.run(3)
	recs := e.read(t, 3*per, 30*time.Second)
	v := harness.Judge(3*per, recs)
	if !v.OK() {
		t.Fatalf("archive: %v", v)
	}
	for _, r := range recs {
		if r.Props[pulsarleg.PropTopic] != e.route.Topic || r.EventTime.IsZero() {
			t.Fatalf("properties %v, event time %v", r.Props, r.EventTime)
		}
		sent := e.tps[r.Seq]
		if harness.TraceID(r.Props["traceparent"]) != harness.TraceID(sent) || harness.SpanID(r.Props["traceparent"]) == harness.SpanID(sent) {
			t.Fatalf("traceparent %q: want trace of %q with a new span", r.Props["traceparent"], sent)
		}
	}
	// JetStream was acked up to the end once Pulsar confirmed.
	waitAcked(t, e, 3)
	stop()

	// A restart re-reads from the ack floor; replays older than the dedup
	// window (new msg ids) must not reach Pulsar twice, new offsets must.
	for p := 0; p < 3; p++ {
		for i := 0; i < 5; i++ {
			o := int64(i * 3)
			e.publish(t, 1000+p*10+i, p, o, "replay-"+strconv.Itoa(p)+"-"+strconv.Itoa(i))
		}
		for i := 0; i < 10; i++ {
			o := int64(1000 + i)
			e.publish(t, seq, p, o, kafkaleg.MsgID(e.route.Topic, p, o))
			seq++
		}
	}
	stop = e.run(3)
	defer stop()
	more := e.read(t, seq-3*per+1, 5*time.Second) // one more than expected: the read must go idle with exactly the new ones
	if v := harness.Judge(seq, append(recs, more...)); !v.OK() {
		t.Fatalf("archive after restart with stale replays: %v", v)
	}
}

// TestLegBArchivesAnotherKafkaClustersOffsetsAgain: every embedded run's Kafka (kfake) counts each partition's offsets
// from 0, as does a Kafka that came back empty. Leg B sends with sequence id = offset, and its producers were named by
// the partition alone, so Pulsar's dedup took the second cluster's records for replays of the first's and dropped them
// until their offsets passed the old ones, while the bridge counted them ok: a second embedded run with PULSAR_URL
// archived nothing of its first orders. Two runs here, each with a JetStream stream and a Kafka cluster of its own, into
// one Pulsar topic. (A restart against the same cluster still drops its replays:
// TestLegBArchivesEachPartitionInOffsetOrderExactlyOnce.)
func TestLegBArchivesAnotherKafkaClustersOffsetsAgain(t *testing.T) {
	t.Parallel()
	e := setup(t)
	run := func(cluster string, seqs ...int) {
		t.Helper()
		o := e.opts
		o.KafkaCluster = func(context.Context) (string, error) { return cluster, nil }
		e.leg = pulsarleg.New(o)
		for offset, seq := range seqs {
			e.publish(t, seq, 0, int64(offset), kafkaleg.MsgID(e.route.Topic, 0, int64(offset)))
		}
		stop := e.run(1)
		waitAcked(t, e, 1)
		stop()
	}
	run("first-run", 0, 1, 2, 3, 4)
	e.recreateStream(t) // the next run's JetStream starts empty too, as an embedded run's does
	run("second-run", 5, 6, 7)
	recs := e.read(t, 9, 5*time.Second) // one more than sent: the read must go idle with exactly these
	var seqs []int
	for _, r := range recs {
		seqs = append(seqs, r.Seq)
	}
	if want := []int{0, 1, 2, 3, 4, 5, 6, 7}; !slices.Equal(seqs, want) {
		t.Fatalf("archived events %v, want %v", seqs, want)
	}
}

// TestLegBCountsWhatPulsarsDedupDropped: a replay Pulsar's dedup drops is answered like a stored message, and leg B
// counted it bridge_messages_total{leg="nats-pulsar",result="ok"}: an archive lost to the dedup (a second embedded run,
// TestLegBArchivesAnotherKafkaClustersOffsetsAgain) looked archived. Its receipt has no position; it is now counted as
// result="duplicate". Replays of offsets 0-4 with new message ids (outside JetStream's window) after they were archived.
func TestLegBCountsWhatPulsarsDedupDropped(t *testing.T) {
	t.Parallel()
	e := setup(t)
	m, reader := harness.Metrics(t)
	o := e.opts
	o.Metrics = m
	e.leg = pulsarleg.New(o)
	for i := range 5 {
		e.publish(t, i, 0, int64(i), kafkaleg.MsgID(e.route.Topic, 0, int64(i)))
	}
	stop := e.run(1)
	waitAcked(t, e, 1)
	stop()
	for i := range 5 {
		e.publish(t, 5+i, 0, int64(i), "replay-"+strconv.Itoa(i))
	}
	stop = e.run(1)
	waitAcked(t, e, 1)
	stop()
	if recs := e.read(t, 6, 5*time.Second); len(recs) != 5 {
		t.Fatalf("archived %d, want the first 5", len(recs))
	}
	wantResults(t, reader, map[string]int64{"ok": 5, "duplicate": 5})
}

// TestLegBUpgradeFromOneSubjectPerTopic: the stream holds what a bridge from
// before subjects per partition wrote (every partition on the topic's
// subject), then per-partition messages. All must be archived once, in offset
// order; once the old subject holds nothing unarchived, a restarted session
// filters on the partition's subject alone.
func TestLegBUpgradeFromOneSubjectPerTopic(t *testing.T) {
	t.Parallel()
	e := setup(t)
	seq := 0
	for i := 0; i < 40; i++ {
		for p := 0; p < 3; p++ {
			o := int64(i)
			if i < 20 {
				e.publishOn(t, e.route.Subject, seq, p, o, kafkaleg.MsgID(e.route.Topic, p, o))
			} else {
				e.publish(t, seq, p, o, kafkaleg.MsgID(e.route.Topic, p, o))
			}
			seq++
		}
	}
	stop := e.run(3)
	recs := e.read(t, seq, 30*time.Second)
	if v := harness.Judge(seq, recs); !v.OK() {
		t.Fatalf("archive across the upgrade: %v", v)
	}
	waitAcked(t, e, 3)
	before := e.consumer(t, 1)
	if got, want := before.Config.FilterSubjects, []string{e.route.PartitionSubject(1), e.route.Subject}; !slices.Equal(got, want) {
		t.Fatalf("first session filters %q (%q), want %q", got, before.Config.FilterSubject, want)
	}
	stop()

	stop = e.run(3)
	defer stop()
	deadline := time.Now().Add(30 * time.Second)
	after := e.consumer(t, 1)
	for !after.Created.After(before.Created) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		after = e.consumer(t, 1)
	}
	if after.Config.FilterSubject != e.route.PartitionSubject(1) || len(after.Config.FilterSubjects) != 0 {
		t.Fatalf("after the old subject was archived: filter %q %q, want only %q",
			after.Config.FilterSubject, after.Config.FilterSubjects, e.route.PartitionSubject(1))
	}
	e.publish(t, seq, 1, 40, kafkaleg.MsgID(e.route.Topic, 1, 40))
	more := e.read(t, 2, 5*time.Second) // one more than expected: the read must go idle with exactly the new one
	if v := harness.Judge(seq+1, append(recs, more...)); !v.OK() {
		t.Fatalf("archive after the restart: %v", v)
	}
}

// TestLegBDeadLettersMessagesWithoutItsMetadata: a message on a partition's
// subject that leg A did not write for that partition (no offset, a bad one,
// another partition's coordinates) has no sequence id to archive it under. It
// goes to the DLQ and the partition moves on; retrying it stopped the
// partition's archive for good.
func TestLegBDeadLettersMessagesWithoutItsMetadata(t *testing.T) {
	t.Parallel()
	e := setup(t)
	subject := e.route.PartitionSubject(0)
	bad := []func(nats.Header){
		func(h nats.Header) { delete(h, kafkaleg.HeaderOffset) },
		func(h nats.Header) { h[kafkaleg.HeaderOffset] = []string{"x"} },
		func(h nats.Header) { h[kafkaleg.HeaderPartition] = []string{"2"} },
		func(h nats.Header) { // and a binary key, which the letter must carry as the record's bytes
			delete(h, kafkaleg.HeaderOffset)
			h[kafkaleg.HeaderKey], h[kafkaleg.HeaderKeyEncoding] = []string{base64.StdEncoding.EncodeToString([]byte{0xff, 0})}, []string{"base64"}
		},
	}
	for i := 0; i <= len(bad); i++ {
		e.publish(t, i, 0, int64(i), kafkaleg.MsgID(e.route.Topic, 0, int64(i)))
		if i < len(bad) {
			e.publishOn(t, subject, 100+i, 0, int64(100+i), "bad-"+strconv.Itoa(i), bad[i])
		}
	}
	stop := e.run(1)
	defer stop()
	recs := e.read(t, len(bad)+2, 10*time.Second) // one more than expected: the read must go idle with exactly the good ones
	if v := harness.Judge(len(bad)+1, recs); !v.OK() {
		t.Fatalf("archive: %v", v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	letters, err := harness.ReadDeadLetters(ctx, e.brokers, e.dlqTopic, len(bad))
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range letters {
		h := harness.Headers(m)
		if seq, _ := harness.Seq(m.Value); seq != 100+i || h[dlq.HeaderReason] != "metadata" || h[dlq.HeaderLeg] != metrics.LegB {
			t.Fatalf("dead letter %d: seq %d, headers %v", i, seq, h)
		}
		if h[dlq.HeaderBridgePrefix+kafkaleg.HeaderKeyEncoding] == "base64" {
			if want, _ := base64.StdEncoding.DecodeString(h[dlq.HeaderBridgePrefix+kafkaleg.HeaderKey]); !bytes.Equal(m.Key, want) {
				t.Fatalf("dead letter %d: key %q, want the record's %q", i, m.Key, want)
			}
		}
		// The record's own headers, sorted by name, and nothing of the bridge's outside dlq_*: a replay into Kafka
		// that drops the dlq_* headers carries no kafka_* metadata or Nats-Msg-Id of this trip.
		var own []string
		for _, kh := range harness.Event(100+i, 10, 300).Headers {
			if kh.Key != "traceparent" { // the event's own is random; the one published is checked below
				own = append(own, kh.Key)
			}
		}
		slices.Sort(own)
		var carried []string
		for _, kh := range m.Headers {
			if !strings.HasPrefix(kh.Key, "dlq_") && kh.Key != "traceparent" {
				carried = append(carried, kh.Key)
			}
		}
		if !slices.Equal(carried, own) || h["traceparent"] != e.tps[100+i] {
			t.Fatalf("dead letter %d carries %v (traceparent %q), want the record's own %v in order (%q)", i, carried,
				h["traceparent"], own, e.tps[100+i])
		}
		if h[dlq.HeaderBridgePrefix+jetstream.MsgIDHeader] != "bad-"+strconv.Itoa(i) ||
			h[dlq.HeaderBridgePrefix+kafkaleg.HeaderTopic] != e.route.Topic {
			t.Fatalf("dead letter %d: the bridge's fields are not kept under %s: %v", i, dlq.HeaderBridgePrefix, h)
		}
	}
	waitAcked(t, e, 1)
}

// consumer is partition p's leg B consumer as the server has it now.
func (e *env) consumer(t *testing.T, p int) *jetstream.ConsumerInfo {
	t.Helper()
	c, err := e.js.Consumer(context.Background(), e.stream, mapping.Name(e.route.Topic, p))
	if err != nil {
		t.Fatal(err)
	}
	return c.CachedInfo()
}

// waitAcked waits until each partition's consumer has acked the last message the stream holds on the consumer's
// subjects, so the partition's session has handled (and counted) everything published before the call. It used to wait
// for NumPending and NumAckPending of 0, but JetStream adds a stored message to a consumer's NumPending after the
// publish's ack, not with it: right after a publish, the consumer of the run before (still there until the new session
// replaces it) could read as done with nothing new sent, and the test stopped the run there (duplicate = 0 once in a
// loaded go test ./...). The stream's last sequence is final once the publish is acked, and the ack floor moves only
// when the session acks.
func waitAcked(t *testing.T, e *env, partitions int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for p := 0; p < partitions; p++ {
		for {
			done, err := e.acked(p)
			if done {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("partition %d consumer never acked the stream's last message: %v", p, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// acked reports whether partition p's consumer has acked the last message stored on its filter subjects.
func (e *env) acked(p int) (bool, error) {
	ctx := context.Background()
	c, err := e.js.Consumer(ctx, e.stream, mapping.Name(e.route.Topic, p))
	if err != nil {
		return false, err
	}
	info := c.CachedInfo()
	s, err := e.js.Stream(ctx, e.stream)
	if err != nil {
		return false, err
	}
	subjects := info.Config.FilterSubjects
	if info.Config.FilterSubject != "" {
		subjects = append(subjects, info.Config.FilterSubject)
	}
	var last uint64
	for _, subject := range subjects {
		m, err := s.GetLastMsgForSubject(ctx, subject)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return false, err
		}
		last = max(last, m.Sequence)
	}
	if info.AckFloor.Stream < last {
		return false, fmt.Errorf("ack floor %d, last message %d", info.AckFloor.Stream, last)
	}
	return true, nil
}

// TestLegBInflightReturnsToZeroAfterAStalledStop: a session that ends with sends Pulsar has not answered (a stop or a
// rebalance while the broker stalls) left them in bridge_inflight{leg="nats-pulsar"} for good: the producer's Close
// fails them, and nothing handled those answers. The producer here passes three sends and holds the rest.
func TestLegBInflightReturnsToZeroAfterAStalledStop(t *testing.T) {
	t.Parallel()
	e := setup(t)
	reader := sdkmetric.NewManualReader()
	m, err := metrics.New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	o := e.opts
	o.Metrics, o.Pulsar, o.DrainTimeout = m, stallingClient(e.pulsar, 3), 500*time.Millisecond
	e.leg = pulsarleg.New(o)
	for i := range 10 {
		e.publish(t, i, 0, int64(i), kafkaleg.MsgID(e.route.Topic, 0, int64(i)))
	}
	stop := e.run(1)
	if recs := e.read(t, 3, 10*time.Second); len(recs) != 3 {
		t.Fatalf("archived %d, want the 3 sends the producer passes", len(recs))
	}
	inflight := func() int64 {
		n, _, err := harness.Int64Metric(reader, "bridge.inflight", "leg", metrics.LegB)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for deadline := time.Now().Add(30 * time.Second); inflight() != 7; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("bridge_inflight{leg=nats-pulsar} = %d while 7 sends are held, want 7", inflight())
		}
	}
	stop()
	if n := inflight(); n != 0 {
		t.Fatalf("bridge_inflight{leg=nats-pulsar} = %d after the leg stopped, want 0", n)
	}
}

// wrappingClient hands each producer it creates to wrap, which stands in for a broker's behaviour.
type wrappingClient struct {
	pulsar.Client
	wrap func(pulsar.Producer) pulsar.Producer
}

func (c wrappingClient) CreateProducer(o pulsar.ProducerOptions) (pulsar.Producer, error) {
	p, err := c.Client.CreateProducer(o)
	if err != nil {
		return nil, err
	}
	return c.wrap(p), nil
}

// stallingClient's producers pass the first pass sends to Pulsar and hold the rest unanswered (a frozen broker)
// until Close, which fails them as the real client's Close does.
func stallingClient(c pulsar.Client, pass int) pulsar.Client {
	return wrappingClient{Client: c, wrap: func(p pulsar.Producer) pulsar.Producer { return &stallingProducer{Producer: p, pass: pass} }}
}

type stallingProducer struct {
	pulsar.Producer
	pass int

	mu   sync.Mutex
	n    int
	held []func()
}

func (p *stallingProducer) SendAsync(ctx context.Context, m *pulsar.ProducerMessage, cb func(pulsar.MessageID, *pulsar.ProducerMessage, error)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n++; p.n <= p.pass {
		p.Producer.SendAsync(ctx, m, cb)
		return
	}
	p.held = append(p.held, func() { cb(nil, m, pulsar.ErrProducerClosed) })
}

func (p *stallingProducer) Close() {
	p.mu.Lock()
	held := p.held
	p.held = nil
	p.mu.Unlock()
	for _, fail := range held {
		fail()
	}
	p.Producer.Close()
}

// TestLegBCountsWhatTheStreamsLimitsRemovedUnread: a stream's limits (MaxAge in production, here MaxMsgs with
// DiscardOld) remove the oldest messages whether leg B archived them or not, and its consumer then starts at the
// stream's first sequence without a word: offsets 1-3 were lost unseen and unmetered. While Pulsar is unavailable the
// stream keeps two messages of five; once Pulsar is back leg B archives the two, logs an error and counts the three in
// bridge_stream_lost_total.
func TestLegBCountsWhatTheStreamsLimitsRemovedUnread(t *testing.T) {
	t.Parallel()
	e := setup(t)
	gate := &gatedClient{}
	lost := e.lossAfter(t, gate, func() {
		e.limitStream(t, func(c *jetstream.StreamConfig) { c.MaxMsgs, c.Discard = 2, jetstream.DiscardOld })
		e.publishOffsets(t, 1, 5)
		// Open again once offset 1, delivered to the session before the stream removed it, was refused: sent now it
		// would be archived.
		gate.waitRefused(t, 1)
	})
	if lost != 3 {
		t.Fatalf("bridge_stream_lost_total = %d, want the 3 offsets the stream removed unread", lost)
	}
}

// TestLegBCountsALossOnce: every session that read offset 4 after the gap started from the last acked message (offset
// 0) and counted offsets 1-3 again; with Pulsar refusing sends for three sessions, 6 or more were counted.
func TestLegBCountsALossOnce(t *testing.T) {
	t.Parallel()
	e := setup(t)
	gate := &gatedClient{producers: true}
	lost := e.lossAfter(t, gate, func() {
		e.limitStream(t, func(c *jetstream.StreamConfig) { c.MaxMsgs, c.Discard = 2, jetstream.DiscardOld })
		e.publishOffsets(t, 1, 5)
		gate.waitRefused(t, 3) // the sessions that read offset 4 fail and start again from the ack floor
	})
	if lost != 3 {
		t.Fatalf("bridge_stream_lost_total = %d, want the 3 offsets the stream removed unread, counted once", lost)
	}
}

// TestLegBCountsWhatAPerSubjectLimitRemovedUnread: MaxMsgsPerSubject removes partition 0's offsets 1-3 unread while
// another partition's older message stays, so the stream's first sequence does not move: leg B compared that and
// counted nothing.
func TestLegBCountsWhatAPerSubjectLimitRemovedUnread(t *testing.T) {
	t.Parallel()
	e := setup(t)
	gate := &gatedClient{}
	lost := e.lossAfter(t, gate, func() {
		e.publish(t, 100, 1, 0, kafkaleg.MsgID(e.route.Topic, 1, 0)) // partition 1 (not run here)
		e.limitStream(t, func(c *jetstream.StreamConfig) { c.MaxMsgsPerSubject, c.Discard = 2, jetstream.DiscardOld })
		e.publishOffsets(t, 1, 5)
		gate.waitRefused(t, 1)
	})
	if lost != 3 {
		t.Fatalf("bridge_stream_lost_total = %d, want the 3 offsets (1-3) the per-subject limit removed unread", lost)
	}
}

// TestLegBCountsWhatADeletedStreamTookUnread: offsets 1-3, stored in a stream deleted and created again before leg B
// archived them, are gone with it. The new stream's sequences start over at 1, at or below the last one read, and leg
// B looked for a loss only after a higher sequence.
func TestLegBCountsWhatADeletedStreamTookUnread(t *testing.T) {
	t.Parallel()
	e := setup(t)
	lost := e.lossAfter(t, &gatedClient{}, func() {
		e.publishOffsets(t, 1, 3)
		e.recreateStream(t)
		e.publishOffsets(t, 4, 5)
	})
	if lost != 3 {
		t.Fatalf("bridge_stream_lost_total = %d, want 3: offsets 1-3 went with the deleted stream unarchived", lost)
	}
}

// lossAfter runs leg B on partition 0 behind gate until offset 0 is archived and acked, closes the gate and calls lose,
// which publishes offsets 1-5 and has the stream remove 1-3, opens the gate, and returns bridge_stream_lost_total of
// the partition once offsets 4 and 5, and nothing else, are archived (leg B counts a loss before it sends the message
// after it, so the count is final by then).
func (e *env) lossAfter(t *testing.T, gate *gatedClient, lose func()) int64 {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	m, err := metrics.New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	gate.Client = e.pulsar
	gate.open.Store(true)
	o := e.opts
	o.Metrics, o.Pulsar = m, gate
	e.leg = pulsarleg.New(o)
	e.publish(t, 0, 0, 0, kafkaleg.MsgID(e.route.Topic, 0, 0))
	stop := e.run(1)
	defer stop()
	if recs := e.read(t, 1, 10*time.Second); len(recs) != 1 {
		t.Fatalf("archived %d, want offset 0", len(recs))
	}
	waitAcked(t, e, 1)
	gate.open.Store(false) // the partition's sessions fail and start again from the ack floor
	lose()
	gate.open.Store(true)
	recs := e.read(t, 3, 5*time.Second) // one more than expected: the read must go idle with exactly offsets 4 and 5
	if len(recs) != 2 || recs[0].Offset != 4 || recs[1].Offset != 5 {
		t.Fatalf("archived %v after the loss, want offsets 4 and 5", recs)
	}
	lost, _, err := harness.Int64Metric(reader, "bridge.stream.lost", "partition", "0")
	if err != nil {
		t.Fatal(err)
	}
	return lost
}

// limitStream changes the stream's configuration.
func (e *env) limitStream(t *testing.T, change func(*jetstream.StreamConfig)) {
	t.Helper()
	ctx := context.Background()
	st, err := e.js.Stream(ctx, e.stream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	change(&cfg)
	if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
}

// publishOffsets publishes partition 0's offsets from to to, each with the event of its own number.
func (e *env) publishOffsets(t *testing.T, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		e.publish(t, i, 0, int64(i), kafkaleg.MsgID(e.route.Topic, 0, int64(i)))
	}
}

// gatedClient is Pulsar unavailable while open is false: every send fails at once, and no producer is made unless
// producers is set (then a session gets as far as sending, and fails on its first send).
type gatedClient struct {
	pulsar.Client
	producers bool
	open      atomic.Bool
	refused   atomic.Int32 // sends failed
}

func (c *gatedClient) CreateProducer(o pulsar.ProducerOptions) (pulsar.Producer, error) {
	if !c.open.Load() && !c.producers {
		return nil, errors.New("pulsar unavailable (test)")
	}
	p, err := c.Client.CreateProducer(o)
	if err != nil {
		return nil, err
	}
	return &gatedProducer{Producer: p, gate: c}, nil
}

// waitRefused waits until at least n sends failed.
func (c *gatedClient) waitRefused(t *testing.T, n int32) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); c.refused.Load() < n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("leg B had %d sends refused while Pulsar was unavailable, want %d", c.refused.Load(), n)
		}
	}
}

type gatedProducer struct {
	pulsar.Producer
	gate *gatedClient
}

func (p *gatedProducer) SendAsync(ctx context.Context, m *pulsar.ProducerMessage, cb func(pulsar.MessageID, *pulsar.ProducerMessage, error)) {
	if !p.gate.open.Load() {
		p.gate.refused.Add(1)
		cb(nil, m, errors.New("pulsar unavailable (test)"))
		return
	}
	p.Producer.SendAsync(ctx, m, cb)
}
