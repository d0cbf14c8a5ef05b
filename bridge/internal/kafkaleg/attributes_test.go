package kafkaleg_test

import (
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/testenv"

	"github.com/shanhai-dev/shanhai/bridge/internal/dlq"
	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
)

// TestLegADeadLettersWrongCloudEventsAttributes: records whose payload is valid JSON but whose CloudEvents attributes
// are wrong (no ce_id, an empty ce_type, a ce_id of 10 KB, a ce_subject that is not UTF-8) or that have no headers at
// all each go to the DLQ with a reason naming what is wrong, are logged and counted in bridge_dlq_total, and the
// partition goes on with the valid records between them, in order. A valid record with two traceparent headers is
// carried with one: leg A's span in the first one's trace.
func TestLegADeadLettersWrongCloudEventsAttributes(t *testing.T) {
	t.Parallel()
	e := setup(t, 1)
	reader := sdkmetric.NewManualReader()
	e.reader = reader
	logs := &testenv.LogBuffer{}
	e.log = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))

	without := func(seq int, name string) kafka.Message {
		m := harness.Event(seq, 1, 200)
		m.Headers = slicesDelete(m.Headers, name)
		return m
	}
	with := func(seq int, name, value string) kafka.Message {
		m := without(seq, name)
		m.Headers = append(m.Headers, kafka.Header{Key: name, Value: []byte(value)})
		return m
	}
	twoTraces := harness.Event(5, 1, 200)
	firstTrace := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	twoTraces.Headers = append(slicesDelete(twoTraces.Headers, "traceparent"),
		kafka.Header{Key: "traceparent", Value: []byte(firstTrace)},
		kafka.Header{Key: "traceparent", Value: []byte("00-1bf8762a27de54ee9559fc322d91420d-c8be7c827a314442-01")})
	// want is each poison's offset, reason and what its detail must name.
	type poison struct {
		offset         int64
		reason, detail string
	}
	msgs := []kafka.Message{
		harness.Event(0, 1, 200),
		without(-1, event.HeaderID), // offset 1
		harness.Event(1, 1, 200),
		with(-2, event.HeaderType, ""), // 3
		harness.Event(2, 1, 200),
		with(-3, event.HeaderID, strings.Repeat("i", 10<<10)), // 5
		harness.Event(3, 1, 200),
		with(-4, event.HeaderSubject, "k\xff\xfe"), // 7
		harness.Event(4, 1, 200),
		{Key: []byte("k0"), Value: []byte(`{"seq":-5}`)}, // 9: no headers
		twoTraces, // 10
		harness.Event(6, 1, 200),
	}
	want := []poison{
		{1, "envelope", event.HeaderID},
		{3, "envelope", event.HeaderType},
		{5, "envelope", event.HeaderID},
		{7, "header", event.HeaderSubject},
		{9, "envelope", event.HeaderSpecVersion},
	}
	sent := map[int]kafka.Message{}
	for _, m := range msgs {
		if seq, err := harness.Seq(m.Value); err == nil && seq >= 0 {
			sent[seq] = m
		}
	}
	produce(t, e, msgs)

	group := "bridgetest-" + harness.ID()
	stop := start(e.leg(t, group, 1<<20))
	defer stop()
	got := waitStream(t, e, len(sent))
	// checkOrdered reads a record's traceparent as its last one: the first of the two is the parent wanted.
	asCarried := maps.Clone(sent)
	asCarried[5] = kafka.Message{Key: twoTraces.Key, Value: twoTraces.Value, Headers: twoTraces.Headers[:len(twoTraces.Headers)-1]}
	bySeq := checkOrdered(t, e, got, asCarried)
	if tp := bySeq[5].Headers().Values("traceparent"); len(tp) != 1 || harness.TraceID(tp[0]) != harness.TraceID(firstTrace) {
		t.Errorf("record with two traceparents carried with traceparent %q, want one, in the first one's trace %s", tp, harness.TraceID(firstTrace))
	}
	waitCommittedEnds(t, e, group, 1)

	letters := deadLetters(t, e, len(want))
	for i, w := range want {
		h := letters[i]
		if h[dlq.HeaderOffset] != strconv.FormatInt(w.offset, 10) || h[dlq.HeaderReason] != w.reason || !strings.Contains(h[dlq.HeaderDetail], w.detail) {
			t.Errorf("dead letter %d: offset %s reason %q detail %q, want offset %d reason %q naming %s",
				i, h[dlq.HeaderOffset], h[dlq.HeaderReason], h[dlq.HeaderDetail], w.offset, w.reason, w.detail)
		}
		if !strings.Contains(logs.String(), fmt.Sprintf(`"offset":%d,"reason":%q`, w.offset, w.reason)) {
			t.Errorf("no log line for the dead letter at offset %d (%s): %s", w.offset, w.reason, logs.String())
		}
	}
	for reason, n := range map[string]int64{"envelope": 4, "header": 1} {
		if v, _, err := harness.Int64Metric(reader, "bridge.dlq", "reason", reason); err != nil || v != n {
			t.Errorf("bridge_dlq_total{reason=%q} = %d (%v), want %d", reason, v, err, n)
		}
	}
}

// slicesDelete returns hs without the headers named name.
func slicesDelete(hs []kafka.Header, name string) []kafka.Header {
	var out []kafka.Header
	for _, h := range hs {
		if h.Key != name {
			out = append(out, h)
		}
	}
	return out
}
