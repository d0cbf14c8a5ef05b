package main

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/segmentio/kafka-go"
)

// TestEachRunsKafkaHasAClusterIDOfItsOwn: the bridge names its Pulsar producers by the Kafka cluster id, since each
// embedded run's Kafka counts offsets from 0 again. kfake answered "kfake" in every run, so a run archiving to a
// namespace an earlier run had used lost its records to Pulsar's dedup.
func TestEachRunsKafkaHasAClusterIDOfItsOwn(t *testing.T) {
	ids := map[string]bool{}
	for range 2 {
		in := &Infra{env: map[string]string{}}
		if err := in.startKafka(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(in.Close)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c := &kafka.Client{Addr: kafka.TCP(in.Env()["KAFKA_BROKERS"])}
		res, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{}})
		if err != nil {
			t.Fatal(err)
		}
		if res.ClusterID == "" || ids[res.ClusterID] {
			t.Fatalf("cluster id %q, earlier runs' %v: want a new one", res.ClusterID, ids)
		}
		ids[res.ClusterID] = true
	}
}

// TestJetStreamStartsEmptyLikeKafka: a run given a -data directory an earlier run used found that run's JetStream
// stream there, while its Kafka (kfake, in memory) started empty. The bridge publishes each record with Nats-Msg-Id =
// topic/partition/offset, so within the stream's duplicate window (2 minutes) JetStream dropped the new run's records
// at the offsets the earlier run had used as duplicates: their orders stayed PENDING for good.
func TestJetStreamStartsEmptyLikeKafka(t *testing.T) {
	dir := t.TempDir()
	for run := range 2 {
		in := &Infra{Dir: dir, env: map[string]string{}}
		if err := in.startNATS(); err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(in.Env()["NATS_URL"])
		if err != nil {
			in.Close()
			t.Fatal(err)
		}
		ack, err := func() (*jetstream.PubAck, error) {
			defer in.Close()
			defer nc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			js, err := jetstream.New(nc)
			if err != nil {
				return nil, err
			}
			if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "SHANHAI", Subjects: []string{"shanhai.>"}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute}); err != nil {
				return nil, err
			}
			return js.Publish(ctx, "shanhai.orders.p0", []byte(`{}`), jetstream.WithMsgID("shanhai.orders/0/0"))
		}()
		if err != nil {
			t.Fatal(err)
		}
		if ack.Duplicate || ack.Sequence != 1 {
			t.Fatalf("run %d: the first record of partition 0 got %+v, want stream sequence 1, no duplicate", run+1, *ack)
		}
	}
}
