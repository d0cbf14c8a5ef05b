// Package harness holds what the bridge's integration tests, fault test and
// benchmark share: creating Kafka topics and JetStream streams, producing
// keyed CloudEvents with trace context, and reading the Pulsar archive back
// into a verdict (lost, duplicated, out of order).
package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	"github.com/segmentio/kafka-go"

	"github.com/shanhai-dev/shanhai/pkg/event"
)

// ID returns a short random suffix for names that must not collide between
// runs sharing one set of servers.
func ID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// CreateTopic creates a Kafka topic with the given partitions (replication 1)
// and topic configuration, and waits until every partition has a leader.
func CreateTopic(ctx context.Context, brokers []string, topic string, partitions int, config ...kafka.ConfigEntry) error {
	conn, err := kafka.DialContext(ctx, "tcp", brokers[0])
	if err != nil {
		return fmt.Errorf("dial kafka: %w", err)
	}
	defer conn.Close()
	ctrl, err := conn.Controller()
	if err != nil {
		return fmt.Errorf("kafka controller: %w", err)
	}
	cc, err := kafka.DialContext(ctx, "tcp", net.JoinHostPort(ctrl.Host, strconv.Itoa(ctrl.Port)))
	if err != nil {
		return fmt.Errorf("dial kafka controller: %w", err)
	}
	defer cc.Close()
	err = cc.CreateTopics(kafka.TopicConfig{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1, ConfigEntries: config})
	if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	// Wait until metadata (what a Writer asks) shows every partition led.
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 5 * time.Second}
	for {
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		if err == nil && len(md.Topics) == 1 && md.Topics[0].Error == nil && len(md.Topics[0].Partitions) == partitions {
			ok := true
			for _, p := range md.Topics[0].Partitions {
				ok = ok && p.Error == nil && p.Leader.Host != ""
			}
			if ok {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topic %s has no leaders: %w", topic, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Event builds message number seq: key "k<seq % keys>", CloudEvents binary
// headers, a fresh traceparent, and a JSON payload padded to about size bytes.
// The payload carries seq so a reader can tell every message apart.
func Event(seq, keys, size int) kafka.Message {
	pad := max(size-80, 0)
	data := map[string]any{"seq": seq, "pad": strings.Repeat("x", pad)}
	e, err := event.New("order.created", "shanhai/bridge-test", "k"+strconv.Itoa(seq%keys), data)
	if err != nil {
		panic(err) // static input; cannot fail
	}
	m := kafka.Message{Key: []byte("k" + strconv.Itoa(seq%keys)), Value: e.Data}
	for k, v := range e.Headers() {
		m.Headers = append(m.Headers, kafka.Header{Key: k, Value: []byte(v)})
	}
	tid, sid := make([]byte, 16), make([]byte, 8)
	_, _ = rand.Read(tid)
	_, _ = rand.Read(sid)
	m.Headers = append(m.Headers, kafka.Header{Key: "traceparent", Value: []byte("00-" + hex.EncodeToString(tid) + "-" + hex.EncodeToString(sid) + "-01")})
	return m
}

// Seq extracts the producer's sequence number from a payload built by Event.
func Seq(data []byte) (int, error) {
	var v struct {
		Seq *int `json:"seq"`
	}
	if err := json.Unmarshal(data, &v); err != nil || v.Seq == nil {
		return 0, fmt.Errorf("payload without seq: %v", err)
	}
	return *v.Seq, nil
}

// TraceID returns the trace id of a traceparent, "" if malformed.
func TraceID(traceparent string) string {
	p := strings.Split(traceparent, "-")
	if len(p) != 4 || len(p[1]) != 32 || len(p[2]) != 16 {
		return ""
	}
	return p[1]
}

// SpanID returns the parent span id of a traceparent.
func SpanID(traceparent string) string {
	p := strings.Split(traceparent, "-")
	if len(p) != 4 {
		return ""
	}
	return p[2]
}

// Writer is the test producer: acks=all, hash partitioning by key.
func Writer(brokers []string, topic string) *kafka.Writer {
	return &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Topic:        topic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchSize:    500,
		BatchBytes:   4 << 20,
		BatchTimeout: 5 * time.Millisecond,
		MaxAttempts:  20,
	}
}

// ReadDeadLetters reads the first n letters of a one-partition dead-letter
// topic.
func ReadDeadLetters(ctx context.Context, brokers []string, topic string, n int) ([]kafka.Message, error) {
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	var out []kafka.Message
	for len(out) < n {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			return out, fmt.Errorf("dead letter %d of %d in %s: %w", len(out)+1, n, topic, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// Headers returns a Kafka message's headers by name.
func Headers(m kafka.Message) map[string]string {
	h := make(map[string]string, len(m.Headers))
	for _, kh := range m.Headers {
		h[kh.Key] = string(kh.Value)
	}
	return h
}

// Record is one archived message as read back from Pulsar.
type Record struct {
	Seq         int
	Key         string // the Pulsar message key
	Partition   int
	Offset      int64
	Props       map[string]string
	PublishTime time.Time
	EventTime   time.Time
	Producer    string // the name of the Pulsar producer that sent it, which the broker's dedup state is kept by
}

// Subscription is the durable subscription through which tests read the
// archive. A namespace without retention deletes closed ledgers that no
// durable subscription still needs (a broker restart closes one), so a test
// that restarts Pulsar must create it before anything is written: see Hold.
const Subscription = "archive-check"

// Hold creates the durable subscription at the earliest position so every
// message written from now on is kept until the test has read it.
func Hold(client pulsar.Client, topic string) error {
	c, err := client.Subscribe(pulsar.ConsumerOptions{Topic: topic, SubscriptionName: Subscription, Type: pulsar.Exclusive,
		SubscriptionInitialPosition: pulsar.SubscriptionPositionEarliest})
	if err != nil {
		return fmt.Errorf("hold %s: %w", topic, err)
	}
	c.Close()
	return nil
}

// ReadPulsar reads topic through the Subscription (from the earliest message
// if it did not exist) until want records arrived or nothing new came for
// idle. Records are acknowledged, so a second call continues where this one
// stopped.
func ReadPulsar(ctx context.Context, client pulsar.Client, topic string, want int, idle time.Duration) ([]Record, error) {
	c, err := client.Subscribe(pulsar.ConsumerOptions{Topic: topic, SubscriptionName: Subscription, Type: pulsar.Exclusive,
		SubscriptionInitialPosition: pulsar.SubscriptionPositionEarliest, ReceiverQueueSize: 2000})
	if err != nil {
		return nil, fmt.Errorf("pulsar subscribe %s: %w", topic, err)
	}
	defer c.Close()
	var out []Record
	for len(out) < want {
		rctx, cancel := context.WithTimeout(ctx, idle)
		m, err := c.Receive(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return out, ctx.Err()
			}
			return out, nil // idle
		}
		_ = c.Ack(m)
		out = append(out, ToRecord(m))
	}
	return out, nil
}

// ToRecord extracts what the verdict needs from an archived message.
func ToRecord(m pulsar.Message) Record {
	rec := Record{Key: m.Key(), Props: m.Properties(), PublishTime: m.PublishTime(), EventTime: m.EventTime(), Producer: m.ProducerName()}
	rec.Seq, _ = Seq(m.Payload())
	rec.Partition, _ = strconv.Atoi(rec.Props["__kafka_partition"])
	rec.Offset, _ = strconv.ParseInt(rec.Props["__kafka_offset"], 10, 64)
	return rec
}

// Verdict is the fault test's result.
type Verdict struct {
	Produced, Total, Distinct, Lost, Duplicated, OutOfOrder, MissingMetadata int
}

// OK is the pass condition: nothing lost, duplicated or reordered, and every
// message carries metadata and trace context.
func (v Verdict) OK() bool {
	return v.Lost == 0 && v.Duplicated == 0 && v.OutOfOrder == 0 && v.MissingMetadata == 0 && v.Total == v.Produced
}

func (v Verdict) String() string {
	return fmt.Sprintf("produced=%d total=%d distinct=%d lost=%d duplicated=%d out_of_order=%d missing_metadata=%d",
		v.Produced, v.Total, v.Distinct, v.Lost, v.Duplicated, v.OutOfOrder, v.MissingMetadata)
}

// Judge compares the archive against produced sequence numbers 0..produced-1.
// Out of order counts records whose Kafka offset is not above the previous
// record's in the same partition.
func Judge(produced int, recs []Record) Verdict {
	v := Verdict{Produced: produced, Total: len(recs)}
	seen := make(map[int]int, len(recs))
	last := map[int]int64{}
	for _, r := range recs {
		seen[r.Seq]++
		if prev, ok := last[r.Partition]; ok && r.Offset <= prev {
			v.OutOfOrder++
		}
		last[r.Partition] = r.Offset
		missing := TraceID(r.Props["traceparent"]) == ""
		for _, k := range []string{"__kafka_topic", "__kafka_partition", "__kafka_offset", "kafka_key", "kafka_timestamp_ms", "ce_id", "ce_type"} {
			missing = missing || r.Props[k] == ""
		}
		if missing {
			v.MissingMetadata++
		}
	}
	v.Distinct = len(seen)
	for s := 0; s < produced; s++ {
		switch n := seen[s]; {
		case n == 0:
			v.Lost++
		case n > 1:
			v.Duplicated += n - 1
		}
	}
	return v
}
