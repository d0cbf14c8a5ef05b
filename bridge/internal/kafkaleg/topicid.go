package kafkaleg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
)

// TopicID asks the brokers for the topic's id (Metadata v10+, Kafka 2.8+): a UUID Kafka gives each incarnation of a
// topic, so a topic deleted and created again under the same name has another one. Leg A stamps it on each record
// (HeaderTopicID) and puts it in the record's Nats-Msg-Id, and leg B in the record's Pulsar producer name
// (mapping.ProducerName): both sinks' dedup is keyed by Kafka offsets, which a recreated topic counts from 0 again, so
// without it JetStream dropped the new records as replays within its duplicate window and Pulsar until their offsets
// passed the highest one archived.
//
// It is asked with sarama because kafka-go v0.4.51 sends Metadata up to v8, and topic ids came with v10. A broker older
// than 2.8 knows no v10 and closes the connection on such a request (sarama does not pick versions by what the broker
// says), so the broker is asked its versions first: one without v10, or one that reports no id, gives "": the names
// without it, as before. A failure is an error, never "": the session ends and the next asks again, rather than
// naming records the old way for a while (their ids would change twice, and each change archives them again).
//
// The id is in Kafka's own text form (URL-safe base64, 22 characters, as kafka-topics.sh --describe prints it), which
// needs no escaping in a header value, a Nats-Msg-Id or a producer name.
//
// sarama's broker calls take no context: the request runs on its own, bounded by its 10 s timeouts, and ctx ending
// returns at once (a stop does not wait for a broker that does not answer).
func TopicID(ctx context.Context, brokers []string, topic string) (string, error) {
	type answer struct {
		id  string
		err error
	}
	done := make(chan answer, 1)
	go func() {
		id, err := askTopicID(brokers, topic)
		done <- answer{id, err}
	}()
	select {
	case a := <-done:
		return a.id, a.err
	case <-ctx.Done():
		return "", fmt.Errorf("kafka topic id of %s: %w", topic, ctx.Err())
	}
}

func askTopicID(brokers []string, topic string) (string, error) {
	cfg := sarama.NewConfig()
	cfg.ClientID = "shanhai-bridge"
	cfg.Version = sarama.V2_8_0_0
	cfg.Net.DialTimeout = 10 * time.Second
	cfg.Net.ReadTimeout = 10 * time.Second
	cfg.Net.WriteTimeout = 10 * time.Second
	// sarama's own ApiVersions request (v3, sent on open) is not read back; topicID sends one it reads.
	cfg.ApiVersionsRequest = false
	var errs []error
	for _, addr := range brokers { // any broker answers for every topic: the first that does
		id, err := topicID(cfg, addr, topic)
		if err == nil {
			return id, nil
		}
		errs = append(errs, err)
	}
	return "", fmt.Errorf("kafka topic id of %s: %w", topic, errors.Join(errs...))
}

func topicID(cfg *sarama.Config, addr, topic string) (string, error) {
	b := sarama.NewBroker(addr)
	if err := b.Open(cfg); err != nil {
		return "", fmt.Errorf("%s: %w", addr, err)
	}
	defer b.Close()
	v, err := metadataVersion(b)
	if err != nil {
		return "", fmt.Errorf("%s: %w", addr, err)
	}
	if v < 10 {
		return "", nil // older than 2.8: no topic ids
	}
	res, err := b.GetMetadata(&sarama.MetadataRequest{Version: 10, Topics: []string{topic}})
	if err != nil {
		return "", fmt.Errorf("%s: %w", addr, err)
	}
	for _, t := range res.Topics {
		if t.Name != topic {
			continue
		}
		if t.Err != sarama.ErrNoError {
			return "", fmt.Errorf("%s: %w", addr, t.Err)
		}
		if t.Uuid == (sarama.Uuid{}) {
			return "", nil
		}
		return t.Uuid.String(), nil
	}
	return "", fmt.Errorf("%s: no metadata for the topic", addr)
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
