package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
)

// TestBridgeArchivesTheRecordsBaggageAsProduced: a record's baggage reaches the Pulsar archive through both hops as
// the producer wrote it, members, their order, their properties and escapes kept, and several baggage headers as one
// list in order. The bridge used to parse it with the propagator at each hop and write it again: a repeated key kept
// only its last value, an unparsable member was dropped, %FF came out as %EF%BF%BD, and the order was a map's.
func TestBridgeArchivesTheRecordsBaggageAsProduced(t *testing.T) {
	t.Parallel()
	b := startBridge(t, nil)
	bags := [][]string{
		{"zone=b;p=1,tenant=acme,zone=c"},
		{"k=%FF,not a member,a=1", "region=eu"},
		{"z=26,y=25,x=24,w=23,v=22,u=21"},
	}
	want := []string{"zone=b;p=1,tenant=acme,zone=c", "k=%FF,not a member,a=1,region=eu", "z=26,y=25,x=24,w=23,v=22,u=21"}
	msgs := make([]kafka.Message, len(bags))
	for i, bag := range bags {
		msgs[i] = harness.Event(i, 1, 64) // one key: one partition, archived in this order
		for _, v := range bag {
			msgs[i].Headers = append(msgs[i].Headers, kafka.Header{Key: "baggage", Value: []byte(v)})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := harness.Writer(b.brokers, b.topic)
	defer w.Close()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	b.archived(t, len(msgs), time.Minute)
	for i, r := range b.recs {
		if got := r.Props["baggage"]; got != want[i] {
			t.Errorf("record %d archived with baggage %q, produced %q", i, got, bags[i])
		}
	}
}
