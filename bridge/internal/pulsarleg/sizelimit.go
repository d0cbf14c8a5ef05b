package pulsarleg

// A Pulsar topic policy can set a max message size below the broker's (5 MB by default). The broker refuses a larger
// message with a SEND_ERROR NotAllowedError ("Exceed maximum message size") and goes on storing the ones sent after
// it. pulsar-client-go v0.19.0 does not report that refusal: connection.handleSendError (pulsar/internal/connection.go)
// only logs it and removes the producer from the connection's listeners, so neither the refused send nor any later
// one ever completes or fails. With leg B's infinite send timeout the session stalls; the next one sends the message
// again, which the broker refuses again or, once the limit is gone, drops by dedup as below the later offsets it
// stored: acked in JetStream, never archived. The client enforces only the broker-wide limit (from CONNECTED) itself. So leg B reads the topic's policy through the
// admin API and sends a message over it to the DLQ instead of to Pulsar.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
)

// MaxMessageSize returns the max message size policy of a Pulsar topic in bytes, 0 when the topic has none.
type MaxMessageSize func(ctx context.Context, topic string) (int, error)

// AdminMaxMessageSize reads the policy from the Pulsar admin REST API at adminURL (http://host:8080):
// GET /admin/v2/persistent/<tenant>/<namespace>/<topic>/maxMessageSize answers 204 when unset, else the number. The
// topic's own (local) policy wins over its global one (?isGlobal=true), which the broker enforces as well.
func AdminMaxMessageSize(adminURL string, hc *http.Client) MaxMessageSize {
	base := strings.TrimSuffix(adminURL, "/")
	return func(ctx context.Context, topic string) (int, error) {
		domain, name, ok := strings.Cut(topic, "://")
		if !ok {
			return 0, fmt.Errorf("max message size of %s: not a full topic name", topic)
		}
		parts := strings.Split(name, "/")
		for i, s := range parts {
			parts[i] = url.PathEscape(s)
		}
		u := base + "/admin/v2/" + domain + "/" + strings.Join(parts, "/") + "/maxMessageSize"
		for _, q := range []string{"", "?isGlobal=true"} {
			n, set, err := adminInt(ctx, hc, u+q)
			if err != nil {
				return 0, fmt.Errorf("max message size of %s: %w", topic, err)
			}
			if set {
				return max(n, 0), nil // the broker ignores a limit <= 0
			}
		}
		return 0, nil
	}
}

// adminInt GETs a number from the admin API; set is false when it answers that there is none.
func adminInt(ctx context.Context, hc *http.Client, u string) (n int, set bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, false, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return 0, false, fmt.Errorf("GET %s: %w", u, err)
	}
	text := strings.TrimSpace(string(body))
	switch {
	case resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusOK && (text == "" || text == "null"):
		return 0, false, nil
	case resp.StatusCode != http.StatusOK:
		return 0, false, fmt.Errorf("GET %s: %s %s", u, resp.Status, text)
	}
	if n, err = strconv.Atoi(text); err != nil {
		return 0, false, fmt.Errorf("GET %s: answer %q: %w", u, text, err)
	}
	return n, true, nil
}

// traceparentLen is the length of the traceparent that build injects in place of the carried one.
const traceparentLen = 55

// wireSize is an upper bound of the bytes the broker compares with a topic's max message size when build(msg, offset)
// (headers h, payload data) is sent by the producer named producer: magic and checksum (6), the metadata's length (4), the MessageMetadata
// protobuf and the payload. Sequence id, times and sizes are counted at their longest varints, and 16 bytes stand for
// fields the client may add; against the broker's refusals (a 1,500-byte topic limit) it is at most about 40 bytes
// above the exact size, so a message within that margin of the limit goes to the DLQ although it would fit.
func wireSize(producer string, h nats.Header, data []byte, topic string, partition int, offset int64) int {
	const varint64 = 10
	n := 6 + 4 + field(len(producer)) + 3*(1+varint64) /* sequence id, publish and event time */ + 1 + 5 /* uncompressed size */ + 16
	hasTrace := false
	for k, v := range h {
		if len(v) == 0 || strings.HasPrefix(k, "Nats-") {
			continue
		}
		l := len(v[0])
		if strings.EqualFold(k, "traceparent") {
			hasTrace, l = true, max(l, traceparentLen)
		}
		n += property(len(k), l)
	}
	if !hasTrace {
		n += property(len("traceparent"), traceparentLen)
	}
	n += property(len(PropTopic), len(topic)) + property(len(PropPartition), len(strconv.Itoa(partition))) +
		property(len(PropOffset), len(strconv.FormatInt(offset, 10)))
	n += field(len(h.Get(kafkaleg.HeaderKey))) // the partition key
	return n + len(data)
}

// property is the size of one KeyValue entry of the metadata's properties.
func property(k, v int) int { return field(field(k) + field(v)) }

// field is the size of a length-delimited protobuf field of n bytes with a one-byte tag.
func field(n int) int {
	l := 1
	for x := n; x >= 0x80; x >>= 7 {
		l++
	}
	return 1 + l + n
}
