// Package kafkaleg is leg A: a Kafka consumer group whose partitions are
// republished to JetStream, one in-order pipeline per partition, each
// partition to a subject of its own (shanhai.orders.p0, pkg/stream) so that
// leg B's per-partition consumers read only their partition.
//
// It uses kafka-go's ConsumerGroup/Generation API rather than Reader with a
// GroupID: Reader commits whatever offset it is told, so confirmations that
// arrive out of order lose messages (kafka-go issues #674, #1398), and its
// commits may land after the partition moved to another instance. Here each
// partition runs inside the generation (its context ends at rebalance), its
// position comes from a commit.Tracker, and commits are made through the
// generation, so they stop the moment it ends (the broker also rejects a stale
// generation id).
//
// Ordering in the stream matters because leg B sends to Pulsar with sequence
// id = Kafka offset: if offset 7 reached the stream after 8, the broker would
// drop 7 as a duplicate. One connection keeps publishes in order; the risk is
// a message lost with a dying connection while a later one lands on the new
// connection. So a partition never has messages of two connections in flight
// (a reconnect is a barrier), and after a restart or reconnect it sends one
// message at a time until JetStream confirms one. Replays after a failure are
// deduplicated by Nats-Msg-Id = topic/partition/offset/<topic id> (msgID; no
// id from a broker older than 2.8).
package kafkaleg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/shanhai-dev/shanhai/bridge/internal/dlq"
	"github.com/shanhai-dev/shanhai/bridge/internal/mapping"
	"github.com/shanhai-dev/shanhai/bridge/internal/metrics"
)

// Owner runs beside leg A for every partition this instance owns (leg B uses
// it so that the owner of a Kafka partition owns its Pulsar producer). It must
// return when gen ends. When stop ends it finishes in-flight work, calls
// drained once, and keeps waiting for gen: the generation (and so the final
// commit) outlives the drain.
type Owner func(gen, stop context.Context, topic string, partition int, drained func())

// Options configure leg A.
type Options struct {
	Brokers        []string
	Group          string
	Routes         []mapping.Route
	StartOffset    int64 // kafka.FirstOffset or kafka.LastOffset for partitions without a commit
	NATS           *nats.Conn
	JetStream      jetstream.JetStream
	DLQ            dlq.Sink
	Validate       func(headers map[string]string, value []byte) error // envelope check; nil accepts all
	MaxBytes       int
	InFlight       int
	SinkRetries    int
	CommitInterval time.Duration
	DrainTimeout   time.Duration
	MaxBackoff     time.Duration
	SessionTimeout time.Duration // Kafka group session; how long a killed instance holds its partitions
	Logger         *slog.Logger
	Metrics        *metrics.Bridge
	Owner          Owner
	// TracerProvider makes the publish spans; nil means the otel global. The
	// wiring passes its own provider so that bridges started side by side in
	// one process (the app tests) do not record into each other's.
	TracerProvider trace.TracerProvider
}

// Leg is leg A.
type Leg struct {
	o       Options
	offsets *kafka.Client // ListOffsets of refreshLag and of each session's check (inRange), each with its own timeout
	routes  map[string]mapping.Route
	tracer  trace.Tracer
	active  atomic.Int32                 // partitions owned now, for tests
	gens    atomic.Int64                 // generations joined
	group   *groupState                  // for Ready
	parts   atomic.Pointer[[]*partition] // the generation's partitions, for Ready; nil between generations
	resets  resetsSeen                   // offset resets counted, so that a pending one counts once
	// topicIDs is the topic id each partition's last session read, by its subject, across generations: a change is
	// logged, which tells an operator a reset past the end was the topic created again and not a truncation.
	topicIDs sync.Map
	ids      TopicIDs // refuses no id for a topic that gave one, and an id another replaced
}

// New validates nothing beyond what config did; it only fills defaults.
func New(o Options) *Leg {
	if o.InFlight <= 0 {
		o.InFlight = 512
	}
	if o.CommitInterval <= 0 {
		o.CommitInterval = time.Second
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 10 * time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	if o.SessionTimeout <= 0 {
		o.SessionTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.TracerProvider == nil {
		o.TracerProvider = otel.GetTracerProvider()
	}
	return &Leg{o: o, routes: mapping.ByTopic(o.Routes), tracer: o.TracerProvider.Tracer("github.com/shanhai-dev/shanhai/bridge/kafkaleg"),
		offsets: &kafka.Client{Addr: kafka.TCP(o.Brokers...)}, group: newGroupState(o.Logger, o.Group)}
}

// Partitions is how many partitions this instance owns right now.
func (l *Leg) Partitions() int { return int(l.active.Load()) }

// Generations counts the consumer group generations this instance joined.
func (l *Leg) Generations() int64 { return l.gens.Load() }

// Run consumes until ctx ends, then drains, commits what is confirmed and
// leaves the group.
func (l *Leg) Run(ctx context.Context) error {
	topics := make([]string, 0, len(l.o.Routes))
	for _, r := range l.o.Routes {
		topics = append(topics, r.Topic)
	}
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                     l.o.Group,
		Brokers:                l.o.Brokers,
		Topics:                 topics,
		StartOffset:            l.o.StartOffset,
		HeartbeatInterval:      time.Second,
		SessionTimeout:         l.o.SessionTimeout,
		RebalanceTimeout:       l.o.SessionTimeout,
		JoinGroupBackoff:       time.Second,
		WatchPartitionChanges:  true,
		PartitionWatchInterval: 5 * time.Second,
		Timeout:                5 * time.Second,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			l.o.Logger.Debug("kafka group", "detail", fmt.Sprintf(msg, args...))
		}),
	})
	if err != nil {
		return fmt.Errorf("kafka consumer group %s: %w", l.o.Group, err)
	}
	defer cg.Close()
	for {
		gen, err := cg.Next(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			l.group.failed(err)
			continue // the group retries joining by itself, with backoff (JoinGroupBackoff)
		}
		l.gens.Add(1)
		l.group.begin()
		l.generation(ctx, gen)
		l.group.end()
		if ctx.Err() != nil {
			return nil
		}
	}
}

// Ready is leg A's readiness: nil while this instance is a member of a consumer group generation, or its last one
// ended less than two session timeouts ago (a normal rebalance: members have the rebalance timeout, one session
// timeout here, to join the next generation); else an error saying since when it has none and why. A TCP dial to a
// broker used to stand for it, so a bridge whose group never got a generation (a member of the group with another
// partition assignment protocol, the coordinator refusing the join) carried nothing and said ready. A generation
// proves the coordinator answers: kafka-go ends it when heartbeats fail.
//
// It also fails while a partition of the generation has failed to fetch for as long (fetch.go): the leg is a member,
// but carries nothing of that partition.
func (l *Leg) Ready(context.Context) error {
	now, grace := time.Now(), l.fetchGrace()
	if err := l.group.ready(l.o.Group, grace, now); err != nil {
		return err
	}
	if parts := l.parts.Load(); parts != nil {
		return unfetched(*parts, grace, now)
	}
	return nil
}

// fetchGrace is how long a partition's failed fetches may span before it counts as unfetchable (readiness,
// bridge_partition_unfetchable): two session timeouts, as long as a rebalance may leave the group without a generation.
func (l *Leg) fetchGrace() time.Duration { return 2 * l.o.SessionTimeout }

// generation runs one generation's partitions and committer and returns when
// the generation ends.
func (l *Leg) generation(stop context.Context, gen *kafka.Generation) {
	var parts []*partition
	var drained sync.WaitGroup
	var running sync.WaitGroup // the routines that set bridge_consumer_lag: each partition's (its feed) and the commit loop
	for topic, as := range gen.Assignments {
		route := l.routes[topic]
		for _, a := range as {
			p := &partition{leg: l, route: route, id: a.ID, subject: route.PartitionSubject(a.ID), fetch: newFetchLog(l.o.Logger, topic, a.ID)}
			parts = append(parts, p)
			drained.Add(1)
			start := a.Offset
			done := onceFunc(drained.Done)
			running.Add(1)
			gen.Start(func(gctx context.Context) { defer running.Done(); p.run(gctx, stop, start, done) })
			if l.o.Owner != nil {
				drained.Add(1)
				done := onceFunc(drained.Done)
				gen.Start(func(gctx context.Context) { l.o.Owner(gctx, stop, topic, a.ID, done) })
			}
		}
	}
	l.o.Logger.Info("kafka group generation", "group", gen.GroupID, "generation", gen.ID, "member", gen.MemberID, "partitions", len(parts))
	l.active.Store(int32(len(parts)))
	l.parts.Store(&parts)
	ended := make(chan struct{})
	running.Add(1)
	gen.Start(func(gctx context.Context) { defer running.Done(); l.commitLoop(gctx, stop, gen, parts, &drained) })
	gen.Start(func(gctx context.Context) { <-gctx.Done(); close(ended) })
	<-ended
	l.active.Store(0)
	l.parts.Store(nil)
	l.forget(parts, &running)
}

// forget removes the partitions' bridge_consumer_lag series once nothing of the generation can set them again. They
// were forgotten as soon as the generation's context ended, while the commit loop could still be in refreshLag and a
// feed past its fetch: a set after the forget brought a revoked partition's series back, at its last value, for good.
// Checking the context before each set would still lose to a forget between the check and the set. The wait costs
// nothing: kafka-go waits for the generation's routines anyway before it joins the next one.
func (l *Leg) forget(parts []*partition, running *sync.WaitGroup) {
	running.Wait()
	for _, p := range parts {
		l.o.Metrics.Forget(p.route.Topic, p.id)
	}
}

// commitLoop commits confirmed positions every interval while the generation
// lives; on stop it waits (bounded) for the partitions to drain, commits once
// more and returns, which ends the generation.
func (l *Leg) commitLoop(gctx, stop context.Context, gen *kafka.Generation, parts []*partition, drained *sync.WaitGroup) {
	t := time.NewTicker(l.o.CommitInterval)
	defer t.Stop()
	for {
		select {
		case <-gctx.Done():
			return
		case now := <-t.C:
			l.commit(gctx, gen, gen.ID, parts)
			l.refreshLag(gctx, parts)
			l.refreshFetch(parts, now)
		case <-stop.Done():
			all := make(chan struct{})
			go func() { drained.Wait(); close(all) }()
			select {
			case <-all:
			case <-time.After(l.o.DrainTimeout):
				l.o.Logger.Warn("drain timed out; committing what is confirmed")
			case <-gctx.Done():
				return
			}
			l.commit(gctx, gen, gen.ID, parts)
			return
		}
	}
}

// offsetCommitter commits offsets for a consumer group generation: a *kafka.Generation, a fake in unit tests.
type offsetCommitter interface {
	CommitOffsets(offsets map[string]map[int]int64) error
}

func (l *Leg) commit(gctx context.Context, gen offsetCommitter, genID int32, parts []*partition) {
	offsets := map[string]map[int]int64{}
	type move struct {
		p     *partition
		since *rewind
	}
	var moved []move
	for _, p := range parts {
		// A position moves back only by a reset (reset.go), committed once records past it are carried: a
		// committed offset above it, from before the reset, would otherwise hold it back for the generation. And an
		// offset committed before the last reset is no reason to skip the position: it was the old incarnation's (or
		// above a truncated end), and a position carried back to exactly it was left uncommitted, so a restart read
		// those records again. The position is taken only when it is of the last reset, or of a later session: pump
		// stores the reset before the session's tracker, so between the two the tracker is the old session's, whose
		// position (equal to committed, or not) was committed under the new reset, an offset of the old incarnation
		// in the new one, and a restart skipped the new records below it. Skipped then (a reset not tracked yet, or
		// another one stored meanwhile), the partition is committed at the next tick.
		since := p.rewound.Load()
		if since != nil && !since.tracked.Load() {
			continue
		}
		pos := p.position()
		if pos < 0 || p.rewound.Load() != since || (pos == p.committed && since == p.committedSince) ||
			(since != nil && pos == since.to) {
			continue
		}
		if offsets[p.route.Topic] == nil {
			offsets[p.route.Topic] = map[int]int64{}
		}
		offsets[p.route.Topic][p.id] = pos
		moved = append(moved, move{p, since})
	}
	if len(offsets) == 0 || gctx.Err() != nil {
		return // never commit for a generation that ended
	}
	if err := gen.CommitOffsets(offsets); err != nil {
		l.o.Logger.Warn("kafka commit failed; will retry", "generation", genID, "err", err)
		return
	}
	for _, m := range moved {
		m.p.committed, m.p.committedSince = offsets[m.p.route.Topic][m.p.id], m.since
		m.p.forgetRejects(m.p.committed)
	}
}

// forgetRejects drops the sink verdicts on offsets below a committed position. An offset the partition dead-lettered
// kept its entry for the rest of the generation (a confirmed one's goes in confirmed), so a long-lived generation with
// many bad messages grew the map without bound; below the commit no session of this generation reads them again.
func (p *partition) forgetRejects(committed int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	maps.DeleteFunc(p.rejects, func(offset int64, _ rejection) bool { return offset < committed })
}

// refreshLag sets each partition's bridge_consumer_lag: the high watermark minus the first unconfirmed offset, the
// records JetStream has not confirmed yet (what a restart would read again, as the group's committed offset shows).
// It mixed two definitions: the feed set it from each fetched record (its high watermark minus its offset minus one,
// which leaves out the records fetched and unconfirmed, and stayed at its last value while they were confirmed), and
// this from the first unconfirmed offset only for a partition held. A partition whose feed waits for a record has
// fetched everything, so the high watermark its last record came with holds, and an idle bridge asks nothing; for the
// others (held at a poison message while the DLQ is down, stalled by JetStream, restarting) the broker is asked, in
// one ListOffsets request.
func (l *Leg) refreshLag(gctx context.Context, parts []*partition) {
	req := map[string][]kafka.OffsetRequest{}
	for _, p := range parts {
		switch pos := p.position(); {
		case pos < 0:
		case p.fetching.Load():
			l.o.Metrics.Lag(p.route.Topic, p.id, max(p.hwm.Load()-pos, 0))
		default:
			req[p.route.Topic] = append(req[p.route.Topic], kafka.LastOffsetOf(p.id))
		}
	}
	if len(req) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(gctx, l.o.CommitInterval) // the next refresh asks again
	defer cancel()
	res, err := l.offsets.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: req})
	if err != nil {
		l.o.Logger.Debug("leg A high watermarks", "err", err)
		return
	}
	for _, p := range parts {
		for _, po := range res.Topics[p.route.Topic] {
			if pos := p.position(); po.Partition == p.id && po.Error == nil && pos >= 0 && gctx.Err() == nil {
				l.o.Metrics.Lag(p.route.Topic, p.id, max(po.LastOffset-pos, 0))
			}
		}
	}
}

// ClusterID asks the brokers for their cluster's id (Metadata v2+), which leg A stamps on each message
// (HeaderCluster) and leg B names its Pulsar producers by (mapping.ProducerName). It asks for no topic's metadata: a request without topics would list every topic of the
// cluster.
func ClusterID(ctx context.Context, brokers []string) (string, error) {
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	res, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{}})
	if err != nil {
		return "", fmt.Errorf("kafka cluster id: %w", err)
	}
	return res.ClusterID, nil
}

func onceFunc(f func()) func() {
	var once sync.Once
	return func() { once.Do(f) }
}

// isRejection tells a sink's verdict on one message (it will say the same
// again) from a transient failure (timeout, disconnect, no stream leader).
func isRejection(err error) bool {
	var api *jetstream.APIError
	if errors.As(err, &api) {
		return api.Code >= 400 && api.Code < 500
	}
	return errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, nats.ErrBadHeaderMsg)
}
