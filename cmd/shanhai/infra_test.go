package main

import (
	"context"
	"testing"
	"time"

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
