package main

import (
	"context"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
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

// TestSecondRunRefusesADataDirInUse: a second run given the -data directory of a run still running (another -port,
// so the ports do not stop it) emptied that run's JetStream store from under it, then waited on the running etcd's
// lock on its database for good, saying nothing (and deaf to Ctrl-C, which etcd's start does not watch). It must
// refuse at once, name the directory, and leave the running run's data alone.
func TestSecondRunRefusesADataDirInUse(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first, err := StartInfra(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	stopFirst := sync.OnceFunc(first.Close)
	defer stopFirst()
	nc, err := nats.Connect(first.Env()["NATS_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "SHANHAI", Subjects: []string{"shanhai.>"}, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "shanhai.orders.p0", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(dir, "jetstream")
	before, err := dirSize(store)
	if err != nil || before == 0 {
		t.Fatalf("the running run's JetStream store %s: %d bytes, %v", store, before, err)
	}

	done := make(chan error, 1)
	go func() {
		second, err := StartInfra(ctx, dir)
		if err == nil {
			second.Close()
		}
		done <- err
	}()
	select {
	case err = <-done:
	case <-time.After(20 * time.Second): // hang guard only
		t.Fatal("a second start on the data directory of a running one still waits after 20 s")
	}
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second start on a directory in use: %v, want a refusal naming %s as in use", err, dir)
	}
	if after, err := dirSize(store); err != nil || after < before {
		t.Fatalf("the running run's JetStream store: %d bytes before the second start, %d (%v) after", before, after, err)
	}
	info, err := stream.Info(ctx)
	if err != nil || info.State.Msgs != 1 {
		t.Fatalf("the running run's stream after the second start: %+v, %v; want its 1 message", info, err)
	}

	// Once the first has stopped, the directory is free again, as after a kill (the lock dies with its process).
	nc.Close()
	stopFirst()
	again, err := StartInfra(ctx, dir)
	if err != nil {
		t.Fatalf("start after the first stopped: %v", err)
	}
	again.Close()
}

func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	return n, err
}
