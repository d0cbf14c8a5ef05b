package kafkaleg_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/testenv"

	"github.com/shanhai-dev/shanhai/bridge/internal/dlq"
	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
	"github.com/shanhai-dev/shanhai/bridge/internal/mapping"
	"github.com/shanhai-dev/shanhai/bridge/internal/metrics"
)

func init() {
	otel.SetTextMapPropagator(propagation.TraceContext{})
	otel.SetTracerProvider(sdktrace.NewTracerProvider())
}

// env is one test's private topic, DLQ topic and stream on the shared servers.
type env struct {
	brokers  []string
	nc       *nats.Conn
	js       jetstream.JetStream
	topic    string
	dlqTopic string
	route    mapping.Route
	stream   jetstream.Stream
	streamCf jetstream.StreamConfig
	reader   sdkmetric.Reader // the legs' metrics when set
	log      *slog.Logger     // the legs' logger when set (else warnings to stderr)
}

// setup gives a test its own Kafka topics, JetStream stream, consumer names and meter (harness.ID), on the shared
// servers. The tests that use it call t.Parallel: they share nothing else, and most of their time is spent waiting
// on the brokers (held fetches, idle reads that must stay empty, redeliveries), so they wait together.
func setup(t *testing.T, partitions int) *env {
	t.Helper()
	brokers := testenv.Kafka(t)
	natsURL := testenv.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	id := harness.ID()
	e := &env{brokers: brokers, topic: "bridgetest." + id + ".orders", dlqTopic: "bridgetest." + id + ".dlq"}
	for topic, n := range map[string]int{e.topic: partitions, e.dlqTopic: 1} {
		if err := harness.CreateTopic(ctx, brokers, topic, n); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	if e.nc, err = nats.Connect(natsURL, nats.ReconnectBufSize(-1), nats.MaxReconnects(-1)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.nc.Close)
	if e.js, err = jetstream.New(e.nc, jetstream.WithPublishAsyncTimeout(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	name := "BRIDGETEST_" + id
	e.streamCf = jetstream.StreamConfig{Name: name, Subjects: []string{"bridgetest." + id + ".>"}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute}
	if e.stream, err = e.js.CreateStream(ctx, e.streamCf); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.js.DeleteStream(context.Background(), name) })
	routes, err := mapping.Routes(e.topic, []string{"bridgetest." + id + ".>"}, "shanhai/events")
	if err != nil {
		t.Fatal(err)
	}
	e.route = routes[0]
	return e
}

func (e *env) leg(t *testing.T, group string, maxBytes int) *kafkaleg.Leg {
	return e.legWith(t, group, maxBytes, dlq.NewKafka(e.brokers, e.dlqTopic, time.Second, slog.Default()))
}

// legWith is leg with its dead letters going to dead.
func (e *env) legWith(t *testing.T, group string, maxBytes int, dead dlq.Sink) *kafkaleg.Leg {
	var opts []sdkmetric.Option
	if e.reader != nil {
		opts = append(opts, sdkmetric.WithReader(e.reader))
	}
	m, err := metrics.New(sdkmetric.NewMeterProvider(opts...).Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	return kafkaleg.New(kafkaleg.Options{
		Brokers: e.brokers, Group: group, Routes: []mapping.Route{e.route}, StartOffset: kafka.FirstOffset,
		NATS: e.nc, JetStream: e.js, DLQ: dead,
		Validate: func(h map[string]string, v []byte) error { _, err := event.FromHeaders(h, v); return err },
		MaxBytes: maxBytes, InFlight: 64, SinkRetries: 2, CommitInterval: 200 * time.Millisecond,
		SessionTimeout: 6 * time.Second, MaxBackoff: time.Second,
		Logger: cmp.Or(e.log, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))), Metrics: m,
	})
}

// start runs a leg until the returned stop is called; stop waits for Run.
func start(l *kafkaleg.Leg) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	return func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			return errors.New("leg did not stop within 30s")
		}
	}
}

func produce(t *testing.T, e *env, msgs []kafka.Message) {
	t.Helper()
	w := harness.Writer(e.brokers, e.topic)
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
}

// waitStream waits until the stream holds n messages, and returns them.
func waitStream(t *testing.T, e *env, n int) []jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for {
		info, err := e.stream.Info(ctx)
		if err == nil && info.State.Msgs >= uint64(n) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("stream has %v messages, want %d", info, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c, err := e.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for len(out) < n {
		b, err := c.Fetch(n-len(out), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range b.Messages() {
			out = append(out, m)
		}
		if b.Error() != nil {
			t.Fatal(b.Error())
		}
	}
	return out
}

func committed(t *testing.T, e *env, group string, partitions int) map[int]int64 {
	t.Helper()
	c := &kafka.Client{Addr: kafka.TCP(e.brokers...), Timeout: 10 * time.Second}
	ps := make([]int, partitions)
	for i := range ps {
		ps[i] = i
	}
	res, err := c.OffsetFetch(context.Background(), &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{e.topic: ps}})
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]int64{}
	for _, p := range res.Topics[e.topic] {
		out[p.Partition] = p.CommittedOffset
	}
	return out
}

// waitCommittedEnds waits until group committed the end of every partition.
func waitCommittedEnds(t *testing.T, e *env, group string, partitions int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for fmt.Sprint(committed(t, e, group, partitions)) != fmt.Sprint(ends(t, e, partitions)) {
		if time.Now().After(deadline) {
			t.Fatalf("group %s committed %v, want the ends %v", group, committed(t, e, group, partitions), ends(t, e, partitions))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func ends(t *testing.T, e *env, partitions int) map[int]int64 {
	t.Helper()
	out := map[int]int64{}
	for p := 0; p < partitions; p++ {
		conn, err := kafka.DialLeader(context.Background(), "tcp", e.brokers[0], e.topic, p)
		if err != nil {
			t.Fatal(err)
		}
		out[p], err = conn.ReadLastOffset()
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// checkOrdered verifies metadata, dedup id, a new span in the original trace,
// and offsets rising within each partition; it returns the messages by seq.
func checkOrdered(t *testing.T, e *env, msgs []jetstream.Msg, sent map[int]kafka.Message) map[int]jetstream.Msg {
	t.Helper()
	last := map[int]int64{}
	bySeq := map[int]jetstream.Msg{}
	for _, m := range msgs {
		h := m.Headers()
		p, err1 := strconv.Atoi(h.Get(kafkaleg.HeaderPartition))
		o, err2 := strconv.ParseInt(h.Get(kafkaleg.HeaderOffset), 10, 64)
		if err1 != nil || err2 != nil || h.Get(kafkaleg.HeaderTopic) != e.topic {
			t.Fatalf("bad metadata headers: %v", h)
		}
		if m.Subject() != e.route.PartitionSubject(p) {
			t.Fatalf("partition %d published to %q, want its own subject %q", p, m.Subject(), e.route.PartitionSubject(p))
		}
		if prev, ok := last[p]; ok && o <= prev {
			t.Fatalf("partition %d: offset %d after %d", p, o, prev)
		}
		last[p] = o
		// The topic's incarnation too (kafkaleg.TopicID): a topic created again counts its offsets from 0.
		if got, want := h.Get(jetstream.MsgIDHeader), kafkaleg.MsgID(e.topic, p, o)+"/"+h.Get(kafkaleg.HeaderTopicID); got != want || h.Get(kafkaleg.HeaderTopicID) == "" {
			t.Fatalf("Nats-Msg-Id = %q, want %q", got, want)
		}
		seq, err := harness.Seq(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		bySeq[seq] = m
		orig := sent[seq]
		var origTP string
		for _, kh := range orig.Headers {
			if kh.Key == "traceparent" {
				origTP = string(kh.Value)
			}
			if !strings.HasPrefix(kh.Key, "trace") && h.Get(kh.Key) != string(kh.Value) {
				t.Fatalf("header %s = %q, want %q carried", kh.Key, h.Get(kh.Key), kh.Value)
			}
		}
		tp := h.Get("traceparent")
		if harness.TraceID(tp) != harness.TraceID(origTP) || harness.SpanID(tp) == harness.SpanID(origTP) {
			t.Fatalf("traceparent %q: want trace of %q with a new span", tp, origTP)
		}
		if h.Get(kafkaleg.HeaderKey) != string(orig.Key) || h.Get(kafkaleg.HeaderTimestamp) == "" {
			t.Fatalf("key/timestamp headers: %v", h)
		}
	}
	return bySeq
}

func TestLegACarriesEveryMessageInPartitionOrderWithMetadata(t *testing.T) {
	t.Parallel()
	e := setup(t, 3)
	const n = 600
	sent := map[int]kafka.Message{}
	var msgs []kafka.Message
	for i := 0; i < n; i++ {
		m := harness.Event(i, 50, 200)
		sent[i] = m
		msgs = append(msgs, m)
	}
	// Poison: no CloudEvents headers, one over the 4 KiB limit, and a header
	// name that NATS cannot carry.
	badName := harness.Event(-3, 50, 200)
	badName.Headers = append(badName.Headers, kafka.Header{Key: "content/type", Value: []byte("x")})
	msgs = append(msgs,
		kafka.Message{Key: []byte("k1"), Value: []byte(`{"seq":-1}`)},
		func() kafka.Message { m := harness.Event(-2, 50, 8000); return m }(),
		badName)
	produce(t, e, msgs)

	group := "bridgetest-" + harness.ID()
	stop := start(e.leg(t, group, 4096))
	got := waitStream(t, e, n)
	checkOrdered(t, e, got, sent)

	// The partitions moved on past the poison, which is in the DLQ with its reason.
	reasons := map[string]bool{}
	for _, h := range deadLetters(t, e, 3) {
		reasons[h[dlq.HeaderReason]] = true
	}
	if !reasons["envelope"] || !reasons["too_large"] || !reasons["header"] {
		t.Fatalf("dead letter reasons %v, want envelope, too_large and header", reasons)
	}

	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Graceful stop committed everything confirmed, which is everything.
	if c, end := committed(t, e, group, 3), ends(t, e, 3); fmt.Sprint(c) != fmt.Sprint(end) {
		t.Fatalf("committed %v, want partition ends %v", c, end)
	}

	// A second group replays the whole topic: JetStream drops every replay.
	group2 := "bridgetest-" + harness.ID()
	stop2 := start(e.leg(t, group2, 4096))
	waitCommittedEnds(t, e, group2, 3)
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	info, err := e.stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != n {
		t.Fatalf("stream holds %d messages after a full replay, want %d", info.State.Msgs, n)
	}
}

// TestLegACarriesHeadersVerbatim: every Kafka header reaches JetStream as produced (docs/conventions.md), or the record
// goes to the DLQ as produced. nats.go trims a header value's spaces and tabs on write, so a padded value is dead-lettered
// (reason header) and a padded key is carried base64 like a binary one; a repeated name keeps all its values.
func TestLegACarriesHeadersVerbatim(t *testing.T) {
	t.Parallel()
	e := setup(t, 1)
	pad := harness.Event(0, 1, 50) // offset 0
	pad.Headers = append(pad.Headers, kafka.Header{Key: "x-pad", Value: []byte("  padded\t")})
	m := harness.Event(1, 1, 50) // offset 1
	m.Key = []byte(" order-1 ")
	m.Headers = append(m.Headers,
		kafka.Header{Key: "x-tag", Value: []byte("a")},
		kafka.Header{Key: "x-tag", Value: []byte("b")},
		kafka.Header{Key: "x-inner", Value: []byte("a \t b")})
	produce(t, e, []kafka.Message{pad, m})
	stop := start(e.leg(t, "bridgetest-"+harness.ID(), 1<<20))
	defer stop()

	h := waitStream(t, e, 1)[0].Headers()
	if got := h.Values("x-tag"); fmt.Sprint(got) != "[a b]" {
		t.Errorf("x-tag arrived as %q, produced [a b]", got)
	}
	if got := h.Get("x-inner"); got != "a \t b" {
		t.Errorf("x-inner arrived as %q, produced %q", got, "a \t b")
	}
	if got := kafkaleg.RecordKey(h); string(got) != " order-1 " {
		t.Errorf("record key arrived as %q (headers %v), produced %q", got, h, " order-1 ")
	}
	if len(h.Values("x-pad")) != 0 {
		t.Errorf("x-pad reached the stream as %q", h.Values("x-pad"))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	letters, err := harness.ReadDeadLetters(ctx, e.brokers, e.dlqTopic, 1)
	if err != nil {
		t.Fatal(err)
	}
	lh := harness.Headers(letters[0])
	if lh[dlq.HeaderReason] != "header" || lh[dlq.HeaderOffset] != "0" || !strings.Contains(lh[dlq.HeaderDetail], "x-pad") || lh["x-pad"] != "  padded\t" {
		t.Fatalf("dead letter of the padded header: %v", lh)
	}
}

// deadLetters reads the first n letters of the test's DLQ topic, as header
// maps, and checks that each names its source.
func deadLetters(t *testing.T, e *env, n int) []map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	letters, err := harness.ReadDeadLetters(ctx, e.brokers, e.dlqTopic, n)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	for _, m := range letters {
		h := harness.Headers(m)
		if h[dlq.HeaderTopic] != e.topic || h[dlq.HeaderOffset] == "" || h[dlq.HeaderLeg] != metrics.LegA {
			t.Fatalf("dead letter without source coordinates: %v", h)
		}
		out = append(out, h)
	}
	return out
}

// TestLegAFullStreamKeepsPartitionOrder: a stream at its max bytes with
// DiscardNew refuses a large message (503) and may store the small ones
// published behind it. Once the stream has room again, the refused one must
// not be stored after them (leg B would drop it: Pulsar sequence ids only
// rise); it goes to the DLQ instead. Whichever way the race goes, every
// offset ends up once in the stream, in order, or in the DLQ as overtaken.
func TestLegAFullStreamKeepsPartitionOrder(t *testing.T) {
	t.Parallel()
	e := setup(t, 1)
	ctx := context.Background()
	group := "bridgetest-" + harness.ID()
	stop := start(e.leg(t, group, 1<<20))
	var msgs []kafka.Message
	for i := 0; i < 5; i++ {
		msgs = append(msgs, harness.Event(i, 1, 200))
	}
	produce(t, e, msgs)
	waitStream(t, e, 5)
	info, err := e.stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Room for three more small messages, not for the large one.
	cfg := info.Config
	cfg.Discard, cfg.MaxBytes = jetstream.DiscardNew, int64(info.State.Bytes+3*info.State.Bytes/5)
	if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	msgs = []kafka.Message{harness.Event(5, 1, 8000)} // one fetch: published back to back
	for i := 6; i < 12; i++ {
		msgs = append(msgs, harness.Event(i, 1, 200))
	}
	produce(t, e, msgs)
	// Usually small ones land behind the refused one; the race may also
	// abort the pipeline first, which must work too, so wait but go on.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if info, err := e.stream.Info(ctx); err == nil && info.State.Msgs > 5 {
			break
		}
	}
	cfg.MaxBytes = -1
	if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	waitCommittedEnds(t, e, group, 1)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	info, err = e.stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]string{}
	last := int64(-1)
	for _, m := range waitStream(t, e, int(info.State.Msgs)) {
		o, _ := strconv.ParseInt(m.Headers().Get(kafkaleg.HeaderOffset), 10, 64)
		if o <= last {
			t.Fatalf("offset %d stored after %d: leg B would drop it", o, last)
		}
		last, seen[o] = o, "stream"
	}
	for _, h := range deadLetters(t, e, 12-len(seen)) {
		o, _ := strconv.ParseInt(h[dlq.HeaderOffset], 10, 64)
		if h[dlq.HeaderReason] != "overtaken" || seen[o] != "" {
			t.Fatalf("dead letter for offset %d (%s): %v", o, seen[o], h)
		}
		seen[o] = "dlq"
	}
	if len(seen) != 12 {
		t.Fatalf("offsets carried: %v, want 0-11", seen)
	}
	t.Logf("where each offset went: %v", seen)
}

// TestLegALagGrowsWhileHeldAtPoison: bridge_consumer_lag was set only from a fetched record, so a partition held at a
// poison message while the DLQ is down showed the lag it had when it stopped (0) however many records arrived behind
// it. It is now also refreshed from the broker's high watermark while the feed is not waiting for records.
func TestLegALagGrowsWhileHeldAtPoison(t *testing.T) {
	t.Parallel()
	e := setup(t, 1)
	reader := sdkmetric.NewManualReader()
	e.reader = reader
	produce(t, e, []kafka.Message{harness.Event(0, 1, 200), {Key: []byte("k0"), Value: []byte(`{"seq":-1}`)}}) // offset 1: no envelope
	group := "bridgetest-" + harness.ID()
	down := dlq.NewKafka([]string{"127.0.0.1:1"}, e.dlqTopic, time.Second, slog.Default()) // nothing listens there
	stop := start(e.legWith(t, group, 1<<20, down))
	defer stop()
	for deadline := time.Now().Add(30 * time.Second); fmt.Sprint(committed(t, e, group, 1)) != "map[0:1]"; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("committed %v, want the poison's offset 1", committed(t, e, group, 1))
		}
	}
	var more []kafka.Message
	for i := 1; i <= 100; i++ {
		more = append(more, harness.Event(i, 1, 200))
	}
	produce(t, e, more)
	// Offsets 1 (the poison) to 101 wait: the high watermark is 102, the first unconfirmed offset 1.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		lag, _, err := harness.Int64Metric(reader, "bridge.consumer.lag", "partition", "0")
		if err != nil {
			t.Fatal(err)
		}
		if lag == 101 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bridge_consumer_lag = %d while 101 records wait at the held poison", lag)
		}
	}
}

// TestLegAInflightReturnsToZero: a session that failed while its feed waited to push a published message into the full
// pipeline left that message counted in bridge_inflight{leg="kafka-nats"} for good (and its span open). The stream
// takes five messages and then refuses (DiscardNew), and its refusals arrive late, so the pipeline is full when the
// first one ends the session; the partition restarts until the leg stops.
func TestLegAInflightReturnsToZero(t *testing.T) {
	t.Parallel()
	e := setup(t, 1)
	reader := sdkmetric.NewManualReader()
	e.reader = reader
	cf := e.streamCf
	cf.MaxMsgs, cf.Discard = 5, jetstream.DiscardNew
	if _, err := e.js.UpdateStream(context.Background(), cf); err != nil {
		t.Fatal(err)
	}
	var msgs []kafka.Message
	for i := range 400 {
		msgs = append(msgs, harness.Event(i, 1, 50))
	}
	produce(t, e, msgs)
	e.js = lateRefusals{e.js}
	stop := start(e.legWith(t, "bridgetest-"+harness.ID(), 1<<20, dlq.NewKafka(e.brokers, e.dlqTopic, time.Second, slog.Default())))
	waitStream(t, e, 5)
	for deadline := time.Now().Add(30 * time.Second); messages(t, reader, "retry") < 1; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the refusal did not end the session")
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n, _, err := harness.Int64Metric(reader, "bridge.inflight", "leg", metrics.LegA); err != nil || n != 0 {
		t.Fatalf("bridge_inflight{leg=kafka-nats} = %d (%v) after the leg stopped, want 0", n, err)
	}
}

// lateRefusals is a JetStream whose refusals arrive 300 ms late (a busy server), so the feed has filled the pipeline and
// waits to push when the settler meets the first one.
type lateRefusals struct{ jetstream.JetStream }

type lateRefusal struct {
	jetstream.PubAckFuture
	ok  chan *jetstream.PubAck
	err chan error
}

func (f *lateRefusal) Ok() <-chan *jetstream.PubAck { return f.ok }
func (f *lateRefusal) Err() <-chan error            { return f.err }

func (j lateRefusals) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	inner, err := j.JetStream.PublishMsgAsync(m, opts...)
	if err != nil {
		return nil, err
	}
	f := &lateRefusal{PubAckFuture: inner, ok: make(chan *jetstream.PubAck, 1), err: make(chan error, 1)}
	go func() {
		select {
		case a := <-inner.Ok():
			f.ok <- a
		case err := <-inner.Err():
			time.Sleep(300 * time.Millisecond)
			f.err <- err
		}
	}()
	return f, nil
}

// TestLegAHoldsAtPoisonWhileTheDLQIsDown: a dead letter that cannot be
// written holds its partition at the poison (nothing after it published,
// nothing committed past it), a stop does not hang on it, and once the DLQ is
// back a restart carries the rest.
func TestLegAHoldsAtPoisonWhileTheDLQIsDown(t *testing.T) {
	t.Parallel()
	e := setup(t, 1)
	sent := map[int]kafka.Message{}
	var msgs []kafka.Message
	for i := 0; i < 4; i++ {
		sent[i] = harness.Event(i, 1, 200)
		msgs = append(msgs, sent[i])
		if i == 1 {
			msgs = append(msgs, kafka.Message{Key: []byte("k0"), Value: []byte(`{"seq":-1}`)}) // offset 2: no envelope
		}
	}
	produce(t, e, msgs)
	group := "bridgetest-" + harness.ID()
	down := dlq.NewKafka([]string{"127.0.0.1:1"}, e.dlqTopic, time.Second, slog.Default()) // nothing listens there
	stop := start(e.legWith(t, group, 1<<20, down))
	waitStream(t, e, 2)
	for deadline := time.Now().Add(30 * time.Second); fmt.Sprint(committed(t, e, group, 1)) != "map[0:2]"; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("committed %v, want the poison's offset 2", committed(t, e, group, 1))
		}
	}
	time.Sleep(time.Second) // it must stay there
	if info, err := e.stream.Info(context.Background()); err != nil || info.State.Msgs != 2 || fmt.Sprint(committed(t, e, group, 1)) != "map[0:2]" {
		t.Fatalf("moved past the poison while the DLQ is down: stream %v (%v), committed %v", info, err, committed(t, e, group, 1))
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	stop = start(e.leg(t, group, 1<<20))
	waitCommittedEnds(t, e, group, 1)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkOrdered(t, e, waitStream(t, e, 4), sent)
	if h := deadLetters(t, e, 1)[0]; h[dlq.HeaderReason] != "envelope" || h[dlq.HeaderOffset] != "2" {
		t.Fatalf("dead letter %v", h)
	}
}

func TestLegARebalanceToSecondInstanceKeepsOrder(t *testing.T) {
	t.Parallel()
	e := setup(t, 3)
	const n = 3000
	group := "bridgetest-" + harness.ID()
	stop1 := start(e.leg(t, group, 1<<20))
	sent := map[int]kafka.Message{}
	var mu sync.Mutex
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		w := harness.Writer(e.brokers, e.topic)
		defer w.Close()
		for i := 0; i < n; i += 100 {
			var batch []kafka.Message
			for j := i; j < i+100; j++ {
				m := harness.Event(j, 97, 200)
				mu.Lock()
				sent[j] = m
				mu.Unlock()
				batch = append(batch, m)
			}
			if err := w.WriteMessages(context.Background(), batch...); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	time.Sleep(300 * time.Millisecond)
	l2 := e.leg(t, group, 1<<20)
	stop2 := start(l2) // joins: partitions are split between the two
	deadline := time.Now().Add(60 * time.Second)
	for l2.Partitions() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if l2.Partitions() == 0 {
		t.Fatal("second instance never got a partition")
	}
	if err := stop1(); err != nil { // the first leaves: the second takes everything
		t.Fatal(err)
	}
	<-produced
	got := waitStream(t, e, n)
	mu.Lock()
	bySeq := checkOrdered(t, e, got, sent)
	mu.Unlock()
	if len(bySeq) != n {
		t.Fatalf("%d distinct messages in the stream, want %d", len(bySeq), n)
	}
	waitCommittedEnds(t, e, group, 3)
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
}

// An idle partition's reader holds one connection and fetches about once per FetchMaxWait: the broker holds each
// fetch. With the former 500 ms it fetched three times a second (100 ms before that: ten, and on a busy machine it
// redialled every few seconds). Closing it does not wait out the held fetch.
func TestIdlePartitionReaderFetchesRarely(t *testing.T) {
	t.Parallel()
	e := setup(t, 1)
	r := kafkaleg.NewPartitionReader(e.brokers, e.topic, 0, nil)
	defer r.Close()
	if err := r.SetOffset(kafka.LastOffset); err != nil {
		t.Fatal(err)
	}
	const wait = 3 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if m, err := r.FetchMessage(ctx); err == nil {
		t.Fatalf("fetched %v from an idle partition", m)
	}
	s := r.Stats()
	// The broker holds the first fetch for 9 s, past the end of the wait; a second one is allowed for a fetch the
	// broker answered early (a leader still settling on a new topic).
	if max := int64(2); s.Fetches > max || s.Dials > 1 {
		t.Fatalf("%d fetches and %d dials in %v, want at most %d fetches on one connection", s.Fetches, s.Dials, wait, max)
	}
	t.Logf("%d fetches, %d dials, %d errors in %v", s.Fetches, s.Dials, s.Errors, wait)

	// The fetch the broker holds now ends about 9 s after it began; kafka-go's own Close would wait for it. The bound
	// is generous: it tells closing the connection from waiting out the fetch, not how fast a close is.
	start := time.Now()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Close took %v: it waited for the held fetch (FetchMaxWait %v)", took, kafkaleg.FetchMaxWait)
	}
}
