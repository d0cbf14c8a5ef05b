// Package dlq is where poison goes: a message the bridge cannot carry (bad
// envelope, too large, rejected by a sink) is written to a Kafka dead-letter
// topic with the reason, the leg, its source coordinates and the original key,
// headers and payload, so an operator can fix and replay it. Kafka is the
// destination because it is the one broker the bridge already depends on for
// its input: a dead letter never waits for the sink that rejected it.
package dlq

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/segmentio/kafka-go"

	"github.com/shanhai-dev/shanhai/pkg/kafkatopic"
	"github.com/shanhai-dev/shanhai/pkg/outbox/kafkasize"

	"github.com/shanhai-dev/shanhai/bridge/internal/backoff"
)

// Letter is one dead message.
type Letter struct {
	Leg       string
	Reason    string // short, low-cardinality: envelope, header, too_large, rejected, overtaken, metadata
	Detail    string // the error text
	Topic     string
	Partition int
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []kafka.Header // as the source carried them: repeated names and their order kept (see HeaderRecordPrefix)
	Bridge    []kafka.Header // leg B: the fields the bridge itself set on the message in JetStream (see HeaderBridgePrefix)
}

// Sink accepts dead letters; Send returns only when the letter is durable or
// ctx ends.
type Sink interface {
	Send(ctx context.Context, l Letter) error
}

// Header names added to a dead letter.
const (
	HeaderReason    = "dlq_reason"
	HeaderDetail    = "dlq_detail"
	HeaderLeg       = "dlq_leg"
	HeaderTopic     = "dlq_source_topic"
	HeaderPartition = "dlq_source_partition"
	HeaderOffset    = "dlq_source_offset"
	HeaderOmitted   = "dlq_omitted" // set when the letter was too large for the DLQ topic: what was left out
	// HeaderBridgePrefix prefixes, in a leg B letter, the fields the bridge itself set on the message in JetStream
	// (leg A's kafka_* metadata, Nats-Msg-Id): kept as evidence, apart from the record's own headers, so that a replay
	// into Kafka that drops the bridge's dlq_* headers carries none of them.
	HeaderBridgePrefix = "dlq_bridge_"
	// HeaderRecordPrefix prefixes a record's own header whose name the bridge reserves (dlq_*, in any case): dlq_* in a
	// letter is the bridge's alone, so a producer's dlq_reason can neither pass for the letter's reason nor be dropped
	// with the bridge's fields by a replay. A replay restores <name> from dlq_record_<name>.
	HeaderRecordPrefix = "dlq_record_"
)

// reserved reports whether a header name is in the bridge's dlq_* space, as a case-insensitive reader would see it.
func reserved(name string) bool {
	return len(name) >= len("dlq_") && strings.EqualFold(name[:len("dlq_")], "dlq_")
}

// Kafka writes letters to one topic with acks=all, retrying transient errors
// forever with capped backoff. The bridge owns that topic: it creates it (with
// the broker's default partitions and replication) before its first letter, as
// nothing else does outside the embedded run (scripts/deps.sh, compose, kind).
type Kafka struct {
	// Waiting, when set (before the first Send), is told of each letter whose write failed and is being retried: +1
	// at its first failure, -1 when Send returns. Its partition carries nothing past the letter meanwhile, and without
	// a measure that showed only as warnings (and, for leg A, as consumer lag): bridge_dlq_total counts letters written.
	Waiting func(leg string, delta int64)

	w          *kafka.Writer
	maxBackoff time.Duration
	log        *slog.Logger
	// topic creates the DLQ topic before the first letter: the writer's AllowAutoTopicCreation alone left that letter
	// refused, its partition held for a backoff and a warning asking an operator to look for a fault that was not
	// there (see package kafkatopic). Asked once; again before the next attempt while Kafka does not answer, and after
	// a write found the topic missing (deleted while the bridge runs): the writer's own AllowAutoTopicCreation makes it
	// again only on a broker that creates topics on demand.
	topic *kafkatopic.Creator
}

// NewKafka returns a Sink writing to topic; log hears of each failed write.
func NewKafka(brokers []string, topic string, maxBackoff time.Duration, log *slog.Logger) *Kafka {
	k := &Kafka{
		w: &kafka.Writer{
			Addr:                   kafka.TCP(brokers...),
			Topic:                  topic,
			RequiredAcks:           kafka.RequireAll,
			AllowAutoTopicCreation: true,
			BatchTimeout:           time.Millisecond,
			MaxAttempts:            3,
			// kafka-go refuses a message over BatchBytes (1 MiB by default) itself, with an error Send cannot tell
			// from the broker's "too large", and Send then wrote a letter the topic takes whole without its value.
			// So the broker decides: BatchBytes is Kafka's default socket.request.max.bytes, above any record size a
			// broker is set to take, and a batch holds one letter, because the broker's max.message.bytes applies to
			// a whole batch and letters of several partitions batched together could exceed it where each fits.
			BatchBytes: 100 << 20,
			BatchSize:  1,
		},
		maxBackoff: maxBackoff,
		log:        log,
	}
	k.topic = kafkatopic.New(k.w, log)
	return k
}

// Message renders a letter as the Kafka message written to the DLQ topic.
func Message(l Letter) kafka.Message {
	m := kafka.Message{Key: l.Key, Value: l.Value}
	m.Headers = make([]kafka.Header, 0, len(l.Headers)+6+len(l.Bridge))
	for _, h := range l.Headers {
		if reserved(h.Key) {
			h.Key = HeaderRecordPrefix + h.Key
		}
		m.Headers = append(m.Headers, h)
	}
	m.Headers = append(m.Headers,
		kafka.Header{Key: HeaderReason, Value: []byte(l.Reason)},
		kafka.Header{Key: HeaderDetail, Value: []byte(l.Detail)},
		kafka.Header{Key: HeaderLeg, Value: []byte(l.Leg)},
		kafka.Header{Key: HeaderTopic, Value: []byte(l.Topic)},
		kafka.Header{Key: HeaderPartition, Value: []byte(strconv.Itoa(l.Partition))},
		kafka.Header{Key: HeaderOffset, Value: []byte(strconv.FormatInt(l.Offset, 10))},
	)
	for _, h := range l.Bridge {
		m.Headers = append(m.Headers, kafka.Header{Key: HeaderBridgePrefix + h.Key, Value: h.Value})
	}
	return m
}

// detailKept is how much of a letter's detail, in bytes cut between runes, a letter too large for the DLQ topic keeps.
// The detail is error text, and an error may quote the input at any length: kept whole beside a record that Kafka
// took at its size limit, it could keep even the letter without the record over the topic's limit, refused for ever.
// 512 bytes hold every detail the bridge writes itself (counts, sizes, a broker's error) and pkg/event's quotes of 80
// bytes whole; a longer one keeps its start and its end (clip), which say what failed and why; the letter without the
// record is then at most about 1.1 KiB (a 249-character topic name, the widest numbers), so any DLQ topic taking 2 KiB
// takes it.
const detailKept = 512

// form is how much of a letter Send writes; each is tried when the topic refused the one before for its size.
type form int

const (
	whole   form = iota // as Message renders it
	clipped             // the detail's middle cut out to detailKept bytes, when it was longer
	bare                // also without key, value and carried headers: what names the source record and why
)

// Send implements Sink.
func (k *Kafka) Send(ctx context.Context, l Letter) error {
	b := backoff.Backoff{Base: 50 * time.Millisecond, Max: k.maxBackoff}
	m, f, waiting := Message(l), whole, false
	for {
		k.topic.Ensure(ctx, k.w.Topic)
		err := k.w.WriteMessages(ctx, m)
		if err == nil {
			return nil
		}
		if kafkasize.TooLarge(err) && f < bare {
			// A letter adds headers to a record that its topic may have
			// taken at the size limit, and a detail of any length, so it
			// may never be written whole, and retrying it would stop its
			// partition for good. The detail's middle goes first, then the
			// record: the letter still names the source record, which
			// stays in its topic for the topic's retention.
			f++
			if f == clipped && len(l.Detail) <= detailKept {
				f = bare
			}
			m = shrunk(l, f)
			continue
		}
		if kafkatopic.Missing(err) {
			k.topic.Forget(k.w.Topic) // deleted since it was created: the next attempt asks Kafka to create it again
		}
		if ctx.Err() == nil {
			// The letter's partition waits for it (nothing is committed
			// past it): say why, or the stop shows only as lag.
			k.log.Warn("dead letter not written; retrying", "topic", l.Topic, "partition", l.Partition, "offset", l.Offset, "err", err)
			if !waiting && k.Waiting != nil {
				waiting = true
				k.Waiting(l.Leg, 1)
				defer k.Waiting(l.Leg, -1)
			}
		}
		if ctx.Err() != nil || !b.Wait(ctx) {
			return fmt.Errorf("dlq %s/%d/%d: %w", l.Topic, l.Partition, l.Offset, err)
		}
	}
}

// shrunk renders l in form f (clipped or bare), with HeaderOmitted saying what was left out.
func shrunk(l Letter, f form) kafka.Message {
	var omitted []string
	if f == bare {
		omitted = append(omitted, fmt.Sprintf("key, value and headers (%d bytes)", size(l)))
		l = Letter{Leg: l.Leg, Reason: l.Reason, Detail: l.Detail, Topic: l.Topic, Partition: l.Partition, Offset: l.Offset}
	}
	if d := clip(l.Detail, detailKept); len(d) < len(l.Detail) {
		omitted = append(omitted, fmt.Sprintf("detail's middle (%d of its %d bytes kept)", len(d)-len(detailCut), len(l.Detail)))
		l.Detail = d
	}
	m := Message(l)
	m.Headers = append(m.Headers, kafka.Header{Key: HeaderOmitted, Value: []byte(strings.Join(omitted, "; ") + ": too large for the DLQ topic")})
	return m
}

// detailCut stands in a clipped detail for the middle it lost.
const detailCut = " … "

// clip returns s if it has at most n bytes, otherwise its start and its end, joined by detailCut, n bytes at most in
// all. Error text says what failed first and why last, with any quote of the input between: leg A's `header "<name>"
// cannot be carried as a NATS header verbatim (...)`, or a wrapped error, whose cause comes last. Clipped to its first
// n bytes, a header name of a few hundred bytes left `header "xxx…` and no reason at all. Each part is cut at a rune's
// first byte where one is within a rune's length (an error text is UTF-8; one that is not is cut where it falls).
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	keep := n - len(detailCut)
	head := keep / 2
	for i := head; i > 0 && i > keep/2-utf8.UTFMax; i-- {
		if utf8.RuneStart(s[i]) {
			head = i
			break
		}
	}
	tail := len(s) - (keep - head)
	for i := tail; i < len(s) && i < tail+utf8.UTFMax; i++ {
		if utf8.RuneStart(s[i]) {
			tail = i
			break
		}
	}
	return s[:head] + detailCut + s[tail:]
}

func size(l Letter) int {
	n := len(l.Key) + len(l.Value)
	for _, h := range slices.Concat(l.Headers, l.Bridge) {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// Close flushes the writer.
func (k *Kafka) Close() error { return k.w.Close() }
