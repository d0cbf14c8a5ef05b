// Package pulsarleg is leg B: JetStream to the Pulsar archive, one ordered
// pipeline per Kafka partition, run by the instance that owns that partition
// in Kafka (kafkaleg.Owner), so the owner of a partition owns its producer.
//
// Exactly-once into Pulsar rests on broker deduplication: each partition has a
// producer with a stable name and sends with sequence id = Kafka offset, so a
// replay of an offset at or below the highest one the broker persisted is
// dropped, also for a new owner (client v0.19.0 reports LastSequenceID -1 for
// a new producer, so the broker, not leg B, skips them). That only works if
// offsets reach the producer in increasing order: once 8 is persisted, 7 would
// be dropped for good. Hence:
//   - batching is off (the Go client's batches carry only their first
//     message's sequence id, pulsar-client-go #1395, #1407);
//   - the send timeout is infinite, so the client keeps retrying its ordered
//     pending queue across broker restarts instead of failing one message
//     and sending the next;
//   - the JetStream consumer delivers strictly in stream order: every session
//     recreates the partition's durable consumer at its ack floor, and any gap
//     or redelivery (a message lost with a dying NATS connection) ends the
//     session and restarts it from the floor instead of letting a later
//     message overtake an earlier one;
//   - JetStream is acked (AckAll) only up to what Pulsar confirmed.
//
// Each partition's consumer filters on the partition's own subject
// (shanhai.orders.p0, pkg/stream.PartitionSubject), so every message is read
// once. Before subjects per partition the whole topic went to one subject and
// each consumer also read, and skipped, the other partitions' messages; after
// an upgrade a consumer also filters on that old subject for as long as it
// holds messages the partition has not archived yet (see resetConsumer).
package pulsarleg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/shanhai-dev/shanhai/bridge/internal/backoff"
	"github.com/shanhai-dev/shanhai/bridge/internal/dlq"
	"github.com/shanhai-dev/shanhai/bridge/internal/mapping"
	"github.com/shanhai-dev/shanhai/bridge/internal/metrics"
)

// Pulsar property names set by leg B besides the carried headers.
const (
	PropTopic     = "__kafka_topic"
	PropPartition = "__kafka_partition"
	PropOffset    = "__kafka_offset"
)

// Options configure leg B.
type Options struct {
	JetStream    jetstream.JetStream
	Stream       string
	Pulsar       pulsar.Client
	Routes       []mapping.Route
	DLQ          dlq.Sink
	InFlight     int
	SinkRetries  int
	AckWait      time.Duration
	AckInterval  time.Duration
	DrainTimeout time.Duration
	MaxBackoff   time.Duration
	// MaxMessageSize reads a Pulsar topic's max message size policy; a message over it goes to the DLQ, as the client
	// loses one the broker refuses for it (sizelimit.go). Nil leaves the policy unchecked.
	MaxMessageSize MaxMessageSize
	// PolicyInterval is how often a session re-reads the policy (default 10s); a lower limit restarts the session.
	PolicyInterval time.Duration
	// LagInterval is how often a session whose deliveries wait (Pulsar slow or away, a dead letter the DLQ refuses, a
	// policy wait) reads its consumer for bridge_archive_lag (default 1s; the bridge passes BRIDGE_COMMIT_INTERVAL).
	LagInterval time.Duration
	// KafkaCluster reads the id of the Kafka cluster the offsets come from (kafkaleg.ClusterID); the producers are
	// named by it (mapping.ProducerName). Only for messages without the id leg A stamps on each
	// (kafkaleg.HeaderCluster), written by a bridge from before the stamp: read once per partition ownership, at the
	// first such message. Nil names those by the partition alone.
	KafkaCluster func(context.Context) (string, error)
	Logger       *slog.Logger
	Metrics      *metrics.Bridge
	// TracerProvider makes the publish spans; nil means the otel global (see kafkaleg.Options).
	TracerProvider trace.TracerProvider
}

// Leg is leg B.
type Leg struct {
	o        Options
	routes   map[string]mapping.Route
	tracer   trace.Tracer
	readings limitReadings
	waits    policyWaits
	// lagReads holds a token for each consumer read for bridge_archive_lag in flight (bsession.watchLag), at most
	// lagReadsMax for the whole leg.
	lagReads chan struct{}
}

// lagReadsMax bounds the leg's consumer reads for bridge_archive_lag in flight. Each waiting partition reads once per
// LagInterval, so with every partition held (Pulsar away) the reads grew with the partitions, and as fast as JetStream
// answered: a struggling JetStream got one more request per partition each interval. A session whose read finds the
// bound taken waits its turn (no interval skipped, so no partition starved), and a slow JetStream gets fewer.
const lagReadsMax = 4

// policyWaits are the partitions whose session waits to read its topic's max message size policy (partition.readLimit),
// for /readyz.
type policyWaits struct {
	mu sync.Mutex
	by map[string]policyWait // by the partition's name (mapping.Name)
}

type policyWait struct {
	topic string // Pulsar's
	since time.Time
	err   error // the last reading's
}

func (w *policyWaits) set(partition, topic string, since time.Time, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.by == nil {
		w.by = map[string]policyWait{}
	}
	w.by[partition] = policyWait{topic: topic, since: since, err: err}
}

func (w *policyWaits) done(partition string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.by, partition)
}

// PolicyWait is leg B's readiness on Pulsar's admin API: an error naming the partitions that wait to read their topic's
// max message size policy, and so archive nothing, because the admin API does not answer; nil when none waits. A
// session that read the policy once goes on under its last reading while the admin API is away (watchLimit), and a
// session started after the leg read its topic's policy starts under that reading (partition.readLimit): neither is
// counted here.
func (l *Leg) PolicyWait(context.Context) error {
	l.waits.mu.Lock()
	defer l.waits.mu.Unlock()
	if len(l.waits.by) == 0 {
		return nil
	}
	var oldest policyWait
	for _, w := range l.waits.by {
		if oldest.since.IsZero() || w.since.Before(oldest.since) {
			oldest = w
		}
	}
	return fmt.Errorf("leg B: %d partition(s) wait for the max message size policy of their Pulsar topic, %s since %s: %w",
		len(l.waits.by), oldest.topic, oldest.since.UTC().Format(time.RFC3339), oldest.err)
}

// limitReadings shares the sessions' periodic readings of a Pulsar topic's max message size. Every partition of a
// topic has a session re-reading the same policy each PolicyInterval, two admin GETs a reading: the bridge's nine
// sessions made 1.8 requests a second to the broker for three topics, which cost the broker more CPU than the whole
// idle bridge used (bridge README, "Idle cost"). A session's watch takes a reading younger than nine tenths of
// PolicyInterval from another session of the topic, so a lowered limit is seen up to that much later (19 s instead
// of 10 s by default); a session's first reading is its own, unless the admin API gives none: then the topic's last
// reading, whatever its age (partition.readLimit).
type limitReadings struct {
	mu   sync.Mutex
	last map[string]limitReading // by Pulsar topic
}

type limitReading struct {
	n  int
	at time.Time
}

// recent returns the topic's last reading if it is younger than within.
func (r *limitReadings) recent(topic string, within time.Duration) (int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	last, ok := r.last[topic]
	if !ok || time.Since(last.at) >= within {
		return 0, false
	}
	return last.n, true
}

// latest returns the topic's last reading and when it was read, whatever its age.
func (r *limitReadings) latest(topic string) (int, time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	last, ok := r.last[topic]
	return last.n, last.at, ok
}

func (r *limitReadings) store(topic string, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last = map[string]limitReading{}
	}
	r.last[topic] = limitReading{n: n, at: time.Now()}
}

// New fills defaults.
func New(o Options) *Leg {
	if o.InFlight <= 0 {
		o.InFlight = 512
	}
	if o.AckWait <= 0 {
		o.AckWait = 2 * time.Minute
	}
	if o.AckInterval <= 0 {
		o.AckInterval = 200 * time.Millisecond
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 10 * time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	if o.PolicyInterval <= 0 {
		o.PolicyInterval = 10 * time.Second
	}
	if o.LagInterval <= 0 {
		o.LagInterval = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.TracerProvider == nil {
		o.TracerProvider = otel.GetTracerProvider()
	}
	return &Leg{o: o, routes: mapping.ByTopic(o.Routes), tracer: o.TracerProvider.Tracer("github.com/shanhai-dev/shanhai/bridge/pulsarleg"),
		lagReads: make(chan struct{}, lagReadsMax)}
}

// Partition is a kafkaleg.Owner: it carries one partition until gen ends.
func (l *Leg) Partition(gen, stop context.Context, topic string, part int, drained func()) {
	defer drained()
	ctx, cancel := context.WithCancel(gen)
	defer cancel()
	go func() {
		select {
		case <-stop.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	p := &partition{leg: l, route: l.routes[topic], id: part, name: mapping.Name(topic, part), rejects: map[int64]rejection{}, counted: -1}
	b := backoff.Backoff{Base: 100 * time.Millisecond, Max: l.o.MaxBackoff}
	l.o.Metrics.ArchiveProgress(topic, part) // the stall alert counts from here for a partition that never archives
	for ctx.Err() == nil {
		progressed, err := p.session(ctx)
		if progressed {
			b.Reset()
		}
		if err == nil || ctx.Err() != nil {
			break
		}
		if errors.Is(err, errNewProducer) {
			// Not a failure: the stream goes on with another Kafka cluster's records (session).
			l.o.Logger.Info("leg B partition continues with another Pulsar producer", "topic", topic, "partition", part, "detail", err)
			b.Reset()
			continue
		}
		l.o.Logger.Warn("leg B partition restarting", "topic", topic, "partition", part, "err", err)
		l.o.Metrics.Count(metrics.LegB, "retry", 1)
		b.Wait(ctx)
	}
	// Every session and its lag watch have returned: nothing sets the series after this.
	l.o.Metrics.ForgetArchive(topic, part)
	drained()
	<-gen.Done()
}

// Ping checks that Pulsar answers a lookup, for /readyz.
func Ping(c pulsar.Client, topic string) error {
	done := make(chan error, 1)
	go func() { _, err := c.TopicPartitions(topic); done <- err }()
	select {
	case err := <-done:
		return err
	case <-time.After(3 * time.Second):
		return errors.New("pulsar lookup timed out")
	}
}

// isRejection tells Pulsar's verdict on one message from transient failures.
//
// The client's own size check comes in two forms. A payload over the broker's max message size is a *pulsar.Error
// MessageTooBig; a payload under it whose metadata (its properties: the record's headers) takes it over is refused
// while the send is serialized, with internal.ErrExceedMaxMessageSize ("encryptedPayload exceeds MaxMessageSize"),
// an error of the client's internal package, no *pulsar.Error, that only its text tells. Taken for a transient failure,
// it restarted the partition's session for ever at that message, never dead-lettered.
func isRejection(err error) bool {
	var pe *pulsar.Error
	if errors.As(err, &pe) {
		switch pe.Result() {
		case pulsar.MessageTooBig, pulsar.InvalidMessage:
			return true
		}
	}
	return err != nil && strings.Contains(err.Error(), errExceedMaxMessageSize)
}

// errExceedMaxMessageSize is the text of pulsar-client-go's internal.ErrExceedMaxMessageSize (v0.19.0).
const errExceedMaxMessageSize = "encryptedPayload exceeds MaxMessageSize"

// resetConsumer recreates the partition's durable consumer at its ack floor,
// so delivery restarts in stream order from the first unacknowledged message
// (a redelivery left to AckWait would arrive after newer messages).
//
// The filter is the partition's subject. A stream written by a bridge from
// before subjects per partition holds the whole topic on route.Subject; if any
// of it lies at or after the floor, the consumer filters on that subject too
// (feed skips the other partitions' messages), so the upgrade archives what
// the old bridge stored and had not archived yet. Once the floor passes the
// last such message the next session drops the extra filter.
//
// The floor is kept in p between the delete and a creation that succeeds (p.unmade): when the creation failed (NATS
// away between the two requests, JetStream answering 503 while it recovers), the next session found no consumer and
// read the stream from its first message, sending everything archived before to Pulsar again (dropped by its dedup,
// but up to the stream's MaxAge of replays ahead of the new messages:
// TestLegBKeepsItsPositionWhenCreatingItsConsumerAgainFails). Only in the same stream: one deleted and created again
// meanwhile starts its sequences over, and is read from its start.
func (l *Leg) resetConsumer(ctx context.Context, p *partition) (jetstream.Consumer, error) {
	route, name := p.route, p.name
	cfg := jetstream.ConsumerConfig{
		Durable:       name,
		FilterSubject: route.PartitionSubject(p.id),
		AckPolicy:     jetstream.AckAllPolicy,
		AckWait:       l.o.AckWait,
		MaxAckPending: 4 * l.o.InFlight,
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	st, err := l.o.JetStream.Stream(ctx, l.o.Stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", l.o.Stream, err)
	}
	created := st.CachedInfo().Created
	start := uint64(1)
	old, err := l.o.JetStream.Consumer(ctx, l.o.Stream, name)
	// From the delete on, the partition has no consumer until the creation succeeds, and p.unmade lives only as long
	// as this ownership: a stop or a rebalance that ended ctx in between failed the creation, and the next owner (a
	// restarted bridge, another instance) read the stream from its first message
	// (TestLegBRecreatesItsConsumerWhenStoppedAfterTheDelete). So the delete and the creation outlive ctx, for at
	// most the drain timeout, which a stop already grants the session.
	mk, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.o.DrainTimeout)
	defer cancel()
	switch {
	case err == nil:
		info := old.CachedInfo()
		start = info.AckFloor.Stream + 1
		if info.AckFloor.Stream == 0 {
			start = max(info.Config.OptStartSeq, 1)
		}
		p.unmade = &floor{start: start, created: created}
		if err := l.o.JetStream.DeleteConsumer(mk, l.o.Stream, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("delete consumer %s: %w", name, err)
		}
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		if p.unmade != nil && p.unmade.created.Equal(created) {
			start = p.unmade.start
		}
	default:
		return nil, fmt.Errorf("consumer %s: %w", name, err)
	}
	if start > 1 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start
	}
	legacy, err := storedSince(mk, st, route.Subject, start)
	if err != nil {
		return nil, err
	}
	if legacy {
		cfg.FilterSubject, cfg.FilterSubjects = "", []string{route.PartitionSubject(p.id), route.Subject}
	}
	c, err := l.o.JetStream.CreateConsumer(mk, l.o.Stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", name, err)
	}
	p.unmade = nil
	return c, nil
}

// floor is where a partition's consumer was to start (a stream sequence) in the stream created at created.
type floor struct {
	start   uint64
	created time.Time
}

// storedSince reports whether the stream s holds a message on subject with a
// sequence of at least seq.
func storedSince(ctx context.Context, s jetstream.Stream, subject string, seq uint64) (bool, error) {
	m, err := s.GetLastMsgForSubject(ctx, subject)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("last message on %s: %w", subject, err)
	}
	return m.Sequence >= seq, nil
}
