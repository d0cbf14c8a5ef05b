package stream

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestEnsureConsumerWritesOnlyWhenItsConfigChanges runs against the real NATS
// server: the first call creates the stream and the consumer, a restart with the same config only looks
// the consumer up (it leaves a hand-made change alone, which shows no update
// was sent), and a changed config is applied.
func TestEnsureConsumerWritesOnlyWhenItsConfigChanges(t *testing.T) {
	js, n := testStream(t, "CONSUMER")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := jetstream.ConsumerConfig{
		Durable: "svc", FilterSubject: n.StreamSubjects[:len(n.StreamSubjects)-1] + "x",
		AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: 5, MaxAckPending: 64,
		Metadata: map[string]string{"owner": "test"},
	}
	c, err := EnsureConsumer(ctx, js, n, cfg)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, err := js.Stream(ctx, n.Stream); err != nil {
		t.Fatalf("stream not created: %v", err)
	}
	got := c.CachedInfo().Config
	if got.MaxDeliver != 5 || got.Metadata["owner"] != "test" || got.Metadata[ConfigDigestKey] == "" {
		t.Fatalf("created config %+v", got)
	}
	if len(cfg.Metadata) != 1 {
		t.Fatalf("EnsureConsumer changed the caller's metadata map: %v", cfg.Metadata)
	}

	// Changed by hand, digest kept: the same cfg again must not send an update.
	hand := got
	hand.MaxAckPending = 7
	if _, err := js.UpdateConsumer(ctx, n.Stream, hand); err != nil {
		t.Fatal(err)
	}
	c, err = EnsureConsumer(ctx, js, n, cfg)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	if m := c.CachedInfo().Config.MaxAckPending; m != 7 {
		t.Fatalf("MaxAckPending %d after a restart with an unchanged config: EnsureConsumer updated the consumer", m)
	}

	// The service's own config changed: applied.
	cfg.MaxDeliver = 9
	if c, err = EnsureConsumer(ctx, js, n, cfg); err != nil {
		t.Fatalf("update: %v", err)
	}
	if got := c.CachedInfo().Config; got.MaxDeliver != 9 || got.MaxAckPending != 64 {
		t.Fatalf("updated config %+v", got)
	}
}

func TestConfigDigestIgnoresItsOwnKey(t *testing.T) {
	cfg := jetstream.ConsumerConfig{Durable: "d", MaxDeliver: 3}
	a, err := configDigest(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Metadata = map[string]string{ConfigDigestKey: a}
	if b, _ := configDigest(cfg); b != a {
		t.Fatalf("digest %s with its own key, %s without", b, a)
	}
	cfg.MaxDeliver = 4
	if c, _ := configDigest(cfg); c == a {
		t.Fatal("a different config has the same digest")
	}
}

// TestEnsureConsumerKeepsTheStartOfAConsumerItChanges: a consumer created
// with a start of its own and the digest of cfg (payment recreates a
// deleted consumer so, just above the ack floor) was sent cfg's start
// back once cfg changed, which the server refuses ("deliver policy can
// not be updated"): every start of the service with the new config failed
// until someone deleted the consumer. The start is kept; the rest is
// applied.
func TestEnsureConsumerKeepsTheStartOfAConsumerItChanges(t *testing.T) {
	js, n := testStream(t, "CONSUMERSTART")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := Ensure(ctx, js, n); err != nil {
		t.Fatal(err)
	}
	cfg := jetstream.ConsumerConfig{Durable: "svc", AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: 5}
	started, err := WithDigest(cfg)
	if err != nil {
		t.Fatal(err)
	}
	started.DeliverPolicy, started.OptStartSeq = jetstream.DeliverByStartSequencePolicy, 5
	if _, err := js.CreateConsumer(ctx, n.Stream, started); err != nil {
		t.Fatal(err)
	}

	cfg.MaxDeliver = 9
	c, err := EnsureConsumer(ctx, js, n, cfg)
	if err != nil {
		t.Fatalf("a changed config on a consumer with a start of its own: %v", err)
	}
	got := c.CachedInfo().Config
	if got.MaxDeliver != 9 || got.DeliverPolicy != jetstream.DeliverByStartSequencePolicy || got.OptStartSeq != 5 {
		t.Fatalf("updated config: MaxDeliver %d, deliver policy %v from %d; want 9, by start sequence from 5",
			got.MaxDeliver, got.DeliverPolicy, got.OptStartSeq)
	}
}
