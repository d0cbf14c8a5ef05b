package pulsarleg_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
	"github.com/shanhai-dev/shanhai/bridge/internal/mapping"
	"github.com/shanhai-dev/shanhai/bridge/internal/pulsarleg"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// stamp sets the Kafka cluster id leg A stamps on each message.
func stamp(cluster string) func(nats.Header) {
	return func(h nats.Header) { h[kafkaleg.HeaderCluster] = []string{cluster} }
}

// archived is what the archive holds, as "seq@producer" in the order read.
func archived(t *testing.T, e *env, want int) []string {
	t.Helper()
	var got []string
	for _, r := range e.read(t, want+1, 5*time.Second) { // one more than expected: the read must go idle with exactly these
		got = append(got, fmt.Sprintf("%d@%s", r.Seq, r.Producer))
	}
	return got
}

// TestLegBArchivesWhileKafkaIsUnreachable: leg B read the Kafka cluster id from Kafka at each partition ownership to
// name its Pulsar producers, so while Kafka was unreachable it archived nothing, although JetStream held everything it
// needed. Leg A stamps the id on each message now; leg B's Kafka here is a port nothing listens on.
func TestLegBArchivesWhileKafkaIsUnreachable(t *testing.T) {
	t.Parallel()
	e := setup(t)
	kafka := testenv.ClosedPort(t)
	o := e.opts
	o.KafkaCluster = func(ctx context.Context) (string, error) { return kafkaleg.ClusterID(ctx, []string{kafka}) }
	e.leg = pulsarleg.New(o)
	for i := range 3 {
		e.publishOn(t, e.route.PartitionSubject(0), i, 0, int64(i), kafkaleg.MsgID(e.route.Topic, 0, int64(i)), stamp("cluster-a"))
	}
	stop := e.run(1)
	defer stop()
	name := mapping.ProducerName("cluster-a", "", e.route.Topic, 0)
	want := []string{"0@" + name, "1@" + name, "2@" + name}
	if got := archived(t, e, len(want)); !slices.Equal(got, want) {
		t.Fatalf("archived %v with Kafka unreachable, want %v", got, want)
	}
	waitAcked(t, e, 1)
}

// TestLegBNamesEachRecordByItsOwnCluster: a JetStream stream still holding an older Kafka cluster's records (a Kafka
// formatted anew while the stream kept what leg B had not archived) had them named by the cluster leg B found in Kafka
// at the time, the new one: its producer then carried the old cluster's offsets, and the new cluster's records, from
// offset 0 again, were dropped by Pulsar's dedup as replays. Each record is named by the cluster stamped on it now. The
// last record comes from a bridge before the stamp (no header): it is named by the cluster Kafka reports, as before,
// and so by the same name as the stamped records of that cluster (upgrade: a deployment keeps its producer names).
func TestLegBNamesEachRecordByItsOwnCluster(t *testing.T) {
	t.Parallel()
	e := setup(t)
	o := e.opts
	o.KafkaCluster = func(context.Context) (string, error) { return "new-cluster", nil }
	e.leg = pulsarleg.New(o)
	subject := e.route.PartitionSubject(0)
	oldName, newName := mapping.ProducerName("old-cluster", "", e.route.Topic, 0), mapping.ProducerName("new-cluster", "", e.route.Topic, 0)
	var want []string
	for i := range 5 { // events 0-4: the old cluster's offsets 0-4
		e.publishOn(t, subject, i, 0, int64(i), "old/"+kafkaleg.MsgID(e.route.Topic, 0, int64(i)), stamp("old-cluster"))
		want = append(want, fmt.Sprintf("%d@%s", i, oldName))
	}
	for i := range 3 { // events 5-7: the new cluster's offsets 0-2
		e.publishOn(t, subject, 5+i, 0, int64(i), kafkaleg.MsgID(e.route.Topic, 0, int64(i)), stamp("new-cluster"))
		want = append(want, fmt.Sprintf("%d@%s", 5+i, newName))
	}
	e.publishOn(t, subject, 8, 0, 3, kafkaleg.MsgID(e.route.Topic, 0, 3)) // event 8: offset 3, not stamped
	want = append(want, "8@"+newName)
	stop := e.run(1)
	defer stop()
	if got := archived(t, e, len(want)); !slices.Equal(got, want) {
		t.Fatalf("archived %v, want %v", got, want)
	}
	waitAcked(t, e, 1)
}

// TestLegBNamesEachRecordByItsTopicIncarnation: a Kafka topic deleted and created again counts its offsets from 0 in
// the same cluster, and its records went to the producer that had archived the old topic's higher offsets, whose dedup
// dropped them as replays. Each record is named by the topic id leg A stamped on it too. The first records come from
// a bridge before that stamp (the cluster's alone): they keep the producer name they had (an upgrade), and the same
// topic's stamped records after them go to a producer of their own.
func TestLegBNamesEachRecordByItsTopicIncarnation(t *testing.T) {
	t.Parallel()
	e := setup(t)
	subject := e.route.PartitionSubject(0)
	incarnation := func(id string) func(nats.Header) {
		return func(h nats.Header) {
			h[kafkaleg.HeaderCluster], h[kafkaleg.HeaderTopicID] = []string{"cluster-a"}, []string{id}
		}
	}
	legacy, oldName, newName := mapping.ProducerName("cluster-a", "", e.route.Topic, 0),
		mapping.ProducerName("cluster-a", "oldTopicIdAAAAAAAAAAAAA", e.route.Topic, 0), mapping.ProducerName("cluster-a", "newTopicIdBBBBBBBBBBBBB", e.route.Topic, 0)
	var want []string
	for i := range 2 { // events 0-1: offsets 0-1 from a bridge before the topic id
		e.publishOn(t, subject, i, 0, int64(i), kafkaleg.MsgID(e.route.Topic, 0, int64(i)), stamp("cluster-a"))
		want = append(want, fmt.Sprintf("%d@%s", i, legacy))
	}
	for i := 2; i < 5; i++ { // events 2-4: offsets 2-4 of the same topic, stamped with its id
		e.publishOn(t, subject, i, 0, int64(i), kafkaleg.MsgID(e.route.Topic, 0, int64(i))+"/oldTopicIdAAAAAAAAAAAAA", incarnation("oldTopicIdAAAAAAAAAAAAA"))
		want = append(want, fmt.Sprintf("%d@%s", i, oldName))
	}
	for i := range 3 { // events 5-7: the topic created again, offsets 0-2
		e.publishOn(t, subject, 5+i, 0, int64(i), kafkaleg.MsgID(e.route.Topic, 0, int64(i))+"/newTopicIdBBBBBBBBBBBBB", incarnation("newTopicIdBBBBBBBBBBBBB"))
		want = append(want, fmt.Sprintf("%d@%s", 5+i, newName))
	}
	stop := e.run(1)
	defer stop()
	if got := archived(t, e, len(want)); !slices.Equal(got, want) {
		t.Fatalf("archived %v, want %v", got, want)
	}
	waitAcked(t, e, 1)
}
