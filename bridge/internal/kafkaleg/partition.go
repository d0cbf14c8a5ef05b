package kafkaleg

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/shanhai-dev/shanhai/pkg/carrier"

	"github.com/shanhai-dev/shanhai/bridge/internal/backoff"
	"github.com/shanhai-dev/shanhai/bridge/internal/commit"
	"github.com/shanhai-dev/shanhai/bridge/internal/dlq"
	"github.com/shanhai-dev/shanhai/bridge/internal/mapping"
	"github.com/shanhai-dev/shanhai/bridge/internal/metrics"
	"github.com/shanhai-dev/shanhai/bridge/internal/outage"
)

// NATS header names set by leg A besides the carried Kafka headers.
const (
	HeaderTopic       = "kafka_topic"
	HeaderPartition   = "kafka_partition"
	HeaderOffset      = "kafka_offset"
	HeaderKey         = "kafka_key"
	HeaderKeyEncoding = "kafka_key_encoding" // "base64" when the key is not printable UTF-8 or NATS would trim it
	HeaderTimestamp   = "kafka_timestamp_ms"
	// HeaderCluster is the id of the Kafka cluster the record was read from (mapping.ClusterToken of it), which leg B
	// names the record's Pulsar producer by (mapping.ProducerName): carried with the record, it needs no Kafka to be
	// known and stays the record's own when another cluster's records follow in the stream. Absent on records written
	// by a bridge from before it, and when the brokers report no id.
	HeaderCluster = "kafka_cluster_id"
	// HeaderTopicID is the id of the topic's incarnation the record was read from (TopicID), which leg B names the
	// record's Pulsar producer by besides its cluster (mapping.ProducerName), as leg A's Nats-Msg-Id carries it
	// (msgID): a topic deleted and created again counts its offsets from 0 again. Absent on records written by a bridge
	// from before it, and when the brokers report no id.
	HeaderTopicID = "kafka_topic_id"
)

// MsgID is the JetStream dedup id of a Kafka message of a topic whose id is not known (a broker older than 2.8);
// leg A's ids carry the topic id too (msgID).
func MsgID(topic string, partition int, offset int64) string {
	return topic + "/" + strconv.Itoa(partition) + "/" + strconv.FormatInt(offset, 10)
}

// msgID is the JetStream dedup id of a Kafka message of the topic incarnation topicID (TopicID): the offsets of a
// topic created again count from 0, and without the id JetStream dropped its records as replays of the old topic's
// records published less than the stream's duplicate window before.
func msgID(m kafka.Message, topicID string) string {
	id := MsgID(m.Topic, m.Partition, m.Offset)
	if topicID == "" {
		return id
	}
	return id + "/" + topicID
}

// partition is one owned partition for the life of a generation.
type partition struct {
	leg       *Leg
	route     mapping.Route
	id        int
	subject   string // route.PartitionSubject(id): one subject per partition, so leg B reads only its own
	tracker   atomic.Pointer[commit.Tracker]
	committed int64                   // last committed position; only the committer touches it
	fetching  atomic.Bool             // the feed waits for a record, so the high watermark its last record gave still holds
	hwm       atomic.Int64            // the high watermark the last fetched record, or the session's check (inRange), came with (refreshLag)
	fetch     *outage.Log             // the run of failed fetches, if any (fetch.go)
	rewound   atomic.Pointer[rewind]  // the last reset of the position (reset.go), whose offset commit leaves alone
	session   atomic.Pointer[session] // the session reading now, which a position out of range ends (fetchFailed)

	// committedSince is the reset (rewound) in force when committed was committed: after another, committed is an
	// offset of the old incarnation (or above a truncated end) and says nothing of the position. Only the committer
	// touches it.
	committedSince *rewind

	mu      sync.Mutex
	rejects map[int64]rejection // sink verdicts per offset, across restarts

	// cluster is the Kafka cluster's id as leg A stamps it (HeaderCluster), read by the first session of the
	// generation (clusterRead): a generation cannot outlive its cluster. Only pump and its feed touch them.
	cluster     string
	clusterRead bool
	// topicID is the topic's incarnation as leg A stamps it (HeaderTopicID), read by each session after it checked
	// its position (pump); the incarnation the partition's position was read in, once a session of the generation
	// read it (recreated). Only pump and its feed touch it.
	topicID string

	// Only the settler touches these, and a partition has one session (so one settler) at a time.
	lastSeq uint64    // stream sequence of the last confirmed message, to verify order
	created time.Time // creation time of the stream lastSeq is in (zero: not known), to tell a recreated one
}

type rejection struct {
	n           int
	err         error
	lettered    bool  // written to the DLQ by an earlier session of the generation: not sent again (feed)
	overtakenBy int64 // a later offset JetStream stored after refusing this one, 0 if none
	refusal     error // that refusal
}

func (p *partition) position() int64 {
	if t := p.tracker.Load(); t != nil {
		return t.Position()
	}
	return -1
}

// run restarts the pipeline from the first unconfirmed offset after every
// failure, with capped backoff, until the generation ends or stop.
func (p *partition) run(gctx, stop context.Context, start int64, drained func()) {
	defer drained()
	fetchCtx, cancel := context.WithCancel(gctx)
	defer cancel()
	go func() {
		select {
		case <-stop.Done():
			cancel()
		case <-fetchCtx.Done():
		}
	}()
	l := p.leg
	b := backoff.Backoff{Base: 100 * time.Millisecond, Max: l.o.MaxBackoff}
	pos := start
	for fetchCtx.Err() == nil {
		next, err := p.pump(gctx, fetchCtx, pos)
		if next > pos {
			b.Reset()
		}
		pos = next
		if err == nil || fetchCtx.Err() != nil || gctx.Err() != nil {
			break
		}
		l.o.Logger.Warn("leg A partition restarting", "topic", p.route.Topic, "partition", p.id, "from", pos, "err", err)
		l.o.Metrics.Count(metrics.LegA, "retry", 1)
		b.Wait(fetchCtx)
	}
	drained()
	<-gctx.Done()
}

// FetchMaxWait is how long the broker holds a fetch of a partition with nothing new, plus the second kafka-go keeps
// as a margin. It costs no latency (MinBytes is 1, so the broker answers as soon as a record arrives), only idle
// fetches: kafka-go asks the broker to hold a fetch for MaxWait minus one second (for a MaxWait of a second or more)
// and gives up on the answer at MaxWait.
//
// 10 s: an idle partition's reader fetches once every 9 s, and the bridge's nine readers about once a second in all. At
// 500 ms they made 24 fetches a second, more than half of the idle bridge's CPU (18-25 ticks in 30 s, 10 with 5 s;
// bridge README, "Idle cost"), and the margin was 125 ms. Not 1 s: the broker would then be asked to hold nothing. It
// was 100 ms before that, and on a busy machine a reader goroutine that got a core more than 25 ms late read an i/o
// timeout, closed the connection and dialled again (at load average 15 every one to five seconds). The held fetch no
// longer delays a stop or a rebalance: PartitionReader.Close closes the connection under it instead of waiting it out.
// The price: a connection that goes silent without being closed (a network black hole, not a broker restart, which
// resets it) is given up after up to 10 s instead of 0.5 s; Java consumers wait out request.timeout.ms, 30 s.
const FetchMaxWait = 10 * time.Second

// PartitionReader is a kafka-go reader of one partition whose Close does not wait for a held fetch.
type PartitionReader struct {
	*kafka.Reader
	conns *connSet
}

// NewPartitionReader returns the reader of one partition that leg A uses, positioned by the caller with SetOffset.
// failed, unless nil, is called with each error the reader retries by itself (a fetch or a dial of the partition's
// leader that failed): kafka-go reports those to its error logger only, and FetchMessage returns only the few it gives
// up on. A position out of range met while reading is reported wrapping kafka.OffsetOutOfRange, a partition the
// broker does not know wrapping kafka.UnknownTopicOrPartition (reset.go). Errors of a reader being closed are not
// reported.
func NewPartitionReader(brokers []string, topic string, partition int, failed func(error)) *PartitionReader {
	conns := &connSet{open: map[net.Conn]struct{}{}}
	var errorLogger kafka.Logger
	if failed != nil {
		errorLogger = kafka.LoggerFunc(func(msg string, args ...any) {
			if conns.isClosed() {
				return
			}
			err := fmt.Errorf(msg, args...)
			switch {
			case outOfRangeLog(msg):
				err = fmt.Errorf("%w: %w", kafka.OffsetOutOfRange, err)
			case topicGone(args):
				err = fmt.Errorf("%w: %w", kafka.UnknownTopicOrPartition, err)
			}
			failed(err)
		})
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		ErrorLogger:   errorLogger,
		Brokers:       brokers,
		Topic:         topic,
		Partition:     partition,
		MinBytes:      1,
		MaxBytes:      8 << 20,
		MaxWait:       FetchMaxWait,
		QueueCapacity: 128, // bounded: a stalled sink stops fetching
		// A position past the partition's end is an error of FetchMessage, not retried for ever (reset.go).
		OffsetOutOfRangeError: true,
		// Off: the reader would ask the partition's leader for its lag every minute (a dial and a ListOffsets) for
		// Reader.Stats alone, which leg A does not read; bridge_consumer_lag comes from the fetched records' high
		// watermarks and the commit loop (refreshLag).
		ReadLagInterval: -1,
		// kafka.DefaultDialer's timeout; the dial itself is the plain one, only remembered.
		Dialer: &kafka.Dialer{Timeout: 10 * time.Second, DialFunc: conns.dial},
	})
	return &PartitionReader{Reader: r, conns: conns}
}

// Close stops the reader. kafka-go's Close waits for the fetch in flight, which the broker holds for up to
// FetchMaxWait on an idle partition, so the connections go first: the held fetch fails at once, and a dial the
// reader tries meanwhile is refused. A stopped reader's fetch has no one to deliver to, so nothing is lost.
func (r *PartitionReader) Close() error {
	r.conns.closeAll()
	if err := r.Reader.Close(); err != nil {
		return fmt.Errorf("close partition reader: %w", err)
	}
	return nil
}

// connSet is the connections one reader dialled.
type connSet struct {
	mu     sync.Mutex
	open   map[net.Conn]struct{}
	closed bool
}

var errReaderClosed = errors.New("partition reader closed")

func (s *connSet) dial(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("dial kafka: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return nil, errReaderClosed
	}
	s.open[c] = struct{}{}
	return &trackedConn{Conn: c, set: s}, nil
}

func (s *connSet) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.open {
		c.Close()
	}
	clear(s.open)
}

// trackedConn leaves its set when kafka-go closes it.
type trackedConn struct {
	net.Conn
	set *connSet
}

func (c *trackedConn) Close() error {
	c.set.mu.Lock()
	delete(c.set.open, c.Conn)
	c.set.mu.Unlock()
	return c.Conn.Close()
}

// pending is one published message awaiting its ack, or a barrier marker.
type pending struct {
	offset  int64
	fut     jetstream.PubAckFuture
	span    trace.Span
	ctx     context.Context
	born    time.Time
	barrier chan struct{}
}

// session is one pass of the pipeline from a position.
type session struct {
	p        *partition
	tracker  *commit.Tracker
	inflight chan *pending
	settled  chan struct{} // closed when the settler exits
	failed   chan struct{} // closed by the settler on the first failure, after err is set
	err      error         // settler's failure; read after failed or settled
	abort    context.CancelFunc
	acked    bool // the settler confirmed one message of this session
	// outOfRange ends the session's reading with err, a position out of range or a partition unknown to the broker
	// its reader met: the next session's checks (inRange, recreated) reset it.
	outOfRange context.CancelCauseFunc
}

// pump reads from pos, publishes, and returns the position to resume from
// with the error that stopped it (nil when fetchCtx ended).
func (p *partition) pump(gctx, fetchCtx context.Context, pos int64) (int64, error) {
	l := p.leg
	if !p.clusterRead {
		id, err := ClusterID(fetchCtx, l.o.Brokers)
		if err != nil {
			p.askFailed(fetchCtx, err)
			return pos, err
		}
		p.cluster, p.clusterRead = mapping.ClusterToken(id), true
	}
	from, reset := pos, false
	if pos >= 0 {
		pos, reset = p.inRange(fetchCtx, pos)
	}
	// Every session, after the position check: a topic created again since the last session has another id, and
	// one created again after this reading leaves the reader's position past its end (the reader reports it and the
	// next session reads the id again), unless refilled past that position first, which the check misses as well.
	topicID, err := l.ids.Read(fetchCtx, l.o.Brokers, p.route.Topic, p.id)
	if err != nil {
		p.askFailed(fetchCtx, err)
		return from, err // the next session checks the position again, and records its reset (rewound) if any
	}
	if pos >= 0 && p.topicID != "" && topicID != "" && topicID != p.topicID {
		if pos, err = p.recreated(fetchCtx, pos, topicID); err != nil {
			return from, err
		}
		reset = true
	}
	p.noteTopicID(topicID)
	p.topicID = topicID
	r := NewPartitionReader(l.o.Brokers, p.route.Topic, p.id, p.fetchFailed)
	defer r.Close()
	if err := r.SetOffset(pos); err != nil {
		return pos, fmt.Errorf("seek %d: %w", pos, err)
	}
	runCtx, outOfRange := context.WithCancelCause(fetchCtx)
	abort := func() { outOfRange(nil) }
	defer abort()
	s := &session{p: p, inflight: make(chan *pending, l.o.InFlight), settled: make(chan struct{}), failed: make(chan struct{}), abort: abort, outOfRange: outOfRange}
	p.session.Store(s)
	defer p.session.CompareAndSwap(s, nil)
	if pos >= 0 {
		s.tracker = commit.New(pos)
		p.track(s.tracker, reset)
	}
	go s.settle(gctx)

	err = s.feed(runCtx, r)
	close(s.inflight)
	<-s.settled
	if s.tracker != nil {
		pos = s.tracker.Position()
	}
	if s.err != nil {
		return pos, s.err
	}
	if fetchCtx.Err() != nil {
		return pos, nil // stopped or generation ended: not a failure
	}
	return pos, err
}

// track makes t the tracker whose position the committer commits, from a reset of the position to t's (reset) or
// not. The reset is stored before the tracker, as the committer must not see the tracker without it (it would commit
// the reset position before records past it are carried), and marked tracked after: until then the tracker is the
// session's before, which the committer leaves alone (commit).
func (p *partition) track(t *commit.Tracker, reset bool) {
	if !reset {
		p.tracker.Store(t)
		return
	}
	r := &rewind{to: t.Position()}
	p.rewound.Store(r)
	p.tracker.Store(t)
	r.tracked.Store(true)
}

// noteTopicID logs the topic id a session reads when the partition's last session in the process read another:
// another incarnation (the line that tells an operator a past-end reset was a recreation, not a truncation), none
// (a cluster downgraded below 2.8), or one after none (upgraded again: the same incarnation, named by its id again).
// The last was logged as another incarnation, which it is not.
func (p *partition) noteTopicID(topicID string) {
	l := p.leg
	switch prev, ok := l.topicIDs.Swap(p.subject, topicID); {
	case !ok || prev == topicID:
	case topicID == "": // TopicIDs gives none after an id only for a broker older than 2.8
		l.o.Logger.Warn("leg A reads the topic without its id: Kafka is older than 2.8", "topic", p.route.Topic,
			"partition", p.id, "previous_topic_id", prev)
	case prev == "":
		l.o.Logger.Info("leg A reads the topic with its id again: Kafka is 2.8 or later", "topic", p.route.Topic,
			"partition", p.id, "topic_id", topicID)
	default:
		l.o.Logger.Info("leg A reads another incarnation of the topic", "topic", p.route.Topic, "partition", p.id,
			"topic_id", topicID, "previous_topic_id", prev)
	}
}

// askFailed records a failed request a session makes before its reader fetches (the cluster id, the topic id) as a
// failed fetch of the partition, as inRange does its own: the session ends and the next asks again, and the partition
// carries nothing meanwhile, which readiness and BridgePartitionUnfetchable must show, not a WARN line alone.
func (p *partition) askFailed(ctx context.Context, err error) {
	if ctx.Err() == nil {
		p.fetchFailed(err)
	}
}

// fetcher is what feed reads records from: a *PartitionReader (an interface so that a test can return a record after
// the session's reading ended, as kafka-go may).
type fetcher interface {
	FetchMessage(ctx context.Context) (kafka.Message, error)
}

// feed fetches and publishes until ctx ends or something fails; it always
// returns the reason it stopped.
func (s *session) feed(ctx context.Context, r fetcher) error {
	p, l := s.p, s.p.leg
	epoch := l.o.NATS.Stats().Reconnects
	slow := true // one message at a time until the first confirmation
	for {
		p.fetching.Store(true)
		m, err := r.FetchMessage(ctx)
		p.fetching.Store(false)
		if err != nil {
			if ctx.Err() == nil { // one kafka-go gave up on, not the session's end
				p.fetchFailed(err)
			}
			return fmt.Errorf("fetch: %w", cmp.Or(context.Cause(ctx), err))
		}
		p.fetch.OK()
		// The settler's failure cancels ctx, but FetchMessage may still return a record it had buffered: publishing
		// it would only be abandoned and republished, or overtake the refused offset that failed the session.
		select {
		case <-s.failed:
			return s.err
		default:
		}
		// Likewise after the session's reading ended otherwise: a record taken then would move the position on. When
		// kafka-go met a position before the first offset (reset.go) it had moved the reader to that offset itself,
		// and the record it returned made the next session's check find the position in range: the records lost to
		// retention were neither logged nor counted. Left here, the next session reads it again.
		if ctx.Err() != nil {
			return fmt.Errorf("fetch: %w", context.Cause(ctx))
		}
		if s.tracker == nil {
			s.tracker = commit.New(m.Offset)
			p.tracker.Store(s.tracker)
		}
		if err := s.tracker.Add(m.Offset); err != nil {
			return err
		}
		// Also here, not only each commit interval, so a partition's series is there with its first record.
		p.hwm.Store(m.HighWaterMark)
		l.o.Metrics.Lag(p.route.Topic, p.id, max(m.HighWaterMark-s.tracker.Position(), 0))

		if p.lettered(m.Offset) {
			// A record is dead-lettered when it is fetched, while earlier offsets may still wait for JetStream; when
			// one of those failed, the next session met the record again and wrote a second letter (and counted it
			// twice), once for every session that failed behind it.
			s.tracker.Done(m.Offset)
			continue
		}
		if letter, bad := p.poison(m); bad {
			if err := p.deadLetter(ctx, letter); err != nil {
				return err
			}
			s.tracker.Done(m.Offset)
			continue
		}

		msg, span, sctx := p.build(m)
		if n := headerBytes(msg.Header); n > maxHeaderBytes {
			// Measured on the message as built, not bounded beforehand: a bound dead-lettered records JetStream took.
			span.SetStatus(codes.Error, "not published: header section over JetStream's limit")
			span.End()
			if err := p.deadLetter(ctx, p.letterOf(m, "too_large", fmt.Sprintf("%d bytes of headers as published, JetStream's limit %d", n, maxHeaderBytes))); err != nil {
				return err
			}
			s.tracker.Done(m.Offset)
			continue
		}
		e0 := l.o.NATS.Stats().Reconnects
		if e0 != epoch {
			// Everything in flight went out on the old connection: settle it
			// before anything goes out on the new one.
			if err := s.barrier(); err != nil {
				span.End()
				return err
			}
			epoch, slow = e0, true
		}
		fut, err := l.o.JetStream.PublishMsgAsync(msg, jetstream.WithRetryAttempts(0))
		if err != nil {
			span.RecordError(err)
			span.End()
			if isRejection(err) {
				p.reject(m.Offset, err)
			}
			return fmt.Errorf("publish offset %d: %w", m.Offset, err)
		}
		if l.o.NATS.Stats().Reconnects != e0 {
			slow = true // it raced a reconnect: settle it alone
		}
		// Counted before the push: the settler may take it and count it out before push returns.
		l.o.Metrics.InFlight(metrics.LegA, 1)
		s.push(&pending{offset: m.Offset, fut: fut, span: span, ctx: sctx, born: m.Time})
		if slow {
			if err := s.barrier(); err != nil {
				return err
			}
			slow = false
		}
	}
}

// push hands pd to the settler even after the session failed: a message once published may be stored, and only
// the settler, which watches every outcome after a failure, can tell that it overtook a refused offset. (Dropping it
// when the session had failed let a refused offset be published again after a later one JetStream had stored.) The
// settler takes from inflight until the feed closes it, so this waits at most for the outcomes ahead of pd.
func (s *session) push(pd *pending) {
	s.inflight <- pd
}

// barrier waits until everything pushed before it is confirmed, or the
// session failed (then it returns why: the feed must stop and close inflight
// so the settler can finish).
func (s *session) barrier() error {
	b := make(chan struct{})
	s.push(&pending{barrier: b})
	select {
	case <-b:
		return nil
	case <-s.failed:
		return s.err
	}
}

// settle takes acks in publish order. The first failure stops the session;
// everything after it is abandoned and republished (deduplicated) by the next.
func (s *session) settle(gctx context.Context) {
	defer close(s.settled)
	p, l := s.p, s.p.leg
	failed := false
	var refused []refusedMsg // not stored by JetStream's own answer; a later offset stored after them overtakes them
	fail := func(err error) {
		s.err = err
		failed = true
		close(s.failed)
		s.abort()
	}
	for pd := range s.inflight {
		if pd.barrier != nil {
			if !failed {
				close(pd.barrier)
			}
			continue
		}
		if failed {
			// Every outcome after the failure still counts: a later refusal
			// can be overtaken too, after an earlier one already was.
			refused = p.watchOvertaking(gctx, pd, refused)
			pd.span.End()
			l.o.Metrics.InFlight(metrics.LegA, -1)
			continue
		}
		select {
		case ack := <-pd.fut.Ok():
			p.confirmed(gctx, s.tracker, pd, ack, !s.acked)
			s.acked = true
		case err := <-pd.fut.Err():
			pd.span.RecordError(err)
			pd.span.SetStatus(codes.Error, "jetstream publish failed")
			pd.span.End()
			l.o.Metrics.InFlight(metrics.LegA, -1)
			if isRejection(err) {
				p.reject(pd.offset, err)
			} else if refusal(err) {
				refused = append(refused, refusedMsg{pd.offset, err})
			}
			fail(fmt.Errorf("jetstream ack for offset %d: %w", pd.offset, err))
		case <-gctx.Done():
			pd.span.End()
			l.o.Metrics.InFlight(metrics.LegA, -1)
			fail(gctx.Err())
		}
	}
}

// confirmed records pd as stored at ack.Sequence, checking that the partition's sequences rise. A stream deleted and
// created again restarts its sequence at 1, which is not a violation (leg B reads the new stream from its start): the
// stream's creation time tells the two apart. It is read at the first confirmation of each session, which follows
// the failures a deletion causes, and when a sequence does not rise, which an idle partition meets first.
func (p *partition) confirmed(gctx context.Context, tr *commit.Tracker, pd *pending, ack *jetstream.PubAck, first bool) {
	l := p.leg
	suspect := ack.Sequence <= p.lastSeq && p.lastSeq != 0
	var created time.Time
	if first || suspect {
		created = l.streamCreated(gctx, ack.Stream)
	}
	if suspect {
		if !created.IsZero() && !p.created.IsZero() && !created.Equal(p.created) {
			l.o.Logger.Info("leg A stream recreated: its sequence started again", "stream", ack.Stream, "topic", p.route.Topic, "partition", p.id, "offset", pd.offset, "seq", ack.Sequence, "previous_seq", p.lastSeq)
			p.lastSeq = 0
		} else {
			// Should not happen given the barriers; if it does, leg B would see
			// this partition out of order, so say so loudly.
			l.o.Logger.Error("leg A stream order violated", "topic", p.route.Topic, "partition", p.id, "offset", pd.offset, "seq", ack.Sequence, "previous_seq", p.lastSeq)
			l.o.Metrics.Count(metrics.LegA, "order_violation", 1)
		}
	}
	if !created.IsZero() {
		p.created = created
	}
	p.lastSeq = max(p.lastSeq, ack.Sequence)
	p.mu.Lock()
	delete(p.rejects, pd.offset)
	p.mu.Unlock()
	tr.Done(pd.offset)
	pd.span.End()
	l.o.Metrics.InFlight(metrics.LegA, -1)
	if ack.Duplicate {
		// JetStream stored nothing: it had this Nats-Msg-Id within its duplicate window. Mostly a replay of what this
		// or another instance carried before (a restart, a rebalance, a failed session), but also a record whose id
		// a record of an earlier Kafka cluster or topic used (offsets from 0 again, README): counted "ok" with a hop
		// from its Kafka append, the replays were counted twice and such a drop looked carried.
		l.o.Metrics.Count(metrics.LegA, "duplicate", 1)
		return
	}
	l.o.Metrics.Count(metrics.LegA, "ok", 1)
	if !pd.born.IsZero() {
		l.o.Metrics.Hop(pd.ctx, metrics.LegA, time.Since(pd.born))
	}
}

// streamCreated returns when the stream was created, or the zero time when that cannot be read now: a check of order
// that cannot tell a recreated stream then reports what it sees.
func (l *Leg) streamCreated(ctx context.Context, name string) time.Time {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := l.o.JetStream.Stream(ctx, name)
	if err != nil {
		l.o.Logger.Debug("leg A stream info", "stream", name, "err", err)
		return time.Time{}
	}
	return st.CachedInfo().Created
}

// refusedMsg is an offset JetStream answered it did not store, and why.
type refusedMsg struct {
	offset int64
	err    error
}

// watchOvertaking waits for the outcome of pd, published after the refused
// offsets in the same pipeline, and returns the offsets still refused.
// JetStream takes one connection's publishes in order, so a refusal that
// depends on the message (the stream's max bytes with DiscardNew: a large one
// does not fit, the small one after it does) can store later offsets of the
// partition while refusing an earlier one. That one can then never enter the
// stream in order: published now, it would follow them and leg B, whose
// Pulsar sequence ids must rise, would drop it; poison sends it to the DLQ.
func (p *partition) watchOvertaking(gctx context.Context, pd *pending, refused []refusedMsg) []refusedMsg {
	select {
	case ack := <-pd.fut.Ok():
		if ack.Duplicate || len(refused) == 0 {
			return refused
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.rejects == nil {
			p.rejects = map[int64]rejection{}
		}
		for _, rf := range refused {
			r := p.rejects[rf.offset]
			r.overtakenBy, r.refusal = pd.offset, rf.err
			p.rejects[rf.offset] = r
		}
		return nil
	case err := <-pd.fut.Err():
		if refusal(err) && !isRejection(err) {
			return append(refused, refusedMsg{pd.offset, err})
		}
	case <-gctx.Done():
	}
	return refused
}

// refusal tells a transient answer from JetStream that it did not store the
// message (stream full, no stream for the subject) from a failure that leaves
// that unknown (timeout, disconnect).
func refusal(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) || errors.Is(err, jetstream.ErrNoStreamResponse)
}

// letter records that offset is in the DLQ. The entry goes with the generation's commit past it (forgetRejects), after
// which no session of the generation reads the offset again.
func (p *partition) letter(offset int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rejects == nil {
		p.rejects = map[int64]rejection{}
	}
	r := p.rejects[offset]
	r.lettered = true
	p.rejects[offset] = r
}

// lettered reports whether an earlier session of the generation wrote offset to the DLQ.
func (p *partition) lettered(offset int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rejects[offset].lettered
}

func (p *partition) reject(offset int64, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rejects == nil {
		p.rejects = map[int64]rejection{}
	}
	r := p.rejects[offset]
	r.n, r.err = r.n+1, err
	p.rejects[offset] = r
}

// poison decides whether m must go to the DLQ instead of JetStream.
func (p *partition) poison(m kafka.Message) (dlq.Letter, bool) {
	l := p.leg
	hdrs := make(map[string]string, len(m.Headers))
	size := carriedSize(m, p.cluster, p.topicID)
	reason, detail := "", ""
	for _, h := range m.Headers {
		if _, ok := hdrs[h.Key]; !ok { // the envelope check reads the first value, as nats.Header.Get does
			hdrs[h.Key] = string(h.Value)
		}
		if reason == "" && !headerSafe(h.Key, string(h.Value)) {
			reason, detail = "header", fmt.Sprintf("header %q cannot be carried as a NATS header verbatim (a name of printable ASCII without separators, not Nats-*; a value of one line of UTF-8 without leading or trailing spaces or tabs, which NATS strips)", h.Key)
		}
		if reason == "" && Reserved(h.Key) {
			reason, detail = "header", fmt.Sprintf("header %q is a name the bridge writes itself (leg A's kafka_* metadata, leg B's __kafka_* Pulsar properties): carried, the producer's value would be replaced", h.Key)
		}
	}
	p.mu.Lock()
	rej := p.rejects[m.Offset]
	p.mu.Unlock()
	switch {
	case reason != "":
	case size > l.o.MaxBytes:
		reason, detail = "too_large", fmt.Sprintf("%d bytes with headers, limit %d", size, l.o.MaxBytes)
	case rej.overtakenBy > 0:
		reason, detail = "overtaken", fmt.Sprintf("jetstream refused it (%v) and stored offset %d after it; published now it would follow that offset and leg B would drop it", rej.refusal, rej.overtakenBy)
	case rej.n > l.o.SinkRetries:
		reason, detail = "rejected", fmt.Sprintf("jetstream rejected it %d times: %v", rej.n, rej.err)
	case l.o.Validate != nil:
		if err := l.o.Validate(hdrs, m.Value); err != nil {
			reason, detail = "envelope", err.Error()
		}
	}
	if reason == "" {
		return dlq.Letter{}, false
	}
	return p.letterOf(m, reason, detail), true
}

// letterOf is the dead letter of record m for reason.
func (p *partition) letterOf(m kafka.Message, reason, detail string) dlq.Letter {
	// The record's timestamp and cluster as leg A would have carried them (HeaderTimestamp, HeaderCluster), under the
	// names a leg B letter has them (dlq.HeaderBridgePrefix): the letter itself is written at the time it is
	// dead-lettered, and without them a replay after the source topic's retention could not give the record its time.
	bridge := []kafka.Header{{Key: HeaderTimestamp, Value: strconv.AppendInt(nil, m.Time.UnixMilli(), 10)}}
	if p.cluster != "" {
		bridge = append(bridge, kafka.Header{Key: HeaderCluster, Value: []byte(p.cluster)})
	}
	if p.topicID != "" {
		bridge = append(bridge, kafka.Header{Key: HeaderTopicID, Value: []byte(p.topicID)})
	}
	return dlq.Letter{Leg: metrics.LegA, Reason: reason, Detail: detail, Topic: m.Topic, Partition: m.Partition,
		Offset: m.Offset, Key: m.Key, Value: m.Value, Headers: m.Headers, Bridge: bridge}
}

// deadLetter writes letter to the DLQ, remembers its offset as lettered, counts and logs it.
func (p *partition) deadLetter(ctx context.Context, letter dlq.Letter) error {
	l := p.leg
	if err := l.o.DLQ.Send(ctx, letter); err != nil {
		return err
	}
	p.letter(letter.Offset)
	l.o.Metrics.DLQ(metrics.LegA, letter.Reason)
	l.o.Logger.Warn("leg A dead letter", "topic", p.route.Topic, "partition", p.id, "offset", letter.Offset, "reason", letter.Reason, "detail", letter.Detail)
	return nil
}

// carriedSize is at least what NATS counts against max_payload (header section and data) for m as build publishes it,
// stamped with cluster and topicID.
// It counted the key raw and leg A's own headers as 128 bytes: a key that is not printable goes base64'd (4 bytes for
// every 3, with HeaderKeyEncoding beside it), and leg A's headers take up to 262 bytes and the topic twice, so a
// message under MaxBytes by that count could be over it, and over max_payload, as published.
func carriedSize(m kafka.Message, cluster, topicID string) int {
	n := len(m.Value) + base64.StdEncoding.EncodedLen(len(m.Key)) + len(HeaderKeyEncoding) + len("base64") + 4
	if printable(m.Key) {
		n = len(m.Value) + len(m.Key)
	}
	for _, h := range m.Headers {
		n += len(h.Key) + len(h.Value) + 4 // ": " and CRLF
	}
	if cluster != "" {
		n += len(HeaderCluster) + len(cluster) + 4
	}
	if topicID != "" {
		n += len(HeaderTopicID) + len(topicID) + 4 + 1 + len(topicID) // the stamp, and "/" and the id in Nats-Msg-Id
	}
	return n + ownHeaderBytes + 2*len(m.Topic)
}

// maxHeaderBytes is the largest header section JetStream stores (nats-server refuses a larger one with error 10097,
// "header size exceeds maximum allowed of 64k", whatever max_payload and BRIDGE_MAX_MESSAGE_BYTES allow). A record
// whose header section as built is larger goes to the DLQ (too_large) before it is published: published, it was
// refused, the session failed and the partition restarted, republishing what followed it, until it had been refused
// BRIDGE_SINK_RETRIES times or the records behind it had overtaken it. The section is measured on the built message
// (headerBytes), not bounded from the record as carriedSize is: the bound counts leg A's own headers at their
// longest, and sent records up to a few hundred bytes under the limit to the DLQ.
const maxHeaderBytes = math.MaxUint16

// headerBytes is the size of h's header section as nats.go writes it: the "NATS/1.0" line, "name: value" and CRLF for
// each value (http.Header.Write; headerSafe keeps out what it would rewrite), and the closing CRLF.
func headerBytes(h nats.Header) int {
	n := len("NATS/1.0\r\n") + len("\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(": ") + len(v) + len("\r\n")
		}
	}
	return n
}

// ownHeaderBytes bounds the header section build adds besides the carried headers, the key, the topic's two copies
// and the cluster and topic id stamps: "NATS/1.0" and the closing CRLF (12), a traceparent (70; the record's own is dropped but counted among its
// headers), kafka_topic (15), kafka_partition (29 with 10 digits), kafka_offset (35 with 19), kafka_key (13),
// kafka_timestamp_ms (42 with 20 characters) and Nats-Msg-Id (46 with its partition and offset), each as
// "name: value" and CRLF.
const ownHeaderBytes = 12 + 70 + 15 + 29 + 35 + 13 + 42 + 46

// Reserved reports whether a record header's name is one the bridge writes itself on the way: leg A's NATS headers
// (HeaderTopic to HeaderTopicID) and leg B's Pulsar properties (pulsarleg's PropTopic, PropPartition and PropOffset,
// spelled out here as pulsarleg imports this package). Names are exact, as NATS headers and Pulsar properties are. A record bringing one goes to the
// DLQ, which keeps it as produced: carried, its value was replaced by the bridge's (or removed, for HeaderKeyEncoding,
// HeaderCluster and HeaderTopicID) without a word.
func Reserved(name string) bool {
	switch name {
	case HeaderTopic, HeaderPartition, HeaderOffset, HeaderKey, HeaderKeyEncoding, HeaderTimestamp, HeaderCluster,
		HeaderTopicID, "__kafka_topic", "__kafka_partition", "__kafka_offset":
		return true
	}
	return false
}

// headerSafe reports whether a Kafka header survives as a NATS header: NATS
// headers are text lines, and names starting with Nats- steer JetStream
// (expected sequence, msg id, rollup), which a producer must not be able to do
// through the bridge.
func headerSafe(k, v string) bool {
	if k == "" || strings.HasPrefix(strings.ToLower(k), "nats-") {
		return false
	}
	// nats.go refuses to publish any other name (ErrBadHeaderMsg): ADR-4's
	// printable ASCII without a colon, and without HTTP's separators.
	for i := 0; i < len(k); i++ {
		if k[i] < 33 || k[i] > 126 || strings.IndexByte(`"()/,:;<=>?@[\]{}`, k[i]) >= 0 {
			return false
		}
	}
	// nats.go trims a value's spaces and tabs when it writes it (and its reader skips the leading ones), so a padded
	// value would arrive changed: such a message goes to the DLQ, which keeps it as produced, like a value NATS cannot
	// hold at all. Carrying it encoded would hand every consumer's envelope check (event.FromHeaders) the encoding.
	return !strings.ContainsAny(v, "\r\n") && utf8.ValidString(v) && !padded(v)
}

// padded reports whether s starts or ends with what NATS trims from a header value (CR and LF are refused anyway).
func padded(s string) bool {
	return s != "" && (s[0] == ' ' || s[0] == '\t' || s[len(s)-1] == ' ' || s[len(s)-1] == '\t')
}

// build turns m into the JetStream message with its producer span.
func (p *partition) build(m kafka.Message) (*nats.Msg, trace.Span, context.Context) {
	prop := otel.GetTextMapPropagator()
	parent := prop.Extract(context.Background(), carrier.Kafka(&m.Headers)) // any header case
	h := make(nats.Header, len(m.Headers)+9)
	for _, kh := range m.Headers {
		if !isTraceContextHeader(kh.Key) { // re-injected below, lowercase, for this hop's span
			h[kh.Key] = append(h[kh.Key], string(kh.Value)) // a repeated name keeps every value, in order
		}
	}
	ctx, span := p.leg.tracer.Start(parent, p.route.Subject+" publish",
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", p.subject),
			attribute.String("messaging.kafka.source.topic", m.Topic),
			attribute.Int("messaging.kafka.source.partition", m.Partition),
			attribute.Int64("messaging.kafka.offset", m.Offset),
		))
	tc := propagation.MapCarrier{}
	prop.Inject(ctx, tc)
	for k, v := range tc {
		// Baggage is the record's, carried above as produced: the bridge adds no member, and the propagator's copy
		// is otel's parse written again, which drops the members it cannot parse and a repeated key's earlier values,
		// re-escapes values, and orders members by a map's iteration (TestBuildCarriesBaggageVerbatim).
		if !strings.EqualFold(k, "baggage") {
			h[k] = []string{v} // direct assignment keeps names lowercase
		}
	}
	h[HeaderTopic] = []string{m.Topic}
	h[HeaderPartition] = []string{strconv.Itoa(m.Partition)}
	h[HeaderOffset] = []string{strconv.FormatInt(m.Offset, 10)}
	if printable(m.Key) {
		h[HeaderKey] = []string{string(m.Key)}
		delete(h, HeaderKeyEncoding) // a producer's own would make readers decode a plain key
	} else {
		h[HeaderKey] = []string{base64.StdEncoding.EncodeToString(m.Key)}
		h[HeaderKeyEncoding] = []string{"base64"}
	}
	h[HeaderTimestamp] = []string{strconv.FormatInt(m.Time.UnixMilli(), 10)}
	if p.cluster != "" {
		h[HeaderCluster] = []string{p.cluster}
	} else {
		delete(h, HeaderCluster) // a producer's own would name the record's Pulsar producer
	}
	if p.topicID != "" {
		h[HeaderTopicID] = []string{p.topicID}
	} else {
		delete(h, HeaderTopicID)
	}
	h[jetstream.MsgIDHeader] = []string{msgID(m, p.topicID)}
	return &nats.Msg{Subject: p.subject, Header: h, Data: m.Value}, span, ctx
}

// RecordKey returns the Kafka record key carried in h (HeaderKey, decoded when HeaderKeyEncoding says base64): the
// bytes a replay into Kafka must use to land on the record's partition.
func RecordKey(h nats.Header) []byte {
	k := h.Get(HeaderKey)
	if h.Get(HeaderKeyEncoding) == "base64" {
		if b, err := base64.StdEncoding.DecodeString(k); err == nil {
			return b
		}
	}
	return []byte(k)
}

// isTraceContextHeader reports whether k is W3C trace context, which each hop writes anew for its own span. Baggage
// is not: it is the producer's, and travels as produced.
func isTraceContextHeader(k string) bool {
	return strings.EqualFold(k, "traceparent") || strings.EqualFold(k, "tracestate")
}

// printable reports whether a key can be carried as a NATS header value as it is: UTF-8 without control characters,
// and not padded (NATS would trim it, and a replay into Kafka or the Pulsar key would get another key).
func printable(b []byte) bool {
	if !utf8.Valid(b) || padded(string(b)) {
		return false
	}
	for _, c := range string(b) {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}
