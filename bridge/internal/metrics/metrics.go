// Package metrics declares the bridge's instruments once, through the OTel
// meter that pkg/telemetry exports as Prometheus /metrics:
//
//	bridge_messages_total{leg,result}        result: ok, dlq, retry, skipped, duplicate (the sink's dedup dropped it: JetStream's for leg A, Pulsar's for leg B)
//	bridge_inflight{leg}                     unconfirmed messages
//	bridge_consumer_lag{topic,partition}     Kafka high watermark minus the first offset JetStream has not confirmed
//	bridge_archive_lag{topic,partition}      messages of a partition JetStream holds that leg B has not acked (Pulsar has not confirmed)
//	bridge_archive_progress_timestamp_seconds{topic,partition} when leg B last acked a message of the partition (archived or dead-lettered), or took the partition
//	bridge_hop_duration_seconds{leg}         leg A: Kafka append to JetStream ack; leg B: JetStream append to Pulsar ack (0 when negative: a producer clock ahead)
//	bridge_dlq_total{leg,reason}
//	bridge_stream_lost_total{topic,partition} messages the stream's limits removed before leg B archived them (at most)
//	bridge_archive_lag_read_errors_total{topic,partition} leg B's failed reads of its consumer for bridge_archive_lag (the gauge keeps its last value meanwhile)
//	bridge_pulsar_policy_waiting{topic}      leg B partitions waiting to read their Pulsar topic's max message size policy
//	bridge_dlq_waiting{leg}                  partitions held at a dead letter the DLQ topic has refused and not yet taken
//	bridge_fetch_errors_total{topic,partition} leg A's failed fetches of a partition it owns (leader away, broker refusing)
//	bridge_partition_unfetchable{topic,partition} 1 while a partition leg A owns fails readiness: its failed fetches span two session timeouts
//	bridge_stream_window_short{stream}       1 while the JetStream stream's duplicate window is too short for leg A's republish
//	bridge_offset_resets_total{topic,partition,side} leg A positions outside their partition (side: past_end, before_start), moved to its earliest offset
package metrics

import (
	"context"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Leg names used as the leg attribute.
const (
	LegA = "kafka-nats"
	LegB = "nats-pulsar"
)

// Bridge holds the instruments. A zero *Bridge is not valid; use New.
type Bridge struct {
	messages metric.Int64Counter
	inflight metric.Int64UpDownCounter
	hop      metric.Float64Histogram
	dlq      metric.Int64Counter
	lost     metric.Int64Counter
	waiting  metric.Int64UpDownCounter
	held     metric.Int64UpDownCounter
	fetchErr metric.Int64Counter
	lagRead  metric.Int64Counter
	short    metric.Int64Gauge
	resets   metric.Int64Counter

	mu          sync.Mutex
	lag         map[lagKey]int64
	unfetchable map[lagKey]bool
	archive     map[lagKey]int64 // leg B's, apart from leg A's lag: each leg forgets its own when its partition goes
	progress    map[lagKey]int64 // leg B's, unix seconds: set and forgotten with archive

	// sets are the attribute sets of each leg, and of each leg and result, that the message path records, built once
	// in New: building one sorts and allocates, and a leg records four measurements for every message it carries
	// (BenchmarkPerMessage: 16 allocations and 800 bytes a message before). Read only after New.
	sets map[setKey]metric.MeasurementOption
}

type lagKey struct {
	topic     string
	partition int
}

type setKey struct{ leg, result string }

// results are the results the legs count; another is counted too, its set built at each call.
var results = []string{"", "ok", "dlq", "retry", "skipped", "order_violation", "duplicate"}

// set returns the measurement option of leg and, unless empty, result.
func (b *Bridge) set(leg, result string) metric.MeasurementOption {
	if o, ok := b.sets[setKey{leg, result}]; ok {
		return o
	}
	return newSet(leg, result)
}

func newSet(leg, result string) metric.MeasurementOption {
	if result == "" {
		return metric.WithAttributeSet(attribute.NewSet(attribute.String("leg", leg)))
	}
	return metric.WithAttributeSet(attribute.NewSet(attribute.String("leg", leg), attribute.String("result", result)))
}

// New registers the instruments on m.
func New(m metric.Meter) (*Bridge, error) {
	b := &Bridge{lag: map[lagKey]int64{}, unfetchable: map[lagKey]bool{}, archive: map[lagKey]int64{}, progress: map[lagKey]int64{}, sets: map[setKey]metric.MeasurementOption{}}
	for _, leg := range []string{LegA, LegB} {
		for _, r := range results {
			b.sets[setKey{leg, r}] = newSet(leg, r)
		}
	}
	var err error
	if b.messages, err = m.Int64Counter("bridge.messages", metric.WithDescription("messages handled per leg and result")); err != nil {
		return nil, err
	}
	if b.inflight, err = m.Int64UpDownCounter("bridge.inflight", metric.WithDescription("messages handed to a sink and not yet confirmed")); err != nil {
		return nil, err
	}
	if b.hop, err = m.Float64Histogram("bridge.hop.duration", metric.WithUnit("s"),
		metric.WithDescription("time from the source's append to the sink's confirmation"),
		metric.WithExplicitBucketBoundaries(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30)); err != nil {
		return nil, err
	}
	if b.dlq, err = m.Int64Counter("bridge.dlq", metric.WithDescription("messages sent to the dead-letter topic")); err != nil {
		return nil, err
	}
	if b.lost, err = m.Int64Counter("bridge.stream.lost", metric.WithDescription("messages of a partition the JetStream stream's limits (max age, or max messages or bytes with DiscardOld) removed before leg B archived them: lost; at most, as a record leg A dead-lettered among them is counted too")); err != nil {
		return nil, err
	}
	if b.waiting, err = m.Int64UpDownCounter("bridge.pulsar.policy.waiting", metric.WithDescription("leg B partitions waiting to read their Pulsar topic's max message size policy because the admin API (PULSAR_ADMIN_URL) does not answer: they archive nothing meanwhile, and JetStream keeps their messages")); err != nil {
		return nil, err
	}
	if b.held, err = m.Int64UpDownCounter("bridge.dlq.waiting", metric.WithDescription("partitions held at a dead letter whose write to the DLQ topic failed and is being retried: they carry or archive nothing past it until the DLQ takes it")); err != nil {
		return nil, err
	}
	if b.fetchErr, err = m.Int64Counter("bridge.fetch.errors", metric.WithDescription("leg A's failed fetches of a partition it owns (its leader away, the broker refusing): kafka-go retries them, and the partition carries nothing meanwhile")); err != nil {
		return nil, err
	}
	if b.lagRead, err = m.Int64Counter("bridge.archive.lag.read.errors", metric.WithDescription("leg B's failed reads of a partition's JetStream consumer for bridge_archive_lag: the gauge keeps its last value until a read or a delivery succeeds")); err != nil {
		return nil, err
	}
	if b.short, err = m.Int64Gauge("bridge.stream.window.short", metric.WithDescription("1 while the JetStream stream's duplicate window does not exceed 2 × BRIDGE_PUBLISH_TIMEOUT + BRIDGE_MAX_BACKOFF, so a late republish is stored twice; read every 30 s")); err != nil {
		return nil, err
	}
	if b.resets, err = m.Int64Counter("bridge.offset.resets", metric.WithDescription("leg A positions outside their partition's offsets (side past_end: the topic recreated or truncated under the committed offset; before_start: retention removed records not yet carried), moved to the partition's earliest offset")); err != nil {
		return nil, err
	}
	// An observable gauge, as the lag: its series go with the partition's ownership (Forget).
	_, err = m.Int64ObservableGauge("bridge.partition.unfetchable", metric.WithDescription("1 while leg A's failed fetches of a partition it owns span two session timeouts (it fails readiness meanwhile), 0 otherwise; refreshed every commit interval"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			b.mu.Lock()
			defer b.mu.Unlock()
			for k, v := range b.unfetchable {
				var n int64
				if v {
					n = 1
				}
				o.Observe(n, metric.WithAttributes(attribute.String("topic", k.topic), attribute.String("partition", strconv.Itoa(k.partition))))
			}
			return nil
		}))
	if err != nil {
		return nil, err
	}
	_, err = m.Int64ObservableGauge("bridge.archive.lag", metric.WithDescription("messages of a partition the JetStream stream holds that leg B has not acked, as Pulsar has not confirmed them: from each message delivered, and from the consumer every commit interval while none is"),
		metric.WithInt64Callback(b.observe(b.archive)))
	if err != nil {
		return nil, err
	}
	// A time, not a counter of archived messages per partition: a counter's series starts at its first archive, which
	// increase() does not count, so a partition that archived one message in the window looked stalled; and the time
	// is there from when leg B takes the partition, so one that never archived is seen too.
	_, err = m.Int64ObservableGauge("bridge.archive.progress.timestamp", metric.WithUnit("s"), metric.WithDescription("when leg B last acked a message of a partition to JetStream (Pulsar confirmed it, or it was dead-lettered), or took the partition, in unix seconds: with bridge_archive_lag above 0, an old one is a partition whose archive stalled while others may move"),
		metric.WithInt64Callback(b.observe(b.progress)))
	if err != nil {
		return nil, err
	}
	_, err = m.Int64ObservableGauge("bridge.consumer.lag", metric.WithDescription("Kafka records of a partition JetStream has not confirmed yet: the high watermark minus the first unconfirmed offset, refreshed every commit interval"),
		metric.WithInt64Callback(b.observe(b.lag)))
	return b, err
}

// observe is the callback of a gauge by partition whose values are in values, which b.mu guards.
func (b *Bridge) observe(values map[lagKey]int64) metric.Int64Callback {
	return func(_ context.Context, o metric.Int64Observer) error {
		b.mu.Lock()
		defer b.mu.Unlock()
		for k, v := range values {
			o.Observe(v, metric.WithAttributes(attribute.String("topic", k.topic), attribute.String("partition", strconv.Itoa(k.partition))))
		}
		return nil
	}
}

// Count adds n messages with a result on a leg.
func (b *Bridge) Count(leg, result string, n int64) {
	b.messages.Add(context.Background(), n, b.set(leg, result))
}

// InFlight moves the in-flight gauge by delta.
func (b *Bridge) InFlight(leg string, delta int64) {
	b.inflight.Add(context.Background(), delta, b.set(leg, ""))
}

// Hop records one message's latency over a leg; ctx carries the span for exemplars. A negative one is recorded as 0:
// leg A's starts at the record's timestamp, which with CreateTime (Kafka's default) is the producer's clock, and a
// producer clock ahead of the bridge's (Kafka 3.9 takes any future timestamp) gave hops of minus the skew, which
// took the skew off the histogram's sum and so off every mean latency read from it (TestNegativeHopIsRecordedAsZero).
func (b *Bridge) Hop(ctx context.Context, leg string, d time.Duration) {
	b.hop.Record(ctx, max(d, 0).Seconds(), b.set(leg, ""))
}

// DLQ counts a dead letter.
func (b *Bridge) DLQ(leg, reason string) {
	b.dlq.Add(context.Background(), 1, metric.WithAttributes(attribute.String("leg", leg), attribute.String("reason", reason)))
	b.Count(leg, "dlq", 1)
}

// StreamLost counts n messages of a partition that the stream removed before leg B archived them.
func (b *Bridge) StreamLost(topic string, partition int, n int64) {
	b.lost.Add(context.Background(), n, metric.WithAttributes(attribute.String("topic", topic), attribute.String("partition", strconv.Itoa(partition))))
}

// DLQWaiting moves the count of a leg's partitions held at a dead letter the DLQ has refused by delta.
func (b *Bridge) DLQWaiting(leg string, delta int64) {
	b.held.Add(context.Background(), delta, metric.WithAttributes(attribute.String("leg", leg)))
}

// PolicyWaiting moves the count of a topic's partitions waiting for its Pulsar max message size policy by delta.
func (b *Bridge) PolicyWaiting(topic string, delta int64) {
	b.waiting.Add(context.Background(), delta, metric.WithAttributes(attribute.String("topic", topic)))
}

// Lag sets a partition's consumer lag; Forget removes it when ownership moves.
func (b *Bridge) Lag(topic string, partition int, lag int64) {
	b.mu.Lock()
	b.lag[lagKey{topic, partition}] = lag
	b.mu.Unlock()
}

// ArchiveLag sets leg B's lag of a partition; ForgetArchive removes it when leg B stops carrying the partition.
func (b *Bridge) ArchiveLag(topic string, partition int, lag int64) {
	b.mu.Lock()
	b.archive[lagKey{topic, partition}] = lag
	b.mu.Unlock()
}

// ArchiveProgress records that leg B took a partition or acked one of its messages now
// (bridge_archive_progress_timestamp_seconds); ForgetArchive removes it.
func (b *Bridge) ArchiveProgress(topic string, partition int) {
	now := time.Now().Unix()
	b.mu.Lock()
	b.progress[lagKey{topic, partition}] = now
	b.mu.Unlock()
}

// ForgetArchive drops a partition's bridge_archive_lag and bridge_archive_progress_timestamp_seconds series.
func (b *Bridge) ForgetArchive(topic string, partition int) {
	b.mu.Lock()
	delete(b.archive, lagKey{topic, partition})
	delete(b.progress, lagKey{topic, partition})
	b.mu.Unlock()
}

// Unfetchable sets whether a partition's failed fetches span the readiness rule (bridge_partition_unfetchable); Forget
// removes it when ownership moves.
func (b *Bridge) Unfetchable(topic string, partition int, failing bool) {
	b.mu.Lock()
	b.unfetchable[lagKey{topic, partition}] = failing
	b.mu.Unlock()
}

// Forget drops a partition's lag and unfetchable series.
func (b *Bridge) Forget(topic string, partition int) {
	b.mu.Lock()
	delete(b.lag, lagKey{topic, partition})
	delete(b.unfetchable, lagKey{topic, partition})
	b.mu.Unlock()
}

// FetchError counts a failed fetch of a partition leg A owns.
func (b *Bridge) FetchError(topic string, partition int) {
	b.fetchErr.Add(context.Background(), 1, metric.WithAttributes(attribute.String("topic", topic), attribute.String("partition", strconv.Itoa(partition))))
}

// LagReadError counts a failed read of leg B's consumer for the partition's bridge_archive_lag: without it a gauge
// frozen because JetStream refused the reads looked like a lag that did not move, and only a Debug log said otherwise.
func (b *Bridge) LagReadError(topic string, partition int) {
	b.lagRead.Add(context.Background(), 1, metric.WithAttributes(attribute.String("topic", topic), attribute.String("partition", strconv.Itoa(partition))))
}

// Sides of an offset reset, the side attribute of bridge_offset_resets_total.
const (
	PastEnd     = "past_end"
	BeforeStart = "before_start"
	// Recreated is a position read in another incarnation of the topic (another topic id): in range of the new one
	// when it was refilled past it, and no position of its records at all.
	Recreated = "recreated"
)

// OffsetReset counts a position of leg A reset to its partition's earliest offset, on side PastEnd, BeforeStart or
// Recreated.
func (b *Bridge) OffsetReset(topic string, partition int, side string) {
	b.resets.Add(context.Background(), 1, metric.WithAttributes(attribute.String("topic", topic), attribute.String("partition", strconv.Itoa(partition)), attribute.String("side", side)))
}

// StreamWindowShort records whether the stream's duplicate window is too short for leg A.
func (b *Bridge) StreamWindowShort(stream string, short bool) {
	var v int64
	if short {
		v = 1
	}
	b.short.Record(context.Background(), v, metric.WithAttributes(attribute.String("stream", stream)))
}
