// Package kafkatopic creates the Kafka topics a producer writes to, each before the producer's first write to it.
//
// A kafka-go writer's AllowAutoTopicCreation is not enough for that: Kafka (3.9, KRaft) answers the Metadata request
// that auto-creates a topic with UNKNOWN_TOPIC_OR_PARTITION, and kafka-go (v0.4.51) returns that from WriteMessages
// without retrying, so the first write to a new topic failed, and the writer's caller retried it with a warning about a
// fault that was not there. CreateTopics, sent through the writer's transport, is answered once the topic exists, and
// kafka-go then waits until that transport's metadata cache lists it, so the write that follows finds it.
package kafkatopic

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/segmentio/kafka-go"
)

// Creator creates the topics of one writer, each at most once, with the broker's default partitions and replication.
// It is safe for concurrent use.
//
// A topic that exists is left as it is (its owner may have tuned max.message.bytes, retention or partitions), and so
// is one Kafka refuses to create (no permission to, say): that refusal is logged once and the caller writes anyway,
// so the write's own error reaches whoever handles write errors. A request that got no answer (Kafka away, the
// context ended), or an answer Kafka means as "try again", is sent again on the next Ensure: the write fails as well,
// and its caller says so. A topic deleted since it was asked about is asked about again once the caller Forgets it.
type Creator struct {
	w   *kafka.Writer
	log *slog.Logger

	mu sync.Mutex
	// done holds the topics not asked about again: true for one Kafka answered it will not create, false for one that
	// exists (until Forget).
	done map[string]bool
}

// New returns a Creator for the topics w writes to. It asks the broker through w's Addr and Transport, read at each
// request, so that w's metadata cache learns of a topic it creates. log (slog.Default() when nil) hears of each topic
// created or refused.
func New(w *kafka.Writer, log *slog.Logger) *Creator {
	if log == nil {
		log = slog.Default()
	}
	return &Creator{w: w, log: log, done: map[string]bool{}}
}

// Ensure creates those of topics not asked about before, in one request. It returns when Kafka has answered and
// w's metadata lists the topics created, or when ctx ends; it reports nothing, as the write that follows does.
// Two concurrent calls may both ask for a topic: Kafka creates it once and answers the other that it exists.
func (c *Creator) Ensure(ctx context.Context, topics ...string) {
	c.mu.Lock()
	var ask []kafka.TopicConfig
	seen := map[string]bool{}
	for _, t := range topics {
		if _, asked := c.done[t]; !asked && !seen[t] {
			seen[t] = true
			ask = append(ask, kafka.TopicConfig{Topic: t, NumPartitions: -1, ReplicationFactor: -1})
		}
	}
	c.mu.Unlock()
	if len(ask) == 0 {
		return
	}
	// Not under mu: a request Kafka is slow to answer must not hold back writes to topics that exist.
	client := &kafka.Client{Addr: c.w.Addr, Transport: c.w.Transport}
	res, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: ask})
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, tc := range ask {
		err, answered := res.Errors[tc.Topic]
		switch {
		case !answered || temporary(err):
			// Asked again next time. Kafka answers REQUEST_TIMED_OUT (a create it could not finish in the request's
			// time; the ctx's deadline sets it) or NOT_CONTROLLER (a controller moving) meaning "try again": taken as a
			// refusal, the topic was never asked about again and every write to it failed for the life of the process.
			continue
		case err == nil:
			c.log.InfoContext(ctx, "Kafka topic created with the broker's defaults", "topic", tc.Topic)
			c.done[tc.Topic] = false
		case errors.Is(err, kafka.TopicAlreadyExists):
			c.done[tc.Topic] = false
		default:
			c.log.InfoContext(ctx, "Kafka topic not created; writing to it as it is", "topic", tc.Topic, "error", err)
			c.done[tc.Topic] = true
		}
	}
}

// Forget has the next Ensure ask Kafka to create topic again: the caller's write found it missing (see Missing),
// deleted since it was created or found. Without it such a topic was never created
// again, and every write to it failed for the life of the process on a broker that does not create topics on demand.
// One request per Forget, so the caller's pace of failed writes (a backoff) bounds them. A topic Kafka refused to
// create stays refused: asking again would only repeat the refusal, and its log line, at every failed write.
func (c *Creator) Forget(topic string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if refused, asked := c.done[topic]; asked && !refused {
		delete(c.done, topic)
	}
}

// temporary reports whether err is a per-topic answer Kafka means as retriable rather than final.
func temporary(err error) bool {
	var ke kafka.Error
	return errors.As(err, &ke) && ke.Temporary()
}
