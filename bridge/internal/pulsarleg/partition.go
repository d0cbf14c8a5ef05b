package pulsarleg

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/apache/pulsar-client-go/pulsar"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/shanhai-dev/shanhai/bridge/internal/backoff"
	"github.com/shanhai-dev/shanhai/bridge/internal/commit"
	"github.com/shanhai-dev/shanhai/bridge/internal/dlq"
	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
	"github.com/shanhai-dev/shanhai/bridge/internal/mapping"
	"github.com/shanhai-dev/shanhai/bridge/internal/metrics"
)

type partition struct {
	leg   *Leg
	route mapping.Route
	id    int
	name  string // the JetStream consumer's
	// cluster is the Kafka cluster id read from Kafka (Options.KafkaCluster) for messages without leg A's stamp, once
	// per ownership (looked up: read), as a generation cannot outlive its cluster. Only feed uses them.
	cluster string
	looked  bool
	rejects map[int64]rejection // only the session goroutines of this partition, one session at a time
	// lettered are the stream messages this generation wrote to the DLQ and has not acked yet (deadLetter): a session
	// that failed behind a dead letter is followed by one that reads it again from the ack floor.
	lettered map[letterKey]struct{}
	acked    streamPos // the last message of this partition acked in this generation (zero: none yet)
	// counted is the highest offset up to which bridge_stream_lost_total has counted this generation's losses (-1:
	// none). Each session reads again from the ack floor, and the gap behind a lost range was counted by every session
	// that read the message after it; offsets at or below counted are not counted again. Only feed uses it, one
	// session at a time.
	counted int64
	// unmade is where the partition's consumer, deleted by a session, was to be created again, until that succeeded
	// (resetConsumer). Only the session goroutines of this partition, one session at a time.
	unmade *floor
	mu     sync.Mutex
}

// letterKey names one stored message: its stream sequence, and when it was stored, so that a stream deleted and created
// again, whose sequences start over, does not pass for the old one.
type letterKey struct {
	seq uint64
	at  int64 // UnixNano
}

// streamPos is where a message of the partition is: its stream sequence and Kafka offset.
type streamPos struct {
	seq    uint64
	offset int64
}

type rejection struct {
	n   int
	err error
}

// held is a delivered message not yet acked, by consumer sequence.
type held struct {
	cseq uint64
	msg  jetstream.Msg
}

type result struct {
	cseq   uint64
	offset int64
	err    error
	// dropped: the broker's dedup took the message for a replay and did not store it; its receipt carries no
	// position (ledger and entry -1).
	dropped bool
	// unsent: the client gave the message up before sending it, as the session's context ended while the send
	// waited for room (below): no verdict of Pulsar's, and no failure of the session.
	unsent bool
	span   trace.Span
	ctx    context.Context
	born   time.Time
}

// errNewProducer ends a session at a message that needs another Pulsar producer than the session's: one of another Kafka
// cluster or topic incarnation than the messages before it (mapping.ProducerName). The next session opens that producer.
var errNewProducer = errors.New("the next message is another Kafka cluster's or topic incarnation's: a session for its producer")

// session is one producer + one consumer incarnation. It returns whether it
// confirmed anything, and the error that ended it (nil when ctx ended).
//
// The producer is opened at the first message the session sends (open), named by that message's Kafka cluster, and a
// message of another cluster ends the session (errNewProducer) once what went before it is confirmed: a stream can hold
// an older Kafka cluster's records ahead of the current one's, and each cluster's offsets must reach a producer of their
// own. One producer per session keeps the session's sends in one ordered queue, as the dedup needs.
func (p *partition) session(ctx context.Context) (bool, error) {
	l := p.leg
	cons, err := l.resetConsumer(ctx, p)
	if err != nil {
		return false, err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(l.o.InFlight))
	if err != nil {
		return false, fmt.Errorf("pull %s: %w", p.name, err)
	}
	defer it.Stop()

	s := &bsession{
		p:       p,
		tracker: commit.New(1),
		results: make(chan result, l.o.InFlight),
		sem:     make(chan struct{}, l.o.InFlight),
		failed:  make(chan struct{}),
		stop:    make(chan struct{}),
		lowered: make(chan error, 1),
		last:    -1,
	}
	defer func() {
		if s.prod != nil {
			s.prod.Close()
		}
	}()
	pullCtx, abort := context.WithCancel(ctx)
	defer abort()
	go func() { <-pullCtx.Done(); it.Stop() }()
	ackerDone := make(chan struct{})
	go s.acker(abort, ackerDone)
	lagDone := make(chan struct{})
	go s.watchLag(pullCtx, cons, lagDone)
	defer func() { abort(); <-lagDone }() // before the partition forgets the series (Leg.Partition)

	feedErr := s.feed(pullCtx, it)

	// Drain: wait (bounded) for Pulsar to confirm what was sent, ack that, close the producer within what is left, go.
	deadline := time.Now().Add(l.o.DrainTimeout)
	drain := time.NewTimer(l.o.DrainTimeout)
	defer drain.Stop()
	// Filling the semaphore to capacity means every earlier send was answered.
wait:
	for i := 0; i < cap(s.sem); i++ {
		select {
		case s.sem <- struct{}{}:
		case <-drain.C:
			break wait
		case <-s.failed:
			break wait
		}
	}
	close(s.stop)
	<-ackerDone
	s.ack()
	// What Pulsar has not answered by now is abandoned (the next session sends it again from the ack floor): Close
	// fails it, and abandon counts it out of bridge_inflight, which nothing else would.
	if s.prod != nil {
		s.closeProducer(max(time.Until(deadline), closeFloor(l.o.DrainTimeout)))
		s.prod = nil // not again in the deferred Close: it may still be waiting
	}
	s.abandon()
	if s.err != nil {
		return s.progressed, s.err
	}
	if ctx.Err() != nil {
		return s.progressed, nil
	}
	return s.progressed, feedErr
}

// closeProducer closes the session's producer, waiting for the Close at most within. The client's Close sends
// CLOSE_PRODUCER and waits for the broker's answer up to its operation timeout (30 s by default): against a broker that
// keeps the connection open and does not answer, a stop waited that long past the drain, beyond SHUTDOWN_TIMEOUT, and
// the bridge was killed (TestLegBStopsWhenThePulsarProducerNeverCloses). Past within, the Close goes on in the
// background and the session ends: its unanswered sends are abandoned as after any Close (the next session sends them
// again from the ack floor, and the broker's dedup drops what it had stored). A next session of the same partition in
// this process may meanwhile be refused the producer name, which the broker still holds; it retries with backoff.
func (s *bsession) closeProducer(within time.Duration) {
	if !closeWithin(s.prod, within) {
		s.p.leg.o.Logger.Warn("leg B stopped waiting for its Pulsar producer to close: the broker has not answered within the drain timeout; the close goes on in the background",
			"topic", s.p.route.Topic, "partition", s.p.id, "producer", s.producer, "waited", within.Round(time.Millisecond))
	}
}

// closeFloor is the least a producer's Close is waited for, even when the drain used its whole deadline (Pulsar slow to
// answer the sends): a healthy broker answers CLOSE_PRODUCER within milliseconds, and a Close abandoned at once left
// the broker holding the producer's name while the next owner of the partition was refused it
// (TestLegBWaitsForAHealthyProducersCloseAfterAFullDrain). Half the drain at most, and 1 s, so that a stop stays well
// within SHUTDOWN_TIMEOUT (twice the drain) against a broker that does not answer at all.
func closeFloor(drain time.Duration) time.Duration {
	return min(time.Second, drain/2)
}

// open creates the session's Pulsar producer, named name, and reads the topic's max message size policy.
func (s *bsession) open(ctx context.Context, name string) error {
	l := s.p.leg
	prod, err := l.o.Pulsar.CreateProducer(pulsar.ProducerOptions{
		Topic:              s.p.route.PulsarTopic,
		Name:               name,
		SendTimeout:        -1,
		DisableBatching:    true,
		MaxPendingMessages: l.o.InFlight,
	})
	if err != nil {
		return fmt.Errorf("pulsar producer %s: %w", name, err)
	}
	s.prod, s.producer = prod, name
	// Highest offset Pulsar persisted for this producer, -1 if none. Client v0.19.0 sets it from send receipts only, so
	// it is -1 for a new producer and broker dedup is what drops the replays of a new session.
	s.last = prod.LastSequenceID()
	if l.o.MaxMessageSize != nil {
		// After CreateProducer: the admin API answers 404 for a topic that does not exist yet.
		limit, err := s.p.readLimit(ctx)
		if err != nil {
			return err
		}
		s.limit.Store(int64(limit))
		go s.watchLimit(ctx)
	}
	return nil
}

// readLimit reads the max message size policy of the partition's Pulsar topic for a session's start (and shares the
// reading, limitReadings). When the admin API gives no reading it takes the leg's last reading of the topic, if any:
// a running session keeps its last reading while the API is away (watchLimit), and a session started then (the
// partition assigned back by a rebalance, or restarted after a JetStream or NATS error) is no less safe under the same
// reading; it used to wait for one of its own, archiving nothing for as long as the API hung or was down. With no
// reading yet it waits: it reads again with backoff (up to MaxBackoff) until a reading comes or ctx ends.
//
// It waits rather than archive under the broker's own limit (which the client enforces) until a reading comes: a
// message over a topic limit nobody has read is refused by the broker and the client never says so (sizelimit.go),
// and if the limit is lifted before the admin API answers, the message sent again is dropped by dedup as below the
// later offsets the broker stored: lost, which is what reading the policy is for. The admin API is normally the
// broker's own HTTP port, so it is away alone mostly when PULSAR_ADMIN_URL is wrong or blocked, which should be loud
// rather than archived around. While it waits the session holds its producer and what it pulled (at most InFlight)
// and pulls no more: JetStream keeps the rest and leg A goes on. It is shown by one warning per partition, /readyz
// (pulsar-admin, Leg.PolicyWait) and bridge_pulsar_policy_waiting. A failed reading used to end the session instead:
// every partition restarted each MaxBackoff, recreating its JetStream consumer and a Pulsar producer and logging a
// warning each time, while /readyz said ready.
func (p *partition) readLimit(ctx context.Context) (int, error) {
	l, topic := p.leg, p.route.PulsarTopic
	n, err := l.o.MaxMessageSize(ctx, topic)
	if err == nil {
		l.readings.store(topic, n)
		return n, nil
	}
	if ctx.Err() != nil {
		return n, err
	}
	if last, at, ok := l.readings.latest(topic); ok {
		l.o.Logger.Warn("leg B could not read the Pulsar topic's max message size; the session starts under the last reading",
			"topic", p.route.Topic, "partition", p.id, "pulsar_topic", topic, "limit", last, "read_ago", time.Since(at).Round(time.Second), "err", err)
		return last, nil
	}
	since := time.Now()
	// err says why: no answer (down, a wrong URL), or an answer that is no reading (401/403 of an admin API that
	// wants credentials, a body that does not parse); both wait alike.
	l.o.Logger.Warn("leg B waits for the Pulsar topic's max message size policy before archiving the partition: the admin API gave no reading (err says why); JetStream keeps its messages meanwhile",
		"topic", p.route.Topic, "partition", p.id, "pulsar_topic", topic, "err", err)
	l.waits.set(p.name, topic, since, err)
	l.o.Metrics.PolicyWaiting(p.route.Topic, 1)
	defer func() {
		l.waits.done(p.name)
		l.o.Metrics.PolicyWaiting(p.route.Topic, -1)
	}()
	b := backoff.Backoff{Base: 100 * time.Millisecond, Max: l.o.MaxBackoff}
	for b.Wait(ctx) {
		if n, err = l.o.MaxMessageSize(ctx, topic); err == nil {
			l.readings.store(topic, n)
			l.o.Logger.Info("leg B read the Pulsar topic's max message size policy and archives the partition",
				"topic", p.route.Topic, "partition", p.id, "limit", n, "waited", time.Since(since).Round(time.Millisecond))
			return n, nil
		}
		l.waits.set(p.name, topic, since, err)
		l.o.Logger.Debug("leg B still cannot read the max message size policy", "topic", p.route.Topic, "partition", p.id, "err", err)
	}
	return 0, fmt.Errorf("waiting for the max message size policy of %s: %w", topic, ctx.Err())
}

// producerName names the Pulsar producer of a message of this partition by the Kafka cluster leg A stamped on it
// (kafkaleg.HeaderCluster), which JetStream keeps with the message: leg B needs no Kafka to archive, and a stream
// still holding an older cluster's records names them by their own cluster. A message without the stamp was written
// by a bridge from before it (or from brokers that report no id): it is named by the cluster Kafka reports now, as
// that bridge named its producers, so an upgraded deployment keeps its producer names (and its dedup state); that
// needs Kafka, and names an older cluster's unstamped records wrongly, as before. The name carries the topic's
// incarnation leg A stamped too (kafkaleg.HeaderTopicID), so the records of a topic created again, whose offsets
// count from 0, reach a producer of their own; a record without it is named as before.
func (p *partition) producerName(ctx context.Context, h nats.Header) (string, error) {
	cluster := h.Get(kafkaleg.HeaderCluster)
	if cluster == "" && p.leg.o.KafkaCluster != nil {
		if !p.looked {
			var err error
			if p.cluster, err = p.leg.o.KafkaCluster(ctx); err != nil {
				return "", fmt.Errorf("a message without leg A's %s: %w", kafkaleg.HeaderCluster, err)
			}
			p.looked = true
		}
		cluster = p.cluster
	}
	return mapping.ProducerName(cluster, h.Get(kafkaleg.HeaderTopicID), p.route.Topic, p.id), nil
}

type bsession struct {
	p       *partition
	tracker *commit.Tracker
	results chan result
	sem     chan struct{} // one token per send awaiting Pulsar
	failed  chan struct{} // closed by the acker on the first send failure
	stop    chan struct{}
	limit   atomic.Int64 // the Pulsar topic's max message size, 0 for none
	lowered chan error   // watchLimit's reason to end the session

	// The session's producer (nil until open), its name, and the highest offset sent or persisted through it (-1:
	// none). Only feed sets them, before the drain reads prod.
	prod     pulsar.Producer
	producer string
	last     int64

	unanswered atomic.Int64 // sends Pulsar has not answered yet
	// full: feed found every in-flight slot taken since watchLag last looked (Pulsar the bottleneck), so the pull
	// buffers what JetStream sent and a delivery's pending count is as old as its wait in the buffer.
	full atomic.Bool

	mu         sync.Mutex
	held       []held
	err        error
	progressed bool
	// For bridge_archive_lag (lag): the consumer sequence last delivered, the consumer's pending count JetStream
	// gave with it, the consumer sequence last acked, and the deliveries so far (watchLag tells a waiting feed by it).
	delivered, pending, acked, deliveries uint64
	// read is the consumer's count of messages not acked (NumPending + NumAckPending) at watchLag's last reading,
	// readAcked its ack floor and readDelivered the consumer sequence it had delivered last: until a delivery comes
	// from after the reading, read less what was acked since is the lag (lag).
	read, readAcked, readDelivered uint64
}

// feed pulls in stream order and hands this partition's messages to Pulsar.
func (s *bsession) feed(ctx context.Context, it jetstream.MessagesContext) error {
	p, l := s.p, s.p.leg
	var lastC uint64
	p.mu.Lock()
	prev := p.acked // the session resumes after the last message acked
	p.mu.Unlock()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("next: %w", err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("metadata: %w", err)
		}
		if meta.Sequence.Consumer != lastC+1 || meta.NumDelivered > 1 {
			return fmt.Errorf("delivery out of order (consumer seq %d after %d, delivery %d): restarting from the ack floor",
				meta.Sequence.Consumer, lastC, meta.NumDelivered)
		}
		lastC = meta.Sequence.Consumer
		if err := s.tracker.Add(int64(lastC)); err != nil {
			return err
		}
		s.mu.Lock()
		s.held = append(s.held, held{cseq: lastC, msg: msg})
		s.delivered, s.pending = lastC, meta.NumPending
		s.deliveries++
		s.lag()
		s.mu.Unlock()

		h := msg.Headers()
		mine := h.Get(kafkaleg.HeaderTopic) == p.route.Topic && h.Get(kafkaleg.HeaderPartition) == strconv.Itoa(p.id)
		if !mine && msg.Subject() == p.route.Subject {
			s.tracker.Done(int64(lastC)) // another partition's, stored on the topic's subject before the upgrade
			continue
		}
		offset, err := strconv.ParseInt(h.Get(kafkaleg.HeaderOffset), 10, 64)
		if !mine || err != nil {
			// Not leg A's message for this partition: without an offset it
			// has no sequence id, and retrying it would stop the partition.
			detail := fmt.Sprintf("stream seq %d on %s: %s=%q %s=%q %s=%q", meta.Sequence.Stream, msg.Subject(),
				kafkaleg.HeaderTopic, h.Get(kafkaleg.HeaderTopic), kafkaleg.HeaderPartition, h.Get(kafkaleg.HeaderPartition),
				kafkaleg.HeaderOffset, h.Get(kafkaleg.HeaderOffset))
			if err := p.deadLetter(ctx, msg, -1, "metadata", detail); err != nil {
				return err
			}
			s.tracker.Done(int64(lastC))
			continue
		}
		p.checkLost(ctx, prev, offset)
		// By offset, not stream sequence: a message redelivered from the ack floor is not after prev, and in a stream
		// deleted and created again the sequences start over while the offsets go on.
		if offset > prev.offset {
			prev = streamPos{seq: meta.Sequence.Stream, offset: offset}
		}
		name, err := p.producerName(ctx, h)
		if err != nil {
			return err
		}
		if s.prod == nil {
			if err := s.open(ctx, name); err != nil {
				return err
			}
		} else if name != s.producer {
			return fmt.Errorf("offset %d for producer %s after %s: %w", offset, name, s.producer, errNewProducer)
		}
		if lim := int(s.limit.Load()); lim > 0 {
			// Also at or below last: a message the broker refused under a limit lowered during an earlier session
			// comes back from the ack floor, and sent again it would stall this session too (sizelimit.go).
			if n := wireSize(s.producer, asArchived(h), msg.Data(), p.route.Topic, p.id, offset); n > lim {
				detail := fmt.Sprintf("at most %d bytes as sent, over the max message size %d of Pulsar topic %s, which the broker refuses and the client does not report (if the limit was lowered after Pulsar stored it, the archive has it too)",
					n, lim, p.route.PulsarTopic)
				if err := p.deadLetter(ctx, msg, offset, "too_large", detail); err != nil {
					return err
				}
				s.tracker.Done(int64(lastC))
				continue
			}
		}
		if offset <= s.last {
			s.tracker.Done(int64(lastC)) // Pulsar has it already
			l.o.Metrics.Count(metrics.LegB, "skipped", 1)
			continue
		}
		p.mu.Lock()
		rej := p.rejects[offset]
		p.mu.Unlock()
		if rej.n > l.o.SinkRetries {
			if err := p.deadLetter(ctx, msg, offset, "rejected", fmt.Sprintf("pulsar rejected it %d times: %v", rej.n, rej.err)); err != nil {
				return err
			}
			s.tracker.Done(int64(lastC))
			continue
		}

		pm, span, sctx := p.build(msg, offset)
		if len(s.sem) == cap(s.sem) {
			s.full.Store(true)
		}
		select {
		case s.sem <- struct{}{}: // bounded in-flight: a stalled Pulsar stops the pull
		case <-ctx.Done():
			span.End()
			return nil
		case <-s.failed:
			span.End()
			return nil
		}
		cseq, born := lastC, meta.Timestamp
		l.o.Metrics.InFlight(metrics.LegB, 1)
		s.unanswered.Add(1)
		// The session's context, which the client uses only while the send waits for room: under its memory limit
		// (ClientOptions.MemoryLimitBytes, shared by all its producers; 64 MiB by default, which nine partitions of
		// 512 records of 16 KiB fill) it waits until Pulsar confirms something. With context.Background() a stop or a
		// rebalance while Pulsar was away waited there until it came back, holding the instance's consumer-group
		// generation (TestLegBStopsWhileThePulsarClientsMemoryIsFull). Once queued, a send no longer heeds it.
		s.prod.SendAsync(ctx, pm, func(id pulsar.MessageID, _ *pulsar.ProducerMessage, err error) {
			dropped := err == nil && id != nil && id.LedgerID() < 0 && id.EntryID() < 0
			unsent := err != nil && ctx.Err() != nil && (errors.Is(err, pulsar.ErrContextExpired) || errors.Is(err, ctx.Err()))
			s.results <- result{cseq: cseq, offset: offset, err: err, dropped: dropped, unsent: unsent, span: span, ctx: sctx, born: born}
		})
		s.last = offset
	}
}

// acker takes Pulsar confirmations (in send order) and acks JetStream up to
// the longest confirmed prefix every AckInterval.
//
// A ticker, though it wakes an idle bridge five times a second per partition:
// feed also settles messages with no send (another partition's, dead letters,
// offsets Pulsar has), and a timer armed only by confirmations left those
// unacked until AckWait redelivered them (review of 51db9a4).
func (s *bsession) acker(abort context.CancelFunc, done chan<- struct{}) {
	defer close(done)
	l := s.p.leg
	t := time.NewTicker(l.o.AckInterval)
	defer t.Stop()
	failed := false
	fail := func(err error) {
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		failed = true
		close(s.failed)
		abort()
	}
	handle := func(r result) {
		<-s.sem
		l.o.Metrics.InFlight(metrics.LegB, -1)
		s.unanswered.Add(-1)
		if r.err != nil {
			r.span.RecordError(r.err)
			r.span.SetStatus(codes.Error, "pulsar send failed")
			r.span.End()
			if failed || r.unsent {
				return // unsent: the session ends with its context; the drain still waits for the sends before it
			}
			if isRejection(r.err) {
				s.p.mu.Lock()
				rj := s.p.rejects[r.offset]
				s.p.rejects[r.offset] = rejection{n: rj.n + 1, err: r.err}
				s.p.mu.Unlock()
			}
			fail(fmt.Errorf("pulsar send offset %d: %w", r.offset, r.err))
			return
		}
		r.span.End()
		s.count(r)
		if failed {
			return // after a failure nothing later is acked: the next session resends it (deduplicated)
		}
		s.tracker.Done(int64(r.cseq))
		s.progressed = true
	}
	for {
		select {
		case r := <-s.results:
			handle(r)
		case err := <-s.lowered:
			if !failed {
				fail(err)
			}
		case <-t.C:
			s.ack()
		case <-s.stop:
			for {
				select {
				case r := <-s.results:
					handle(r)
				default:
					return
				}
			}
		}
	}
}

// count meters a send Pulsar answered without error: "ok" when the broker stored the message, "duplicate" when its
// dedup dropped it as a replay (counted apart: as "ok", an archive the broker dropped, offsets from 0 again under a
// producer name that had archived higher ones, looked archived). Every such answer is counted, also one that comes
// after the session failed or stopped: the message is stored all the same, and its resend in the next session is
// counted "duplicate"; counting neither, such a message was archived once and counted only as a duplicate
// (TestLegBCountsAStoreConfirmedAfterTheSessionFailed).
func (s *bsession) count(r result) {
	l := s.p.leg
	if r.err != nil {
		return
	}
	if r.dropped {
		l.o.Metrics.Count(metrics.LegB, "duplicate", 1)
		return
	}
	l.o.Metrics.Count(metrics.LegB, "ok", 1)
	l.o.Metrics.Hop(r.ctx, metrics.LegB, time.Since(r.born))
}

// abandon ends and counts (count) the answers that came after the acker stopped (from the producer's Close, or late
// confirmations: the next session resends those and Pulsar drops them as duplicates) and counts out of
// bridge_inflight every send of the session still unanswered. An answer that comes later still only fills results.
func (s *bsession) abandon() {
	for {
		select {
		case r := <-s.results:
			if r.err != nil {
				r.span.RecordError(r.err)
				r.span.SetStatus(codes.Error, "pulsar send abandoned")
			}
			r.span.End()
			s.count(r)
			s.unanswered.Add(-1)
			s.p.leg.o.Metrics.InFlight(metrics.LegB, -1)
		default:
			if n := s.unanswered.Swap(0); n > 0 {
				s.p.leg.o.Metrics.InFlight(metrics.LegB, -n)
			}
			return
		}
	}
}

// watchLimit re-reads the topic's max message size every PolicyInterval, or takes another session's recent reading of
// it (limitReadings). Under a lower limit the broker may already have refused a message in flight, which the client
// never reports and which stalls this session's producer (sizelimit.go): the session ends, and the next one, resuming
// from the ack floor, sends that message to the DLQ instead of to Pulsar again.
func (s *bsession) watchLimit(ctx context.Context) {
	l := s.p.leg
	t := time.NewTicker(l.o.PolicyInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, shared := l.readings.recent(s.p.route.PulsarTopic, l.o.PolicyInterval*9/10)
		if !shared {
			var err error
			if n, err = l.o.MaxMessageSize(ctx, s.p.route.PulsarTopic); err != nil {
				if ctx.Err() == nil {
					l.o.Logger.Warn("leg B could not re-read the Pulsar topic's max message size; keeping the last", "topic", s.p.route.PulsarTopic, "limit", s.limit.Load(), "err", err)
				}
				continue
			}
			l.readings.store(s.p.route.PulsarTopic, n)
		}
		if old := int(s.limit.Swap(int64(n))); n > 0 && (old == 0 || n < old) {
			s.lowered <- fmt.Errorf("max message size of pulsar topic %s is now %d (was %d, 0 for none): restarting from the ack floor so that a message the broker refused for it goes to the DLQ", s.p.route.PulsarTopic, n, old)
			return
		}
	}
}

// ack acknowledges (AckAll) the last message of the confirmed prefix.
func (s *bsession) ack() {
	pos := uint64(s.tracker.Position()) // first consumer seq not confirmed
	s.mu.Lock()
	i := 0
	for i < len(s.held) && s.held[i].cseq < pos {
		i++
	}
	var m jetstream.Msg
	var cseq uint64
	if i > 0 {
		m, cseq = s.held[i-1].msg, s.held[i-1].cseq
		s.held = append(s.held[:0], s.held[i:]...)
	}
	s.mu.Unlock()
	if m != nil {
		if err := m.Ack(); err != nil {
			// A lost ack only means a replay that Pulsar deduplicates.
			s.p.leg.o.Logger.Debug("jetstream ack failed", "err", err)
			return
		}
		s.p.acknowledged(m)
		s.p.leg.o.Metrics.ArchiveProgress(s.p.route.Topic, s.p.id)
		s.mu.Lock()
		s.acked = cseq
		s.lag()
		s.mu.Unlock()
	}
}

// lag sets bridge_archive_lag from whichever is fresher, as JetStream's consumer sequence tells: the last delivery
// (what JetStream had not delivered yet when it sent it, and what was delivered up to it and not acked since), or
// watchLag's last reading of the consumer less what was acked since. The delivery's count is as of when JetStream sent
// the message, which the pull buffers until Pulsar lets it through: with Pulsar slow, each ack and delivery of a
// message sent before the reading set the gauge back to what the stream held then, below the reading
// (TestLegBArchiveLagKeepsUpWithASlowPulsar). Nor is the reading a mere floor under the delivery's count: messages the
// stream removed unarchived after the last delivery (MaxAge, a purge) stayed in the gauge for good, with nothing more
// to deliver (TestLegBArchiveLagFallsWhenTheStreamDropsWhatWaits). Called with s.mu held, so that a delivery and an
// ack set it in the order they counted.
func (s *bsession) lag() {
	n := int64(s.pending) + int64(s.delivered) - int64(s.acked)
	if s.delivered <= s.readDelivered {
		// An ack the server took before the reading, though s.acked had not caught up with it yet, is counted there.
		n = int64(s.read) - int64(max(s.acked, s.readAcked)-s.readAcked)
	}
	s.p.leg.o.Metrics.ArchiveLag(s.p.route.Topic, s.p.id, max(n, 0))
}

// watchLag reads the consumer every LagInterval while the session's deliveries wait with messages unarchived (Pulsar
// slow or away, a dead letter the DLQ refuses, a policy wait): the value from the last delivery (lag) leaves out what
// leg A stored since, and the partition's lag looked flat while the stream filled. It reads it too while the sends
// fill the in-flight bound (full): messages then flow as fast as Pulsar confirms, but the delivered ones waited in the
// pull's buffer (up to InFlight) with counts as old as that wait, and with messages coming faster than Pulsar confirms
// the gauge trailed by what came meanwhile (TestLegBArchiveLagKeepsUpWhileMessagesComeFasterThanPulsarConfirms: 280
// of 656). Now it trails by at most what comes within one LagInterval; exact it cannot be: JetStream tells the count
// only with a delivery (as of when it sent it) or an info request, and an ack answers nothing. An idle session, or
// one whose sends Pulsar confirms faster than they fill the bound, sends no request. Before it, leg B had no lag at all: with Pulsar away nothing showed how far the archive was behind
// (bridge_consumer_lag is leg A's), nor a stream's MaxAge coming closer to what it had not archived.
func (s *bsession) watchLag(ctx context.Context, cons jetstream.Consumer, done chan<- struct{}) {
	defer close(done)
	l := s.p.leg
	t := time.NewTicker(l.o.LagInterval)
	defer t.Stop()
	var seen uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		full := s.full.Swap(false)
		s.mu.Lock()
		waiting := s.deliveries == seen && (s.delivered > s.acked || s.pending > 0)
		seen = s.deliveries
		s.mu.Unlock()
		if !waiting && !full {
			continue
		}
		// Wait for a free read rather than skip the interval: skipping starved a partition whose ticks fell while
		// other partitions' reads held the bound. Blocked senders take the slots in order, and while this one waits
		// its ticker drops the ticks, so a slow JetStream still gets at most lagReadsMax reads and one per partition.
		select {
		case l.lagReads <- struct{}{}:
		case <-ctx.Done():
			return
		}
		info, err := cons.Info(ctx)
		<-l.lagReads
		if err != nil {
			if ctx.Err() == nil {
				// Counted, as the gauge then keeps its last value (a frozen lag); logged at Debug only, as it may
				// fail every interval while JetStream is away, which other checks report.
				l.o.Metrics.LagReadError(s.p.route.Topic, s.p.id)
				l.o.Logger.Debug("leg B could not read its consumer for the archive lag", "consumer", s.p.name, "err", err)
			}
			continue
		}
		s.mu.Lock()
		s.read = info.NumPending + uint64(info.NumAckPending)
		s.readAcked, s.readDelivered = info.AckFloor.Consumer, info.Delivered.Consumer
		s.lag()
		s.mu.Unlock()
	}
}

// acknowledged records m, the last message acked (AckAll), as where the partition's next session resumes (lost checks
// from there) and drops the Pulsar verdicts on offsets up to m's: no session reads those again. The verdicts were
// never dropped, and a long-lived generation with many messages Pulsar refuses kept an entry for each. m of another
// partition (the topic's old subject) or without leg A's metadata says nothing about this partition's offsets.
func (p *partition) acknowledged(m jetstream.Msg) {
	h := m.Headers()
	meta, merr := m.Metadata()
	p.mu.Lock()
	defer p.mu.Unlock()
	if merr == nil {
		// AckAll: nothing at or below it is read again (after a recreation stale entries go once the sequence passes them).
		maps.DeleteFunc(p.lettered, func(k letterKey, _ struct{}) bool { return k.seq <= meta.Sequence.Stream })
	}
	acked, err := strconv.ParseInt(h.Get(kafkaleg.HeaderOffset), 10, 64)
	if err != nil || h.Get(kafkaleg.HeaderTopic) != p.route.Topic || h.Get(kafkaleg.HeaderPartition) != strconv.Itoa(p.id) {
		return
	}
	if merr == nil {
		p.acked = streamPos{seq: meta.Sequence.Stream, offset: acked}
	}
	maps.DeleteFunc(p.rejects, func(offset int64, _ rejection) bool { return offset <= acked })
}

// checkLost reports the partition's messages the stream removed before leg B read them. Its limits (MaxAge, or
// MaxMsgs/MaxBytes with DiscardOld, or MaxMsgsPerSubject), a purge, or deleting and creating the stream again remove
// messages whether a consumer read them or not, and the consumer then silently goes on with the next one it finds.
// prev is the partition's message read (or acked, at a session's start) before the one with offset: a gap in offsets
// alone is leg A's (a record it dead-lettered), but if the stream no longer holds prev, the offsets between may have
// been removed with it, unarchived. Limits, subject purges and a recreation remove a subject's messages oldest first,
// so none between is gone while prev is still there (one message deleted by its sequence is not seen). At most: a
// record leg A dead-lettered among them is counted too, and so is one behind prev removed just as leg B read the
// message after it. Only a gap in offsets not counted yet costs requests (two: the stream, and the message at prev's
// sequence).
func (p *partition) checkLost(ctx context.Context, prev streamPos, offset int64) {
	from := max(prev.offset, p.counted) + 1
	if prev.seq == 0 || offset <= from {
		return
	}
	l := p.leg
	held, err := p.holds(ctx, prev)
	if err != nil {
		if ctx.Err() == nil {
			l.o.Logger.Warn("leg B could not read the stream to check for messages it removed", "stream", l.o.Stream, "err", err)
		}
		return
	}
	if held {
		return
	}
	n := offset - from
	l.o.Logger.Error("leg B lost messages: the stream removed them before they were archived (its limits, a purge, or the stream deleted and created again)",
		"stream", l.o.Stream, "topic", p.route.Topic, "partition", p.id, "offsets", fmt.Sprintf("%d-%d", from, offset-1),
		"at_most", n, "read_up_to_seq", prev.seq, "read_up_to_offset", prev.offset)
	l.o.Metrics.StreamLost(p.route.Topic, p.id, n)
	p.counted = offset - 1
}

// holds reports whether the stream still holds the partition's message at pos: the one at its sequence carries leg A's
// metadata for this partition and offset (after a recreation another message may have that sequence).
func (p *partition) holds(ctx context.Context, pos streamPos) (bool, error) {
	l := p.leg
	st, err := l.o.JetStream.Stream(ctx, l.o.Stream)
	if err != nil {
		return false, fmt.Errorf("stream %s: %w", l.o.Stream, err)
	}
	m, err := st.GetMsg(ctx, pos.seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stream %s message %d: %w", l.o.Stream, pos.seq, err)
	}
	h := m.Header
	return h.Get(kafkaleg.HeaderTopic) == p.route.Topic && h.Get(kafkaleg.HeaderPartition) == strconv.Itoa(p.id) &&
		h.Get(kafkaleg.HeaderOffset) == strconv.FormatInt(pos.offset, 10), nil
}

// deadLetter sends msg to the DLQ; offset is -1 when the message has none. A message this generation already wrote there
// is not sent again: a dead letter is written while earlier sends may still wait for Pulsar, and when one of those
// failed, the next session read the message again from the ack floor and wrote a second letter (counted twice).
func (p *partition) deadLetter(ctx context.Context, msg jetstream.Msg, offset int64, reason, detail string) error {
	l := p.leg
	var key letterKey
	meta, err := msg.Metadata()
	if err == nil {
		key = letterKey{seq: meta.Sequence.Stream, at: meta.Timestamp.UnixNano()}
		p.mu.Lock()
		_, done := p.lettered[key]
		p.mu.Unlock()
		if done {
			return nil
		}
	}
	own, bridge := letterHeaders(msg.Headers())
	// The letter is for replay into Kafka: the record's own key bytes, so that it lands on the partition the original did.
	letter := dlq.Letter{Leg: metrics.LegB, Reason: reason, Detail: detail, Topic: p.route.Topic, Partition: p.id,
		Offset: offset, Key: kafkaleg.RecordKey(msg.Headers()), Value: msg.Data(), Headers: own, Bridge: bridge}
	if err := l.o.DLQ.Send(ctx, letter); err != nil {
		return err
	}
	if key.seq != 0 {
		p.mu.Lock()
		if p.lettered == nil {
			p.lettered = map[letterKey]struct{}{}
		}
		p.lettered[key] = struct{}{}
		p.mu.Unlock()
	}
	l.o.Metrics.DLQ(metrics.LegB, letter.Reason)
	l.o.Logger.Warn("leg B dead letter", "topic", p.route.Topic, "partition", p.id, "offset", offset, "reason", reason, "detail", detail)
	return nil
}

// letterHeaders are a dead letter's headers from a JetStream message's: the record's own, and the bridge's own fields
// (dlq.Letter.Bridge, written under dlq.HeaderBridgePrefix), each sorted by name (NATS keeps no order between names,
// and ranging over the map gave every letter another order) with a repeated name's values in order. The record's own
// are what leg A carried (its traceparent is leg A's span, the record's trace continued).
func letterHeaders(h nats.Header) (own, bridge []kafka.Header) {
	for _, k := range slices.Sorted(maps.Keys(h)) {
		for _, v := range h[k] {
			if bridgeField(k) {
				bridge = append(bridge, kafka.Header{Key: k, Value: []byte(v)})
			} else {
				own = append(own, kafka.Header{Key: k, Value: []byte(v)})
			}
		}
	}
	return own, bridge
}

// bridgeField reports whether a JetStream header name is the bridge's: leg A sets its kafka_* metadata over any
// producer header of that name, and a Nats-* name is JetStream's (leg A dead-letters records that bring one).
func bridgeField(k string) bool {
	switch k {
	case kafkaleg.HeaderTopic, kafkaleg.HeaderPartition, kafkaleg.HeaderOffset, kafkaleg.HeaderKey,
		kafkaleg.HeaderKeyEncoding, kafkaleg.HeaderTimestamp, kafkaleg.HeaderCluster, kafkaleg.HeaderTopicID:
		return true
	}
	return strings.HasPrefix(strings.ToLower(k), "nats-")
}

// archived is the property build archives for the values v of header k. A property holds one value: the first, but
// several baggage headers are one list (W3C Baggage), joined in order.
func archived(k string, v []string) string {
	if len(v) > 1 && strings.EqualFold(k, "baggage") {
		return strings.Join(v, ",")
	}
	return v[0]
}

// asArchived is h with each header's values as build archives them (archived), for wireSize, which counts a header's
// first value: of several baggage headers it counted only the first, so a message their joined values took over the
// topic's max message size passed the check, and the broker refused it, which the client does not report
// (TestLegBCountsEveryBaggageValueAgainstTheTopicsMaxMessageSize). h itself when nothing is joined, the usual case.
func asArchived(h nats.Header) nats.Header {
	var joined nats.Header
	for k, v := range h {
		if len(v) > 1 && strings.EqualFold(k, "baggage") {
			if joined == nil {
				joined = maps.Clone(h)
			}
			joined[k] = []string{archived(k, v)}
		}
	}
	if joined == nil {
		return h
	}
	return joined
}

// build turns a JetStream message into the Pulsar message with its span.
func (p *partition) build(msg jetstream.Msg, offset int64) (*pulsar.ProducerMessage, trace.Span, context.Context) {
	h := msg.Headers()
	props := make(map[string]string, len(h)+3)
	for k, v := range h {
		if len(v) == 0 || strings.HasPrefix(k, "Nats-") {
			continue
		}
		props[k] = archived(k, v)
	}
	prop := otel.GetTextMapPropagator()
	parent := prop.Extract(context.Background(), propagation.MapCarrier(props))
	// Only the trace context is this hop's. The baggage is the record's, kept above as leg A carried it: the
	// propagator's copy is otel's parse written again, which drops the members it cannot parse and a repeated key's
	// earlier values, re-escapes values, and orders members by a map's iteration (TestBuildCarriesBaggageVerbatim).
	carried := make(map[string]string)
	for k, v := range props {
		if strings.EqualFold(k, "baggage") {
			carried[k] = v
		}
	}
	ctx, span := p.leg.tracer.Start(parent, p.route.PulsarTopic+" publish",
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.system", "pulsar"),
			attribute.String("messaging.destination.name", p.route.PulsarTopic),
			attribute.Int64("messaging.kafka.offset", offset),
			attribute.Int("messaging.kafka.source.partition", p.id),
		))
	prop.Inject(ctx, propagation.MapCarrier(props))
	if _, ok := carried["baggage"]; !ok {
		delete(props, "baggage") // the propagator's, of a record whose baggage came under another spelling or not at all
	}
	maps.Copy(props, carried)
	props[PropTopic] = p.route.Topic
	props[PropPartition] = strconv.Itoa(p.id)
	props[PropOffset] = strconv.FormatInt(offset, 10)
	key := h.Get(kafkaleg.HeaderKey)
	if k := kafkaleg.RecordKey(h); utf8.Valid(k) {
		key = string(k) // the record's own key; one that is not UTF-8 stays base64, as a Pulsar key is a string
	}
	pm := &pulsar.ProducerMessage{Payload: msg.Data(), Key: key, Properties: props, SequenceID: &offset}
	if ms, err := strconv.ParseInt(h.Get(kafkaleg.HeaderTimestamp), 10, 64); err == nil {
		pm.EventTime = time.UnixMilli(ms)
	}
	return pm, span, ctx
}
