package kafkaleg_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
)

const idTopic = "shanhai.orders"

var (
	oldIncarnation = sarama.Uuid{1}
	newIncarnation = sarama.Uuid{2}
)

// metadataBroker is a sarama mock broker of Kafka 2.8 or later that answers Metadata with the topic's id and leader
// of partition 0 as set by answer.
func metadataBroker(t *testing.T, id int32) *sarama.MockBroker {
	t.Helper()
	b := sarama.NewMockBroker(t, id)
	t.Cleanup(b.Close)
	return b
}

// answer makes b say that the topic's id is id and that leader leads its partition 0, among brokers.
func answer(t *testing.T, b *sarama.MockBroker, id sarama.Uuid, leader int32, brokers ...*sarama.MockBroker) {
	t.Helper()
	res := &sarama.MetadataResponse{Version: 10}
	for _, o := range brokers {
		res.AddBroker(o.Addr(), o.BrokerID())
	}
	res.AddTopic(idTopic, sarama.ErrNoError).Uuid = id
	res.AddTopicPartition(idTopic, 0, leader, nil, nil, nil, sarama.ErrNoError)
	b.SetHandlerByMap(map[string]sarama.MockResponse{
		"ApiVersionsRequest": sarama.NewMockApiVersionsResponse(t).SetApiKeys([]sarama.ApiVersionsResponseKey{
			{ApiKey: 18, MinVersion: 0, MaxVersion: 3}, {ApiKey: 3, MinVersion: 0, MaxVersion: 12}}),
		"MetadataRequest": sarama.NewMockWrapper(res),
	})
}

// TestTopicIDIsTheLeaders: right after a recreation a broker whose metadata is behind answers with the old id, while
// the partition's leader (the broker leg A reads from) holds the new incarnation's records. TopicID took the first
// answer, and both sinks dropped the new records 0..n as replays of the old ones. It asks the leader now.
func TestTopicIDIsTheLeaders(t *testing.T) {
	t.Parallel()
	stale, leader := metadataBroker(t, 1), metadataBroker(t, 2)
	answer(t, stale, oldIncarnation, 2, stale, leader)
	answer(t, leader, newIncarnation, 2, stale, leader)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := kafkaleg.TopicID(ctx, []string{stale.Addr()}, idTopic, 0)
	if err != nil || id != newIncarnation.String() {
		t.Fatalf("TopicID = %q, %v; want the leader's %q (the stale broker's is %q)", id, err, newIncarnation, oldIncarnation)
	}

	// A leader that no longer names itself (leadership moved since) is no answer: the next session asks again.
	answer(t, leader, newIncarnation, 1, stale, leader)
	if id, err := kafkaleg.TopicID(ctx, []string{stale.Addr()}, idTopic, 0); err == nil {
		t.Fatalf("TopicID = %q from a leader that names another; want an error", id)
	}
}

// TestTopicIDsRefusesNoIDAfterOne: a broker of 2.8 or later answering with no id after a real one (a ZooKeeper
// cluster mid-upgrade, a controller failover) switched the partition to the names without the id, archiving its
// records again or dropping them as the old names' replays. Once a topic gave an id, none is an error.
func TestTopicIDsRefusesNoIDAfterOne(t *testing.T) {
	t.Parallel()
	ctx, b, read := readAnID(t)
	answer(t, b, sarama.Uuid{}, 1, b)
	if id, err := read(); !errors.Is(err, kafkaleg.ErrTopicIDGone) {
		t.Fatalf("Read after an id = %q, %v; want ErrTopicIDGone", id, err)
	}
	// A process that never saw an id (a cluster without them) keeps the names without it.
	var fresh kafkaleg.TopicIDs
	if id, err := fresh.Read(ctx, []string{b.Addr()}, idTopic, 0); err != nil || id != "" {
		t.Fatalf("Read with no id seen = %q, %v; want no id and no error", id, err)
	}
}

// TestTopicIDsTakesNoIDFromABrokerDowngradedBelow28: a cluster downgraded below 2.8 while the bridge runs has no topic
// ids at all (no Metadata v10), and TopicIDs refused its no id as it does a 2.8 broker's (ErrTopicIDGone), so leg A
// failed on the topic until the bridge restarted. The broker's versions, asked by every session, tell the two apart:
// the downgraded topic is named without an id, as a bridge started on it names it, and an upgrade again gives the id.
func TestTopicIDsTakesNoIDFromABrokerDowngradedBelow28(t *testing.T) {
	t.Parallel()
	_, b, read := readAnID(t)
	downgrade(t, b)
	if id, err := read(); err != nil || id != "" {
		t.Fatalf("Read from the broker downgraded to 2.7 = %q, %v; want no id and no error", id, err)
	}
	answer(t, b, newIncarnation, 1, b) // upgraded again
	if id, err := read(); err != nil || id != newIncarnation.String() {
		t.Fatalf("Read after the upgrade = %q, %v; want %q", id, err, newIncarnation)
	}
	answer(t, b, sarama.Uuid{}, 1, b) // a 2.8 broker with no id after one: still refused
	if id, err := read(); !errors.Is(err, kafkaleg.ErrTopicIDGone) {
		t.Fatalf("Read of no id from a 2.8 broker after the upgrade = %q, %v; want ErrTopicIDGone", id, err)
	}
}

// TestTopicIDsRefusesAnIDReplacedSince: right after a recreation a broker whose metadata is behind may still name the
// topic by the old incarnation's id after a session read the new one. Taken, leg A saw the topic created again a
// second time, backwards, and read the partition from its earliest offset again under the old names (recreated),
// archiving every retained record once more. A replaced id is refused now: the session fails and the next asks again.
func TestTopicIDsRefusesAnIDReplacedSince(t *testing.T) {
	t.Parallel()
	_, b, read := readAnID(t)
	recreated := sarama.Uuid{3}
	answer(t, b, recreated, 1, b)
	if id, err := read(); err != nil || id != recreated.String() {
		t.Fatalf("Read after the topic was created again = %q, %v; want %q", id, err, recreated)
	}
	answer(t, b, newIncarnation, 1, b) // a broker behind names the replaced incarnation
	if id, err := read(); !errors.Is(err, kafkaleg.ErrTopicIDReplaced) {
		t.Fatalf("Read of the replaced id = %q, %v; want ErrTopicIDReplaced", id, err)
	}
	answer(t, b, recreated, 1, b) // caught up
	if id, err := read(); err != nil || id != recreated.String() {
		t.Fatalf("Read once the broker caught up = %q, %v; want %q", id, err, recreated)
	}
}

// readAnID starts a broker of 2.8 or later giving the topic an id and reads it with a TopicIDs, which read reads
// again; the context ends with the test.
func readAnID(t *testing.T) (context.Context, *sarama.MockBroker, func() (string, error)) {
	t.Helper()
	b := metadataBroker(t, 1)
	answer(t, b, newIncarnation, 1, b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	var ids kafkaleg.TopicIDs
	read := func() (string, error) { return ids.Read(ctx, []string{b.Addr()}, idTopic, 0) }
	if id, err := read(); err != nil || id != newIncarnation.String() {
		t.Fatalf("first Read = %q, %v; want %q", id, err, newIncarnation)
	}
	return ctx, b, read
}

// downgrade makes b answer as a broker older than 2.8: Metadata up to v9, no topic ids.
func downgrade(t *testing.T, b *sarama.MockBroker) {
	t.Helper()
	b.SetHandlerByMap(map[string]sarama.MockResponse{
		"ApiVersionsRequest": sarama.NewMockApiVersionsResponse(t).SetApiKeys([]sarama.ApiVersionsResponseKey{
			{ApiKey: 18, MinVersion: 0, MaxVersion: 3}, {ApiKey: 3, MinVersion: 0, MaxVersion: 9}}),
	})
}

// TestTopicIDClosesItsConnectionWhenTheContextEnds: sarama's calls take no context and its Close waits for the answer
// in flight, so a stop left the request to a broker that does not answer running until sarama's 10 s read timeout.
func TestTopicIDClosesItsConnectionWhenTheContextEnds(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	asked, closed := make(chan struct{}), make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 512)
		if _, err := c.Read(buf); err != nil {
			return
		}
		close(asked)
		for { // never answer, until the client closes
			if _, err := c.Read(buf); err != nil {
				close(closed)
				return
			}
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := kafkaleg.TopicID(ctx, []string{ln.Addr().String()}, idTopic, 0)
		done <- err
	}()
	<-asked
	cancel()
	// Well before sarama's 10 s read timeout, which closed it before.
	select {
	case <-closed:
	case <-time.After(8 * time.Second):
		t.Fatal("the connection to the broker is still open after the context ended")
	}
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("TopicID = %v; want context.Canceled", err)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("TopicID has not returned after the context ended")
	}
}
