package harness

import "testing"

func TestJudge(t *testing.T) {
	meta := func(p int, off int64) map[string]string {
		return map[string]string{"__kafka_topic": "t", "__kafka_partition": "x", "__kafka_offset": "x", "kafka_key": "k",
			"kafka_timestamp_ms": "1", "ce_id": "i", "ce_type": "t", "traceparent": "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01"}
	}
	recs := []Record{
		{Seq: 0, Partition: 0, Offset: 0, Props: meta(0, 0)},
		{Seq: 1, Partition: 1, Offset: 0, Props: meta(1, 0)},
		{Seq: 2, Partition: 0, Offset: 1, Props: meta(0, 1)},
		{Seq: 2, Partition: 0, Offset: 1, Props: meta(0, 1)},          // duplicate, also not above previous
		{Seq: 4, Partition: 1, Offset: 2, Props: map[string]string{}}, // no metadata
	}
	v := Judge(5, recs)
	want := Verdict{Produced: 5, Total: 5, Distinct: 4, Lost: 1, Duplicated: 1, OutOfOrder: 1, MissingMetadata: 1}
	if v != want {
		t.Fatalf("Judge = %v, want %v", v, want)
	}
	if v.OK() {
		t.Fatal("OK() with losses")
	}
}

func TestEventIsValidCloudEvent(t *testing.T) {
	m := Event(42, 10, 1024)
	if got, err := Seq(m.Value); err != nil || got != 42 {
		t.Fatalf("Seq = %d, %v", got, err)
	}
	if len(m.Value) < 900 || len(m.Value) > 1100 {
		t.Fatalf("payload %d bytes, want about 1024", len(m.Value))
	}
	var tp string
	for _, h := range m.Headers {
		if h.Key == "traceparent" {
			tp = string(h.Value)
		}
	}
	if TraceID(tp) == "" {
		t.Fatalf("bad traceparent %q", tp)
	}
}
