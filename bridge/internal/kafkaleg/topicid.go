package kafkaleg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// TopicID asks the partition's leader for the topic's id (Metadata v10+, Kafka 2.8+): a UUID Kafka gives each
// incarnation of a topic, so a topic deleted and created again under the same name has another one. Leg A stamps it on
// each record (HeaderTopicID) and puts it in the record's Nats-Msg-Id, and leg B in the record's Pulsar producer name
// (mapping.ProducerName): both sinks' dedup is keyed by Kafka offsets, which a recreated topic counts from 0 again, so
// without it JetStream dropped the new records as replays within its duplicate window and Pulsar until their offsets
// passed the highest one archived.
//
// The leader, because it is the broker whose log leg A reads: right after a recreation a broker whose metadata is
// behind still answers with the old id, and the new incarnation's records named by it were dropped by both sinks as
// replays of the old one's. The first broker that answers names the leader; the leader must name itself in its own
// answer (a leader that moved since is asked again at the next session). Its id and its log are the same broker's view
// of the topic. (Asking until two brokers agree does not do it: two stale brokers agree, and a cluster may have one.)
//
// It is asked with sarama because kafka-go v0.4.51 sends Metadata up to v8, and topic ids came with v10. A broker older
// than 2.8 knows no v10 and closes the connection on such a request (sarama does not pick versions by what the broker
// says), so the broker is asked its versions first: one without v10, or one that reports no id, gives "": the names
// without it, as before (TopicIDs refuses the latter once the topic gave an id). A failure is an error, never "": the
// session ends and the next asks again, rather than naming records the old way for a while (their ids would change
// twice, and each change archives them again).
//
// The id is in Kafka's own text form (URL-safe base64, 22 characters, as kafka-topics.sh --describe prints it), which
// needs no escaping in a header value, a Nats-Msg-Id or a producer name.
//
// sarama's broker calls take no context, and its Close waits for the answer in flight: the connections are dialled
// with ctx and closed when it ends, so a stop does not wait up to the 10 s timeouts for a broker that does not answer.
func TopicID(ctx context.Context, brokers []string, topic string, partition int) (string, error) {
	id, _, err := topicID(ctx, brokers, topic, partition)
	return id, err
}

// topicID is TopicID, also saying whether the broker that gave no id is older than 2.8 (knows no Metadata v10).
func topicID(ctx context.Context, brokers []string, topic string, partition int) (id string, old bool, err error) {
	cfg := sarama.NewConfig()
	cfg.ClientID = "shanhai-bridge"
	cfg.Version = sarama.V2_8_0_0
	cfg.Net.ReadTimeout = 10 * time.Second
	cfg.Net.WriteTimeout = 10 * time.Second
	cfg.Net.Proxy.Enable = true // sarama's only way to dial with a dialer of one's own
	cfg.Net.Proxy.Dialer = ctxDialer{ctx: ctx, d: net.Dialer{Timeout: 10 * time.Second}}
	// sarama's own ApiVersions request (v3, sent on open) is not read back; metadata sends one it reads.
	cfg.ApiVersionsRequest = false
	var errs []error
	for _, addr := range brokers { // any broker names the leader: the first that answers
		id, old, err := leaderTopicID(cfg, addr, topic, int32(partition))
		if err == nil {
			return id, old, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
	}
	return "", false, fmt.Errorf("kafka topic id of %s partition %d: %w", topic, partition, errors.Join(errs...))
}

// leaderTopicID asks addr who leads the partition, and the leader the topic's id ("" and no error when a broker is
// older than 2.8, which old says, or reports none).
func leaderTopicID(cfg *sarama.Config, addr, topic string, partition int32) (id string, old bool, err error) {
	res, err := metadata(cfg, addr, topic)
	if err != nil || res == nil {
		return "", err == nil, err
	}
	leader, err := leaderOf(res, topic, partition)
	if err != nil {
		return "", false, fmt.Errorf("%s: %w", addr, err)
	}
	var leaderAddr string
	for _, b := range res.Brokers {
		if b.ID() == leader {
			leaderAddr = b.Addr()
		}
	}
	if leaderAddr == "" {
		return "", false, fmt.Errorf("%s: leader %d of partition %d is not among the brokers", addr, leader, partition)
	}
	if leaderAddr != addr {
		if res, err = metadata(cfg, leaderAddr, topic); err != nil || res == nil {
			return "", err == nil, err
		}
		if self, err := leaderOf(res, topic, partition); err != nil || self != leader {
			return "", false, fmt.Errorf("%s: broker %d no longer leads partition %d (%d, %v)", leaderAddr, leader, partition, self, err)
		}
	}
	for _, t := range res.Topics {
		if t.Name == topic && t.Uuid != (sarama.Uuid{}) {
			return t.Uuid.String(), false, nil
		}
	}
	return "", false, nil
}

// metadata is addr's Metadata v10 answer for the topic, nil if the broker is older than 2.8.
func metadata(cfg *sarama.Config, addr, topic string) (*sarama.MetadataResponse, error) {
	b := sarama.NewBroker(addr)
	if err := b.Open(cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	defer b.Close()
	v, err := metadataVersion(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	if v < 10 {
		return nil, nil // older than 2.8: no topic ids
	}
	res, err := b.GetMetadata(&sarama.MetadataRequest{Version: 10, Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	return res, nil
}

// leaderOf is the broker the answer names as the partition's leader.
func leaderOf(res *sarama.MetadataResponse, topic string, partition int32) (int32, error) {
	for _, t := range res.Topics {
		if t.Name != topic {
			continue
		}
		if t.Err != sarama.ErrNoError {
			return -1, t.Err
		}
		for _, p := range t.Partitions {
			if p.ID != partition {
				continue
			}
			if p.Err != sarama.ErrNoError {
				return -1, fmt.Errorf("partition %d: %w", partition, p.Err)
			}
			return p.Leader, nil
		}
		return -1, fmt.Errorf("no partition %d", partition)
	}
	return -1, errors.New("no metadata for the topic")
}

// apiKeyMetadata is Metadata's key in the Kafka protocol (sarama does not export its own).
const apiKeyMetadata = 3

// metadataVersion is the highest Metadata version the broker answers, -1 if none. ApiVersions v0, as kafka-go sends
// on each of its connections: every broker since 0.10 answers it, where v3 (sarama's) is unknown before 2.4.
func metadataVersion(b *sarama.Broker) (int16, error) {
	res, err := b.ApiVersions(&sarama.ApiVersionsRequest{Version: 0})
	if err != nil {
		return 0, fmt.Errorf("api versions: %w", err)
	}
	if res.ErrorCode != int16(sarama.ErrNoError) {
		return 0, fmt.Errorf("api versions: %w", sarama.KError(res.ErrorCode))
	}
	for _, k := range res.ApiKeys {
		if k.ApiKey == apiKeyMetadata {
			return k.MaxVersion, nil
		}
	}
	return -1, nil
}

// ctxDialer dials with ctx and closes each connection when ctx ends.
type ctxDialer struct {
	ctx context.Context
	d   net.Dialer
}

func (c ctxDialer) Dial(network, addr string) (net.Conn, error) {
	conn, err := c.d.DialContext(c.ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &ctxConn{Conn: conn, stop: context.AfterFunc(c.ctx, func() { conn.Close() })}, nil
}

// ctxConn is a connection closed when its dialer's context ends, or by sarama before.
type ctxConn struct {
	net.Conn
	stop func() bool
}

func (c *ctxConn) Close() error {
	c.stop()
	return c.Conn.Close()
}

// ErrTopicIDGone is TopicIDs' answer when a topic that gave an id gives none.
var ErrTopicIDGone = errors.New("kafka reports no topic id for a topic it gave one before")

// ErrTopicIDReplaced is TopicIDs' answer when a broker names a topic by an id that another one replaced in this
// process: an incarnation deleted since, which only a broker whose metadata is behind still reports.
var ErrTopicIDReplaced = errors.New("kafka reports a topic id the topic was created again since")

// TopicIDs reads topic ids (TopicID) and remembers which topics gave one in this process. A broker of 2.8 or later may
// answer with no id after a real one (a ZooKeeper cluster mid-upgrade, a controller failover): switching the
// partition to the names without the id then would archive its records again under the old names, or drop them as
// the old names' replays. Once a topic gave an id, no id from such a broker is an error: the session ends, counts as
// a failed fetch, and the next asks again. A broker older than 2.8 (no Metadata v10, which every session's ApiVersions
// request tells) has no ids at all: the cluster was downgraded, and the topic is named without its id from then on,
// as a bridge started on that cluster names it. It used to be refused as well, so leg A failed on the topic until the
// bridge restarted.
//
// An id once replaced by another never names the topic again (Kafka gives each incarnation a new UUID): a broker that
// reports it is behind, and is refused likewise for replacedGrace after it was replaced. Taken, it made leg A see the
// topic created again twice, the second time backwards, and each time read the partition again from its earliest
// offset under other names (recreated), archiving every retained record once more per switch. The zero value is ready.
type TopicIDs struct {
	mu       sync.Mutex
	last     map[string]string    // topic → the id it gave last, "" after a broker older than 2.8
	replaced map[string]time.Time // ids another replaced, and when (UUIDs: unique across topics)
}

// replacedGrace is how long TopicIDs refuses an id another replaced: a broker whose metadata is behind catches up
// within seconds. The refusal ends because which of two ids is the newer cannot be told from them: a topic created
// again twice in a row, a broker behind may name the incarnation between after the process read the newest, never
// having seen the one between. That one is taken for the newer then, and refusing the newest for good stopped the
// partition until the bridge restarted. Once the grace is over, the newest is taken again as another incarnation
// (recreated), whose records already archived under its names are dropped as replays.
const replacedGrace = time.Minute

// Read is TopicID, refusing "" for a topic that gave an id before unless the broker is older than 2.8, and an id
// another one replaced less than replacedGrace ago.
func (t *TopicIDs) Read(ctx context.Context, brokers []string, topic string, partition int) (string, error) {
	id, old, err := topicID(ctx, brokers, topic, partition)
	if err != nil {
		return "", err
	}
	return t.take(topic, partition, id, old, time.Now())
}

// take is Read's verdict on the id a broker gave at now (old: the broker is older than 2.8).
func (t *TopicIDs) take(topic string, partition int, id string, old bool, now time.Time) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	last := t.last[topic]
	switch {
	case id == "" && old:
		// An id after this is an upgrade again, and no id after it an error again.
	case id == "" && last != "":
		return "", fmt.Errorf("kafka topic id of %s partition %d: %w", topic, partition, ErrTopicIDGone)
	case id == "":
		return "", nil
	default:
		if at, ok := t.replaced[id]; ok && now.Sub(at) < replacedGrace {
			return "", fmt.Errorf("kafka topic id of %s partition %d: %s: %w", topic, partition, id, ErrTopicIDReplaced)
		}
		delete(t.replaced, id)
		if last != "" && last != id {
			if t.replaced == nil {
				t.replaced = map[string]time.Time{}
			}
			t.replaced[last] = now
		}
	}
	if t.last == nil {
		t.last = map[string]string{}
	}
	t.last[topic] = id
	return id, nil
}
